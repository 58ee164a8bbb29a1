"""``peerbox send`` and ``peerbox directory``: delegating a script to a remote peer (a thin layer).

::

    peerbox send --from NAME --to NAME|DID SCRIPT|- [--param k=v]... [--params-json J]
                 [--params-file FILE|-] [--cap FILE]... [--json] [--timeout S] [--memory BYTES]
                 [--fuel N] [--wait S] [--root DIR]
    peerbox directory add|remove|list ...              (:mod:`._directory`)

``send`` first compiles the script here, as ``peerbox run`` would (same
compiler, same budget, the same module cache), so a script that does not
compile is reported exactly as ``run`` reports it (``FILE:LINE:COL``, the line
and a caret, exit 3) and never leaves this machine. Imports are the target's
(its logic layers decide what ``import "inbox"`` is): when the script imports
modules and does not compile here, only its syntax is checked here
(:func:`peerbox.wasm_guests.lang.check_syntax`) and the rest is left to the
target. Then it signs a request as local peer ``--from`` asking for the run
limits given (``--timeout``, ``--memory``, ``--fuel``: the target's policy
caps them), sends it to ``--to`` at the URL the directory
(``<root>/peers.toml``) gives, verifies the reply's signature and ``req``
hash and prints the value like ``peerbox run`` (or, with ``--json``, the
document ``run --json`` prints: value, log and usage); the remote script's
log goes to stderr. Exit codes: 0 ok, 3 the script did not compile, 4 script
error, 5 resource limit, 6 denied by the target (the message and deciding
rule on stderr), 7 no verified reply (connection, timeout, HTTP error,
refused envelope, a reply that does not verify), 9 rate limited by the
target's policy (HTTP 429; the message says when to retry), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, Literal

from .. import net, run
from .._errors import UsageError
from ..peer import PeerStore
from ..trust import exit_code, outcome_of
from ..wire import Reply
from ._args import ArgError, Parser, add_params_arguments, one_stdin, params_from_args, parse_fuel, parse_size
from ._directory import (add_directory_parser, add_state_argument, client_directory, cmd_directory_add,
                         cmd_directory_list)
from ._input import MAX_SCRIPT_BYTES, read_input, read_text, source_name
from ._peers import add_root_argument
from ._report import emit_json, report, result_doc, usage_doc

__all__ = ["add_parsers", "add_remote_arguments", "print_value", "print_result", "report_failed_reply",
           "requested_limits", "call_deadline", "STATE_HELP", "check_locally", "cmd_send",
           "cmd_directory_add", "cmd_directory_list", "reply_exit_code",
           "COMMANDS", "main"]

COMMANDS = ("send", "directory")
#: What ``--state`` of ``send`` and ``call`` is for.
STATE_HELP = "where --to is looked up when <root>/peers.toml does not name it"
_MAX_CAP_FILE = 64 << 10


def add_parsers(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``send`` and ``directory add|remove|list`` (:mod:`._directory`); each sets ``handler``."""
    ps = subparsers.add_parser(
        "send", help="sign a script, run it on a remote peer over HTTP/2, verify and print the reply",
        description="Compile SCRIPT here (as `peerbox run` does: a compile error is reported the same "
        "way and nothing is sent), then sign a request from local peer --from to run it on peer --to "
        "(found in <root>/peers.toml), send it over HTTP/2, verify the signed reply and print the value. "
        "Exit codes: 0 ok, 3 compile error, 4 script error, 5 limit, 6 denied, 7 no verified reply, "
        "9 rate limited.",
    )
    ps.add_argument("script", metavar="SCRIPT", help="the script file ('-' for stdin)")
    add_params_arguments(ps)
    add_remote_arguments(ps, cap_help="a capability token to present (from `peerbox cap grant`); repeatable",
                         run_limits=True)
    add_state_argument(ps, STATE_HELP)
    ps.set_defaults(handler=cmd_send)

    add_directory_parser(subparsers)


def _read(path: str, limit: int) -> bytes:
    """At most ``limit`` bytes of ``path`` (``-``: stdin); :class:`UsageError` if there are more."""
    return read_input(path, limit, "this input")


def add_remote_arguments(p: argparse.ArgumentParser, *, cap_help: str, run_limits: bool = False) -> None:
    """The options of a command that signs a request and sends it: --from, --to, --cap, --json,
    --timeout, --root (``send``, ``call`` and ``logic push``).

    With ``run_limits`` (``send``, ``call``: a request that runs code) ``--timeout``, ``--memory`` and
    ``--fuel`` are the run's limits asked of the target (:func:`requested_limits`) and ``--wait`` the
    seconds for the whole call (:func:`call_deadline`); without, ``--timeout`` is the whole call's.
    """
    p.add_argument("--from", dest="sender", metavar="NAME", required=True, help="the local peer who signs")
    p.add_argument("--to", dest="to", metavar="NAME|DID", required=True,
                   help="the target: a name or did:key in the directory")
    p.add_argument("--cap", action="append", default=[], metavar="FILE", help=cap_help)
    if run_limits:
        p.add_argument("--json", action="store_true",
                       help="print {value, log, usage} (or {error}) as one JSON document, as `run --json`")
        p.add_argument("--timeout", type=float, default=None, metavar="S",
                       help="ask for this wall-clock limit on the run, compile included (the target's "
                       "policy caps it; default: the target's, 10 s unless its policy says less)")
        p.add_argument("--memory", type=parse_size, default=None, metavar="BYTES",
                       help="ask for this guest memory limit, e.g. 64M (the target's policy caps it)")
        p.add_argument("--fuel", type=parse_fuel, default=None, metavar="N",
                       help="ask for this fuel limit (the target's policy caps it)")
        p.add_argument("--wait", type=float, default=None, metavar="S",
                       help="seconds for the whole call, connecting included (default 30 plus --timeout)")
    else:
        p.add_argument("--json", action="store_true",
                       help="print the value (or the error) as one JSON document")
        p.add_argument("--timeout", type=float, default=30.0, metavar="S",
                       help="seconds for the whole call, connecting included (default 30)")
    add_root_argument(p)


def requested_limits(args: argparse.Namespace) -> dict[str, int | float] | None:
    """The run limits ``--timeout``, ``--memory`` and ``--fuel`` ask of the target (None: none asked).

    The target takes the lower of what is asked and what its policy allows for the caller
    (:meth:`peerbox.trust.ExecHandler.limits_of`). Raises :class:`UsageError` for a timeout
    that is not a positive number of seconds, or a memory or fuel limit below 1.
    """
    limits: dict[str, int | float] = {}
    if args.timeout is not None:
        if not (args.timeout > 0 and args.timeout < float("inf")):
            raise UsageError("--timeout must be a positive number of seconds")
        limits["timeout"] = args.timeout
    if args.memory is not None:
        if args.memory < 1:
            raise UsageError("--memory must be at least 1 byte")
        limits["memory"] = args.memory
    if args.fuel is not None:
        if args.fuel < 1:
            raise UsageError("--fuel must be a positive integer (or leave it out)")
        limits["fuel"] = args.fuel
    return limits or None


#: Seconds ``send`` and ``call`` wait for the whole call beyond the run's own timeout.
DEFAULT_WAIT = 30.0


def call_deadline(args: argparse.Namespace) -> float:
    """Seconds for the whole call: ``--wait``, else :data:`DEFAULT_WAIT` plus the ``--timeout``
    asked for the run. Raises :class:`UsageError` for a ``--wait`` that is not positive."""
    if args.wait is not None:
        if not args.wait > 0:
            raise UsageError("--wait must be a positive number of seconds")
        return float(args.wait)
    return DEFAULT_WAIT + (args.timeout or 0.0)


def check_locally(source: str, name: str, search_path: list[str]) -> None:
    """Compile ``source`` here as ``peerbox run`` would (the same compiler, budget and module cache).

    Raises :class:`~peerbox.CompileError` as ``run`` does. A script that imports modules and
    does not compile here may still compile on the target, whose logic layers decide what its
    imports are: its syntax alone is checked then (the target reports the rest).
    """
    from ..wasm_guests.lang import CompileError, CompileLimitExceeded, check_syntax

    try:
        run.compile(source, name, search_path=search_path)
    except CompileLimitExceeded:
        raise
    except CompileError as exc:
        if not check_syntax(source, name):  # no imports: the target would say the same
            raise exc from None


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


#: What the target calls the script of an exec request in its compile errors.
_REMOTE_SCRIPT = re.compile(r"(?m)^request\.rhai:")


def report_failed_reply(target: str, reply: Reply, code: int, want_json: bool,
                        script_name: str | None = None) -> int:
    """Report a verified reply that is not ok on stderr (and as ``{"error": ...}`` on stdout with
    ``want_json``, with the run's ``log`` and ``usage``); return ``code``. The target's message is
    shown as the target wrote it, except that a compile error of the script sent (``send``, with
    ``script_name``) names it ``script_name`` where the target wrote ``request.rhai``."""
    error = dict(reply.error or {})
    kind, message = error.get("kind", "error"), error.get("message", "")
    rule = error.get("rule")
    if code == 3 and kind == "compile_error" and script_name is not None:
        error["message"] = message = _REMOTE_SCRIPT.sub(f"{script_name}:", str(message))
        sys.stderr.write(f"{target} could not compile the script:\n{message}\n")
    elif code == 6:  # the target's message says what was denied and by which rule, or why no rule did
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
        error["log"] = list(reply.log)
        error["usage"] = reply_usage(reply)
        error["exit_code"] = code
        _emit_json({"error": error})
    return code


def print_value(reply: Reply, want_json: bool) -> None:
    """Print an ok reply's value: its display form, or JSON with ``want_json``."""
    out = json.dumps(run.json_safe(reply.value), ensure_ascii=False, allow_nan=False) if want_json \
        else run.display(reply.value)
    sys.stdout.write(out + "\n")
    sys.stdout.flush()


def reply_usage(reply: Reply) -> dict[str, int | None]:
    """A reply's ``usage`` as ``run --json`` shows it (:func:`~peerbox.cli._report.usage_doc`)."""
    u = reply.usage
    return usage_doc(u.get("fuel"), u.get("wall_ms", 0), u.get("peak_memory", 0))


def print_result(reply: Reply, want_json: bool) -> None:
    """Print an ok reply of ``send`` or ``call``: its value's display form, or with ``want_json``
    the document ``run --json`` prints (:func:`~peerbox.cli._report.result_doc`: value, log, usage)."""
    if want_json:
        emit_json(result_doc(reply.value, reply.log, reply_usage(reply)))
    else:
        print_value(reply, False)


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

    one_stdin(SCRIPT=args.script, **{"--params-file": args.params_file})
    limits = requested_limits(args)
    deadline = call_deadline(args)
    script = read_text(args.script, MAX_SCRIPT_BYTES, "a script")
    params = _params(args)
    caps = [_read(path, _MAX_CAP_FILE) for path in args.cap]
    here = "." if args.script == "-" else os.path.dirname(args.script) or "."
    check_locally(script, source_name(args.script), [here])
    key = PeerStore(args.root).get(args.sender).signing_key()
    with client_directory(args.root, args.state) as directory:
        entry = directory.resolve(args.to)

        async def call() -> Reply:
            async with net.AsyncClient(key, directory) as client:
                return await client.exec(entry, script, params=params or None, caps=caps, limits=limits,
                                         timeout=deadline)

        try:
            reply = trio.run(call)
        except net.ClientError as err:
            return _client_failure(err, args.json)
    if reply.log:
        sys.stderr.write("".join(line + "\n" for line in reply.log))
    code = reply_exit_code(reply)
    if reply.ok:
        print_result(reply, args.json)
        return 0
    return report_failed_reply(entry.name, reply, code, args.json, source_name(args.script))


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
