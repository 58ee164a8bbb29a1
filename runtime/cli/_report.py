"""How a failed command is reported: one message on stderr (never a traceback), the exit code,
and with ``--json`` one ``{"error": {...}}`` document on stdout.

The success document of ``run --json``, ``send --json`` and ``call --json``
is :func:`result_doc`: ``{"value", "log", "usage": {"fuel", "wall_ms",
"peak_memory"}}`` (the keys of a signed reply's ``usage``; ``fuel`` is null
when the run was not metered); a failure is ``{"error": {"type", "message",
..., "exit_code"}}`` with the script's ``log`` when it ran.

Exit codes: 0 ok, 2 usage error, 3 compile error, 4 runtime error, 5
resource limit, 6 denied by a policy, 7 transport or verification failure,
8 a logic history that does not check out (``logic``), 1 only for a bug in
peerbox (``PEERBOX_DEBUG=1`` adds the traceback).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from .. import peer, run
from .._errors import Error, LimitExceeded, ScriptError, UsageError
from ._args import ArgError
from ._input import bound_message

__all__ = ["report", "exit_code", "error_json", "render", "write_log", "result_doc", "usage_doc", "emit_json"]


def usage_doc(fuel: int | None, wall_ms: int, peak_memory: int) -> dict[str, int | None]:
    """The ``usage`` of a JSON result: ``fuel`` (None when the run was not metered: a metered run
    always uses some), ``wall_ms`` and ``peak_memory`` (bytes), the keys of a reply's ``usage``."""
    return {"fuel": fuel or None, "wall_ms": wall_ms, "peak_memory": peak_memory}


def result_doc(value: Any, log: Sequence[str], usage: dict[str, int | None]) -> dict[str, Any]:
    """The one JSON document ``run``, ``send`` and ``call`` print with ``--json`` on success:
    ``{"value": ..., "log": [...], "usage": {...}}``, the value made JSON-safe
    (:func:`peerbox.run.json_safe`: ``()`` is null, blobs base64, NaN and ±inf null)."""
    return {"value": run.json_safe(value), "log": list(log), "usage": usage}


def emit_json(doc: object) -> None:
    """Write ``doc`` as one line of JSON on stdout (UTF-8, no NaN)."""
    sys.stdout.write(json.dumps(doc, ensure_ascii=False, allow_nan=False, default=str) + "\n")
    sys.stdout.flush()


def write_log(log: Sequence[str]) -> None:
    if log:
        sys.stderr.write("".join(line + "\n" for line in log))
        sys.stderr.flush()


def error_json(err: BaseException) -> dict[str, Any]:
    # Only on this error path: `peerbox --version` and commands that compile nothing never load
    # the compiler (a few tens of ms).
    from ..wasm_guests.lang import CompileError

    info: dict[str, Any] = {"message": bound_message(str(err))}
    if isinstance(err, CompileError):
        info["type"] = "compile"
        info["diagnostics"] = [
            {"file": d.file, "line": d.line, "col": d.col, "message": bound_message(d.message)}
            for d in err.diagnostics[:100]
        ]
    elif isinstance(err, ScriptError):
        info.update(type="runtime", kind=err.kind, file=err.file, line=err.line,
                    value=run.json_safe(err.value), log=list(err.log))
        info["message"] = bound_message(err.message)
    elif isinstance(err, LimitExceeded):
        info.update(type="limit", limit=err.limit, log=list(err.log))
    elif isinstance(err, (UsageError, ArgError)):
        info["type"] = "usage"
    elif isinstance(err, peer.LogicRefused):
        info.update(type="refused", kind=err.kind, module=err.module, dependent=err.dependent)
    elif isinstance(err, Error) and err.exit_code != 1:
        info["type"] = type(err).__name__
    else:
        info["type"] = "internal"
    info["exit_code"] = exit_code(err)
    return {"error": info}


def exit_code(err: BaseException) -> int:
    if isinstance(err, ArgError):
        return 2
    if isinstance(err, Error):
        return err.exit_code
    return 1


def render(err: BaseException) -> str:
    from ..wasm_guests.lang import CompileError  # only on the error path, as in error_json

    if isinstance(err, ArgError):
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


def report(err: BaseException, want_json: bool) -> int:
    if isinstance(err, (ScriptError, LimitExceeded)):
        write_log(err.log)
    sys.stderr.write(bound_message(render(err), limit=64_000) + "\n")
    if os.environ.get("PEERBOX_DEBUG") and not isinstance(err, (Error, ArgError)):
        traceback.print_exception(err, file=sys.stderr)
    sys.stderr.flush()
    if want_json:
        doc = json.dumps(error_json(err), ensure_ascii=False, allow_nan=False, default=str)
        sys.stdout.write(doc + "\n")
        sys.stdout.flush()
    return exit_code(err)

