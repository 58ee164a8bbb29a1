"""The directory shared through JetStream: ``peerbox directory ... --state nats://HOST:PORT``, the
names a worker publishes (``serve --state URL --publish``), and the client's fallback.

- :class:`KvDirectory`: ``add``/``remove``/``list``/``get`` on the
  ``peerbox-directory`` bucket with the rules of ``peers.toml``
  (:class:`~peerbox.peer.Directory`): the same name, did and URL
  validation, the same errors (:class:`~peerbox.peer.EntryExists` without
  ``replace``, :class:`~peerbox.peer.UnknownPeer`...), and :meth:`KvDirectory.publish`,
  a worker's compare-and-set on the record's revision.
- :class:`SharedDirectory`: a :class:`~peerbox.peer.Directory` that
  resolves a name in the local ``peers.toml`` first and in the shared
  bucket only when it is not there. Local first because a local entry is
  the user's own decision (who a name is, where it is reached); the shared
  bucket is what others announce. The client checks every reply against the
  did the entry names, so a hostile shared entry can make a call fail (it
  names a key that cannot sign for the real peer) but never make a forged
  reply verify.

An entry without a URL (a peer that only calls) is stored with ``url`` ``""``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence

from ..peer import (CorruptDirectory, Directory, Entry, EntryExists, InvalidEntry, InvalidPeerName,
                    UnknownPeer, validate_peer_name, validate_url)
from ..wire import IdentityError, public_key_from_did
from ._jetstream import DIRECTORY_BUCKET, JetStreamState
from ._jsstores import DirectoryEntry, JetStreamDirectory
from ._natsbridge import display_url

__all__ = ["KvDirectory", "SharedDirectory", "DirectoryConflict", "ENV_STATE", "publish_hosted",
           "shared_directory"]

log = logging.getLogger("peerbox.state")

#: The environment variable ``--state`` defaults to (``directory``, ``send``, ``call``).
ENV_STATE = "PEERBOX_STATE"

#: How many times :meth:`KvDirectory.publish` retries a compare-and-set that lost a race.
_CAS_TRIES = 5


class DirectoryConflict(EntryExists):
    """A worker publishing a name the shared directory gives to another did (exit 2): two different
    peers cannot share one name on a lattice."""


def _key_of(did: str) -> bytes:
    try:
        return public_key_from_did(did)
    except IdentityError as exc:
        raise InvalidEntry(str(exc)) from exc


def _checked(name: str, did: str, url: str | None) -> Entry:
    """``(name, did, url)`` as an :class:`Entry`, validated as ``peers.toml`` validates one. Raises
    :class:`InvalidEntry`."""
    try:
        validate_peer_name(name)
    except InvalidPeerName as exc:
        raise InvalidEntry(str(exc)) from exc
    key = _key_of(did)
    return Entry(name=name, did=did, public_key=key, url=None if url is None else validate_url(url))


class KvDirectory:
    """The shared directory on an open :class:`JetStreamState` (the caller owns and closes it).

    Every method raises :class:`~peerbox.net._jetstream.SharedStateError` (exit 7) when JetStream
    does not answer, and the :class:`~peerbox.peer.DirectoryError` subclasses (exit 2) named on each.
    """

    def __init__(self, state: JetStreamState) -> None:
        self.state = state
        self.store = JetStreamDirectory(state)

    @property
    def where(self) -> str:
        """How messages name this directory: the server (no credentials) and the bucket."""
        return f"{self.state.shown} (bucket {DIRECTORY_BUCKET})"

    def _entry(self, record: DirectoryEntry) -> Entry:
        try:
            return _checked(record.name, record.did, record.url or None)
        except InvalidEntry as exc:
            raise CorruptDirectory(f"{self.where}: entry {record.name!r}: {exc}") from exc

    def list(self) -> list[Entry]:
        """Every entry, by name. Raises :class:`~peerbox.peer.CorruptDirectory` for a record that is
        not a valid entry (someone wrote the bucket by hand)."""
        return [self._entry(r) for r in self.store.list()]

    def get(self, name: str) -> Entry | None:
        """The entry ``name``, or None. Raises :class:`~peerbox.peer.CorruptDirectory`."""
        found = self.store.get(name)
        return None if found is None else self._entry(found[0])

    def find(self, name_or_did: str) -> Entry | None:
        """The entry of a name, or the first (by name) with a ``did:key``; None if none."""
        if not name_or_did.startswith("did:"):
            try:
                validate_peer_name(name_or_did)
            except InvalidPeerName:
                return None  # not a key the bucket can hold
            return self.get(name_or_did)
        key = _key_of(name_or_did)
        return next((e for e in self.list() if e.public_key == key), None)

    def add(self, name: str, did: str, url: str | None = None, *, replace: bool = False) -> Entry:
        """Add (``replace``: or change) ``name`` → ``did`` at ``url``, as
        :meth:`peerbox.peer.Directory.add` does. Raises :class:`InvalidEntry`,
        :class:`EntryExists` (``name`` is there with something else and not ``replace``)."""
        entry = _checked(name, did, url)
        record = DirectoryEntry(name, did, entry.url or "")
        for _ in range(_CAS_TRIES):
            found = self.store.get(name)
            if found is not None:
                old = self._loose(found[0])
                if old == record:
                    return entry
                if not replace:
                    at = f" at {old.url}" if old.url else ""
                    raise EntryExists(f"{name!r} is already in {self.where} ({old.did}{at}); "
                                      "use --replace to change it")
            if self.store.write(record, None if found is None else found[1]):
                return entry
        raise EntryExists(f"{name!r} in {self.where} keeps changing under this write; try again")

    def remove(self, name: str) -> Entry:
        """Remove ``name`` and return it. Raises :class:`UnknownPeer` when it is not there."""
        found = self.store.get(name)
        if found is None or not self.store.remove(name):
            listed = ", ".join(e.name for e in self.store.list()) or "none"
            raise UnknownPeer(f"no peer named {name!r} in {self.where} (listed: {listed})")
        return self._entry(found[0])

    def publish(self, name: str, did: str, url: str | None) -> Entry:
        """A worker announcing that it hosts ``name`` (``did``), reachable at ``url`` if given.

        A compare-and-set on the record's revision: created if missing; left
        as it is when it names the same did and URL (or the same did and this
        worker has no URL to give: never erase where others reach the peer);
        its URL replaced when the did is the same. Raises
        :class:`DirectoryConflict` when the name belongs to another did (the
        record is left alone: which one is right is the operator's call) and
        :class:`InvalidEntry`.
        """
        entry = _checked(name, did, url)
        for _ in range(_CAS_TRIES):
            found = self.store.get(name)
            if found is not None:
                old = self._loose(found[0])
                if old.did != did:
                    raise DirectoryConflict(
                        f"cannot publish {name!r} ({did}) in {self.where}: the name is taken by another "
                        f"peer, {old.did}{' at ' + old.url if old.url else ''}; serve it under another "
                        f"name, or remove the entry (peerbox directory remove {name} --state ...) if it "
                        "is stale")
                if entry.url is None or old.url == entry.url:
                    return entry if entry.url is not None else self._entry(old)
            record = DirectoryEntry(name, did, entry.url or "")
            if self.store.write(record, None if found is None else found[1]):
                return entry
        raise DirectoryConflict(f"{name!r} in {self.where} keeps changing under this publish; try again")

    @staticmethod
    def _loose(record: DirectoryEntry) -> DirectoryEntry:
        """A stored record compared as written (a trailing ``/`` of its URL dropped)."""
        return DirectoryEntry(record.name, record.did, record.url.rstrip("/"))


@contextlib.contextmanager
def shared_directory(url: str, *, timeout: float = 5.0) -> Iterator[KvDirectory]:
    """The shared directory on the NATS server ``url``, connected for the block. Raises
    :class:`~peerbox.net._jetstream.SharedStateError` (exit 7) when it cannot be reached and
    :class:`~peerbox.UsageError` for a URL that is not ``nats://``."""
    with JetStreamState(url, timeout=timeout, connect_timeout=timeout, name="peerbox-directory") as state:
        yield KvDirectory(state)


class SharedDirectory(Directory):
    """``peers.toml`` under ``root`` first, then the shared directory at ``state`` (a ``nats://`` URL).

    Only :meth:`resolve` looks in the shared bucket (``add``, ``remove``,
    ``list`` are the local file's, as on :class:`~peerbox.peer.Directory`).
    The connection is opened on the first lookup that needs it, so a name
    found locally costs no NATS round trip and a NATS server down does not
    matter to it; :meth:`close` (or ``with``) ends it. A shared lookup blocks
    for one key-value round trip (at most ``timeout`` s); the async client
    makes it on a worker thread. Raises what :meth:`Directory.resolve` raises,
    :class:`~peerbox.net._jetstream.SharedStateError` (exit 7) when the
    shared directory must be asked and cannot be, and
    :class:`~peerbox.UsageError` for a ``state`` that is not a ``nats://`` URL.
    """

    def __init__(self, root: str | os.PathLike[str] | None, state: str, *, timeout: float = 5.0) -> None:
        super().__init__(root)
        self.shared_state = JetStreamState(state, timeout=timeout, connect_timeout=timeout,
                                           name="peerbox-directory")
        self._shared: KvDirectory | None = None

    def __repr__(self) -> str:
        return f"SharedDirectory({str(self.path)!r}, {self.shared_state.shown!r})"

    def shared(self) -> KvDirectory:
        """The shared directory, connected on first use. Raises
        :class:`~peerbox.net._jetstream.SharedStateError`."""
        if self._shared is None:
            self.shared_state.open()
            self._shared = KvDirectory(self.shared_state)
        return self._shared

    def resolve(self, name_or_did: str) -> Entry:
        """The local entry, else the shared one. Raises :class:`UnknownPeer` naming both places when
        neither has it (and what :meth:`Directory.resolve` raises for a broken ``peers.toml``)."""
        try:
            return super().resolve(name_or_did)
        except UnknownPeer as local:
            shared = self.shared()
            found = shared.find(name_or_did)
            if found is None:
                raise UnknownPeer(f"{local}; nor in the shared directory {shared.where}") from None
            return found

    def close(self) -> None:
        """Close the NATS connection if one was opened. Idempotent."""
        self.shared_state.close()

    def __enter__(self) -> SharedDirectory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def publish_hosted(state: JetStreamState, peers: Sequence[tuple[str, str]],
                   nats_url: str | None) -> list[Entry]:
    """A worker's start-up announcement (``serve --state URL --publish``): each hosted ``(name, did)``
    in the shared directory, at ``nats_url`` (its ``--listen nats://`` URL, without credentials) if it
    has one, else without a URL (known by name, reached some other way). Returns the entries as
    published. Raises :class:`DirectoryConflict` for a name the directory gives to another did
    (what was published before it stays: the same peers, so harmless), and
    :class:`~peerbox.net._jetstream.SharedStateError`."""
    url = None if nats_url is None else display_url(nats_url)
    directory = KvDirectory(state)
    published = [directory.publish(name, did, url) for name, did in peers]
    for entry in published:
        log.info("published %s = %s%s in %s", entry.name, entry.did,
                 f" at {entry.url}" if entry.url else "", directory.where)
    return published
