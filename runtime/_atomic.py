"""Files peerbox reads and rewrites: bounded reads, and atomic replacement.

:func:`read_bounded` reads at most ``limit + 1`` bytes from an open file
descriptor (one more than allowed, so the caller can tell "too large" without
reading the rest: a FIFO or ``/dev/zero`` in place of a file stops there).

Atomic file replacement: a reader sees the old file or the new one, never a mix.

One helper for every file peerbox rewrites in place (the peer directory,
revocation lists, logic modules and their history, port files): write a
temporary file beside the target (never through a symlink), optionally
fsync it, rename it over the target, and fsync the directory so the rename
itself survives a crash. On failure the temporary file is removed and the
``OSError`` propagates for the caller to translate.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

__all__ = ["write_atomic", "read_bounded"]


def read_bounded(fd: int, limit: int) -> bytes:
    """At most ``limit + 1`` bytes from ``fd`` (until end of file). Raises ``OSError``."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = os.read(fd, limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def write_atomic(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644,
                 durable: bool = True) -> None:
    """Replace ``path`` with ``data``. ``durable``: fsync the file and its directory (default).

    Raises ``OSError`` (the target is then unchanged and no temporary file is left).
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:
        dfd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
