"""The path rules: which strings name something inside a peer's root.

Both backends take every path through :func:`parse_path` first and work only
with the tuple of components it returns, so the rules below hold for every
storage kind alike.

A path is relative to the peer's root and ``/``-separated; ``""`` is the
root itself. The string is NFC-normalised *first* and never again: every
check below and every later use see the same normalised text, so two spellings
of one name cannot slip past a check and meet again on disk. Refused, with
``HostCallError("invalid_path", ...)`` naming the path:

* absolute paths (a leading ``/``) — "path escapes the peer root: /etc/x";
* ``..`` components. One that would climb above the root gives "path escapes
  the peer root: ../x"; one that would not (``a/../b``) is refused too. So is
  every ``.`` component. Refusing them all rather than resolving them keeps
  one spelling per entry (simple, and safe: no lexical resolution can then
  disagree with what the file system does with a symlinked directory);
* NUL and every other control character: C0 (U+0000–U+001F), DEL (U+007F)
  and C1 (U+0080–U+009F), which have no business in a name and confuse logs
  and terminals;
* empty components: ``a//b`` and a trailing slash (``a/``);
* paths longer than :data:`MAX_PATH_BYTES` bytes of UTF-8, components longer
  than :data:`MAX_NAME_BYTES` bytes (the usual ``PATH_MAX``/``NAME_MAX``);
* any component starting with :data:`TEMP_PREFIX` (compared without regard
  to case), the reserved prefix of the temporary files of atomic writes:
  scripts can neither name nor see them;
* strings that are not valid Unicode (lone surrogates).

A backslash is an ordinary character (this is POSIX naming), not a separator.
"""

from __future__ import annotations

import re
import unicodedata

from ._errors import HostCallError, show

__all__ = [
    "MAX_PATH_BYTES",
    "MAX_NAME_BYTES",
    "TEMP_PREFIX",
    "parse_path",
    "join",
    "is_temp_name",
    "is_visible_name",
]

#: Longest path accepted, in bytes of UTF-8 (after NFC normalisation).
MAX_PATH_BYTES = 1024
#: Longest single component accepted, in bytes of UTF-8.
MAX_NAME_BYTES = 255
#: Reserved prefix of the temporary files of atomic writes.
TEMP_PREFIX = ".peerbox-tmp-"

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_TEMP_FOLDED = TEMP_PREFIX.casefold()


def _invalid(path: str, reason: str) -> HostCallError:
    return HostCallError("invalid_path", f"invalid path {show(path)}: {reason}")


def _escapes(path: str, reason: str | None = None) -> HostCallError:
    tail = f" ({reason})" if reason else ""
    shown = path if len(path) <= 120 else path[:120] + "…"
    return HostCallError("invalid_path", f"path escapes the peer root: {shown}{tail}")


def is_temp_name(name: str) -> bool:
    """True if ``name`` carries the reserved temporary-file prefix (any case)."""
    return name.casefold().startswith(_TEMP_FOLDED)


def parse_path(path: object) -> tuple[str, ...]:
    """Check ``path`` and return its components (``()`` for the root ``""``).

    The components are NFC-normalised, non-empty, free of control characters,
    not ``.``/``..``, not reserved, within the length limits: safe to pass one
    by one to ``openat``-style calls or to use as database keys.

    Raises ``HostCallError("invalid_argument")`` if ``path`` is not a string
    and ``HostCallError("invalid_path")`` for every rule in the module
    docstring (the message names the path as the script wrote it).
    """
    if not isinstance(path, str):
        raise HostCallError("invalid_argument", f"a path must be a string, not {type(path).__name__}")
    original = path
    try:
        path.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _invalid(original, "not valid Unicode") from exc
    # The control-character check comes before normalisation only for the
    # message (NFC never creates or removes control characters).
    bad = _CONTROL.search(path)
    if bad is not None:
        raise _invalid(original, f"control character U+{ord(bad.group()):04X}")
    path = unicodedata.normalize("NFC", path)
    if path == "":
        return ()
    if path.startswith("/"):
        raise _escapes(original, "absolute paths are not allowed")
    parts = tuple(path.split("/"))
    depth = 0
    for name in parts:  # would a lexical resolution climb above the root?
        depth += -1 if name == ".." else 0 if name in ("", ".") else 1
        if depth < 0:
            raise _escapes(original)
    if len(path.encode("utf-8")) > MAX_PATH_BYTES:
        raise _invalid(original, f"longer than {MAX_PATH_BYTES} bytes")
    for name in parts:
        if name == "":
            raise _invalid(original, "empty component")
        if name == "..":
            raise _invalid(original, "'..' components are not allowed")
        if name == ".":
            raise _invalid(original, "'.' components are not allowed")
        if len(name.encode("utf-8")) > MAX_NAME_BYTES:
            raise _invalid(original, f"a component is longer than {MAX_NAME_BYTES} bytes")
        if is_temp_name(name):
            raise _invalid(original, f"names starting with {TEMP_PREFIX!r} are reserved")
    return parts


def join(parts: tuple[str, ...]) -> str:
    """The canonical path string of ``parts`` (``""`` for the root)."""
    return "/".join(parts)


def is_visible_name(name: str) -> bool:
    """True if a directory entry called ``name`` is shown by ``fs::list``.

    Hidden: the reserved temporary files, and names a script could not pass
    to any host call anyway (not NFC, control characters, ``.``/``..``, too
    long, undecodable bytes that Python keeps as lone surrogates). Such
    entries can only come from outside peerbox.
    """
    if name in ("", ".", "..") or "/" in name:
        return False
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    if len(encoded) > MAX_NAME_BYTES or _CONTROL.search(name) is not None or is_temp_name(name):
        return False
    return unicodedata.is_normalized("NFC", name)
