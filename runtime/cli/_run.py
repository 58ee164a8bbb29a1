"""``peerbox compile``, ``run``, ``handle`` and ``cache``: scripts and requests run in this process.

::

    peerbox compile FILE [--emit wat|wasm] [-o OUT] [-I DIR]... [--stack BYTES]
    peerbox run FILE|- [--param k=v]... [--params-json JSON] [--params-file FILE|-] [--json]
                     [--fuel N] [--timeout SEC]
                     [--memory BYTES] [--stack BYTES] [--peer NAME] [--host-calls N] [-I DIR]...
                     [--root DIR]
    peerbox handle FILE --as NAME -o OUT [--root DIR]     (exec, call, logic or revoke request)
    peerbox cache stats [--json] [--dir DIR]
    peerbox cache clear [--dir DIR]

A thin layer over :mod:`peerbox.run` (compile, the module cache, run under
``Limits``), :mod:`peerbox.peer` (``run --peer``: the peer's storage and logic
layers) and :mod:`peerbox.trust` (``handle``: verify, authorize and answer a
signed request as a worker would, writing the signed reply). A guest runs on a
worker thread (:func:`interruptible`) so that Ctrl-C stops even a long run.

``run -`` reads the script from stdin (named ``<stdin>`` in errors, imports
looked up from the current directory). ``run --json`` prints exactly one JSON
document on stdout: ``{"value", "log", "usage"}`` (the value with ``()`` as
``null``, blobs as base64 strings, NaN and ±inf as ``null``; see
:func:`~peerbox.cli._report.result_doc`, the shape ``send`` and ``call``
print too), or ``{"error": {...}}`` when the command fails (the exit code
still says how).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from .. import peer, run, trust, wire
from .._errors import UsageError
from ._args import (Parser, add_params_arguments, one_stdin, params_from_args, parse_fuel, parse_size,
                    parse_timeout)
from ._input import MAX_ENVELOPE_BYTES, MAX_SCRIPT_BYTES, read_input, read_text, source_name
from ._peers import add_root_argument
from ._report import emit_json, result_doc, usage_doc, write_log

__all__ = ["add_parsers", "interruptible", "cmd_compile", "cmd_run", "cmd_handle", "cmd_cache", "COMMANDS"]

#: The subcommands this module adds.
COMMANDS = ("compile", "run", "handle", "cache")

T = TypeVar("T")


def add_parsers(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``compile``, ``run``, ``handle`` and ``cache stats|clear``; each sets ``handler``."""

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("file", metavar="FILE", help="the script (.rhai); '-' reads it from stdin")
        p.add_argument(
            "-I", dest="include", metavar="DIR", action="append", default=[],
            help="also look for imported modules in DIR (after the script's own directory)",
        )
        p.add_argument("--stack", type=parse_size, metavar="BYTES", help="max wasm stack (default 1M)")

    pc = subparsers.add_parser("compile", help="compile a script and print its WebAssembly")
    pc.set_defaults(handler=cmd_compile)
    common(pc)
    pc.add_argument("--emit", choices=("wat", "wasm"), default="wat", help="output format (default wat)")
    pc.add_argument("-o", dest="output", metavar="OUT", help="write to OUT instead of stdout")

    pr = subparsers.add_parser("run", help="compile (or fetch from the cache) and run a script")
    pr.set_defaults(handler=cmd_run)
    common(pr)
    add_params_arguments(pr)
    pr.add_argument("--json", action="store_true",
                    help="print {value, log, usage} (or {error}) as one JSON document")
    pr.add_argument("--fuel", type=parse_fuel, metavar="N", help="fuel budget (default unlimited)")
    pr.add_argument("--timeout", type=parse_timeout, default=10.0, metavar="SEC",
                    help="wall-clock limit in seconds, or 'none' (default 10)")
    pr.add_argument("--memory", type=parse_size, default=256 << 20, metavar="BYTES",
                    help="guest memory limit, e.g. 64M (default 256M)")
    pr.add_argument("--peer", metavar="NAME",
                    help="run as this peer: its storage for fs::, its logic layers for import "
                    "(default: no storage; host calls fail with no_storage)")
    pr.add_argument("--host-calls", type=int, default=10_000, metavar="N",
                    help="most host calls the run may make (default 10000)")
    add_root_argument(pr)

    ph = subparsers.add_parser("handle", help="answer a signed request (exec, call, logic update or "
                               "revocation) as a local peer (what a worker does)")
    ph.set_defaults(handler=cmd_handle)
    ph.add_argument("file", metavar="FILE", help="the request envelope (from `peerbox envelope make`), or -")
    ph.add_argument("--as", dest="peer", required=True, metavar="NAME", help="the target peer")
    ph.add_argument("-o", dest="output", required=True, metavar="OUT", help="where to write the reply")
    add_root_argument(ph)

    pk = subparsers.add_parser("cache", help="the on-disk cache of compiled modules: stats, clear",
                               description="Compiled modules are cached in $PEERBOX_CACHE_DIR (default "
                               "~/.cache/peerbox/modules), at most $PEERBOX_CACHE_MAX_BYTES (default "
                               "256M), least recently used evicted first.")
    ksub = pk.add_subparsers(dest="cache_command", required=True, metavar="COMMAND", parser_class=Parser)
    for name, help_text in (("stats", "directory, entries, bytes and the cap"),
                            ("clear", "delete every cached module (others recompile on their next use)")):
        pkc = ksub.add_parser(name, help=help_text)
        pkc.set_defaults(handler=cmd_cache)
        pkc.add_argument("--dir", metavar="DIR", help="the cache directory (default $PEERBOX_CACHE_DIR, "
                         "else ~/.cache/peerbox/modules)")
        if name == "stats":
            pkc.add_argument("--json", action="store_true", help="one JSON document on stdout")


def interruptible(fn: Callable[[], T], stack: int | None) -> T:
    """Run ``fn`` on a worker thread so Ctrl-C interrupts even a long guest run.

    (A signal reaches Python code only between bytecodes; guest code runs
    inside one long C call.) The worker gets a native stack well above the
    wasm stack limit ``stack`` (default 1M). Returns what ``fn`` returns;
    re-raises, in the calling thread, whatever ``fn`` raised.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the main thread
            box["error"] = exc

    wasm_stack = stack if stack is not None else 1 << 20
    old = threading.stack_size()
    try:
        threading.stack_size(max(32 << 20, wasm_stack * 2 + (8 << 20)))
        worker = threading.Thread(target=target, name="peerbox-run", daemon=True)
        worker.start()
    finally:
        threading.stack_size(old)
    while worker.is_alive():
        worker.join(0.1)
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


def cmd_compile(args: argparse.Namespace) -> int:
    """``peerbox compile FILE``: the WebAssembly text (or binary, ``--emit wasm``) on stdout or ``-o OUT``.

    Raises :class:`UsageError` for an unwritable ``OUT`` or binary output to a
    terminal; compile errors propagate (exit 3).
    """
    source = _read_source(args.file)
    prog = run.compile(source, source_name(args.file), search_path=_search_path(args), sandbox=_sandbox(args))
    data: bytes = prog.wasm() if args.emit == "wasm" else prog.wat.encode("utf-8")
    if args.output:
        try:
            with open(args.output, "wb") as f:
                f.write(data)
        except OSError as exc:
            raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
    else:
        if args.emit == "wasm" and sys.stdout.isatty():
            raise UsageError("refusing to write binary wasm to a terminal: use -o FILE or redirect stdout")
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """``peerbox run FILE``: compile (or take from the cache), run under the limits, print the value.

    With ``--peer NAME`` the script runs as that peer (its storage, its logic
    layers for imports) and is checked against the peer's schema.toml if it
    has one. The script's log goes to stderr. Errors propagate to the CLI's
    boundary (exit 3 compile, 4 script, 5 limit, 2 usage).
    """
    one_stdin(FILE=args.file, **{"--params-file": args.params_file})
    params = params_from_args(args)
    limits = run.Limits(
        timeout=args.timeout, memory=args.memory, fuel=args.fuel, host_calls=args.host_calls
    )
    source = _read_source(args.file)
    name = source_name(args.file)
    sandbox = _sandbox(args)
    if args.peer is None:
        prog = run.compile(source, name, search_path=_search_path(args), sandbox=sandbox)
        res = interruptible(lambda: prog.run(params, limits=limits), args.stack)
    else:
        with peer.Contexts(args.root) as contexts:
            ctx = contexts.get(args.peer)
            layers = run.LogicLayers.of(ctx.peer, extra=_search_path(args))
            prog = run.compile(source, name, resolver=layers, sandbox=sandbox, schema=ctx.schema())
            res = interruptible(lambda: ctx.run(prog, params, limits=limits), args.stack)
    write_log(res.log)
    if args.json:
        emit_json(result_doc(res.value, res.log,
                             usage_doc(res.fuel_used, round(res.wall_time * 1000), res.peak_memory)))
        return 0
    sys.stdout.write(run.display(res.value) + "\n")
    sys.stdout.flush()
    return 0


def cmd_handle(args: argparse.Namespace) -> int:
    """Verify, authorize and run a request as peer ``--as``; write the (signed) reply.

    The peer's storage is opened first, so storage that cannot be opened
    refuses before the request's nonce is spent.
    Raises :class:`UsageError` when the reply cannot be written; the exit code
    is the outcome's (:func:`peerbox.trust.exit_code`).
    """
    data = read_input(args.file, MAX_ENVELOPE_BYTES, "an envelope")
    typ = _request_typ(data)
    logic = typ == trust.TYP_LOGIC
    with peer.Contexts(args.root) as contexts:
        ctx = contexts.get(args.peer)
        if typ in (_TYP_EXEC, _TYP_CALL):
            # Open the storage before the handler records the request's nonce: storage that cannot
            # be opened then leaves the request deliverable later.
            ctx.storage  # noqa: B018
        with trust.ExecHandler(ctx, contexts.store) as handler:
            if typ == _TYP_CALL:
                handle = handler.handle_call
            elif typ == _TYP_REVOKE:
                handle = handler.handle_revoke
            else:
                handle = handler.handle_logic if logic else handler.handle
            handled = interruptible(lambda: handle(data), None)
    try:
        with open(args.output, "wb") as f:
            f.write(handled.body)
    except OSError as exc:
        raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
    message = handled.error["message"] if handled.error else None
    if handled.outcome is trust.Outcome.DENIED and message:  # it says "... denied ..." itself
        sys.stderr.write(f"{message}\n")
    else:
        sys.stderr.write(f"{handled.outcome}" + (f": {message}" if message else "") + "\n")
    via: Literal["handle", "call", "revoke"] = (
        "call" if typ == _TYP_CALL else "revoke" if typ == _TYP_REVOKE else "handle")
    return trust.exit_code(handled.outcome, handled.kind, via=via, logic=logic)


def cmd_cache(args: argparse.Namespace) -> int:
    """``peerbox cache stats [--json]`` and ``peerbox cache clear``, over :class:`peerbox.run.ModuleCache`."""
    cache = run.ModuleCache(Path(args.dir) if args.dir else run.default_cache_dir())
    if args.cache_command == "clear":
        removed = cache.clear()
        sys.stderr.write(f"removed {removed} entries from {cache.directory}\n")
        return 0
    stats = cache.stats()
    if args.json:
        sys.stdout.write(json.dumps(stats.doc()) + "\n")
    else:
        sys.stdout.write(f"{stats.directory}: {stats.entries} entries, {stats.bytes} bytes "
                         f"(cap {stats.max_bytes} bytes)\n")
    return 0


#: The request types ``handle`` tells apart (the handler of each checks everything again).
_TYP_EXEC = wire.TYP_REQUEST
_TYP_CALL = wire.TYP_CALL
_TYP_REVOKE = wire.TYP_REVOKE


def _request_typ(data: bytes) -> str:
    """The ``typ`` that ``data`` claims (``peerbox/exec``, ``/call``, ``/logic``, ``/revoke``); an
    envelope that does not decode, or names another type, is handed to the exec handler, which
    refuses it with the proper error."""
    try:
        typ = wire.decode1(data, max_size=MAX_ENVELOPE_BYTES).payload.get("typ")
    except wire.EnvelopeError:
        return _TYP_EXEC
    return str(typ) if typ in (_TYP_CALL, _TYP_REVOKE, trust.TYP_LOGIC) else _TYP_EXEC


def _read_source(path: str) -> str:
    """A script file, at most :data:`~peerbox.cli._input.MAX_SCRIPT_BYTES` (a request's limit)."""
    return read_text(path, MAX_SCRIPT_BYTES, "a script")


def _search_path(args: argparse.Namespace) -> list[str]:
    """Where imports are found: the script's directory (the current one for stdin), then each ``-I``."""
    here = "." if args.file == "-" else os.path.dirname(args.file) or "."
    return [here, *args.include]


def _sandbox(args: argparse.Namespace) -> Any:
    if args.stack is None:
        return None
    return run.Sandbox(max_wasm_stack=args.stack)
