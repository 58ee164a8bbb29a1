"""Errors of the host calls, and the one place their messages are worded.

Two kinds of failure leave a host call:

* :class:`HostCallError` is a *refusal*: the request was wrong or not
  allowed (a path escaping the root, a missing file, a full quota). The
  sandbox turns it into an ``{"err": [kind, message]}`` reply and the script
  can catch it (``e.kind``). ``kind`` is one of :data:`KINDS`.
* :class:`BudgetExceeded` means the run used up its host-call budget (calls,
  bytes read, bytes written). It is *not* catchable: the sandbox stops the
  run with ``LimitExceeded("hostcalls")``, because fuel and epochs do not
  count the time spent inside host calls and this budget is what bounds it.

Both backends must give the same kind *and* the same message for the same
situation (one conformance suite runs against both), so every message that
names a path is built by a function here rather than inline in a backend.
Paths in messages are the canonical relative paths the script used, never a
host path, so a refusal reveals nothing about where the peer root lives.
"""

from __future__ import annotations

import errno
import re

from peerbox._errors import Error

__all__ = [
    "KINDS",
    "HostCallError",
    "BudgetExceeded",
    "show",
    "no_such_file",
    "no_such_entry",
    "no_such_directory",
    "not_a_directory",
    "is_a_directory",
    "symlink",
    "special_file",
    "hard_link",
    "too_large_to_read",
    "not_empty",
    "io_error",
    "os_reason",
    "db_reason",
]

#: Every ``HostCallError.kind``. Scripts see these strings as ``e.kind``.
KINDS = frozenset(
    {
        "invalid_path",
        "not_found",
        "is_a_directory",
        "not_a_directory",
        "not_a_file",
        "quota_exceeded",
        "io_error",
        "no_storage",
        "invalid_argument",
        "denied",  # the target's policy does not allow this action on this path
        "schema_violation",  # a record that does not fit its collection's type (db::)
        "conflict",  # a record's key or unique fields are taken (db::)
        "unsupported",  # db:: where the peer has no records (no schema.toml) or another schema is applied
    }
)


class HostCallError(Error):
    """A host call refused or failed; catchable by the script as ``e.kind``.

    ``kind`` is one of :data:`KINDS` (a ``ValueError`` is raised for any
    other string: a misspelt kind is a bug in peerbox, not a refusal);
    ``message`` is the human-readable text the script sees.
    """

    def __init__(self, kind: str, message: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown host-call error kind {kind!r}")
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message

    def __reduce__(self) -> tuple[type[HostCallError], tuple[str, str]]:
        return (type(self), (self.kind, self.message))


class BudgetExceeded(Error):
    """The run used up its host-call budget; NOT catchable by the script.

    ``resource`` is ``"calls"``, ``"bytes_read"`` or ``"bytes_written"``.
    The sandbox stops the run with ``LimitExceeded("hostcalls", message)``.
    """

    def __init__(self, resource: str, message: str) -> None:
        super().__init__(message)
        self.resource = resource
        self.message = message

    def __reduce__(self) -> tuple[type[BudgetExceeded], tuple[str, str]]:
        return (type(self), (self.resource, self.message))


_MAX_SHOWN = 120


def show(path: str) -> str:
    """``path`` quoted for a message: Python ``repr`` (escapes control characters), shortened."""
    if len(path) > _MAX_SHOWN:
        path = path[:_MAX_SHOWN] + "…"
    return repr(path)


# -- messages shared by both backends ------------------------------------------------


def no_such_file(path: str) -> HostCallError:
    """A file the operation needs (read, append's parent aside) does not exist."""
    return HostCallError("not_found", f"no such file: {show(path)}")


def no_such_entry(path: str) -> HostCallError:
    """Nothing at all is at ``path`` (stat, delete)."""
    return HostCallError("not_found", f"no such file or directory: {show(path)}")


def no_such_directory(path: str) -> HostCallError:
    """A directory on the way (or the one to list) does not exist."""
    return HostCallError("not_found", f"no such directory: {show(path)}")


def not_a_directory(path: str) -> HostCallError:
    """A path component that must be a directory is a file."""
    return HostCallError("not_a_directory", f"not a directory: {show(path)}")


def is_a_directory(path: str) -> HostCallError:
    """A file operation (read, write, append) named a directory."""
    return HostCallError("is_a_directory", f"is a directory: {show(path)}")


def symlink(path: str) -> HostCallError:
    """A symbolic link inside the root: never followed, never opened."""
    return HostCallError("not_a_file", f"{show(path)} is a symbolic link")


def special_file(path: str, what: str) -> HostCallError:
    """A FIFO, device or socket inside the root: never opened (a FIFO would block)."""
    return HostCallError("not_a_file", f"{show(path)} is not a regular file (it is a {what})")


def hard_link(path: str) -> HostCallError:
    """A regular file with more than one link: it may be a file outside the root."""
    return HostCallError(
        "not_a_file",
        f"{show(path)} has more than one hard link (it may be shared with a file outside the peer root)",
    )


def too_large_to_read(path: str, limit: int) -> HostCallError:
    """A file bigger than the per-file quota (only possible if placed from outside)."""
    return HostCallError("quota_exceeded", f"{show(path)} is larger than the {limit}-byte limit on one file")


def not_empty(path: str) -> HostCallError:
    """``fs::delete`` of a directory that still has entries."""
    return HostCallError("invalid_argument", f"cannot delete {show(path)}: the directory is not empty")


def io_error(path: str, reason: str) -> HostCallError:
    """An unexpected failure of the storage underneath (disk full, permissions...).

    ``path`` is the script's own (canonical, relative) path. ``reason`` should
    come from :func:`os_reason` or :func:`db_reason`; whatever it is, anything
    in it that looks like an absolute host path is replaced by
    ``<host path>`` and it is cut to :data:`_MAX_REASON` characters, so the
    message a script (and through it a remote caller) sees never names where
    the peer root lives.
    """
    return HostCallError("io_error", f"i/o error on {show(path)}: {_scrub(reason)}")


_MAX_REASON = 200
# An absolute path (POSIX, or a Windows drive/UNC path) starting a word or after a quote,
# bracket, '=' or ':', running to the next blank or quote.
_HOST_PATH = re.compile(r"""(?:(?<=^)|(?<=[\s'"(\[=:,]))(?:/|[A-Za-z]:[\\/]|\\\\)[^\s'"]*""")


def _scrub(reason: str) -> str:
    """``reason`` with absolute paths replaced by ``<host path>`` and its length bounded."""
    text = _HOST_PATH.sub("<host path>", reason)
    if len(text) > _MAX_REASON:
        text = text[:_MAX_REASON] + "…"
    return text or "unknown error"


def os_reason(exc: OSError) -> str:
    """What went wrong in ``exc`` without its file names (``exc.filename`` may be a host path):
    the system's error text (``strerror``, e.g. "Permission denied"), else the errno's name."""
    if exc.strerror:
        return exc.strerror
    return errno.errorcode.get(exc.errno or 0, "unknown error")


def db_reason(exc: BaseException) -> str:
    """What went wrong in a ``sqlite3.Error`` ``exc`` without host paths: SQLite's message
    ("database disk image is malformed") when it names no path, else the SQLite error name
    (``SQLITE_CANTOPEN``), else the exception's type name."""
    text = str(exc)
    if text and _HOST_PATH.search(text) is None and len(text) <= _MAX_REASON:
        return text
    name = getattr(exc, "sqlite_errorname", None)
    return name if isinstance(name, str) and name else type(exc).__name__
