"""The file system backend: a peer's files are files under one root directory.

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

Usage (bytes, entries) is counted by one walk when the backend is opened and
kept up to date by every change, under a lock that serialises changes (the
quota check and the change it allows are one step). Reads take no lock.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import stat as st_mod
import threading

from peerbox._errors import Error

from ._backend import Backend, Stat
from ._errors import (
    StorageInUse,
    HostCallError,
    hard_link,
    io_error,
    is_a_directory,
    no_such_directory,
    no_such_entry,
    no_such_file,
    not_a_directory,
    not_empty,
    special_file,
    symlink,
    too_large_to_read,
)
from ._errors import os_reason as _reason  # the error text without file names (host paths)
from ._limits import Quotas, Usage
from ._paths import MAX_PATH_BYTES, TEMP_PREFIX, is_temp_name, is_visible_name, join, parse_path

__all__ = ["FsBackend"]

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | _CLOEXEC
_TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC
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


def _check_file(st: os.stat_result, path: str) -> None:
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


def _lstat(dfd: int, name: str) -> os.stat_result | None:
    """``fstatat(dfd, name, AT_SYMLINK_NOFOLLOW)``; None if nothing is there."""
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


class FsBackend(Backend):
    """A peer's storage in the directory ``root_dir`` (created 0700 if missing).

    See the module docstring for how paths are resolved and why nothing
    outside ``root_dir`` can be reached. ``root_dir`` itself is trusted
    configuration: it is opened once (following symlinks in *its* path) and
    everything after that is relative to that descriptor.

    Raises :class:`peerbox.Error` if the root cannot be created or opened.
    """

    kind = "fs"

    def __init__(self, root_dir: str | os.PathLike[str], quotas: Quotas | None = None) -> None:
        super().__init__(quotas)
        self.root_dir = os.fspath(root_dir)
        try:
            os.makedirs(self.root_dir, mode=0o700, exist_ok=True)
            self._root_fd = os.open(self.root_dir, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
        except OSError as exc:
            raise Error(f"cannot open the storage directory {self.root_dir!r}: {_reason(exc)}") from exc
        # One owner at a time: the sweep below would delete another owner's temp file mid-write,
        # and quotas are tallied per owner. A second process (or backend) is refused, not raced.
        try:
            fcntl.flock(self._root_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._root_fd)
            raise StorageInUse(
                f"the storage directory {self.root_dir!r} is in use by another peerbox process "
                "(a peer's files have one owner at a time)"
            ) from exc
        self._lock = threading.Lock()  # serialises changes (usage tally + quota checks)
        self._guard = threading.Condition(threading.Lock())  # counts operations using the root fd
        self._active = 0
        self._closed = False
        self._usage = Usage()
        try:
            self._scan_root()
        except OSError as exc:
            os.close(self._root_fd)
            raise Error(f"cannot scan the storage directory {self.root_dir!r}: {_reason(exc)}") from exc

    def __repr__(self) -> str:
        return f"FsBackend({self.root_dir!r})"

    # -- lifetime ------------------------------------------------------------------

    def _enter(self) -> int:
        """Mark an operation as using the root descriptor (so close() waits for it)."""
        with self._guard:
            if self._closed:
                raise HostCallError("io_error", "the peer's storage is closed")
            self._active += 1
        return self._root_fd

    def _leave(self) -> None:
        with self._guard:
            self._active -= 1
            if self._active == 0:
                self._guard.notify_all()

    def close(self) -> None:
        """Wait for operations in progress, then close the root descriptor. Idempotent."""
        with self._guard:
            if self._closed:
                return
            self._closed = True
            while self._active:
                self._guard.wait()
        os.close(self._root_fd)

    # -- start-up scan ----------------------------------------------------------------

    def _scan_root(self) -> None:
        """Count usage and sweep leftover temporary files (from crashes), never following links."""
        fd = os.open(".", _DIR_FLAGS, dir_fd=self._root_fd)
        try:
            self._scan(fd, 1)
        finally:
            os.close(fd)

    def _scan(self, fd: int, depth: int) -> None:
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
            self._usage.files += 1
            if st_mod.S_ISREG(st.st_mode):
                self._usage.bytes += st.st_size
            elif is_dir and depth < _MAX_DEPTH:
                try:
                    sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    continue
                try:
                    self._scan(sub, depth + 1)
                finally:
                    os.close(sub)

    # -- the walk ------------------------------------------------------------------------

    def _open_dir(self, dfd: int, prefix: tuple[str, ...]) -> int:
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
                return os.open(name, _DIR_FLAGS, dir_fd=dfd)
            except OSError as exc:
                error = self._dir_error(exc, dfd, prefix)
                if error is not None:
                    raise error from exc
        raise io_error(join(prefix), "the directory kept changing while being opened")

    def _dir_error(self, exc: OSError, dfd: int, prefix: tuple[str, ...]) -> HostCallError | None:
        """Translate a failed directory open; None if the entry is a directory after all."""
        path = join(prefix)
        if exc.errno == errno.ENOENT:
            return no_such_directory(path)
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            try:
                st = _lstat(dfd, prefix[-1])
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

    def _walk(self, root: int, parts: tuple[str, ...], upto: int) -> int:
        """A descriptor of the directory ``parts[:upto]``, opened component by component.

        Returns ``root`` itself when ``upto`` is 0 (the caller must not close
        it: see :meth:`_done`). Raises ``not_found``/``not_a_directory``/
        ``not_a_file`` naming the first component that is not a directory.
        """
        fd = root
        try:
            for i in range(upto):
                nfd = self._open_dir(fd, parts[: i + 1])
                if fd != root:
                    os.close(fd)
                fd = nfd
        except BaseException:
            if fd != root:
                os.close(fd)
            raise
        return fd

    @staticmethod
    def _done(fd: int, root: int) -> None:
        if fd != root:
            os.close(fd)

    def _open_file(self, dfd: int, name: str, path: str) -> tuple[int, os.stat_result]:
        """Open the regular file ``name`` in ``dfd`` for reading, refusing anything else.

        The entry is checked with ``fstatat`` first (clear errors, and no
        ``open`` at all of a FIFO or device), then opened ``O_NOFOLLOW |
        O_NONBLOCK`` and checked again on the descriptor, which is what makes
        the check race-free.
        """
        try:
            st = _lstat(dfd, name)
        except OSError as exc:
            raise io_error(path, _reason(exc)) from exc
        if st is None:
            raise no_such_file(path)
        _check_file(st, path)
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
            _check_file(st, path)
        except BaseException:
            os.close(fd)
            raise
        return fd, st

    def _read_fd(self, fd: int, size: int, path: str) -> bytes:
        """Read all of ``fd`` (``size`` expected), at most ``max_file_size`` bytes."""
        limit = self.quotas.max_file_size
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

    def _read_at(self, dfd: int, name: str, path: str) -> bytes:
        fd, st = self._open_file(dfd, name, path)
        try:
            return self._read_fd(fd, st.st_size, path)
        finally:
            os.close(fd)

    def _replace(self, dfd: int, name: str, data: bytes, path: str) -> None:
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

    def _existing_file(self, dfd: int, name: str, path: str) -> os.stat_result | None:
        """The ``fstatat`` of a file about to be replaced; None if absent; refuses non-files."""
        try:
            st = _lstat(dfd, name)
        except OSError as exc:
            raise io_error(path, _reason(exc)) from exc
        if st is not None:
            _check_file(st, path)
        return st

    # -- the operations -------------------------------------------------------------------

    def read_bytes(self, path: str) -> bytes:
        parts = parse_path(path)
        p = join(parts)
        if not parts:
            raise is_a_directory(p)
        root = self._enter()
        try:
            dfd = self._walk(root, parts, len(parts) - 1)
            try:
                return self._read_at(dfd, parts[-1], p)
            finally:
                self._done(dfd, root)
        finally:
            self._leave()

    def write_bytes(self, path: str, data: bytes) -> None:
        self._store(path, bytes(data), append=False)

    def append_bytes(self, path: str, data: bytes) -> int:
        return self._store(path, bytes(data), append=True)

    def _store(self, path: str, data: bytes, *, append: bool) -> int:
        """Write (or append) ``data`` atomically after the quota check; the new size."""
        parts = parse_path(path)
        p = join(parts)
        if not parts:
            raise is_a_directory(p)
        root = self._enter()
        try:
            with self._lock:
                dfd = self._walk(root, parts, len(parts) - 1)
                try:
                    st = self._existing_file(dfd, parts[-1], p)
                    old = None if st is None else st.st_size
                    if append and st is not None:
                        before = self._read_at(dfd, parts[-1], p)
                        old = len(before)
                        data = before + data
                    self.quotas.check_file(self._usage, p, old, len(data))
                    self._replace(dfd, parts[-1], data, p)
                    self._usage.bytes += len(data) - (old or 0)
                    self._usage.files += old is None
                    return len(data)
                finally:
                    self._done(dfd, root)
        finally:
            self._leave()

    def list_dir(self, path: str) -> list[str]:
        parts = parse_path(path)
        root = self._enter()
        try:
            # Always a fresh descriptor, even for the root: os.listdir(fd) reads
            # through a dup() that shares the file offset with ``fd``, so
            # listing the shared root descriptor from two threads would race.
            if parts:
                fd = self._walk(root, parts, len(parts))
            else:
                try:
                    fd = os.open(".", _DIR_FLAGS, dir_fd=root)
                except OSError as exc:
                    raise io_error("", _reason(exc)) from exc
            try:
                names = os.listdir(fd)
            except OSError as exc:
                raise io_error(join(parts), _reason(exc)) from exc
            finally:
                os.close(fd)
        finally:
            self._leave()
        return sorted(name for name in names if is_visible_name(name))

    def exists(self, path: str) -> bool:
        parts = parse_path(path)
        if not parts:
            return True
        root = self._enter()
        try:
            try:
                dfd = self._walk(root, parts, len(parts) - 1)
            except HostCallError as exc:
                if exc.kind in ("not_found", "not_a_directory", "not_a_file"):
                    return False
                raise
            try:
                return _lstat(dfd, parts[-1]) is not None
            except OSError as exc:
                raise io_error(join(parts), _reason(exc)) from exc
            finally:
                self._done(dfd, root)
        finally:
            self._leave()

    def delete(self, path: str) -> None:
        parts = parse_path(path)
        p = join(parts)
        if not parts:
            raise HostCallError("invalid_path", "cannot delete the peer root")
        root = self._enter()
        try:
            with self._lock:
                dfd = self._walk(root, parts, len(parts) - 1)
                try:
                    self._delete_at(dfd, parts[-1], p)
                finally:
                    self._done(dfd, root)
        finally:
            self._leave()

    def _delete_at(self, dfd: int, name: str, path: str) -> None:
        try:
            st = _lstat(dfd, name)
            if st is None:
                raise no_such_entry(path)
            if st_mod.S_ISDIR(st.st_mode):
                try:
                    os.rmdir(name, dir_fd=dfd)
                except OSError as exc:
                    if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                        raise not_empty(path) from exc
                    raise
            else:  # unlinkat never follows: a symlink is removed, never its target
                os.unlink(name, dir_fd=dfd)
                if st_mod.S_ISREG(st.st_mode):
                    self._usage.bytes -= st.st_size
            self._usage.files -= 1
            os.fsync(dfd)
        except FileNotFoundError as exc:
            raise no_such_entry(path) from exc
        except OSError as exc:
            raise io_error(path, _reason(exc)) from exc

    def mkdir(self, path: str) -> None:
        parts = parse_path(path)
        if not parts:
            return
        p = join(parts)
        root = self._enter()
        try:
            with self._lock:
                fd = root
                try:
                    i = 0
                    while i < len(parts):  # descend through what exists
                        try:
                            nfd = self._open_dir(fd, parts[: i + 1])
                        except HostCallError as exc:
                            if exc.kind != "not_found":
                                raise
                            break
                        self._done(fd, root)
                        fd = nfd
                        i += 1
                    if i < len(parts):
                        self.quotas.check_entries(self._usage, p, len(parts) - i)
                    while i < len(parts):  # create the rest
                        try:
                            os.mkdir(parts[i], 0o700, dir_fd=fd)
                            self._usage.files += 1
                            os.fsync(fd)
                        except FileExistsError:
                            pass  # created meanwhile from outside: open (and check) it below
                        except OSError as exc:
                            raise io_error(join(parts[: i + 1]), _reason(exc)) from exc
                        nfd = self._open_dir(fd, parts[: i + 1])
                        self._done(fd, root)
                        fd = nfd
                        i += 1
                finally:
                    self._done(fd, root)
        finally:
            self._leave()

    def stat(self, path: str) -> Stat:
        parts = parse_path(path)
        p = join(parts)
        root = self._enter()
        try:
            if not parts:
                try:
                    st = os.fstat(root)
                except OSError as exc:
                    raise io_error("", _reason(exc)) from exc
                return Stat(0, True, int(st.st_mtime))
            dfd = self._walk(root, parts, len(parts) - 1)
            try:
                st2 = _lstat(dfd, parts[-1])
            except OSError as exc:
                raise io_error(p, _reason(exc)) from exc
            finally:
                self._done(dfd, root)
        finally:
            self._leave()
        if st2 is None:
            raise no_such_entry(p)
        if st_mod.S_ISDIR(st2.st_mode):
            return Stat(0, True, int(st2.st_mtime))
        _check_file(st2, p)
        return Stat(st2.st_size, False, int(st2.st_mtime))

    def usage(self) -> tuple[int, int]:
        with self._lock:
            return self._usage.bytes, self._usage.files
