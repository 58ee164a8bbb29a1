"""The ``peerbox`` command (also ``python -m peerbox``): a thin layer over the API.

::

    peerbox compile FILE [--emit wat|wasm] [-o OUT] [-I DIR]...
    peerbox run FILE [--param k=v]... [--params-json JSON] [--json]
                     [--fuel N] [--timeout SEC] [--memory BYTES] [--stack BYTES] [-I DIR]...
    peerbox --version

Exit codes: 0 ok, 2 usage error, 3 compile error, 4 runtime error, 5 resource
limit, 6 reserved for a policy denial, 1 only for a bug in peerbox (130 after
Ctrl-C, 141 when stdout is closed early). Errors are printed to stderr, never
as a traceback; the script's log (``print``/``debug``) goes to stderr too.

``run --json`` prints exactly one JSON document on stdout: the value (``()``
is ``null``, blobs are base64 strings, NaN and ±inf are ``null``), or
``{"error": {...}}`` when the command fails (the exit code still says how).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

from .. import peer, run, trust, wire
from .._errors import UsageError
from .._version import __version__
from ._args import Parser, params_from_args, parse_fuel, parse_param, parse_size, parse_timeout
from ._caps import add_parsers as add_cap_parsers
from ._envelope import add_parsers as add_envelope_parsers
from ._input import MAX_ENVELOPE_BYTES, MAX_SCRIPT_BYTES, read_input, read_text
from ._logic import add_parsers as add_logic_parsers
from ._peers import add_parsers, add_root_argument
from ._policy import add_parsers as add_policy_parsers
from ._report import report, write_log
from ._send import add_parsers as add_send_parsers
from ._serve import add_parsers as add_serve_parsers

__all__ = ["main", "console_main", "params_from_args", "parse_param", "parse_size"]

T = TypeVar("T")

EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


def _build_parser() -> Parser:
    parser = Parser(
        prog="peerbox",
        description="Compile and run peerbox scripts (a Rhai-like language) in a wasm sandbox.",
        epilog="exit codes: 0 ok, 2 usage, 3 compile error, 4 runtime error, 5 resource limit, "
        "6 denied by a policy, 7 transport or verification failure, 1 a bug in peerbox",
    )
    parser.add_argument("--version", action="version", version=f"peerbox {__version__}")
    # Each subcommand sets ``handler(args) -> exit code``; later commands plug in the same way.
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("file", metavar="FILE", help="the script (.rhai)")
        p.add_argument(
            "-I", dest="include", metavar="DIR", action="append", default=[],
            help="also look for imported modules in DIR (after the script's own directory)",
        )
        p.add_argument("--stack", type=parse_size, metavar="BYTES", help="max wasm stack (default 1M)")

    pc = sub.add_parser("compile", help="compile a script and print its WebAssembly")
    pc.set_defaults(handler=_cmd_compile)
    common(pc)
    pc.add_argument("--emit", choices=("wat", "wasm"), default="wat", help="output format (default wat)")
    pc.add_argument("-o", dest="output", metavar="OUT", help="write to OUT instead of stdout")

    pr = sub.add_parser("run", help="compile (or fetch from the cache) and run a script")
    pr.set_defaults(handler=_cmd_run)
    common(pr)
    pr.add_argument("--param", action="append", default=[], metavar="K=V",
                    help="a param; V is parsed as JSON if it parses, else taken as a string")
    pr.add_argument("--params-json", metavar="JSON",
                    help="params as one JSON object (--param entries override)")
    pr.add_argument("--json", action="store_true", help="print the value (or the error) as one JSON document")
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
    add_parsers(sub)
    add_policy_parsers(sub)
    add_envelope_parsers(sub)
    add_cap_parsers(sub)
    add_send_parsers(sub)
    add_serve_parsers(sub)
    add_logic_parsers(sub)
    ph = sub.add_parser("handle", help="answer a signed request (exec or logic update) as a local peer "
                        "(what a worker does)")
    ph.set_defaults(handler=_cmd_handle)
    ph.add_argument("file", metavar="FILE", help="the request envelope (from `peerbox envelope make`), or -")
    ph.add_argument("--as", dest="peer", required=True, metavar="NAME", help="the target peer")
    ph.add_argument("-o", dest="output", required=True, metavar="OUT", help="where to write the reply")
    add_root_argument(ph)
    pk = sub.add_parser("cache", help="the on-disk cache of compiled modules: stats, clear",
                        description="Compiled modules are cached in $PEERBOX_CACHE_DIR (default "
                        "~/.cache/peerbox/modules), at most $PEERBOX_CACHE_MAX_BYTES (default 256M), "
                        "least recently used evicted first.")
    ksub = pk.add_subparsers(dest="cache_command", required=True, metavar="COMMAND", parser_class=Parser)
    for name, help_text in (("stats", "directory, entries, bytes and the cap"),
                            ("clear", "delete every cached module (others recompile on their next use)")):
        pkc = ksub.add_parser(name, help=help_text)
        pkc.set_defaults(handler=_cmd_cache)
        pkc.add_argument("--dir", metavar="DIR", help="the cache directory (default $PEERBOX_CACHE_DIR, "
                         "else ~/.cache/peerbox/modules)")
        if name == "stats":
            pkc.add_argument("--json", action="store_true", help="one JSON document on stdout")
    return parser


def _cmd_cache(args: argparse.Namespace) -> int:
    """``peerbox cache stats [--json]`` and ``peerbox cache clear``: calls into :class:`ModuleCache`."""
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


def _cmd_handle(args: argparse.Namespace) -> int:
    """Verify, authorize and run a request as peer ``--as``; write the (signed) reply.

    The peer's storage is opened first, so a storage held by another process
    (``StorageInUse``, exit 2) refuses before the request's nonce is spent.
    """
    data = read_input(args.file, MAX_ENVELOPE_BYTES, "an envelope")
    logic = _is_logic_request(data)
    with peer.Contexts(args.root) as contexts:
        ctx = contexts.get(args.peer)
        if not logic:
            # Open the storage before the handler records the request's nonce: storage that is in
            # use (StorageInUse, exit 2) then leaves the request deliverable later.
            ctx.storage  # noqa: B018
        with trust.ExecHandler(ctx, contexts.store) as handler:
            handle = handler.handle_logic if logic else handler.handle
            handled = _interruptible(lambda: handle(data), None)
    try:
        with open(args.output, "wb") as f:
            f.write(handled.body)
    except OSError as exc:
        raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
    sys.stderr.write(f"{handled.outcome}" + (f": {handled.error['message']}" if handled.error else "") + "\n")
    return trust.exit_code(handled.outcome, handled.kind, via="handle", logic=logic)


def _is_logic_request(data: bytes) -> bool:
    """Whether ``data`` claims to be a ``peerbox/logic`` request (the handler checks everything)."""
    try:
        payload = wire.decode1(data, max_size=trust.MAX_LOGIC_REQUEST).payload
        return bool(payload.get("typ") == trust.TYP_LOGIC)
    except wire.EnvelopeError:
        return False


def _read_source(path: str) -> str:
    """A script file, at most :data:`~peerbox.cli._input.MAX_SCRIPT_BYTES` (a request's limit)."""
    return read_text(path, MAX_SCRIPT_BYTES, "a script")


def _search_path(args: argparse.Namespace) -> list[str]:
    return [os.path.dirname(args.file) or ".", *args.include]


def _sandbox(args: argparse.Namespace) -> Any:
    if args.stack is None:
        return None
    return run.Sandbox(max_wasm_stack=args.stack)


def _interruptible(fn: Callable[[], T], stack: int | None) -> T:
    """Run ``fn`` on a worker thread so Ctrl-C interrupts even a long guest run.

    (A signal reaches Python code only between bytecodes; guest code runs
    inside one long C call.) The worker gets a native stack well above the
    wasm stack limit.
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


def _cmd_compile(args: argparse.Namespace) -> int:
    source = _read_source(args.file)
    prog = run.compile(source, args.file, search_path=_search_path(args), sandbox=_sandbox(args))
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


def _cmd_run(args: argparse.Namespace) -> int:
    params = params_from_args(args)
    limits = run.Limits(
        timeout=args.timeout, memory=args.memory, fuel=args.fuel, host_calls=args.host_calls
    )
    source = _read_source(args.file)
    sandbox = _sandbox(args)
    if args.peer is None:
        prog = run.compile(source, args.file, search_path=_search_path(args), sandbox=sandbox)
        res = _interruptible(lambda: prog.run(params, limits=limits), args.stack)
    else:
        with peer.Contexts(args.root) as contexts:
            ctx = contexts.get(args.peer)
            layers = run.LogicLayers.of(ctx.peer, extra=_search_path(args))
            prog = run.compile(source, args.file, resolver=layers, sandbox=sandbox)
            res = _interruptible(lambda: ctx.run(prog, params, limits=limits), args.stack)
    write_log(res.log)
    if args.json:
        out = json.dumps(run.json_safe(res.value), ensure_ascii=False, allow_nan=False)
    else:
        out = run.display(res.value)
    sys.stdout.write(out + "\n")
    sys.stdout.flush()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``peerbox`` console script; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    want_json = "--json" in args_list
    try:
        try:
            args = _build_parser().parse_args(args_list)
            want_json = bool(getattr(args, "json", False))
            handler: Callable[[argparse.Namespace], int] = args.handler
            return handler(args)
        except BrokenPipeError:
            raise
        except KeyboardInterrupt:
            raise
        except SystemExit:
            raise  # --help / --version
        except BaseException as err:  # every failure ends here, rendered, never a traceback
            return report(err, want_json)
    except BrokenPipeError:
        # stdout was closed early (e.g. `| head`): silence the final flush and exit quietly.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError:
            pass
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        try:
            sys.stderr.write("interrupted\n")
            sys.stderr.flush()
        except OSError:
            pass
        return EXIT_INTERRUPTED


def console_main() -> NoReturn:  # pragma: no cover - exercised through subprocesses
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = EXIT_BROKEN_PIPE
    if code == EXIT_INTERRUPTED:
        os._exit(code)  # a guest may still be running on the worker thread
    sys.exit(code)
