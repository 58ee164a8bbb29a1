"""The ``peerbox schema`` commands: check and show a peer's ``schema.toml``.

::

    peerbox schema check NAME [--root DIR] [--json]
    peerbox schema show NAME [--json-schema] [--root DIR]

``check`` prints ``OK: FILE: N types, M collections`` (exit 0) or every
problem as ``file:line: problem`` on stderr (exit 2, like any bad config
file). ``show`` prints the checked schema, one type or collection a block
(``--json-schema``: as a JSON Schema document). Both are thin: the work is
:func:`peerbox.peer.load_schema` and :func:`peerbox.hostcalls.json_schema`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..hostcalls import Schema, SchemaError, json_schema
from ..peer import PeerStore, load_schema, schema_path
from .._errors import UsageError
from ._args import add_root_argument

__all__ = ["add_parsers", "cmd_check", "cmd_show", "COMMANDS", "render_schema"]

#: The subcommands this module adds.
COMMANDS = ("schema",)


def add_parsers(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``schema check`` and ``schema show`` to ``subparsers``."""
    sp = subparsers.add_parser(
        "schema", help="check or show a peer's record types and collections (schema.toml)",
        description="Work with a peer's schema (<root>/peers/NAME/schema.toml).",
    )
    sp.set_defaults(handler=_usage)
    sub = sp.add_subparsers(dest="schema_command", metavar="COMMAND")
    sc = sub.add_parser("check", help="check the schema and report every problem",
                        description="Check NAME's schema.toml; print OK, or every problem as "
                        "file:line: problem (exit 2).")
    sc.add_argument("name", metavar="NAME", help="the peer whose schema to check")
    add_root_argument(sc)
    sc.add_argument("--json", action="store_true", help="print the result as one JSON object")
    sc.set_defaults(handler=cmd_check)
    ss = sub.add_parser("show", help="print the checked schema",
                        description="Print NAME's record types and collections (exit 2 if the schema "
                        "does not check).")
    ss.add_argument("name", metavar="NAME", help="the peer whose schema to show")
    add_root_argument(ss)
    ss.add_argument("--json-schema", action="store_true", help="print it as a JSON Schema (draft 2020-12)")
    ss.set_defaults(handler=cmd_show)


def _usage(args: argparse.Namespace) -> int:
    raise UsageError("peerbox schema: choose a command: check or show")


def cmd_check(args: argparse.Namespace) -> int:
    """``peerbox schema check NAME``: 0 and ``OK``, or 2 and the problems."""
    peer = PeerStore(args.root).get(args.name)
    try:
        schema = load_schema(peer)
    except SchemaError as exc:
        if args.json:
            _out(json.dumps({"ok": False, "file": str(schema_path(peer)), "problems": [
                {"file": p.file, "line": p.line, "problem": p.problem} for p in exc.problems]},
                ensure_ascii=False))
        else:
            sys.stderr.write(f"{exc}\n")
        return 2
    if args.json:
        _out(json.dumps({"ok": True, "file": schema.file, "version": schema.version, "digest": schema.digest,
                         "types": len(schema.types), "collections": len(schema.collections)}))
    else:
        _out(f"OK: {schema.file}: {len(schema.types)} types, {len(schema.collections)} collections")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """``peerbox schema show NAME``: the schema (2 and the problems when it does not check)."""
    peer = PeerStore(args.root).get(args.name)
    try:
        schema = load_schema(peer)
    except SchemaError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    if args.json_schema:
        doc = json_schema(schema, title=f"records of peer {peer.name}")
        _out(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        _out(render_schema(schema))
    return 0


def render_schema(schema: Schema) -> str:
    """The schema as text: the file's own format, normalised (one line a field, rules inline)."""
    lines = [f"# {schema.file} (version {schema.version}, digest {schema.digest[:16]})"]
    for t in schema.types:
        lines += ["", f"[types.{t.name}]"]
        for f in t.fields:
            rules = [f"{k} = {json.dumps(getattr(f, k))}" for k in ("max_len", "min_len", "min", "max")
                     if getattr(f, k) is not None]
            if f.one_of is not None:
                rules.append(f"one_of = {json.dumps(list(f.one_of))}")
            typ = json.dumps(str(f.type))
            lines.append(f"{f.name} = {{ type = {typ}, {', '.join(rules)} }}" if rules
                         else f"{f.name} = {typ}")
    for c in schema.collections:
        lines += ["", f"[collections.{c.name}]", f"type = {json.dumps(c.type)}", f"key = {json.dumps(c.key)}",
                  f"indexes = {json.dumps([list(i) for i in c.indexes])}",
                  f"unique = {json.dumps([list(u) for u in c.unique])}"]
    return "\n".join(lines)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
