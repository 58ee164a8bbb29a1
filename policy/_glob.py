"""Resource patterns: validation and compilation of path globs to one regex.

A pattern is ``/``-separated segments, relative to the peer's storage root
(or a module name for ``module.import``):

* ``**`` as a whole segment matches zero or more segments (``inbox/**``
  matches ``inbox``, ``inbox/a`` and ``inbox/a/b``; ``**`` alone matches
  everything, the root ``""`` included);
* ``*`` matches any run of characters within one segment (never a ``/``);
* ``?`` matches exactly one character within one segment;
* every other character is itself (a backslash too: no escapes).

Refused at load, so a pattern means exactly one thing: an empty pattern,
absolute paths (leading ``/``), empty segments (``a//b``, trailing ``/``),
``.`` and ``..`` segments, ``**`` inside a segment (``a**``, ``***``),
character classes (``[`` ``]``), control characters.

Requests name canonical paths (as :func:`peerbox.hostcalls` makes them:
no ``.``/``..``/empty segments, no leading ``/``); :func:`is_canonical`
lets the matcher refuse any other spelling outright, so ``inbox/**`` can
never be escaped with ``inbox/../secret``.

Unicode: request paths are NFC-normalised by the host calls before any
check, so a pattern is normalised the same way (:data:`NORMAL_FORM`) before
it is compiled: ``café`` written with a combining accent (NFD) names the same
file as the precomposed spelling. :func:`normalize` is that one function.

One pattern, one meaning: :func:`pieces` turns a pattern into a short list
of regex pieces; :func:`glob_regex` (what every rule and capability grant is
enforced with) and the containment automaton of :mod:`._contain` are both
built from that list, so matching and attenuation cannot disagree.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from typing import Final, Literal

__all__ = ["glob_problem", "glob_regex", "compile_globs", "is_canonical", "Matcher", "NORMAL_FORM",
           "normalize", "pieces", "Piece"]

#: The Unicode normalisation form of request paths and of patterns. hostcalls/_paths.py
#: (``parse_path``) normalises request paths with this same form and must keep matching it
#: (tests/policy/test_policy_unicode.py checks that the two agree).
NORMAL_FORM: Final[Literal["NFC"]] = "NFC"

#: A compiled set of patterns: ``matcher(resource)`` is truthy when one of them matches.
Matcher = Callable[[str], object]

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
# A resource that is not canonical: leading or trailing slash, empty, "." or ".." segments.
_NOT_CANONICAL = re.compile(r"^/|/$|//|(?:^|/)\.\.?(?:/|$)")
_MAX_PATTERN = 1024


def glob_problem(pattern: object) -> str | None:
    """Why ``pattern`` is not a valid resource pattern, or None when it is."""
    if not isinstance(pattern, str):
        return f"a pattern must be a string, not {type(pattern).__name__}"
    if pattern == "":
        return "empty pattern (use \"**\" for everything)"
    if len(pattern) > _MAX_PATTERN:
        return f"pattern longer than {_MAX_PATTERN} characters"
    bad = _CONTROL.search(pattern)
    if bad is not None:
        return f"pattern {pattern!r} contains control character U+{ord(bad.group()):04X}"
    if pattern.startswith("/"):
        return f"pattern {pattern!r} is absolute: patterns are relative to the peer's storage"
    segs = pattern.split("/")
    for i, seg in enumerate(segs):
        if seg == "**" and i > 0 and segs[i - 1] == "**":
            return f"pattern {pattern!r} repeats '**/**' (one '**' already matches any depth)"
        if seg == "":
            return f"pattern {pattern!r} has an empty segment ('//' or a trailing '/')"
        if seg in (".", ".."):
            return f"pattern {pattern!r} has a {seg!r} segment (paths are canonical: no '.' or '..')"
        if "**" in seg and seg != "**":
            return f"pattern {pattern!r}: '**' must be a whole segment (got {seg!r})"
        if "[" in seg or "]" in seg:
            return f"pattern {pattern!r}: character classes ('[...]') are not supported"
    return None


def normalize(text: str) -> str:
    """``text`` in :data:`NORMAL_FORM` (what request paths are): cheap for ASCII, which is
    always normalised already."""
    return text if text.isascii() else unicodedata.normalize(NORMAL_FORM, text)


#: One piece of a compiled pattern: ``(kind, char)``. Kinds: ``"lit"`` the character ``char``;
#: ``"one"`` one character but ``/`` (``?``); ``"any"`` zero or more such (``*`` in a segment);
#: ``"seg"`` one or more such (a segment of only ``*``: never empty); ``"lead"`` zero or more
#: ``SEGMENT/`` (a leading ``**``); ``"trail"`` zero or more ``/SEGMENT`` (a trailing ``**``);
#: ``"all"`` anything at all, the root ``""`` included (``**`` alone). A middle ``**`` is
#: ``lit "/"`` then ``lead`` (``a/**/b``: ``a/b``, ``a/x/b``, ``a/x/y/b``).
Piece = tuple[str, str]

_REGEX = {"one": "[^/]", "any": "[^/]*", "seg": "[^/]+", "lead": "(?:[^/]+/)*", "trail": "(?:/[^/]+)*",
          "all": ".*"}


def pieces(pattern: str) -> tuple[Piece, ...]:
    """The pieces (see :data:`Piece`) of ``pattern``, normalised first (:func:`normalize`).

    Raises ``ValueError`` saying why for an invalid pattern (:func:`glob_problem`).
    """
    problem = glob_problem(pattern)
    if problem is None:
        pattern = normalize(pattern)
        problem = glob_problem(pattern)
    if problem is not None:
        raise ValueError(problem)
    segs = pattern.split("/")
    n = len(segs)
    if n == 1 and segs[0] == "**":
        return (("all", ""),)                    # everything, the root included
    out: list[Piece] = []
    slash_pending = False                        # does the next plain segment need a "/" first?
    for i, seg in enumerate(segs):
        if seg == "**":
            if i == 0:
                out.append(("lead", ""))         # zero or more leading segments, slash included
            elif i == n - 1:
                out.append(("trail", ""))        # zero or more trailing segments
            else:
                out += [("lit", "/"), ("lead", "")]
            slash_pending = False
            continue
        if slash_pending:
            out.append(("lit", "/"))
        if set(seg) == {"*"}:
            out.append(("seg", ""))              # a segment is never empty: "*" never matches ""
        else:
            for ch in seg:
                if ch == "*":
                    out.append(("any", ""))      # never two in a row: "**" in a segment is refused
                else:
                    out.append(("one", "") if ch == "?" else ("lit", ch))
        slash_pending = True
    return tuple(out)


def glob_regex(pattern: str) -> str:
    """The regex (for ``fullmatch``) of a pattern :func:`glob_problem` accepts, built from its
    :func:`pieces` (so normalised first). Raises ``ValueError`` for an invalid pattern."""
    return "".join(re.escape(ch) if kind == "lit" else _REGEX[kind] for kind, ch in pieces(pattern))


def compile_globs(patterns: Iterable[str]) -> Matcher:
    """One matcher for all ``patterns`` (a single compiled alternation; ``fullmatch``).

    Raises ``ValueError`` for an invalid pattern.
    """
    alts = [glob_regex(p) for p in patterns]
    if not alts:
        raise ValueError("no patterns")
    rx = re.compile("(?:" + "|".join(alts) + ")", re.DOTALL)
    return rx.fullmatch


def is_canonical(resource: str) -> bool:
    """True for a canonical relative path or module name (``""`` is the root)."""
    return _NOT_CANONICAL.search(resource) is None
