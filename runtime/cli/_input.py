"""Bounded input for the ``peerbox`` command: files, stdin and JSON params never read unbounded.

Every file or stream the CLI reads goes through :func:`read_input`, which
reads at most ``limit + 1`` bytes (so ``/dev/zero`` or a FIFO that never
ends costs ``limit`` bytes, not memory without end) and refuses anything
longer with a :class:`peerbox.UsageError` (exit 2) naming the file and the
limit. JSON from the command line goes through :func:`loads_json`, which
checks the size and scans the nesting depth in one linear pass *before*
:func:`json.loads` could recurse (deep nesting would otherwise raise
``RecursionError``, which is not an input error). :func:`excerpt` bounds
what an error message echoes of the input.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from .._errors import UsageError

__all__ = [
    "MAX_SCRIPT_BYTES",
    "MAX_PARAMS_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_ENVELOPE_BYTES",
    "STDIN_NAME",
    "excerpt",
    "source_name",
    "json_depth_ok",
    "loads_json",
    "read_input",
    "read_text",
]

#: The largest script ``run``, ``compile``, ``envelope make`` and ``send`` read (a request's limit).
MAX_SCRIPT_BYTES = 1 << 20
#: The largest JSON text of params (``--params-file``, ``--params-json``, each ``--param`` value, and
#: all of them together): 6 MiB, so that a 5 MiB string param fits, and params and a script of
#: :data:`MAX_SCRIPT_BYTES` together fit in a worker's 8 MiB request body (JSON text is never shorter
#: than the CBOR the envelope carries of it).
MAX_PARAMS_BYTES = 6 << 20
#: The deepest nesting of arrays and objects in JSON params (the value nesting limit).
MAX_JSON_DEPTH = 128
#: The largest envelope ``handle`` and ``envelope inspect`` read (a worker's body limit, 8 MiB).
MAX_ENVELOPE_BYTES = 8 << 20
#: What a script read from stdin (``run -``, ``send -``) is called in messages and compile errors.
STDIN_NAME = "<stdin>"
#: How much of an input an error message shows.
EXCERPT = 80


def excerpt(text: str, limit: int = EXCERPT) -> str:
    """``repr`` of ``text``, cut to about ``limit`` characters with a note of how much was left out."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text) - limit} more characters)"


def source_name(path: str) -> str:
    """The name a script from ``path`` goes by in diagnostics: the path, or :data:`STDIN_NAME` for ``-``."""
    return STDIN_NAME if path == "-" else path


def read_input(path: str, limit: int, what: str) -> bytes:
    """The bytes of file ``path`` (``-``: stdin), reading at most ``limit + 1`` of them.

    ``what`` names the input in the error (``"a script"``). Raises
    :class:`peerbox.UsageError` if the file cannot be read or holds more than
    ``limit`` bytes (nothing beyond ``limit + 1`` bytes is ever read).
    """
    shown = "stdin" if path == "-" else path
    try:
        if path == "-":
            data = sys.stdin.buffer.read(limit + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(limit + 1)
    except FileNotFoundError as exc:
        raise UsageError(f"cannot read {shown}: no such file") from exc
    except IsADirectoryError as exc:
        raise UsageError(f"cannot read {shown}: it is a directory") from exc
    except OSError as exc:
        raise UsageError(f"cannot read {shown}: {exc.strerror or exc}") from exc
    if len(data) > limit:
        raise UsageError(f"{shown} is larger than {limit} bytes, the limit on {what}")
    return data


def read_text(path: str, limit: int, what: str) -> str:
    """:func:`read_input` decoded as UTF-8. Raises :class:`peerbox.UsageError` if it is not UTF-8."""
    data = read_input(path, limit, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        shown = "stdin" if path == "-" else path
        raise UsageError(f"cannot read {shown}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def json_depth_ok(text: str, max_depth: int) -> bool:
    """Whether no array or object in the JSON ``text`` nests deeper than ``max_depth``.

    One linear pass over the characters, skipping strings (with their escapes);
    it does not validate the JSON (:func:`json.loads` does, once this passed).
    """
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > max_depth:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def loads_json(text: str, what: str, *, max_bytes: int = MAX_PARAMS_BYTES,
               max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON from the command line, bounded in size and nesting.

    Raises :class:`peerbox.UsageError` naming ``what`` for a text over
    ``max_bytes`` (UTF-8) or nested deeper than ``max_depth`` (both checked
    before parsing), and ``ValueError`` (:class:`json.JSONDecodeError`, or an
    integer with too many digits) for text that is not JSON, which the
    caller may treat otherwise.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise UsageError(f"{what} is {size} bytes, over the {max_bytes}-byte limit on params")
    if not json_depth_ok(text, max_depth):
        raise UsageError(f"{what} nests arrays or objects deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except RecursionError as exc:  # pragma: no cover - the scan above keeps the depth far below the stack
        raise UsageError(f"{what} nests too deeply") from exc


#: The longest line of an error message the CLI prints, and the longest message.
MAX_MESSAGE_LINE = 400
MAX_MESSAGE = 8000


def bound_message(text: str, line_limit: int = MAX_MESSAGE_LINE, limit: int = MAX_MESSAGE) -> str:
    """``text`` with each line cut to ``line_limit`` characters and the whole to about ``limit``.

    What an error message echoes of the input (an undefined name, a source
    line, a thrown value) is then bounded whatever the input was; each cut
    says how much it left out.
    """
    lines = []
    for line in text.split("\n"):
        if len(line) > line_limit:
            line = f"{line[:line_limit]}... ({len(line) - line_limit} more characters)"
        lines.append(line)
    out = "\n".join(lines)
    if len(out) > limit:
        out = f"{out[:limit]}... ({len(out) - limit} more characters)"
    return out
