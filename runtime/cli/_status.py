"""``peerbox status``: what a running worker is doing, for its operator.

::

    peerbox status [--url URL] [--as NAME] [--root DIR] [--json]

Reads the worker's ``GET /v1/status`` (:meth:`peerbox.net.AsyncClient.status`)
and prints its mode, process id and uptime, the runs in flight and queued per
hosted peer (isolated mode: each peer's process, up or not, and its restarts),
answers that were not ``ok`` by kind, and with ``serve --workers N`` each
process. From loopback no key is needed; from elsewhere ``--as NAME`` signs
the request with local peer NAME's key, which the worker must host. Exit
codes: 0, 2 usage (an unknown ``--as`` peer, a bad URL), 7 no answer or
refused (401).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

from .. import net
from ..peer import PeerStore
from ..wire import KeyPair
from ._peers import add_root_argument

__all__ = ["add_parsers", "cmd_status", "format_status", "COMMANDS", "DEFAULT_URL"]

COMMANDS = ("status",)
#: Where ``peerbox serve`` listens by default.
DEFAULT_URL = "http://127.0.0.1:7700"


def add_parsers(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``status``; it sets ``handler`` in its defaults."""
    p = subparsers.add_parser(
        "status", help="what a running worker is doing: mode, peers, runs, uptime, errors",
        description="Print a worker's mode, hosted peers, runs in flight and queued per peer, uptime and "
        "error counts (GET /v1/status). From loopback no key is needed; from elsewhere --as NAME signs the "
        "request with local peer NAME's key (a peer that worker hosts). Exit codes: 0 ok, 2 usage, "
        "7 no answer or refused.")
    p.add_argument("--url", default=DEFAULT_URL, help=f"the worker's URL (default {DEFAULT_URL})")
    p.add_argument("--as", dest="signer", metavar="NAME", default=None,
                   help="sign the request as this local peer (needed when the worker is not on loopback)")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SEC", help="how long to wait (default 10)")
    p.add_argument("--json", action="store_true", help="print the status document as JSON")
    add_root_argument(p)
    p.set_defaults(handler=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    """``peerbox status``: ask, print; 0, or the client error's exit code (7)."""
    import trio  # only commands that call a worker load trio and h2

    key = PeerStore(args.root).get(args.signer).signing_key() if args.signer else KeyPair.generate()

    async def ask() -> dict[str, Any]:
        async with net.AsyncClient(key) as client:
            return await client.status(url=args.url, timeout=args.timeout)

    try:
        doc = trio.run(ask)
    except net.ClientError as err:
        sys.stderr.write(f"error: {err}\n")
        return err.exit_code
    if args.json:
        sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(format_status(args.url, doc))
    return 0


def _duration(seconds: float) -> str:
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{d}d" if d else "") + (f"{h}h" if d or h else "") + (f"{m}m" if d or h or m else "") + f"{s}s"


def _n(value: object) -> str:
    return "-" if value is None else str(value)


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def format_status(url: str, doc: Mapping[str, Any]) -> str:
    """The status document as the lines ``peerbox status`` prints."""
    lines = [f"worker {url}: {doc.get('mode', '?')} mode, pid {_n(doc.get('pid'))}"
             + (f" (process {doc['process']})" if "process" in doc else "")
             + f", up {_duration(float(doc.get('uptime', 0)))}, {doc.get('status', '?')}",
             f"runs: {_n(doc.get('in_flight'))} in flight, {_n(doc.get('queued'))} queued"]
    peers = list(doc.get("peers") or [])
    isolated = doc.get("mode") == "isolated"
    if peers:
        head = ["PEER", "IN FLIGHT", "QUEUED"] + (["PROCESS", "PID", "RESTARTS"] if isolated else [])
        rows = [head]
        for p in peers:
            row = [str(p.get("name")), _n(p.get("in_flight")), _n(p.get("queued"))]
            if isolated:
                row += ["up" if p.get("up") else "down", _n(p.get("pid")), _n(p.get("restarts"))]
            rows.append(row)
        lines += ["peers:", *_table(rows)]
    else:
        lines.append("peers: none")
    errors = doc.get("errors") or {}
    by_outcome = errors.get("by_outcome") or {}
    detail = ", ".join(f"{k} {v}" for k, v in by_outcome.items())
    lines.append(f"errors: {errors.get('total', 0)}" + (f" ({detail})" if detail else ""))
    for key, label in (("denied", "denied by action"), ("rejected", "rejected by kind")):
        counts = errors.get(key) or {}
        if counts:
            lines.append(f"  {label}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    processes = list(doc.get("processes") or [])
    if processes:
        rows = [["PROCESS", "PID", "STATE", "CONNECTIONS", "IN FLIGHT", "QUEUED"]]
        rows += [[str(p.get("index")), _n(p.get("pid")), "up" if p.get("up") else "down",
                  _n(p.get("connections")), _n(p.get("in_flight")), _n(p.get("queued"))] for p in processes]
        lines += ["processes:", *_table(rows)]
    return "\n".join(lines) + "\n"
