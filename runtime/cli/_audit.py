"""The ``peerbox audit`` command: a peer's decisions, read from its audit log (:mod:`peerbox.peer._audit`).

::

    peerbox audit NAME [--since DURATION|TIME] [--caller DID|NAME] [--root DIR] [--json]

Prints one line per record, oldest first, across the rotated files
(``audit.log.K`` .. ``audit.log``): time, caller (its name here, else its
did), request type, action, resource, decision, deciding rule, outcome; with
``--json`` the records' JSON lines as written. ``--since`` takes a duration
back from now (``30s``, ``15m``, ``2h``, ``1d``, ``1w``) or an ISO 8601 time;
``--caller`` a did or a name (a local peer's, or one ``peers.toml`` gives).
An unknown peer or a bad ``--since`` is a usage error (exit 2).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ..peer import AuditLog, AuditRecord, PeerNames, PeerStore, format_time, parse_since
from ._peers import add_root_argument

__all__ = ["add_parsers", "cmd_audit", "COMMANDS", "format_record"]

#: The subcommand this module adds.
COMMANDS = ("audit",)


def add_parsers(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``audit`` to ``subparsers``; it sets ``handler`` (``args -> exit code``)."""
    pa = subparsers.add_parser(
        "audit", help="a peer's audit log: who asked what, and what was decided",
        description="Print the decisions a worker recorded for a local peer (<root>/peers/NAME/audit.log "
        "and its rotated files, oldest first): time, caller, request type, action, resource, decision "
        "(allowed, denied, rate_limited), the deciding rule and the outcome.",
    )
    pa.add_argument("name", metavar="NAME", help="the local peer")
    pa.add_argument("--since", metavar="DURATION|TIME",
                    help="only records since a duration ago (30s, 15m, 2h, 1d, 1w) or an ISO 8601 time")
    pa.add_argument("--caller", metavar="DID|NAME",
                    help="only requests of this caller (a did, or its name here)")
    add_root_argument(pa)
    pa.add_argument("--json", action="store_true", help="print the records as JSON lines")
    pa.set_defaults(handler=cmd_audit)


def format_record(record: AuditRecord) -> str:
    """One record as a line of text: time, caller, type, action, resource, decision, rule, outcome."""
    who = record.caller_name or record.caller
    rule = record.rule or "-"
    extra = f" (refused {record.denied_action})" if record.denied_action else ""
    return (f"{format_time(record.time)}  {who}  {record.type}  {record.action}  {record.resource or '-'}  "
            f"{record.decision}  {rule}  {record.outcome}{extra}")


def cmd_audit(args: argparse.Namespace) -> int:
    """Print peer ``args.name``'s audit records, filtered by ``--since`` and ``--caller``; exit 0.

    Raises :class:`~peerbox.peer.PeerError` (exit 2) for an unknown peer or a bad ``--since``, and
    :class:`~peerbox.peer.AuditError` when the log cannot be read."""
    store = PeerStore(args.root)
    peer = store.get(args.name)
    since = parse_since(args.since, time.time()) if args.since else None
    callers: set[str] | None = None
    if args.caller:
        callers = {args.caller}
        if not args.caller.startswith("did:"):
            did = PeerNames(store).resolve(args.caller).did
            if did is not None:
                callers.add(did)
    out = sys.stdout
    for record in AuditLog.of(peer, None).records(since=since, callers=callers):
        if args.json:
            out.write(json.dumps(record.as_dict(), ensure_ascii=False) + "\n")
        else:
            out.write(format_record(record) + "\n")
    return 0
