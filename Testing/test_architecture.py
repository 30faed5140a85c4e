"""The library's structure holds: no import cycle among DICOMPlusLib's modules (imports inside
functions included: they hide a cycle, they do not remove it), and the layers of network/ import
downwards only. Imports under ``if TYPE_CHECKING:`` are annotations, not dependencies, and are not
counted."""

from __future__ import annotations

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
LIB = REPO_ROOT / "DICOMPlusLib"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in LIB.rglob("*.py") if p.name != "__main__.py"}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The DICOMPlusLib modules ``path`` imports (``from P import m`` is module P.m when it
    exists, else P)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in modules else base)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_graph_is_read():
    """The checker sees the imports it must (a test of the test)."""
    graph = import_graph()
    assert "DICOMPlusLib.network.dimse.ul" in graph["DICOMPlusLib.network.dimse.scu"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    cycles = _cycles(import_graph())
    assert not cycles, "import cycles in DICOMPlusLib:\n" + "\n".join(" <-> ".join(c) for c in cycles)


#: network/'s layers, bottom first; a module imports its own layer and those below it only:
#: values (endpoints, nodes, reports and options), the cancellable TCP connect both stacks open
#: their connections with (connect), the two protocol stacks (dimse/, web/), the
#: implementations of each operation over a stack (echo_dimse, find, send_dimse, retrieve_qr,
#: the listener...), the transports (transports/: one per endpoint kind, the protocol the
#: services dispatch to), the services (echo, send, query, retrieve, sources) and the sample
#: PACS (pacs/), an application of them.
NETWORK_LAYERS = [
    ("values", {"ae", "endpoints", "nodes", "models", "echo_models", "send_models", "answers"}),
    ("sockets", {"connect"}),
    ("stacks", {"dimse", "web"}),
    ("implementations", {"echo_dimse", "echo_web", "find", "send_dimse", "retrieve_qr", "retrieve_plan",
                         "retrieve_dimse", "retrieve_web", "listener", "storage"}),
    ("transports", {"transports"}),
    ("services", {"echo", "send", "query", "retrieve", "sources"}),
    ("applications", {"pacs"}),
]  # fmt: skip


def _layer(module: str) -> int | None:
    if not module.startswith("DICOMPlusLib.network."):
        return None
    part = module.split(".")[2]
    for level, (_, members) in enumerate(NETWORK_LAYERS):
        if part in members:
            return level
    raise AssertionError(f"{module} is in no layer of network/: add it to NETWORK_LAYERS")


def test_network_layers_import_downwards():
    graph = import_graph()
    upward = []
    for module, imported in graph.items():
        here = _layer(module)
        if here is None:
            continue
        for other in imported:
            there = _layer(other)
            if there is not None and there > here:
                upward.append(f"{module} -> {other}")
    assert not upward, "network/ imports against its layers:\n" + "\n".join(sorted(upward))


def test_transport_stacks_stay_apart():
    """dimse/ and web/ are two stacks: neither imports the other."""
    graph = import_graph()
    crossing = [
        f"{m} -> {o}"
        for m, imported in graph.items()
        for o in imported
        if (m.startswith("DICOMPlusLib.network.dimse") and o.startswith("DICOMPlusLib.network.web"))
        or (m.startswith("DICOMPlusLib.network.web") and o.startswith("DICOMPlusLib.network.dimse"))
    ]
    assert not crossing, crossing


def test_network_layers_are_read():
    """The layer check sees an upward import when there is one (a test of the test)."""
    assert _layer("DICOMPlusLib.network.dimse.scu") < _layer("DICOMPlusLib.network.send")
    assert _layer("DICOMPlusLib.network.transports.dimse") < _layer("DICOMPlusLib.network.echo")
