"""``peerbox send`` and ``peerbox directory``: delegating a script to a remote peer (a thin layer).

::

    peerbox send --from NAME --to NAME|DID SCRIPT [--param k=v]... [--params-json J]
                 [--cap FILE]... [--json] [--timeout S] [--root DIR]
    peerbox directory add NAME DID [URL] [--replace] [--root DIR]
    peerbox directory list [--json] [--root DIR]

``send`` signs a request as local peer ``--from``, sends it to ``--to`` at the
URL the directory (``<root>/peers.toml``) gives, verifies the reply's
signature and ``req`` hash and prints the value like ``peerbox run`` (or one
JSON document with ``--json``); the remote script's log goes to stderr. Exit
codes: 0 ok, 3 the script did not compile, 4 script error, 5 resource limit,
6 denied by the target (the message and deciding rule on stderr), 7 no
verified reply (connection, timeout, HTTP error, refused envelope, a reply
that does not verify), 9 rate limited by the target's policy (HTTP 429; the
message says when to retry), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, Literal

from .. import net, run
from .._errors import UsageError
from ..peer import Directory, PeerStore
from ..trust import exit_code, outcome_of
from ..wire import Reply
from ._args import ArgError, Parser, params_from_args
from ._input import MAX_SCRIPT_BYTES, read_input
from ._peers import add_root_argument, cmd_directory_add
from ._report import report

__all__ = ["add_parsers", "add_remote_arguments", "print_value", "report_failed_reply", "cmd_send",
           "cmd_directory_add", "cmd_directory_list", "reply_exit_code",
           "COMMANDS", "main"]

COMMANDS = ("send", "directory")
_MAX_CAP_FILE = 64 << 10


def add_parsers(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``send`` and ``directory add|list``; each sets ``handler`` in its defaults."""
    ps = subparsers.add_parser(
        "send", help="sign a script, run it on a remote peer over HTTP/2, verify and print the reply",
        description="Sign a request from local peer --from to run SCRIPT on peer --to (found in "
        "<root>/peers.toml), send it over HTTP/2, verify the signed reply and print the value. "
        "Exit codes: 0 ok, 3 compile error, 4 script error, 5 limit, 6 denied, 7 no verified reply, "
        "9 rate limited.",
    )
    ps.add_argument("script", metavar="SCRIPT", help="the script file ('-' for stdin)")
    ps.add_argument("--param", action="append", default=[], metavar="K=V",
                    help="a param; V is parsed as JSON if it parses, else taken as a string")
    ps.add_argument("--params-json", metavar="JSON", help="params as one JSON object (--param overrides)")
    add_remote_arguments(ps, cap_help="a capability token to present (from `peerbox cap grant`); repeatable")
    ps.set_defaults(handler=cmd_send)

    pd = subparsers.add_parser(
        "directory", help="where remote peers are reachable (<root>/peers.toml)",
        description="The directory maps a peer name to its did and the URL of the worker hosting it "
        "(no URL: a peer that only calls). A policy's who = NAME matches the peers it names.",
    )
    sub = pd.add_subparsers(dest="directory_command", metavar="SUBCOMMAND", parser_class=type(pd))
    sub.required = True
    pa = sub.add_parser("add", help="add (or with --replace change) a peer: NAME DID [URL]",
                        description="Record that peer NAME is identified by DID and, with URL, served "
                        "there (http://HOST:PORT for h2c, https://HOST:PORT for TLS). Leave URL out for "
                        "a peer that only calls this root's peers.")
    pa.add_argument("name", metavar="NAME")
    pa.add_argument("did", metavar="DID")
    pa.add_argument("url", metavar="URL", nargs="?", default=None,
                    help="where its worker is (leave out for a peer that only calls)")
    pa.add_argument("--replace", action="store_true", help="change an existing entry")
    add_root_argument(pa)
    pa.set_defaults(handler=cmd_directory_add)
    pl = sub.add_parser("list", help="list the directory")
    pl.add_argument("--json", action="store_true", help="one JSON array of {name, did, url}")
    add_root_argument(pl)
    pl.set_defaults(handler=cmd_directory_list)


def _read(path: str, limit: int) -> bytes:
    """At most ``limit`` bytes of ``path`` (``-``: stdin); :class:`UsageError` if there are more."""
    return read_input(path, limit, "this input")


def add_remote_arguments(p: argparse.ArgumentParser, *, cap_help: str) -> None:
    """The options of a command that signs a request and sends it: --from, --to, --cap, --json,
    --timeout, --root (``send`` and ``logic push``)."""
    p.add_argument("--from", dest="sender", metavar="NAME", required=True, help="the local peer who signs")
    p.add_argument("--to", dest="to", metavar="NAME|DID", required=True,
                   help="the target: a name or did:key in the directory")
    p.add_argument("--cap", action="append", default=[], metavar="FILE", help=cap_help)
    p.add_argument("--json", action="store_true", help="print the value (or the error) as one JSON document")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S",
                   help="seconds for the whole call, connecting included (default 30)")
    add_root_argument(p)


def _params(args: argparse.Namespace) -> dict[str, Any]:
    return params_from_args(args)


def reply_exit_code(reply: Reply, via: Literal["send", "call"] = "send") -> int:
    """The exit code of a verified reply to ``send`` (or ``call``): 0 ok, 6 denied, 5 limit, 9 rate
    limited, 3 compile error, 4 other script errors; for ``call`` 2 for ``bad_arguments`` and
    ``no_such_function`` (:func:`peerbox.trust.exit_code`)."""
    kind = None if reply.ok else str((reply.error or {}).get("kind", ""))
    return exit_code(outcome_of(reply.ok, kind), kind, via=via)


#: What ``--json`` calls a failed reply, by exit code.
_ERROR_TYPES = {2: "arguments", 3: "compile", 5: "limit", 6: "denied", 9: "rate_limited"}


def report_failed_reply(target: str, reply: Reply, code: int, want_json: bool) -> int:
    """Report a verified reply that is not ok on stderr (and as ``{"error": ...}`` on stdout with
    ``want_json``); return ``code``. The target's message is shown as the target wrote it."""
    error = dict(reply.error or {})
    kind, message = error.get("kind", "error"), error.get("message", "")
    rule = error.get("rule")
    if code == 6:  # the target's message says what was denied and by which rule, or why no rule did
        where = f"line {error['line']}: " if error.get("line") else ""  # a host call the script made
        sys.stderr.write(f"{target}: {where}{message}\n")
    elif code == 9:
        sys.stderr.write(f"rate limited by {target}: {message}" + (f" (rule {rule})" if rule else "") + "\n")
    elif code == 5:
        sys.stderr.write(f"error: resource limit on {target}: {kind}: {message}\n")
    elif code == 2:
        sys.stderr.write(f"error: {target}: {kind}: {message}\n")
    else:
        where = f"line {error['line']}: " if error.get("line") else ""
        sys.stderr.write(f"{target}: {where}runtime error: {kind}: {message}\n")
    sys.stderr.flush()
    if want_json:
        error["type"] = _ERROR_TYPES.get(code, "runtime")
        error["exit_code"] = code
        _emit_json({"error": error})
    return code


def print_value(reply: Reply, want_json: bool) -> None:
    """Print an ok reply's value: its display form, or JSON with ``want_json``."""
    out = json.dumps(run.json_safe(reply.value), ensure_ascii=False, allow_nan=False) if want_json \
        else run.display(reply.value)
    sys.stdout.write(out + "\n")
    sys.stdout.flush()


def _emit_json(doc: object) -> None:
    sys.stdout.write(json.dumps(doc, ensure_ascii=False, allow_nan=False, default=str) + "\n")
    sys.stdout.flush()


def _client_failure(err: net.ClientError, want_json: bool) -> int:
    sys.stderr.write(f"error: {err}\n")
    sys.stderr.flush()
    if want_json:
        info: dict[str, Any] = {"message": str(err), "exit_code": err.exit_code}
        if isinstance(err, net.TransportError):
            info.update(type="transport", kind=err.kind, status=err.status)
        elif isinstance(err, net.VerificationError):
            info.update(type="verification", kind=err.kind)
        elif isinstance(err, net.RemoteRejected):
            info.update(type="rejected", kind=err.kind, status=err.status, message=err.remote_message)
        _emit_json({"error": info})
    return err.exit_code


def cmd_send(args: argparse.Namespace) -> int:
    """``peerbox send``: sign, send, verify, print; the exit code says the outcome."""
    import trio  # here, not at the top: only commands that call a worker load trio and h2

    raw = _read(args.script, MAX_SCRIPT_BYTES)
    try:
        script = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{args.script} is not UTF-8 text") from exc
    params = _params(args)
    caps = [_read(path, _MAX_CAP_FILE) for path in args.cap]
    if not args.timeout > 0:
        raise UsageError("--timeout must be a positive number of seconds")
    key = PeerStore(args.root).get(args.sender).signing_key()
    directory = Directory(args.root)
    entry = directory.resolve(args.to)

    async def call() -> Reply:
        async with net.AsyncClient(key, directory) as client:
            return await client.exec(entry, script, params=params or None, caps=caps, timeout=args.timeout)

    try:
        reply = trio.run(call)
    except net.ClientError as err:
        return _client_failure(err, args.json)
    if reply.log:
        sys.stderr.write("".join(line + "\n" for line in reply.log))
    code = reply_exit_code(reply)
    if reply.ok:
        print_value(reply, args.json)
        return 0
    return report_failed_reply(entry.name, reply, code, args.json)


def cmd_directory_list(args: argparse.Namespace) -> int:
    """``peerbox directory list``: one ``NAME DID URL`` line per entry, ``-`` for no URL (or JSON,
    ``url`` null)."""
    entries = Directory(args.root).list()
    if args.json:
        _emit_json([{"name": e.name, "did": e.did, "url": e.url} for e in entries])
    else:
        for e in entries:
            sys.stdout.write(f"{e.name}\t{e.did}\t{e.url if e.url is not None else '-'}\n")
        sys.stdout.flush()
    return 0


def main(argv: Sequence[str]) -> int:
    """``send`` and ``directory`` alone (no other command module loaded): parse, dispatch, report.

    Returns the exit code; every failure is rendered by :func:`~peerbox.cli._report.report`.
    """
    parser = Parser(prog="peerbox")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    add_parsers(sub)
    want_json = "--json" in argv
    try:
        args = parser.parse_args(list(argv))
        return int(args.handler(args))
    except (KeyboardInterrupt, SystemExit):
        raise
    except ArgError as err:
        return report(err, want_json)
    except BaseException as err:
        return report(err, want_json)


main_for_tests = main
