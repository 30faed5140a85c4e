"""``dicomplus nodes``: the configured DICOM nodes (add, list, remove).

The node list is ``--nodes FILE``, else ``$DICOMPLUS_NODES``, else ``~/.config/dicomplus/nodes.json``.
Secrets (a DICOMweb password or token) are stored there (owner-only) and never printed; they can
come from an environment variable or a prompt instead of the command line.
"""

from __future__ import annotations

import getpass
import os

from DICOMPlusLib.cli.app import Exit, UsageError, print_json
from DICOMPlusLib.cli.network import NODES_HELP, method_word, node_spec, node_store, retrieve_method


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
    from DICOMPlusLib.network.nodes import RemoteNode, RetrieveMethod

    store = node_store(args)
    _check_new_node(store, args)
    token, password = _secret(args, "token"), _secret(args, "password")
    if args.address is None:
        if not args.dicomweb_url:
            raise UsageError("give AE@HOST:PORT, or --dicomweb URL for a DICOMweb node")
        node = RemoteNode.dicomweb(
            args.name, args.dicomweb_url, token=token, user=args.user or "", password=password
        )
    else:
        parsed = RemoteNode.parse(args.address)
        node = RemoteNode(
            name=args.name,
            ae_title=parsed.ae_title,
            host=parsed.host,
            port=parsed.port,
            tls=args.tls,
            retrieve_method=RetrieveMethod.parse(
                {"get": "C-GET", "move": "C-MOVE"}.get(args.retrieve, args.retrieve)
            ),
            dicomweb_url=args.dicomweb_url or "",
            description=args.description or "",
            dicomweb_token=token,
            dicomweb_user=args.user or "",
            dicomweb_password=password,
        )
    store.add(node, replace_existing=args.replace)
    if args.json:
        print_json(public_node(node))
    else:
        print(f"added {node.name}: {node_location(node)} ({store.path})")
    return Exit.OK


def _web_only(node) -> bool:
    return method_word(node.retrieve_method) == "dicomweb" and bool(node.dicomweb_url)


def node_location(node) -> str:
    """``AE@HOST:PORT``, or the URL of a node reached by DICOMweb (its AE title and port are
    placeholders)."""
    return node.dicomweb_url if _web_only(node) else node.address


def public_node(node) -> dict:
    """A node as printed: secrets say only that they are set."""
    out = node.to_dict()
    for key in ("dicomweb_token", "dicomweb_password"):
        if out.get(key):
            out[key] = "(set)"
    out["retrieve_method"] = method_word(node.retrieve_method)
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
        extra = " tls" if n.tls else ""
        web = f" {n.dicomweb_url}" if n.dicomweb_url and not _web_only(n) else ""
        auth = (
            " (token)" if n.dicomweb_token else " (user " + n.dicomweb_user + ")" if n.dicomweb_user else ""
        )
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
    nodes_sub = p.add_subparsers(dest="nodes_command", metavar="ACTION", required=True)
    a = nodes_sub.add_parser("add", help="add a node")
    a.add_argument("name")
    a.add_argument(
        "address",
        type=node_spec,
        metavar="AE@HOST:PORT",
        nargs="?",
        help="omit for a DICOMweb-only node (--dicomweb)",
    )
    a.add_argument("--tls", action="store_true", help="connect with TLS")
    a.add_argument(
        "--retrieve",
        type=retrieve_method,
        default="get",
        help="how studies are fetched from it: get (C-GET, default), move (C-MOVE) or dicomweb",
    )
    a.add_argument(
        "--dicomweb",
        "--dicomweb-url",
        dest="dicomweb_url",
        help="DICOMweb service root, e.g. http://host:8042/dicom-web",
    )
    a.add_argument("--token", help="DICOMweb bearer token (visible in the shell history: see --token-env)")
    a.add_argument("--token-env", metavar="NAME", help="read the bearer token from this environment variable")
    a.add_argument("--user", help="DICOMweb user name (HTTP basic)")
    a.add_argument("--password", help="DICOMweb password (visible in the shell history: see --ask-password)")
    a.add_argument("--password-env", metavar="NAME", help="read the password from this environment variable")
    a.add_argument("--ask-password", action="store_true", help="ask for the password (not echoed)")
    a.add_argument("--description")
    a.add_argument("--replace", action="store_true", help="replace a node of the same name")
    a.add_argument("--nodes", help=NODES_HELP)
    a.set_defaults(func=cmd_nodes_add)
    a = nodes_sub.add_parser("list", help="list the nodes")
    a.add_argument("--json", action="store_true")
    a.add_argument("--nodes", help=NODES_HELP)
    a.set_defaults(func=cmd_nodes_list)
    a = nodes_sub.add_parser("remove", help="remove a node")
    a.add_argument("name")
    a.add_argument("--nodes", help=NODES_HELP)
    a.set_defaults(func=cmd_nodes_remove)
