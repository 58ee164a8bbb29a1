"""Bounded TOML: :func:`loads_bounded`, tomllib with limits on nesting and dotted keys.

:func:`tomllib.loads` is recursive descent: ``a = [[[[...`` nested a few
hundred levels deep raises ``RecursionError`` (not an input error, so it
would surface as "a bug in peerbox", exit 1), and a dotted key with many
parts (``a.a.a.a... = 1``) costs it time and memory quadratic in the number
of parts (ten thousand parts: seconds and hundreds of MiB). Every TOML file
peerbox reads that a user or a peer controls (``peer.toml``,
``peers.toml``, ``policy.toml``) goes through :func:`loads_bounded`, which

1. scans the text once, linearly, *before* tomllib sees it, skipping strings
   and comments as TOML lexes them, and refuses an array or inline table
   nested deeper than :data:`MAX_TOML_DEPTH` or a dotted key with more than
   :data:`MAX_KEY_PARTS` parts;
2. refuses a parsed document whose tables and arrays nest deeper than
   :data:`MAX_TOML_DEPTH` (dotted keys inside inline tables can add levels
   the scan does not count), checked without recursion;
3. turns a ``RecursionError`` or ``MemoryError`` tomllib might still raise
   into the same refusal (a last line of defence: the scan makes it
   unreachable in practice).

Each refusal is a :class:`TomlTooComplex`, a :class:`tomllib.TOMLDecodeError`,
so a caller handles it exactly as it handles any malformed file. The size of
the text is the caller's to bound (every caller caps the bytes it reads).

This module lives in :mod:`peerbox.policy` (the lower layer: ``peerbox``'s
runtime already imports the policy package, never the other way round) and
imports nothing from peerbox.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

__all__ = ["MAX_TOML_DEPTH", "MAX_KEY_PARTS", "TomlTooComplex", "loads_bounded", "toml_shape_problem"]

#: The deepest nesting of tables and arrays a peerbox TOML file may have (the top-level table
#: is level 0: ``a = [[1]]`` is 2 levels; ``[peers.bob]`` then ``did = "..."`` is 2 levels).
MAX_TOML_DEPTH = 32
#: The most parts a dotted key (``a.b.c = 1``, ``[a.b.c]``) may have.
MAX_KEY_PARTS = 16

# Outside strings and comments, what the scan looks at: string openers, comments,
# brackets, dots and the characters that end a key (=, comma, newline).
_TOKEN = re.compile(r"\"\"\"|'''|[\"'#\[\]{}.=,\n]")
# The rest of a basic string after its opening quote (escapes skipped); it may not span lines.
_BASIC_END = re.compile(r'(?:[^"\\\n]|\\.)*"')
_LITERAL_END = re.compile(r"[^'\n]*'")
# The rest of a multi-line string: up to the first closing run of 3 to 5 quotes
# (TOML lets one or two quotes end the content just before the closing three).
_ML_BASIC_END = re.compile(r'(?:[^\\]|\\.)*?"{3,5}', re.DOTALL)
_ML_LITERAL_END = re.compile(r".*?'{3,5}", re.DOTALL)
_ENDS = {'"': _BASIC_END, "'": _LITERAL_END, '"""': _ML_BASIC_END, "'''": _ML_LITERAL_END}


class TomlTooComplex(tomllib.TOMLDecodeError):
    """TOML text refused before (or instead of) parsing: nested too deeply, or a dotted key
    with too many parts. ``problem`` says which; ``line`` and ``column`` (1-based, None when
    unknown) say where. ``str()`` ends with ``(at line L, column C)`` like tomllib's errors."""

    def __init__(self, problem: str, line: int | None = None, column: int | None = None) -> None:
        self.problem = problem
        self.line = line
        self.column = column
        where = f" (at line {line}, column {column})" if line is not None and column is not None else ""
        super().__init__(problem + where)


def _where(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def toml_shape_problem(text: str, max_depth: int = MAX_TOML_DEPTH,
                       max_key_parts: int = MAX_KEY_PARTS) -> TomlTooComplex | None:
    """The first place where ``text`` nests arrays or inline tables deeper than ``max_depth``
    or has a dotted key of more than ``max_key_parts`` parts, as a :class:`TomlTooComplex`
    (returned, not raised), or None.

    One linear pass that skips strings and comments the way TOML lexes them; it does not
    validate the TOML (where the text stops being TOML, tomllib stops too, so what the scan
    makes of the rest does not matter). Table headers count as the brackets they are.
    """
    depth = 0
    dots = 0
    pos = 0
    n = len(text)
    while pos < n:
        m = _TOKEN.search(text, pos)
        if m is None:
            break
        tok = m.group()
        pos = m.end()
        if tok in _ENDS:
            end = _ENDS[tok].match(text, pos)
            if end is not None:  # an unterminated string: tomllib refuses the text there
                pos = end.end()
        elif tok == "#":
            nl = text.find("\n", pos)
            pos = n if nl < 0 else nl
        elif tok in "[{":
            depth += 1
            dots = 0
            if depth > max_depth:
                return TomlTooComplex(f"arrays or tables nest deeper than {max_depth} levels",
                                      *_where(text, m.start()))
        elif tok in "]}":
            depth = max(0, depth - 1)
            dots = 0
        elif tok == ".":
            dots += 1
            if dots >= max_key_parts:
                return TomlTooComplex(f"a dotted key has more than {max_key_parts} parts",
                                      *_where(text, m.start()))
        else:  # '=', ',' or a newline: a key ends here
            dots = 0
    return None


def _too_deep(doc: dict[str, Any], max_depth: int) -> bool:
    """Whether tables and arrays in ``doc`` nest deeper than ``max_depth`` (no recursion)."""
    stack: list[tuple[Any, int]] = [(doc, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def loads_bounded(text: str, max_depth: int = MAX_TOML_DEPTH,
                  max_key_parts: int = MAX_KEY_PARTS) -> dict[str, Any]:
    """:func:`tomllib.loads` of ``text``, refusing what would make it (or code walking its
    result) recurse or work without bound.

    Raises :class:`TomlTooComplex` for nesting deeper than ``max_depth`` or a dotted key of
    more than ``max_key_parts`` parts (see :func:`toml_shape_problem`), and
    :class:`tomllib.TOMLDecodeError` for text that is not TOML.
    """
    problem = toml_shape_problem(text, max_depth, max_key_parts)
    if problem is not None:
        raise problem
    try:
        doc = tomllib.loads(text)
    except RecursionError as exc:  # pragma: no cover - the scan keeps tomllib far from the limit
        raise TomlTooComplex("arrays or tables nest too deeply") from exc
    except MemoryError as exc:  # pragma: no cover - the callers' size caps keep this away
        raise TomlTooComplex("too large to parse") from exc
    if _too_deep(doc, max_depth):
        raise TomlTooComplex(f"tables and arrays nest deeper than {max_depth} levels")
    return doc
