"""SQL and sqlite3 stay inside DICOMPlusLib/database/ (issue #15): everything else goes through
the Database protocol, so that a second back end (PostgreSQL, issue #20) serves them all. And
database/ itself imports without cycles."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from dicomplus_testing.util import REPO_ROOT

ROOTS = [REPO_ROOT / "DICOMPlusLib", REPO_ROOT / "bench"]
DATABASE = REPO_ROOT / "DICOMPlusLib" / "database"
SQLITE = re.compile(r"^\s*(import sqlite3|from sqlite3\b)|\bsqlite3\.", re.MULTILINE)
SQL = re.compile(
    r"\b(SELECT\b[^\"']*?\bFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM)\b|\bPRAGMA\s+\w+",
    re.IGNORECASE,
)
RAW_READER = re.compile(r"\.(_?reader)\(\)")


#: The benchmarks' scratch folder (git-ignored): scripts left there are nobody's code.
SCRATCH = REPO_ROOT / "bench" / "_work"


def _outside_database() -> list[Path]:
    return [
        p
        for root in ROOTS
        for p in sorted(root.rglob("*.py"))
        if DATABASE not in p.parents and SCRATCH not in p.parents
    ]


def _strings(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            out.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr):
            text = "".join(
                v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)
            )
            out.append((node.lineno, text))
    return out


def test_the_checks_find_what_they_look_for():
    assert SQLITE.search("import sqlite3") and SQLITE.search("except sqlite3.Error:")
    assert SQL.search("SELECT COUNT(*) FROM instances") and SQL.search("insert or replace into t")
    assert SQL.search("UPDATE series SET x=1") and SQL.search("DELETE FROM studies")
    assert RAW_READER.search("db.reader().execute") and RAW_READER.search("db._reader()")


def test_no_sqlite3_outside_the_database_package():
    found = [
        f"{p.relative_to(REPO_ROOT)}:{p.read_text(encoding='utf-8')[: m.start()].count(chr(10)) + 1}"
        for p in _outside_database()
        for m in SQLITE.finditer(p.read_text(encoding="utf-8"))
    ]
    assert not found, f"sqlite3 used outside DICOMPlusLib/database/: {found}"


def test_no_sql_statement_outside_the_database_package():
    found = [
        f"{p.relative_to(REPO_ROOT)}:{line}: {text[:60]!r}"
        for p in _outside_database()
        for line, text in _strings(p)
        if SQL.search(text)
    ]
    assert not found, f"SQL outside DICOMPlusLib/database/ (add a Database method instead): {found}"


def test_no_connection_handed_out_of_the_database_package():
    found = [
        f"{p.relative_to(REPO_ROOT)}:{p.read_text(encoding='utf-8')[: m.start()].count(chr(10)) + 1}"
        for p in _outside_database()
        for m in RAW_READER.finditer(p.read_text(encoding="utf-8"))
    ]
    assert not found, f"a database connection used outside DICOMPlusLib/database/: {found}"


def _runtime_imports(path: Path) -> set[str]:
    """Modules of DICOMPlusLib.database imported by ``path`` at run time (module level or in a
    function; ``if TYPE_CHECKING:`` blocks are not run)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    out = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "DICOMPlusLib.database":
                out |= {f"DICOMPlusLib.database.{a.name}" for a in node.names}
            elif node.module.startswith("DICOMPlusLib.database."):
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("DICOMPlusLib.database.")}
    return out


def test_the_database_package_has_no_import_cycle():
    modules = {f"DICOMPlusLib.database.{p.stem}": p for p in DATABASE.glob("*.py") if p.stem != "__init__"}
    graph = {
        name: {m for m in _runtime_imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt) :], nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, f"import cycles in DICOMPlusLib/database/: {cycles}"


def test_database_open_chooses_the_back_end_by_url(tmp_path):
    import pytest

    from DICOMPlusLib.database import Database, DatabaseProtocol, open_database
    from DICOMPlusLib.errors import DatabaseError

    for given, where in (
        (tmp_path / "a", tmp_path / "a"),
        (f"sqlite:///{tmp_path}/b/dicomplus.sqlite", tmp_path / "b" / "dicomplus.sqlite"),
    ):
        db = open_database(given)
        try:
            assert isinstance(db, Database) and isinstance(db, DatabaseProtocol)
            assert db.info()["instances"] == 0
            # the URL names a file under tmp_path, never a folder called "sqlite:" in the cwd
            assert db.path == where or db.path.parent == where, (given, db.path)
        finally:
            db.close()
    with pytest.raises(DatabaseError, match="no database back end for mysql"):
        Database.open("mysql://localhost/dicom")


def test_database_open_serves_postgresql_urls(postgres_url, tmp_path):
    from DICOMPlusLib.database import Database, DatabaseProtocol
    from DICOMPlusLib.database.postgres import PostgresDatabase

    db = Database.open(postgres_url, store_dir=tmp_path / "store")
    try:
        assert isinstance(db, PostgresDatabase) and isinstance(db, DatabaseProtocol)
        assert db.info()["instances"] == 0 and db.store_root == tmp_path / "store"
    finally:
        db.close()
