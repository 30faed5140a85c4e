"""``dicomplus nodes``: the configured DICOM nodes (add, list, remove).

The node list is ``--nodes FILE``, else ``$DICOMPLUS_NODES``, else ``~/.config/dicomplus/nodes.json``.
Secrets (a DICOMweb password or token) are stored there (owner-only) and never printed; they can
come from an environment variable or a prompt instead of the command line.
"""

from __future__ import annotations

import getpass
import os

from DICOMPlusLib import dataclasses_lite
from DICOMPlusLib.cli.app import Exit, UsageError, print_json
from DICOMPlusLib.cli.arguments import user_path
from DICOMPlusLib.cli.network import NODES_HELP, method_word, node_address, node_store, retrieve_method
from DICOMPlusLib.errors import NetworkError


def _secret(args, what: str) -> str:
    """``--password`` / ``--token``: from the option, an environment variable (``--password-env
    NAME``) or a prompt (``--ask-password``), so that it need not sit in the shell history."""
    value = getattr(args, what) or ""
    env = getattr(args, f"{what}_env")
    if env:
        if env not in os.environ:
            raise UsageError(f"--{what}-env {env}: no environment variable {env}")
        value = os.environ[env]
    if what == "password" and args.ask_password:
        value = getpass.getpass(f"password for {args.user or args.name}: ")
    return value


def _check_new_node(store, args) -> None:
    if not args.replace and any(n.name == args.name for n in store.list()):
        raise UsageError(
            f"a node named {args.name!r} exists already in {store.path}: add --replace to replace it "
            f"(or dicomplus nodes remove {args.name})"
        )


def cmd_nodes_add(args) -> int:
    from DICOMPlusLib.network.nodes import DicomwebEndpoint, RemoteNode, RetrieveMethod

    store = node_store(args)
    _check_new_node(store, args)
    token, password = _secret(args, "token"), _secret(args, "password")
    if args.address is None and not args.dicomweb_url:
        raise UsageError("give AE@HOST:PORT, or --dicomweb URL for a DICOMweb node")
    dimse = web = None
    if args.address is not None:
        dimse = dataclasses_lite.replace(RemoteNode.parse(args.address).require_dimse(), tls=args.tls)
    if args.dicomweb_url:
        try:
            web = DicomwebEndpoint(
                args.dicomweb_url, token=token, username=args.user or "", password=password
            ).check()
        except NetworkError as exc:  # a malformed URL is a malformed value: exit 2
            raise UsageError(str(exc)) from None
    method = None
    if args.retrieve is not None:
        method = RetrieveMethod.parse({"get": "C-GET", "move": "C-MOVE"}.get(args.retrieve, args.retrieve))
    node = RemoteNode(args.name, dimse, web, retrieve_method=method, prefer=args.prefer,
                      description=args.description or "")  # fmt: skip
    store.add(node, replace_existing=args.replace)
    if args.json:
        print_json(public_node(node))
    else:
        print(f"added {node.name}: {node_location(node)} ({store.path})")
    return Exit.OK


def node_location(node) -> str:
    """Where echo, query and send go: ``AE@HOST:PORT`` or the DICOMweb URL."""
    return node.address


def public_node(node) -> dict:
    """A node as printed: secrets say only that they are set."""
    out = node.to_dict()
    for key in ("token", "password"):
        if out.get("dicomweb", {}).get(key):
            out["dicomweb"][key] = "(set)"
    out["retrieve_method"] = method_word(node.retrieve_method)
    out["transport"] = node.preferred.value
    return out


def cmd_nodes_list(args) -> int:
    store = node_store(args)
    nodes = store.list()
    if args.json:
        print_json([public_node(n) for n in nodes])
        return Exit.OK
    if not nodes:
        print(f"no nodes configured ({store.path}); add one with: dicomplus nodes add NAME AE@HOST:PORT")
        return Exit.OK
    for n in nodes:
        extra = " tls" if n.dimse is not None and n.dimse.tls else ""
        other = [e for e in (n.dimse and n.dimse.address, n.web and n.web.url) if e and e != n.address]
        web = f" (also {other[0]})" if other else ""
        auth = ""
        if n.web is not None:
            auth = " (token)" if n.web.token else f" (user {n.web.username})" if n.web.username else ""
        print(f"{n.name:16s} {node_location(n):40s} {method_word(n.retrieve_method)}{extra}{web}{auth}")
    return Exit.OK


def cmd_nodes_remove(args) -> int:
    node = node_store(args).remove(args.name)
    if args.json:
        print_json(public_node(node))
    else:
        print(f"removed {node.name} ({node_location(node)})")
    return Exit.OK


def add_commands(sub) -> None:
    p = sub.add_parser("nodes", help="configured DICOM nodes: add, list, remove")
    p.add_argument("--nodes", type=user_path, help=NODES_HELP)
    nodes_sub = p.add_subparsers(dest="nodes_command", metavar="ACTION", required=True)
    a = nodes_sub.add_parser("add", help="add a node")
    a.add_argument("name")
    a.add_argument(
        "address",
        type=node_address,
        metavar="AE@HOST:PORT",
        nargs="?",
        help="the DIMSE endpoint; omit for a DICOMweb-only node (--dicomweb)",
    )
    a.add_argument("--tls", action="store_true", help="connect with TLS")
    a.add_argument(
        "--retrieve",
        type=retrieve_method,
        default=None,
        help="how studies are fetched from it: get (C-GET), move (C-MOVE) or dicomweb "
        "(default: get with AE@HOST:PORT, else dicomweb)",
    )
    a.add_argument(
        "--prefer",
        type=str.lower,
        choices=("dimse", "dicomweb"),
        default=None,
        help="with both endpoints: which one echo, query and send use (default dimse)",
    )
    a.add_argument(
        "--dicomweb",
        "--dicomweb-url",
        dest="dicomweb_url",
        help="the DICOMweb endpoint: its service root, e.g. http://host:8042/dicom-web",
    )
    a.add_argument("--token", help="DICOMweb bearer token (visible in the shell history: see --token-env)")
    a.add_argument("--token-env", metavar="NAME", help="read the bearer token from this environment variable")
    a.add_argument("--user", help="DICOMweb user name (HTTP basic)")
    a.add_argument("--password", help="DICOMweb password (visible in the shell history: see --ask-password)")
    a.add_argument("--password-env", metavar="NAME", help="read the password from this environment variable")
    a.add_argument("--ask-password", action="store_true", help="ask for the password (not echoed)")
    a.add_argument("--description")
    a.add_argument("--replace", action="store_true", help="replace a node of the same name")
    a.add_argument("--nodes", type=user_path, help=NODES_HELP)
    a.set_defaults(func=cmd_nodes_add)
    a = nodes_sub.add_parser("list", help="list the nodes")
    a.add_argument("--json", action="store_true")
    a.add_argument("--nodes", type=user_path, help=NODES_HELP)
    a.set_defaults(func=cmd_nodes_list)
    a = nodes_sub.add_parser("remove", help="remove a node")
    a.add_argument("name")
    a.add_argument("--nodes", type=user_path, help=NODES_HELP)
    a.set_defaults(func=cmd_nodes_remove)
