"""Choosing a storage backend by name: the one module that knows every backend.

:mod:`peerbox.hostcalls._backend` defines the interface and the backends
(``_fs``, ``_sqlite``) implement it; this module sits above them all, so the
interface never imports its implementations (no cycle) and adding a backend
is one branch here.
"""

from __future__ import annotations

import os

from peerbox._errors import UsageError

from ._backend import Backend
from ._fs import FsBackend
from ._limits import Quotas
from ._sqlite import SqliteBackend

__all__ = ["open_backend", "BACKEND_KINDS"]

#: The backends :func:`open_backend` knows.
BACKEND_KINDS = ("fs", "sqlite")


def open_backend(kind: str, location: str | os.PathLike[str], quotas: Quotas | None = None) -> Backend:
    """Open the ``kind`` backend at ``location`` with ``quotas`` (default :class:`Quotas`).

    ``"fs"``: ``location`` is the root directory (created 0700 if missing);
    ``"sqlite"``: ``location`` is the database file (created if missing).
    Raises :class:`peerbox.UsageError` for an unknown kind, and
    :class:`peerbox.Error` if the storage cannot be opened (that message
    names the host location: it is for the operator, not for a script).
    """
    if kind == "fs":
        return FsBackend(location, quotas)
    if kind == "sqlite":
        return SqliteBackend(location, quotas)
    raise UsageError(f"unknown storage backend {kind!r} (choose one of: {', '.join(BACKEND_KINDS)})")
