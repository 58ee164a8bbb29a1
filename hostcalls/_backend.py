"""The storage backend interface, and how a backend is chosen by name.

A :class:`Backend` is one peer's storage: a tree of directories and files
under a root, addressed by the component tuples :func:`parse_path` returns.
The host calls (:class:`~peerbox.hostcalls.Dispatch`) only ever talk to this
interface, so a new kind of storage (S3, a distributed KV) is a new subclass
plus one row of :data:`~peerbox.hostcalls._open.REGISTRY`, with no change to the
host calls.

The semantics every backend implements (the conformance suite in
``tests/hostcalls`` checks them against each one):

* paths go through :func:`~peerbox.hostcalls._paths.parse_path` first
  (``()`` is the root);
* **parents are never created implicitly**: writing or appending ``a/b.txt``
  needs the directory ``a`` to exist (else ``not_found`` "no such directory:
  'a'"); only :meth:`Backend.mkdir` creates directories, and it creates the
  missing parents too and accepts an existing directory;
* a path component that is a file where a directory is needed gives
  ``not_a_directory``; a file operation on a directory gives
  ``is_a_directory``; deleting a non-empty directory gives
  ``invalid_argument``; deleting the root gives ``invalid_path``;
* writes and appends are atomic: afterwards the file holds the old content
  or the new, never a mix, whatever crashes;
* quotas are checked before anything changes: ``quota_exceeded`` means
  nothing changed;
* the same request gives the same result, error kind *and* message, on
  every backend (messages come from :mod:`peerbox.hostcalls._errors`);
* every method is thread-safe: one backend object serves all the runs of
  its peer in a process, on any thread. Open one backend per peer per
  process; several processes may open the same storage at once
  (``peerbox serve --workers N``): each change is serialised across them
  and the usage tally is shared (SQLite: one transaction per change; file
  system: an ``flock`` on the storage's state file, see
  :mod:`peerbox.hostcalls._fs`), so quotas hold for all of them together.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from peerbox._errors import UsageError

from ._accounts import SharedAccounts
from ._errors import HostCallError
from ._limits import Quotas

if TYPE_CHECKING:
    from ._recstore import RecordStore
    from ._schema import Schema

__all__ = ["Stat", "Backend", "StorageConfigError", "StorageSite"]


class StorageConfigError(UsageError):
    """A ``[storage]`` table (or a backend setting from the environment) that does not configure a
    backend; the message names the key or the variable."""


@dataclass(frozen=True, slots=True)
class StorageSite:
    """Where a peer's storage goes when its config does not say: ``location``, the local path of
    the fs/sqlite backends (``<peer dir>/files`` or ``storage.sqlite``), and ``name``, a stable
    name of the peer for shared storage (its did: the s3 backend's default key prefix), and
    ``accounts``, the quota stores shared by the workers of a deployment (None: this process
    counts alone; see :mod:`peerbox.hostcalls._accounts`)."""

    location: Path
    name: str
    accounts: SharedAccounts | None = None


class Stat(NamedTuple):
    """What ``fs::stat`` reports: ``size`` in bytes (0 for a directory),
    ``is_dir``, and ``modified`` as whole Unix seconds."""

    size: int
    is_dir: bool
    modified: int


class Backend(abc.ABC):
    """One peer's storage. Every method raises ``HostCallError`` to refuse.

    Arguments named ``path`` are strings as the script wrote them; each
    method parses them with the shared path rules (``invalid_path`` /
    ``invalid_argument`` refusals). ``io_error`` reports an unexpected failure
    of the storage itself (its message never names a host path).
    """

    #: The name :func:`open_backend` knows this backend by.
    kind: str = ""
    #: Whether the peer's records (``db::``) live in this storage (:meth:`records`); False: in
    #: ``records.sqlite`` beside it (:class:`~peerbox.hostcalls.Records`).
    keeps_records: bool = False

    def __init__(self, quotas: Quotas | None = None) -> None:
        self.quotas = quotas if quotas is not None else Quotas()

    def records(self, schema: Schema, text: str | None = None) -> RecordStore:
        """The peer's records under ``schema`` kept in this storage (see :attr:`keeps_records`).
        Raises :class:`HostCallError` (``unsupported`` here: this storage keeps none)."""
        raise HostCallError("unsupported", f"the {self.kind} storage keeps no records of its own")

    @abc.abstractmethod
    def read_bytes(self, path: str) -> bytes:
        """The content of the file ``path`` (at most ``quotas.max_file_size`` bytes)."""

    @abc.abstractmethod
    def write_bytes(self, path: str, data: bytes) -> None:
        """Replace (or create) the file ``path`` with ``data``, atomically."""

    @abc.abstractmethod
    def append_bytes(self, path: str, data: bytes) -> int:
        """Append ``data`` to the file ``path`` (created if missing), atomically.

        Returns the file's new size.
        """

    @abc.abstractmethod
    def list_dir(self, path: str) -> list[str]:
        """The names in the directory ``path``, sorted (``""`` is the root)."""

    @abc.abstractmethod
    def exists(self, path: str) -> bool:
        """True if an entry is at ``path``; False if nothing is, or a component
        on the way is missing or not a directory (or, on the file system, a
        symlink: it is not followed). On the file system "an entry" includes
        the symlinks and special files other operations refuse (the name is
        inside the root; nothing is learnt about a link's target)."""

    @abc.abstractmethod
    def delete(self, path: str) -> None:
        """Delete the file, or the *empty* directory, at ``path``."""

    @abc.abstractmethod
    def mkdir(self, path: str) -> None:
        """Create the directory ``path`` and any missing parents; no-op if it exists."""

    @abc.abstractmethod
    def stat(self, path: str) -> Stat:
        """Size, kind and modification time of ``path``."""

    @abc.abstractmethod
    def usage(self) -> tuple[int, int]:
        """``(bytes, entries)`` currently stored, as counted against the quotas."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the backend's descriptors or connections. Idempotent; later
        calls refuse with ``io_error``."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
