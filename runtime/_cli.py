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
import re
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

from ._cli_input import MAX_ENVELOPE_BYTES, MAX_PARAMS_BYTES, MAX_SCRIPT_BYTES, excerpt, loads_json
from ._cli_input import bound_message, read_input, read_text
from ._cli_peers import add_parsers, add_root_argument
from ._errors import Error, LimitExceeded, ScriptError, UsageError

__all__ = ["main", "parse_param", "parse_size"]

T = TypeVar("T")

EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


class _ArgError(Exception):
    """argparse found a usage error (exit 2)."""

    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message)
        self.usage = usage


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _ArgError(message, self.format_usage())


_SIZE = re.compile(r"(?i)\s*([0-9]+)\s*(k|kb|kib|m|mb|mib|g|gb|gib)?\s*")
_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(text: str) -> int:
    """``"65536"``, ``"64K"``, ``"256M"``, ``"1G"`` (binary units) -> bytes."""
    m = _SIZE.fullmatch(text)
    if m is None:
        raise argparse.ArgumentTypeError(f"not a size in bytes: {text!r} (examples: 65536, 64K, 256M, 1G)")
    unit = (m.group(2) or "")[:1].lower()
    return int(m.group(1)) * _UNITS.get(unit, 1)


def _parse_timeout(text: str) -> float | None:
    if text.strip().lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    return value


def _parse_fuel(text: str) -> int | None:
    if text.strip().lower() == "none":
        return None
    try:
        return int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def parse_param(text: str) -> tuple[str, Any]:
    """Parse ``--param k=v``: ``v`` as JSON if it parses, else the raw string.

    Raises :class:`UsageError` for a malformed ``k=v``, a value over
    :data:`~peerbox._cli_input.MAX_PARAMS_BYTES` or JSON nested deeper than
    :data:`~peerbox._cli_input.MAX_JSON_DEPTH` (checked before parsing).
    """
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise UsageError(f"--param expects KEY=VALUE, got {excerpt(text)}")
    try:
        value: Any = loads_json(raw, f"--param {excerpt(key, 40)}")
    except ValueError:
        value = raw
    return key, value


def _build_parser() -> _Parser:
    from peerbox import __version__

    parser = _Parser(
        prog="peerbox",
        description="Compile and run peerbox scripts (a Rhai-like language) in a wasm sandbox.",
        epilog="exit codes: 0 ok, 2 usage, 3 compile error, 4 runtime error, 5 resource limit, "
        "6 denied by a policy, 7 transport or verification failure, 1 a bug in peerbox",
    )
    parser.add_argument("--version", action="version", version=f"peerbox {__version__}")
    # Each subcommand sets ``handler(args) -> exit code``; later commands plug in the same way.
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
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
    pr.add_argument("--fuel", type=_parse_fuel, metavar="N", help="fuel budget (default unlimited)")
    pr.add_argument("--timeout", type=_parse_timeout, default=10.0, metavar="SEC",
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
    from ._cli_caps import add_parsers as add_cap_parsers
    from ._cli_envelope import add_parsers as add_envelope_parsers
    from ._cli_policy import add_parsers as add_policy_parsers

    add_policy_parsers(sub)
    add_envelope_parsers(sub)
    add_cap_parsers(sub)
    from ._cli_send import add_parsers as add_send_parsers

    add_send_parsers(sub)
    from ._cli_serve import add_parsers as add_serve_parsers

    add_serve_parsers(sub)
    from ._cli_logic import add_parsers as add_logic_parsers

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
    ksub = pk.add_subparsers(dest="cache_command", required=True, metavar="COMMAND", parser_class=_Parser)
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
    from pathlib import Path

    from ._cache import ModuleCache, default_cache_dir

    cache = ModuleCache(Path(args.dir) if args.dir else default_cache_dir())
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
    from ._context import Contexts
    from ._exec import ExecHandler

    data = read_input(args.file, MAX_ENVELOPE_BYTES, "an envelope")
    logic = _is_logic_request(data)
    with Contexts(args.root) as contexts:
        ctx = contexts.get(args.peer)
        if not logic:
            # Open the storage before the handler records the request's nonce: storage that is in
            # use (StorageInUse, exit 2) then leaves the request deliverable later.
            ctx.storage  # noqa: B018
        with ExecHandler(ctx, contexts.store) as handler:
            handle = handler.handle_logic if logic else handler.handle
            handled = _interruptible(lambda: handle(data), None)
    try:
        with open(args.output, "wb") as f:
            f.write(handled.body)
    except OSError as exc:
        raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    sys.stderr.write(f"{handled.outcome}" + (f": {handled.error['message']}" if handled.error else "") + "\n")
    refused = logic and (handled.error or {}).get("kind") in ("compile_error", "breaks_dependent")
    return {"ok": 0, "script_error": 3 if refused else 4, "limit": 5, "denied": 6}.get(handled.outcome, 2)


def _is_logic_request(data: bytes) -> bool:
    """Whether ``data`` claims to be a ``peerbox/logic`` request (the handler checks everything)."""
    from ._cose import EnvelopeError, decode1
    from ._logic_push import MAX_LOGIC_REQUEST, TYP_LOGIC

    try:
        return bool(decode1(data, max_size=MAX_LOGIC_REQUEST).payload.get("typ") == TYP_LOGIC)
    except EnvelopeError:
        return False


def _read_source(path: str) -> str:
    """A script file, at most :data:`~peerbox._cli_input.MAX_SCRIPT_BYTES` (a request's limit)."""
    return read_text(path, MAX_SCRIPT_BYTES, "a script")


def _search_path(args: argparse.Namespace) -> list[str]:
    return [os.path.dirname(args.file) or ".", *args.include]


def _sandbox(args: argparse.Namespace) -> Any:
    if args.stack is None:
        return None
    from ._sandbox import Sandbox

    return Sandbox(max_wasm_stack=args.stack)


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
    import peerbox

    source = _read_source(args.file)
    prog = peerbox.compile(source, args.file, search_path=_search_path(args), sandbox=_sandbox(args))
    data: bytes = prog.wasm() if args.emit == "wasm" else prog.wat.encode("utf-8")
    if args.output:
        try:
            with open(args.output, "wb") as f:
                f.write(data)
        except OSError as exc:
            raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    else:
        if args.emit == "wasm" and sys.stdout.isatty():
            raise UsageError("refusing to write binary wasm to a terminal: use -o FILE or redirect stdout")
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    return 0


def params_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """``--params-json`` then every ``--param k=v`` (which override it), as a dict.

    Raises :class:`UsageError` for JSON that is not an object, a malformed
    ``k=v``, or params over the size or nesting limits of :mod:`peerbox._cli_input`.
    """
    params: dict[str, Any] = {}
    total = 0
    if args.params_json is not None:
        try:
            loaded = loads_json(args.params_json, "--params-json")
        except ValueError as exc:
            raise UsageError(f"--params-json is not valid JSON: {excerpt(str(exc), 200)}") from None
        if not isinstance(loaded, dict):
            raise UsageError("--params-json must be a JSON object")
        params.update(loaded)
        total += len(args.params_json)
    for item in args.param:
        total += len(item)
        if total > MAX_PARAMS_BYTES:
            raise UsageError(f"the params are over {MAX_PARAMS_BYTES} bytes in all, the limit on params")
        key, value = parse_param(item)
        params[key] = value
    return params


def _cmd_run(args: argparse.Namespace) -> int:
    import peerbox

    from ._values import display, json_safe

    params = params_from_args(args)
    limits = peerbox.Limits(
        timeout=args.timeout, memory=args.memory, fuel=args.fuel, host_calls=args.host_calls
    )
    source = _read_source(args.file)
    sandbox = _sandbox(args)
    if args.peer is None:
        prog = peerbox.compile(source, args.file, search_path=_search_path(args), sandbox=sandbox)
        res = _interruptible(lambda: prog.run(params, limits=limits), args.stack)
    else:
        from ._context import Contexts

        with Contexts(args.root) as contexts:
            ctx = contexts.get(args.peer)
            from ._logic import LogicLayers

            layers = LogicLayers.of(ctx.peer, extra=_search_path(args))
            prog = peerbox.compile(source, args.file, resolver=layers, sandbox=sandbox)
            res = _interruptible(lambda: ctx.run(prog, params, limits=limits), args.stack)
    _write_log(res.log)
    if args.json:
        out = json.dumps(json_safe(res.value), ensure_ascii=False, allow_nan=False)
    else:
        out = display(res.value)
    sys.stdout.write(out + "\n")
    sys.stdout.flush()
    return 0


def _write_log(log: Sequence[str]) -> None:
    if log:
        sys.stderr.write("".join(line + "\n" for line in log))
        sys.stderr.flush()


def _error_json(err: BaseException) -> dict[str, Any]:
    from peerbox import CompileError

    from ._logic import LogicRefused

    from ._values import json_safe

    info: dict[str, Any] = {"message": bound_message(str(err))}
    if isinstance(err, CompileError):
        info["type"] = "compile"
        info["diagnostics"] = [
            {"file": d.file, "line": d.line, "col": d.col, "message": bound_message(d.message)}
            for d in err.diagnostics[:100]
        ]
    elif isinstance(err, ScriptError):
        info.update(type="runtime", kind=err.kind, file=err.file, line=err.line, value=json_safe(err.value))
        info["message"] = bound_message(err.message)
    elif isinstance(err, LimitExceeded):
        info.update(type="limit", limit=err.limit)
    elif isinstance(err, (UsageError, _ArgError)):
        info["type"] = "usage"
    elif isinstance(err, LogicRefused):
        info.update(type="refused", kind=err.kind, module=err.module, dependent=err.dependent)
    elif isinstance(err, Error) and err.exit_code != 1:
        info["type"] = type(err).__name__
    else:
        info["type"] = "internal"
    info["exit_code"] = _exit_code(err)
    return {"error": info}


def _exit_code(err: BaseException) -> int:
    if isinstance(err, _ArgError):
        return 2
    if isinstance(err, Error):
        return err.exit_code
    return 1


def _render(err: BaseException) -> str:
    from peerbox import CompileError

    if isinstance(err, _ArgError):
        return f"{err.usage.rstrip()}\npeerbox: error: {err}"
    if isinstance(err, (CompileError, ScriptError)):
        return str(err)
    if isinstance(err, LimitExceeded):
        return f"error: resource limit: {err.limit}: {err}"
    if isinstance(err, UsageError) or (isinstance(err, Error) and err.exit_code != 1):
        return f"error: {err}"
    if isinstance(err, Error):
        return f"internal error (a bug in peerbox): {err}"
    return f"internal error (a bug in peerbox): {type(err).__name__}: {err}"


def _report(err: BaseException, want_json: bool) -> int:
    if isinstance(err, (ScriptError, LimitExceeded)):
        _write_log(err.log)
    sys.stderr.write(bound_message(_render(err), limit=64_000) + "\n")
    if os.environ.get("PEERBOX_DEBUG") and not isinstance(err, (Error, _ArgError)):
        import traceback

        traceback.print_exception(err, file=sys.stderr)
    sys.stderr.flush()
    if want_json:
        doc = json.dumps(_error_json(err), ensure_ascii=False, allow_nan=False, default=str)
        sys.stdout.write(doc + "\n")
        sys.stdout.flush()
    return _exit_code(err)


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
            return _report(err, want_json)
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
