"""Descriptor-relative file primitives: one walk down from a held directory, never out of it.

These are the only functions that resolve names in a peer's storage
directory; :class:`~peerbox.hostcalls._fs.FsBackend` builds its operations
(and its locking and usage tally) on them.

How nothing outside the root is ever touched
--------------------------------------------
The backend opens the root directory once, at construction, and keeps that
descriptor. Every operation then walks from it *one component at a time*
with ``openat``-style calls (``os.open(name, flags, dir_fd=fd)``):

* each directory on the way is opened with ``O_DIRECTORY | O_NOFOLLOW``, so
  a symbolic link (to anywhere) makes the walk fail with ``ELOOP`` instead
  of being followed, and the next step is taken relative to the descriptor
  just opened, never by a path string re-resolved from the root;
* the final name is looked at with ``os.stat(name, dir_fd=fd,
  follow_symlinks=False)`` (``fstatat(AT_SYMLINK_NOFOLLOW)``), and a file is
  opened with ``O_NOFOLLOW | O_NONBLOCK | O_NOCTTY``; the open descriptor is
  then ``fstat``-ed and anything that is not a regular file (a FIFO, device
  or socket that was swapped in) is closed unread. ``O_NONBLOCK`` makes
  opening a FIFO return at once instead of waiting for a writer, so a FIFO
  can never block a worker thread;
* regular files with ``st_nlink > 1`` are refused: peerbox itself never makes
  hard links (its writes rename a fresh one-link temporary file into place),
  so a second link was made from outside and may be a file outside the root.

Why this is race-free against a directory swapped for a symlink between
"check" and "use": there is no separate check. The kernel resolves exactly
one name per call, inside a directory we hold open, and ``O_NOFOLLOW``
applies to that very resolution; whatever ``d`` is at the instant of
``openat(fd, "d", O_DIRECTORY|O_NOFOLLOW)`` — a real directory (we get it)
or a symlink (the call fails) — the descriptor we continue from is a
directory that was an entry of the previous one. ``..`` never reaches the
kernel (the path rules refuse it), so a walk only ever goes down. The same
holds for creation: temporary files are created with ``O_CREAT | O_EXCL |
O_NOFOLLOW`` relative to the directory descriptor, renamed with both
``dir_fd`` arguments, and ``unlinkat``/``mkdirat``/``fstatat`` never follow
a final symlink. (If something *outside* peerbox moves a directory out of
the root while a walk holds it open, the operation completes in that
directory, wherever it now is; a script cannot move directories.)

Atomic writes: the new content goes to ``.peerbox-tmp-<random>`` in the
target's directory (mode 0600), is written fully and ``fsync``-ed, then
``rename``-d over the target, and the directory is ``fsync``-ed. A crash at
any point leaves the old file or the new one; a leftover temporary file is
invisible to scripts (reserved prefix) and swept when the backend is opened.
Appends read the old content and write old + new the same way.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat as st_mod

from ._errors import (
    HostCallError,
    hard_link,
    io_error,
    is_a_directory,
    no_such_directory,
    no_such_file,
    not_a_directory,
    special_file,
    symlink,
    too_large_to_read,
)
from ._errors import os_reason as _reason  # the error text without file names (host paths)
from ._limits import Usage
from ._paths import MAX_PATH_BYTES, TEMP_PREFIX, is_temp_name, join

__all__ = [
    "DIR_FLAGS", "CLOEXEC", "check_file", "lstat", "open_dir", "walk", "done", "open_file", "read_fd",
    "read_at", "replace_file", "existing_file", "scan",
]

CLOEXEC = getattr(os, "O_CLOEXEC", 0)
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | CLOEXEC
_TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | CLOEXEC
#: No addressable entry is deeper than this (a path of one-byte names).
_MAX_DEPTH = MAX_PATH_BYTES // 2 + 1
_READ_CHUNK = 1 << 16


def _what(mode: int) -> str:
    if st_mod.S_ISFIFO(mode):
        return "FIFO"
    if st_mod.S_ISSOCK(mode):
        return "socket"
    if st_mod.S_ISCHR(mode):
        return "character device"
    if st_mod.S_ISBLK(mode):
        return "block device"
    return "special file"


def check_file(st: os.stat_result, path: str) -> None:
    """Refuse anything at ``path`` but a regular file with one link."""
    mode = st.st_mode
    if st_mod.S_ISREG(mode):
        if st.st_nlink > 1:
            raise hard_link(path)
        return
    if st_mod.S_ISDIR(mode):
        raise is_a_directory(path)
    if st_mod.S_ISLNK(mode):
        raise symlink(path)
    raise special_file(path, _what(mode))


def lstat(dfd: int, name: str) -> os.stat_result | None:
    """``fstatat(dfd, name, AT_SYMLINK_NOFOLLOW)``; None if nothing is there."""
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def open_dir(dfd: int, prefix: tuple[str, ...]) -> int:
    """``openat(dfd, prefix[-1], O_DIRECTORY|O_NOFOLLOW)``, errors translated.

    ``not_found``, ``not_a_directory`` (a file), ``not_a_file`` (a symlink)
    name ``prefix``. If the open fails because the entry is not a directory
    but it is one when looked at right after (it was being swapped), the
    open is retried a few times rather than reporting a state that never
    settled.
    """
    name = prefix[-1]
    for _ in range(4):
        try:
            return os.open(name, DIR_FLAGS, dir_fd=dfd)
        except OSError as exc:
            error = _dir_error(exc, dfd, prefix)
            if error is not None:
                raise error from exc
    raise io_error(join(prefix), "the directory kept changing while being opened")


def _dir_error(exc: OSError, dfd: int, prefix: tuple[str, ...]) -> HostCallError | None:
    """Translate a failed directory open; None if the entry is a directory after all."""
    path = join(prefix)
    if exc.errno == errno.ENOENT:
        return no_such_directory(path)
    if exc.errno in (errno.ENOTDIR, errno.ELOOP):
        try:
            st = lstat(dfd, prefix[-1])
        except OSError as exc2:
            return io_error(path, _reason(exc2))
        if st is None:
            return no_such_directory(path)
        if st_mod.S_ISLNK(st.st_mode):
            return symlink(path)
        if not st_mod.S_ISDIR(st.st_mode):
            return not_a_directory(path)
        return None
    return io_error(path, _reason(exc))


def walk(root: int, parts: tuple[str, ...], upto: int) -> int:
    """A descriptor of the directory ``parts[:upto]``, opened component by component.

    Returns ``root`` itself when ``upto`` is 0 (the caller must not close
    it: see :func:`done`). Raises ``not_found``/``not_a_directory``/
    ``not_a_file`` naming the first component that is not a directory.
    """
    fd = root
    try:
        for i in range(upto):
            nfd = open_dir(fd, parts[: i + 1])
            if fd != root:
                os.close(fd)
            fd = nfd
    except BaseException:
        if fd != root:
            os.close(fd)
        raise
    return fd


def done(fd: int, root: int) -> None:
    """Close ``fd`` unless it is ``root`` (what :func:`walk` returns for the root itself)."""
    if fd != root:
        os.close(fd)


def open_file(dfd: int, name: str, path: str) -> tuple[int, os.stat_result]:
    """Open the regular file ``name`` in ``dfd`` for reading, refusing anything else.

    The entry is checked with ``fstatat`` first (clear errors, and no
    ``open`` at all of a FIFO or device), then opened ``O_NOFOLLOW |
    O_NONBLOCK`` and checked again on the descriptor, which is what makes
    the check race-free.
    """
    try:
        st = lstat(dfd, name)
    except OSError as exc:
        raise io_error(path, _reason(exc)) from exc
    if st is None:
        raise no_such_file(path)
    check_file(st, path)
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dfd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise symlink(path) from exc
        if exc.errno == errno.ENOENT:
            raise no_such_file(path) from exc
        if exc.errno == errno.ENXIO:
            raise special_file(path, "socket") from exc
        raise io_error(path, _reason(exc)) from exc
    try:
        st = os.fstat(fd)
        check_file(st, path)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_fd(fd: int, size: int, path: str, limit: int) -> bytes:
    """Read all of ``fd`` (``size`` expected), at most ``limit`` bytes (else ``quota_exceeded``)."""
    if size > limit:
        raise too_large_to_read(path, limit)
    chunks: list[bytes] = []
    total = 0
    want = size + 1
    while True:
        try:
            chunk = os.read(fd, min(want, limit + 1 - total))
        except OSError as exc:
            raise io_error(path, _reason(exc)) from exc
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise too_large_to_read(path, limit)
        want = _READ_CHUNK
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def read_at(dfd: int, name: str, path: str, limit: int) -> bytes:
    """The content of the regular file ``name`` in ``dfd`` (see :func:`open_file`), at most ``limit``
    bytes."""
    fd, st = open_file(dfd, name, path)
    try:
        return read_fd(fd, st.st_size, path, limit)
    finally:
        os.close(fd)


def replace_file(dfd: int, name: str, data: bytes, path: str) -> None:
    """Atomically make ``name`` in ``dfd`` hold ``data`` (temp file, fsync, rename, fsync dir)."""
    tmp = TEMP_PREFIX + secrets.token_hex(8)
    try:
        tfd = os.open(tmp, _TMP_FLAGS, 0o600, dir_fd=dfd)
    except OSError as exc:
        raise io_error(path, _reason(exc)) from exc
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(tfd, view) :]
            os.fsync(tfd)
        finally:
            os.close(tfd)
        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException as exc:
        try:
            os.unlink(tmp, dir_fd=dfd)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise io_error(path, _reason(exc)) from exc
        raise
    try:
        os.fsync(dfd)
    except OSError as exc:
        raise io_error(path, _reason(exc)) from exc


def existing_file(dfd: int, name: str, path: str) -> os.stat_result | None:
    """The ``fstatat`` of a file about to be replaced; None if absent; refuses non-files."""
    try:
        st = lstat(dfd, name)
    except OSError as exc:
        raise io_error(path, _reason(exc)) from exc
    if st is not None:
        check_file(st, path)
    return st


def scan(fd: int, depth: int, usage: Usage) -> None:
    """Count the entries and bytes under ``fd`` into ``usage`` and delete leftover temporary
    files (from crashes), never following links, at most ``_MAX_DEPTH`` levels down."""
    for name in os.listdir(fd):
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        is_dir = st_mod.S_ISDIR(st.st_mode)
        if is_temp_name(name) and not is_dir:
            try:
                os.unlink(name, dir_fd=fd)
                continue
            except OSError:
                pass
        usage.files += 1
        if st_mod.S_ISREG(st.st_mode):
            usage.bytes += st.st_size
        elif is_dir and depth < _MAX_DEPTH:
            try:
                sub = os.open(name, DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue
            try:
                scan(sub, depth + 1, usage)
            finally:
                os.close(sub)
