"""The ``peerbox schema`` commands: check and show a peer's ``schema.toml``.

::

    peerbox schema check NAME [--root DIR] [--json]
    peerbox schema show NAME [--json-schema] [--root DIR]
    peerbox schema apply NAME [--dry-run] [--allow-destructive] [--json] [--root DIR]
    peerbox schema history NAME [--json] [--root DIR]

``check`` prints ``OK: FILE: N types, M collections`` (exit 0) or every
problem as ``file:line: problem`` on stderr (exit 2, like any bad config
file). ``show`` prints the checked schema, one type or collection a block
(``--json-schema``: as a JSON Schema document). ``apply`` prints the plan
(every change, its class, the records it affects) and applies it: exit 0,
2 (the schema does not check), 10 (refused: destructive changes without
``--allow-destructive``, or records that do not fit; nothing changed).
``history`` lists the applied versions and verifies their signatures (exit
8 when the history does not check out). All are thin: the work is
:func:`peerbox.peer.load_schema`, :func:`peerbox.peer.apply_schema`,
:func:`peerbox.peer.verify_schema_history` and
:func:`peerbox.hostcalls.json_schema`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ..hostcalls import Plan, Schema, SchemaError, json_schema
from ..peer import (HistoryError, PeerStore, SchemaRefused, apply_schema, load_schema, schema_path,
                    schema_versions, verify_schema_history)
from .._errors import UsageError
from ._args import add_root_argument

__all__ = ["add_parsers", "cmd_check", "cmd_show", "cmd_apply", "cmd_history", "COMMANDS", "render_schema"]

#: ``schema history``: the history does not check out (as ``logic verify``).
HISTORY_FAILED = 8

#: The subcommands this module adds.
COMMANDS = ("schema",)


def add_parsers(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``schema check`` and ``schema show`` to ``subparsers``."""
    sp = subparsers.add_parser(
        "schema", help="check, show or apply a peer's record types and collections (schema.toml)",
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
    sa = sub.add_parser("apply", help="apply schema.toml to the peer's records (migrations)",
                        description="Compare NAME's schema.toml with the schema its records are stored "
                        "under, print every change with its class and the records it affects, and apply "
                        "it. Destructive changes need --allow-destructive (exit 10, nothing changed).")
    sa.add_argument("name", metavar="NAME", help="the peer whose schema to apply")
    sa.add_argument("--dry-run", action="store_true", help="print the changes, apply nothing")
    sa.add_argument("--allow-destructive", action="store_true",
                    help="allow changes that remove fields or collections or may invalidate records")
    sa.add_argument("--json", action="store_true", help="print the plan and the result as one JSON object")
    add_root_argument(sa)
    sa.set_defaults(handler=cmd_apply)
    sh = sub.add_parser("history", help="list the applied schema versions and verify their signatures",
                        description="List NAME's applied schema versions (signed like logic versions) "
                        "and verify them (exit 8 if the history does not check out).")
    sh.add_argument("name", metavar="NAME", help="the peer whose schema history to show")
    sh.add_argument("--json", action="store_true", help="print it as one JSON object")
    add_root_argument(sh)
    sh.set_defaults(handler=cmd_history)


def _usage(args: argparse.Namespace) -> int:
    raise UsageError("peerbox schema: choose a command: check, show, apply or history")


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


def _plan_lines(plan: Plan) -> list[str]:
    if plan.same:
        return ["no changes: schema.toml is the applied schema"]
    head = "dry run: " + ("the first schema of these records" if plan.old is None else
                          f"applied version {plan.old.version} ({plan.old.digest[:12]}) -> "
                          f"schema.toml version {plan.new.version} ({plan.new.digest[:12]})")
    return [head] + [f"  {c.line()}" for c in plan.changes]


def cmd_apply(args: argparse.Namespace) -> int:
    """``peerbox schema apply NAME``: 0 applied (or nothing to do, or a dry run), 2 the schema does
    not check, 10 refused (nothing changed)."""
    peer = PeerStore(args.root).get(args.name)
    try:
        result = apply_schema(peer, dry_run=True)
        if not args.json:
            _out("\n".join(_plan_lines(result.plan)))
        if not args.dry_run:
            result = apply_schema(peer, allow_destructive=args.allow_destructive)
    except SchemaError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    except SchemaRefused as exc:
        if args.json:
            _out(json.dumps({"applied": False, "error": str(exc), "exit_code": exc.exit_code,
                             "changes": [c.doc() for c in exc.plan.changes] if exc.plan else None}))
        else:
            sys.stderr.write(f"error: {peer.name}: {exc}\n")
        return exc.exit_code
    plan = result.plan
    if args.json:
        _out(json.dumps({"applied": result.applied, "dry_run": bool(args.dry_run), "version":
                         result.version.version if result.version else None, "digest": plan.new.digest,
                         "changes": [c.doc() for c in plan.changes]}))
    elif result.applied:
        assert result.version is not None
        _out(f"applied: schema version {result.version.version} of {peer.name} recorded and signed "
             f"({len(plan.changes)} changes)")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    """``peerbox schema history NAME``: the applied versions; exit 8 if the history does not verify."""
    peer = PeerStore(args.root).get(args.name)
    problems = verify_schema_history(peer)
    try:
        versions = schema_versions(peer)
    except HistoryError as exc:  # a log that does not parse: verify reported it
        versions = []
        problems = problems or [str(exc)]
    if args.json:
        _out(json.dumps({"peer": peer.name, "ok": not problems, "problems": problems, "versions": [
            {"version": v.version, "sha256": v.sha256, "time": v.time, "by": v.by} for v in versions]}))
    else:
        for v in versions:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(v.time))
            _out(f"{v.version:>4}  {when}Z  sha256 {v.sha256[:16]}  by {v.by[:24]}...")
        if not versions and not problems:
            _out(f"{peer.name}: no schema applied yet")
        for p in problems:
            _out(f"FAIL {p}")
        if not problems and versions:
            _out(f"ok   {len(versions)} schema version{'s' if len(versions) != 1 else ''} verified")
    return HISTORY_FAILED if problems else 0


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
