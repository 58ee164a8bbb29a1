"""The ``peerbox db`` commands: back up and restore a collection of a peer's records.

::

    peerbox db export NAME COLL [--json] [--out FILE] [--root DIR]
    peerbox db import NAME COLL FILE [--root DIR]

``export`` writes JSON lines (one record a line; ``--json`` is the only
format and may be given for clarity): typed values, ``bytes`` as base64
text, timestamps as ints, ``_key`` kept for auto-keyed collections.
``import`` validates every line against the collection's type and inserts
all of them in one transaction, or none: a bad line is named by its number
(exit 2, nothing imported). For a peer whose storage is s3 there is no
transaction: every line is validated before anything is written, and if an
insert then fails (a key or unique value taken) the records inserted so far
are deleted again; a crash midway can leave part of the file imported.
Both open the records as a script would (the
applied schema must be the peer's ``schema.toml``: else exit 2, run
``peerbox schema apply``). The work is :func:`peerbox.hostcalls.export_lines`
and :func:`peerbox.hostcalls.import_lines` (s3: ``s3_export_lines``, ``s3_import_lines``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .._errors import UsageError
from ..hostcalls import (HostCallError, Records, RecordStore, S3Records, export_lines, import_lines,
                         s3_export_lines, s3_import_lines)
from ..peer import PeerContext, PeerStore
from ._args import add_root_argument

__all__ = ["add_parsers", "cmd_export", "cmd_import", "COMMANDS"]

#: The subcommands this module adds.
COMMANDS = ("db",)
#: The largest file ``db import`` reads (characters): it holds the whole file and its records in
#: memory to import all or nothing; a larger one is refused, never cut short.
MAX_IMPORT = 256 << 20


def add_parsers(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``db export`` and ``db import`` to ``subparsers``."""
    sp = subparsers.add_parser("db", help="export or import a collection of a peer's records (JSON lines)",
                               description="Back up and restore a peer's records (db:: collections).")
    sp.set_defaults(handler=_usage)
    sub = sp.add_subparsers(dest="db_command", metavar="COMMAND")
    se = sub.add_parser("export", help="print every record of a collection as JSON lines",
                        description="Print every record of COLL, one JSON object a line, in key order "
                        "(bytes as base64, timestamps as ints, _key kept).")
    se.add_argument("name", metavar="NAME", help="the peer")
    se.add_argument("coll", metavar="COLL", help="the collection")
    se.add_argument("--json", action="store_true", help="JSON lines (the format; the default)")
    se.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")
    add_root_argument(se)
    se.set_defaults(handler=cmd_export)
    si = sub.add_parser("import", help="insert the records of a JSON-lines file, all or none",
                        description="Validate every line of FILE against COLL's type and insert them all in "
                        "one transaction (a bad line is named by its number; nothing is imported).")
    si.add_argument("name", metavar="NAME", help="the peer")
    si.add_argument("coll", metavar="COLL", help="the collection")
    si.add_argument("file", metavar="FILE", help="JSON lines, as db export writes them ('-': stdin)")
    add_root_argument(si)
    si.set_defaults(handler=cmd_import)


def _usage(args: argparse.Namespace) -> int:
    raise UsageError("peerbox db: choose a command: export or import")


def _context(args: argparse.Namespace) -> PeerContext:
    return PeerContext(PeerStore(args.root).get(args.name))


def _export(store: RecordStore, coll: str) -> list[str]:
    if isinstance(store, S3Records):
        return list(s3_export_lines(store, coll))
    if not isinstance(store, Records):  # pragma: no cover (the two stores)
        raise HostCallError("unsupported", "these records cannot be exported")
    return list(export_lines(store, coll))


def _import(store: RecordStore, coll: str, lines: list[str]) -> int:
    if isinstance(store, S3Records):
        return s3_import_lines(store, coll, lines)
    if not isinstance(store, Records):  # pragma: no cover (the two stores)
        raise HostCallError("unsupported", "these records cannot be imported")
    return import_lines(store, coll, lines)


def cmd_export(args: argparse.Namespace) -> int:
    """``peerbox db export NAME COLL``: 0, or 2 (no such collection, records that do not open)."""
    ctx = _context(args)
    try:
        lines = _export(ctx.records(), args.coll)
    except HostCallError as exc:
        sys.stderr.write(f"error: {args.name}: {exc}\n")
        return 2
    finally:
        ctx.close()
    text = "".join(line + "\n" for line in lines)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    sys.stderr.write(f"{len(lines)} records of {args.coll!r} exported\n")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """``peerbox db import NAME COLL FILE``: 0, or 2 (a bad line, a key taken: nothing imported)."""
    try:
        if args.file == "-":
            text = sys.stdin.read(MAX_IMPORT + 1)
        else:
            with open(args.file, encoding="utf-8") as f:
                text = f.read(MAX_IMPORT + 1)
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {args.file}: {exc}") from exc
    if len(text) > MAX_IMPORT:
        raise UsageError(f"{args.file} is larger than {MAX_IMPORT >> 20} MiB: split it and import the parts "
                         "(each one all or nothing)")
    ctx = _context(args)
    try:
        n = _import(ctx.records(), args.coll, text.splitlines())
    except HostCallError as exc:
        sys.stderr.write(f"error: {args.name}: {args.file}: {exc}; nothing was imported\n")
        return 2
    finally:
        ctx.close()
    sys.stderr.write(f"{n} records imported into {args.coll!r}\n")
    return 0
