"""The registry of storage backends: a table of name -> factory, and opening one from its config.

:mod:`peerbox.hostcalls._backend` defines the interface and each backend
module (``_fs``, ``_sqlite``, ``_s3``) implements it; this module sits above
them all, so the interface never imports its implementations (no cycle) and
adding a backend is one row of :data:`REGISTRY`.

A peer chooses its backend in ``peer.toml``::

    [storage]
    backend = "s3"            # a name in REGISTRY: "fs", "sqlite" or "s3"
    bucket = "peerbox"        # then the backend's own keys (s3: bucket, prefix, endpoint, region,
    endpoint = "http://127.0.0.1:8333"   #   access_key_env, secret_key_env)

Each row names the keys its backend accepts, so a misspelt key, a key of
another backend or a credential written into the file is refused with a
message naming the key (:class:`StorageConfigError`, a
:class:`~peerbox.UsageError`: exit 2 on the CLI), before anything is opened.

Why a table and not Python entry points: the set of backends is part of
peerbox's security surface (a backend sees every byte a peer stores), so
what can be named in ``peer.toml`` is decided by peerbox's own source, not
by whatever distribution happens to be installed beside it; a table is also
free at import time (entry points scan every installed distribution's
metadata, ~10-50 ms at each ``peerbox`` start). A backend whose client
library is optional (s3: ``obstore``) is imported only when a peer uses it.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from ._backend import Backend, StorageConfigError, StorageSite
from ._fs import FsBackend
from ._limits import Quotas
from ._sqlite import SqliteBackend

__all__ = [
    "open_backend",
    "open_storage",
    "check_storage",
    "BACKEND_KINDS",
    "REGISTRY",
    "BackendEntry",
    "StorageSite",
    "StorageConfigError",
]


#: ``open(options, site, quotas, environ) -> Backend``: ``options`` is the ``[storage]`` table
#: without ``backend`` (already checked against the row's keys).
Factory = Callable[[Mapping[str, object], StorageSite, Quotas, Mapping[str, str]], Backend]


@dataclass(frozen=True, slots=True)
class BackendEntry:
    """One row of the registry: the backend's ``kind``, the ``keys`` its ``[storage]`` table may
    set besides ``backend`` (each with the Python type its value must have), and ``open``."""

    kind: str
    keys: Mapping[str, type]
    open: Factory


def _open_fs(options: Mapping[str, object], site: StorageSite, quotas: Quotas,
             environ: Mapping[str, str]) -> Backend:
    return FsBackend(site.location, quotas)


def _open_sqlite(options: Mapping[str, object], site: StorageSite, quotas: Quotas,
                 environ: Mapping[str, str]) -> Backend:
    return SqliteBackend(site.location, quotas)


def _open_s3(options: Mapping[str, object], site: StorageSite, quotas: Quotas,
             environ: Mapping[str, str]) -> Backend:
    """The s3 backend, imported here: its client library (obstore) is an optional dependency."""
    try:
        module = importlib.import_module("._s3", __package__)
    except ImportError as exc:
        raise StorageConfigError(
            "[storage] backend = \"s3\" needs the S3 client library obstore: "
            "pip install 'peerbox[s3]'"
        ) from exc
    opener: Factory = module.open_s3
    return opener(options, site, quotas, environ)


#: Every storage backend a peer can name, by ``[storage] backend``. Read-only.
REGISTRY: Mapping[str, BackendEntry] = MappingProxyType({
    "fs": BackendEntry("fs", {}, _open_fs),
    "sqlite": BackendEntry("sqlite", {}, _open_sqlite),
    "s3": BackendEntry(
        "s3",
        {"bucket": str, "prefix": str, "endpoint": str, "region": str,
         "access_key_env": str, "secret_key_env": str},
        _open_s3,
    ),
})

#: The names of the registered backends, in the registry's order.
BACKEND_KINDS: tuple[str, ...] = tuple(REGISTRY)

#: Keys that would put a secret into peer.toml: refused with a pointer to the environment.
_SECRET_KEYS = frozenset({
    "access_key", "secret_key", "access_key_id", "secret_access_key", "aws_access_key_id",
    "aws_secret_access_key", "session_token", "aws_session_token", "password", "token",
})


def _unknown_kind(kind: object) -> StorageConfigError:
    return StorageConfigError(
        f"unknown storage backend {kind!r} (choose one of: {', '.join(BACKEND_KINDS)})"
    )


def check_storage(table: Mapping[str, object]) -> tuple[BackendEntry, dict[str, object]]:
    """The registry row and options of a ``[storage]`` table, checked without opening anything.

    ``table`` must name ``backend`` (a registered kind) and may set only that
    backend's keys, each of its type. Raises :class:`StorageConfigError`
    naming the offending key: an unknown backend, a key the backend does not
    take (with the keys it does), a value of the wrong type, or a credential
    (credentials come from the environment, never from ``peer.toml``).
    """
    kind = table.get("backend")
    if not isinstance(kind, str) or kind not in REGISTRY:
        if kind is None:
            raise StorageConfigError("[storage] needs 'backend' (one of: " + ", ".join(BACKEND_KINDS) + ")")
        raise _unknown_kind(kind)
    entry = REGISTRY[kind]
    options: dict[str, object] = {}
    for key, value in table.items():
        if key == "backend":
            continue
        if key.lower() in _SECRET_KEYS:
            raise StorageConfigError(
                f"[storage] {key!r}: credentials are never stored in peer.toml; set them in the "
                "environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the variables named "
                "by access_key_env and secret_key_env)"
            )
        wanted = entry.keys.get(key)
        if wanted is None:
            takes = ", ".join(entry.keys) if entry.keys else "no other keys"
            raise StorageConfigError(
                f"[storage] {key!r} is not a setting of the {kind!r} backend (it takes: {takes})"
            )
        if not isinstance(value, wanted):
            raise StorageConfigError(
                f"[storage] {key!r} must be a {'string' if wanted is str else wanted.__name__}, "
                f"not {type(value).__name__}"
            )
        options[key] = value
    return entry, options


def open_storage(table: Mapping[str, object], site: StorageSite, quotas: Quotas | None = None,
                 environ: Mapping[str, str] | None = None) -> Backend:
    """Open the backend a ``[storage]`` table configures, for the peer at ``site``.

    ``environ`` (default ``os.environ``) is where credentials are looked up.
    Raises :class:`StorageConfigError` for a table :func:`check_storage`
    refuses or a backend setting that is missing or malformed (naming the key
    or the environment variable), and :class:`peerbox.Error` when the storage
    cannot be opened (that message may name the host location: it is for the
    operator, not for a script).
    """
    entry, options = check_storage(table)
    return entry.open(options, site, quotas if quotas is not None else Quotas(),
                      environ if environ is not None else os.environ)


def open_backend(kind: str, location: str | os.PathLike[str], quotas: Quotas | None = None) -> Backend:
    """Open the ``kind`` backend at ``location`` with ``quotas`` (default :class:`Quotas`).

    For the backends that live at a local path: ``"fs"`` (``location`` is the
    root directory, created 0700 if missing) and ``"sqlite"`` (``location``
    is the database file, created if missing). Raises
    :class:`peerbox.UsageError` for an unknown kind or one that needs more
    settings than a location (``"s3"``: use :func:`open_storage`), and
    :class:`peerbox.Error` if the storage cannot be opened.
    """
    if kind not in ("fs", "sqlite"):
        if kind in REGISTRY:
            raise StorageConfigError(
                f"the {kind!r} backend needs its [storage] settings, not a location: use open_storage"
            )
        raise _unknown_kind(kind)
    return open_storage({"backend": kind}, StorageSite(Path(os.fspath(location)), ""), quotas)
