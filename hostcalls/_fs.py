"""The file system backend: a peer's files are files under one root directory.

How nothing outside the root is ever touched, and why writes are atomic:
see :mod:`peerbox.hostcalls._dirfd`, whose descriptor-relative walk every
operation here goes through.

Several processes may serve one peer's storage at once (``peerbox serve
--workers N``, a ``peerbox run --peer`` beside a server). Every change takes
an exclusive ``flock`` on the storage's state file (``<root>.lock``, beside
the root: out of any script's reach) for its duration, after the process's
own thread lock: changes are serialised across threads and processes, so the
quota check and the change it allows are one step everywhere, and temporary
files exist only while their writer holds the lock. Reads take no lock
(renames are atomic).

The usage tally (bytes, entries) lives in the state file, read under the
lock before each change and written back after it, so a quota holds for all
processes together. Before changing anything a writer marks the tally
``pending``; a writer that finds it still marked (its predecessor died
mid-change: the lock is released with the process) recounts by one walk of
the tree, sweeping leftover temporary files, as the backend also does when
it is opened (so a tally lost with the page cache after a power cut is
recounted at the next start).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat as st_mod
import struct
import threading
from collections.abc import Iterator

from peerbox._errors import Error

from ._backend import Backend, Stat
from ._dirfd import (
    CLOEXEC,
    DIR_FLAGS,
    check_file,
    done,
    existing_file,
    lstat,
    open_dir,
    read_at,
    replace_file,
    scan,
    walk,
)
from ._errors import (
    HostCallError,
    io_error,
    is_a_directory,
    no_such_entry,
    not_empty,
)
from ._errors import os_reason as _reason  # the error text without file names (host paths)
from ._limits import Quotas, Usage
from ._paths import is_visible_name, join, parse_path

__all__ = ["FsBackend", "STATE_SUFFIX"]

#: The state file of a storage root ``R`` is ``R + STATE_SUFFIX`` (the lock and the usage tally).
STATE_SUFFIX = ".lock"
#: The state file's content: magic, bytes, entries, pending (1 while a change is under way).
_STATE = struct.Struct("<4sqqq")
_MAGIC = b"PBF1"


class FsBackend(Backend):
    """A peer's storage in the directory ``root_dir`` (created 0700 if missing).

    See :mod:`peerbox.hostcalls._dirfd` for how paths are resolved and why nothing
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
            self._root_fd = os.open(self.root_dir, os.O_RDONLY | os.O_DIRECTORY | CLOEXEC)
        except OSError as exc:
            raise Error(f"cannot open the storage directory {self.root_dir!r}: {_reason(exc)}") from exc
        # The lock and tally every process on this storage shares (see the module docstring).
        self.state_path = self.root_dir.rstrip("/") + STATE_SUFFIX
        try:
            self._state_fd = os.open(self.state_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | CLOEXEC, 0o600)
        except OSError as exc:
            os.close(self._root_fd)
            raise Error(f"cannot open the storage's state file {self.state_path!r}: {_reason(exc)}") from exc
        self._lock = threading.Lock()  # serialises this process's changes (the flock, across processes)
        self._guard = threading.Condition(threading.Lock())  # counts operations using the root fd
        self._active = 0
        self._closed = False
        self._usage = Usage()
        try:
            with self._lock:
                fcntl.flock(self._state_fd, fcntl.LOCK_EX)
                try:
                    self._recount()
                finally:
                    fcntl.flock(self._state_fd, fcntl.LOCK_UN)
        except OSError as exc:
            os.close(self._root_fd)
            os.close(self._state_fd)
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
        os.close(self._state_fd)

    # -- the shared lock and tally ---------------------------------------------------------

    def _recount(self) -> None:
        """Count usage and sweep leftover temporary files (from crashes), never following links;
        store the tally (not pending). Under the flock. Raises ``OSError``."""
        usage = Usage()
        fd = os.open(".", DIR_FLAGS, dir_fd=self._root_fd)
        try:
            scan(fd, 1, usage)
        finally:
            os.close(fd)
        self._usage = usage
        self._store_tally(pending=False)

    def _store_tally(self, *, pending: bool) -> None:
        os.pwrite(self._state_fd, _STATE.pack(_MAGIC, self._usage.bytes, self._usage.files, int(pending)), 0)

    def _load_tally(self) -> None:
        """The tally as the state file has it, or a recount if it is marked pending or unreadable
        (a writer died mid-change, or the file is new). Under the flock. Raises ``OSError``."""
        data = os.pread(self._state_fd, _STATE.size, 0)
        if len(data) == _STATE.size:
            magic, nbytes, files, pending = _STATE.unpack(data)
            if magic == _MAGIC and not pending and nbytes >= 0 and files >= 0:
                self._usage = Usage(nbytes, files)
                return
        self._recount()

    @contextlib.contextmanager
    def _changing(self, path: str) -> Iterator[None]:
        """Hold this storage for one change: the thread lock, the flock, the current tally
        (``self._usage``), marked pending until the change is over. Raises :class:`HostCallError`
        (``io_error`` naming ``path``) if the state file fails."""
        with self._lock:
            try:
                fcntl.flock(self._state_fd, fcntl.LOCK_EX)
            except OSError as exc:
                raise io_error(path, _reason(exc)) from exc
            try:
                try:
                    self._load_tally()
                    self._store_tally(pending=True)
                except OSError as exc:
                    raise io_error(path, _reason(exc)) from exc
                clean = False
                try:
                    yield
                    clean = True
                except HostCallError:  # a refusal or a failed change: the tally says what happened
                    clean = True
                    raise
                finally:
                    if clean:  # else (a bug mid-change) stay pending: the next writer recounts
                        with contextlib.suppress(OSError):
                            self._store_tally(pending=False)
            finally:
                fcntl.flock(self._state_fd, fcntl.LOCK_UN)

    # -- the operations -------------------------------------------------------------------

    def read_bytes(self, path: str) -> bytes:
        parts = parse_path(path)
        p = join(parts)
        if not parts:
            raise is_a_directory(p)
        root = self._enter()
        try:
            dfd = walk(root, parts, len(parts) - 1)
            try:
                return read_at(dfd, parts[-1], p, self.quotas.max_file_size)
            finally:
                done(dfd, root)
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
            with self._changing(p):
                dfd = walk(root, parts, len(parts) - 1)
                try:
                    st = existing_file(dfd, parts[-1], p)
                    old = None if st is None else st.st_size
                    if append and st is not None:
                        before = read_at(dfd, parts[-1], p, self.quotas.max_file_size)
                        old = len(before)
                        data = before + data
                    self.quotas.check_file(self._usage, p, old, len(data))
                    replace_file(dfd, parts[-1], data, p)
                    self._usage.bytes += len(data) - (old or 0)
                    self._usage.files += old is None
                    return len(data)
                finally:
                    done(dfd, root)
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
                fd = walk(root, parts, len(parts))
            else:
                try:
                    fd = os.open(".", DIR_FLAGS, dir_fd=root)
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
                dfd = walk(root, parts, len(parts) - 1)
            except HostCallError as exc:
                if exc.kind in ("not_found", "not_a_directory", "not_a_file"):
                    return False
                raise
            try:
                return lstat(dfd, parts[-1]) is not None
            except OSError as exc:
                raise io_error(join(parts), _reason(exc)) from exc
            finally:
                done(dfd, root)
        finally:
            self._leave()

    def delete(self, path: str) -> None:
        parts = parse_path(path)
        p = join(parts)
        if not parts:
            raise HostCallError("invalid_path", "cannot delete the peer root")
        root = self._enter()
        try:
            with self._changing(p):
                dfd = walk(root, parts, len(parts) - 1)
                try:
                    self._delete_at(dfd, parts[-1], p)
                finally:
                    done(dfd, root)
        finally:
            self._leave()

    def _delete_at(self, dfd: int, name: str, path: str) -> None:
        try:
            st = lstat(dfd, name)
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
            with self._changing(p):
                fd = root
                try:
                    i = 0
                    while i < len(parts):  # descend through what exists
                        try:
                            nfd = open_dir(fd, parts[: i + 1])
                        except HostCallError as exc:
                            if exc.kind != "not_found":
                                raise
                            break
                        done(fd, root)
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
                        nfd = open_dir(fd, parts[: i + 1])
                        done(fd, root)
                        fd = nfd
                        i += 1
                finally:
                    done(fd, root)
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
            dfd = walk(root, parts, len(parts) - 1)
            try:
                st2 = lstat(dfd, parts[-1])
            except OSError as exc:
                raise io_error(p, _reason(exc)) from exc
            finally:
                done(dfd, root)
        finally:
            self._leave()
        if st2 is None:
            raise no_such_entry(p)
        if st_mod.S_ISDIR(st2.st_mode):
            return Stat(0, True, int(st2.st_mtime))
        check_file(st2, p)
        return Stat(st2.st_size, False, int(st2.st_mtime))

    def usage(self) -> tuple[int, int]:
        """``(bytes, entries)`` as all processes together have left them (read under the lock)."""
        self._enter()
        try:
            with self._changing(""):
                return self._usage.bytes, self._usage.files
        finally:
            self._leave()
