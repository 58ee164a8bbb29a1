"""The directory shared through JetStream: ``peerbox directory ... --state nats://HOST:PORT``, the
names workers publish (``serve --state URL --publish``, kept alive by :mod:`._kvpublish`), and the
client's fallback.

- :class:`KvDirectory`: ``add``/``remove``/``listing``/``get`` on the
  ``peerbox-directory`` bucket (records: :mod:`._kvrecords`) with the rules
  of ``peers.toml`` (:class:`~peerbox.peer.Directory`): the same name, did and
  URL validation, the same errors (:class:`~peerbox.peer.EntryExists`
  without ``replace``, :class:`~peerbox.peer.UnknownPeer`...), and
  :meth:`KvDirectory.publish`/:meth:`KvDirectory.withdraw`, a worker's
  record of its own plus a compare-and-set claim on the name.
- A name is **static** (an operator's ``directory add``: used as written,
  never expires unless given a TTL), **live** (published, and at least one
  worker record of its did is there: a lookup picks one of their URLs) or
  **stale** (published, no worker record left: every worker stopped
  refreshing; a lookup raises :class:`NoLiveWorker`, exit 7 as for a peer
  that cannot be reached, and another did may take the name).
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
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass

from ..peer import (CorruptDirectory, Directory, Entry, EntryExists, InvalidEntry, InvalidPeerName,
                    UnknownPeer, validate_peer_name, validate_url)
from ..wire import IdentityError, public_key_from_did
from ._client_errors import TransportError
from ._jetstream import DIRECTORY_BUCKET, JetStreamState
from ._kvrecords import Record, RecordStore, claim_ttl, is_worker_key

__all__ = ["KvDirectory", "SharedDirectory", "DirectoryConflict", "NoLiveWorker", "Listed", "ENV_STATE",
           "shared_directory"]

#: The environment variable ``--state`` defaults to (``directory``, ``send``, ``call``).
ENV_STATE = "PEERBOX_STATE"

#: How many times a compare-and-set that lost a race is tried again.
_CAS_TRIES = 5
#: How long the purge marker of a removed worker record stays (seconds).
_PURGE_TTL = 60.0


class DirectoryConflict(EntryExists):
    """A worker publishing a name the shared directory gives to another did (exit 2): two different
    peers cannot share one name on a lattice."""


class NoLiveWorker(TransportError):
    """A published name whose workers all stopped refreshing their records (exit 7, as for a peer
    that cannot be reached): no URL is given out rather than a dead one."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="connect")


@dataclass(frozen=True, slots=True)
class Listed:
    """A name as ``directory list --state`` shows it: ``state`` ``static``, ``live`` or ``stale``;
    ``urls`` the distinct URLs of its live workers (a static entry: its own, if any); ``workers``
    how many live worker records; ``ttl`` the publishers' TTL (None: static)."""

    name: str
    did: str
    state: str
    urls: tuple[str, ...]
    workers: int
    ttl: float | None

    @property
    def url(self) -> str | None:
        """The URL a lookup would give (of several, the first): None for none."""
        return self.urls[0] if self.urls else None


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


def _valid_url(url: str) -> bool:
    try:
        validate_url(url)
    except InvalidEntry:
        return False
    return True


class KvDirectory:
    """The shared directory on an open :class:`JetStreamState` (the caller owns and closes it).

    Every method raises :class:`~peerbox.net._jetstream.SharedStateError` (exit 7) when JetStream
    does not answer, and the :class:`~peerbox.peer.DirectoryError` subclasses (exit 2) named on each.
    """

    def __init__(self, state: JetStreamState) -> None:
        self.state = state
        self.store = RecordStore(state)

    @property
    def where(self) -> str:
        """How messages name this directory: the server (no credentials) and the bucket."""
        return f"{self.state.shown} (bucket {DIRECTORY_BUCKET})"

    def _entry(self, name: str, did: str, url: str | None) -> Entry:
        try:
            return _checked(name, did, url or None)
        except InvalidEntry as exc:
            raise CorruptDirectory(f"{self.where}: entry {name!r}: {exc}") from exc

    # -- reading -------------------------------------------------------------------------------

    def _listed(self, record: Record, workers: list[Record]) -> Listed:
        """``record`` (a name record) with the worker records under its name."""
        ttl = record.live_ttl
        if ttl is None:
            return Listed(record.key, record.did, "static", (record.url,) if record.url else (), 0, None)
        live = [w for w in workers if w.did == record.did and not w.stopping]
        urls = tuple(dict.fromkeys(w.url for w in live if w.url and _valid_url(w.url)))
        return Listed(record.key, record.did, "live" if live else "stale", urls, len(live), ttl)

    def listing(self) -> list[Listed]:
        """Every name, by name, with its state (stale ones too: :meth:`list` leaves them out).
        Raises :class:`~peerbox.peer.CorruptDirectory` for a name record that is not a valid entry
        (someone wrote the bucket by hand); a worker record that is not valid is ignored."""
        records = self.store.scan(">")
        workers: dict[str, list[Record]] = {}
        for r in records:
            if is_worker_key(r.key):
                workers.setdefault(r.key.split(".", 1)[0], []).append(r)
        out = []
        for r in records:
            if not is_worker_key(r.key):
                self._entry(r.key, r.did, r.url)  # validated
                out.append(self._listed(r, workers.get(r.key, [])))
        return out

    def list(self) -> list[Entry]:
        """Every entry a lookup can give (static and live names), by name."""
        return [self._entry(x.name, x.did, x.url) for x in self.listing() if x.state != "stale"]

    def _no_live(self, listed: Listed) -> NoLiveWorker:
        return NoLiveWorker(
            f"no live worker for {listed.name} in {self.where}: it was published ({listed.did}) but no "
            f"worker has refreshed its entry within the last {listed.ttl:g} s (stopped or unreachable)")

    def _pick(self, listed: Listed) -> Entry:
        """The entry a lookup of ``listed`` gives: a live worker's URL (any one), the static URL.
        Raises :class:`NoLiveWorker` for a stale name."""
        if listed.state == "stale":
            raise self._no_live(listed)
        url = random.choice(listed.urls) if listed.urls else None
        return self._entry(listed.name, listed.did, url)

    def lookup(self, name: str) -> Listed | None:
        """The name ``name`` with its state, or None. Raises :class:`~peerbox.peer.CorruptDirectory`."""
        record = self.store.get(name)
        if record is None:
            return None
        self._entry(name, record.did, record.url)
        workers = [] if record.live_ttl is None else self.store.scan(f"{name}.*")
        return self._listed(record, workers)

    def get(self, name: str) -> Entry | None:
        """The entry ``name`` (of a published name, one live worker's URL), or None. Raises
        :class:`NoLiveWorker` for a stale name and :class:`~peerbox.peer.CorruptDirectory`."""
        listed = self.lookup(name)
        return None if listed is None else self._pick(listed)

    def find(self, name_or_did: str) -> Entry | None:
        """The entry of a name, or the first (by name) with a ``did:key`` that a lookup can give;
        None if none. Raises :class:`NoLiveWorker` when the only ones are stale."""
        if not name_or_did.startswith("did:"):
            try:
                validate_peer_name(name_or_did)
            except InvalidPeerName:
                return None  # not a key the bucket can hold
            return self.get(name_or_did)
        key = _key_of(name_or_did)
        matching = [x for x in self.listing() if _key_of(x.did) == key]
        usable = [x for x in matching if x.state != "stale"]
        if usable:
            return self._pick(usable[0])
        if matching:
            raise self._no_live(matching[0])
        return None

    # -- an operator's entries -----------------------------------------------------------------

    def add(self, name: str, did: str, url: str | None = None, *, replace: bool = False,
            ttl: float | None = None) -> Entry:
        """Add (``replace``: or change) ``name`` → ``did`` at ``url``, as
        :meth:`peerbox.peer.Directory.add` does: a static entry, kept until removed (with ``ttl``:
        removed by the server ``ttl`` s later). Raises :class:`InvalidEntry`, :class:`EntryExists`
        (``name`` is there with something else and not ``replace``)."""
        entry = _checked(name, did, url)
        doc = {"did": did, "url": entry.url or ""}
        for _ in range(_CAS_TRIES):
            found = self.store.get(name)
            if found is not None:
                if found.doc == doc and ttl is None:
                    return entry
                if not replace:
                    at = f" at {found.url}" if found.url else ""
                    kind = " (published by workers)" if found.live_ttl is not None else ""
                    raise EntryExists(f"{name!r} is already in {self.where} ({found.did}{at}){kind}; "
                                      "use --replace to change it")
            if self.store.write(name, doc, None if found is None else found.revision, ttl):
                return entry
        raise EntryExists(f"{name!r} in {self.where} keeps changing under this write; try again")

    def remove(self, name: str) -> Entry:
        """Remove ``name`` and the worker records under it, and return it. Raises
        :class:`UnknownPeer` when it is not there. (Workers still publishing it write it again at
        their next heartbeat: stop them to remove it for good.)"""
        found = self.store.get(name) if _is_name(name) else None
        if found is None or not self.store.delete(name):
            listed = ", ".join(x.name for x in self.listing()) or "none"
            raise UnknownPeer(f"no peer named {name!r} in {self.where} (listed: {listed})")
        for worker in self.store.scan(f"{name}.*"):
            self.store.purge(worker.key, _PURGE_TTL)
        return self._entry(name, found.did, found.url)

    # -- a worker's entries --------------------------------------------------------------------

    def publish(self, name: str, did: str, url: str | None, *, worker_id: str, label: str = "",
                ttl: float) -> Entry:
        """A worker announcing (or, every heartbeat, confirming) that it hosts ``name`` (``did``),
        reachable at ``url`` if given, for ``ttl`` s.

        Writes this worker's record ``name.<worker_id>`` (removed by the
        server unless written again within ``ttl`` s), then claims the name
        with a compare-and-set on its revision: created if missing, refreshed
        when it names the same did, taken over when it names another did none
        of whose workers is live (stale). A static entry of the same did is
        left as the operator wrote it. Raises :class:`DirectoryConflict` when
        the name belongs to another did (static, or published and live: the
        record is left alone, this worker's record removed) and
        :class:`InvalidEntry`.
        """
        entry = _checked(name, did, url)
        key = f"{name}.{worker_id}"
        mine = {"did": did, "url": entry.url or "", "worker": label}
        for _ in range(_CAS_TRIES):
            found = self.store.get(key)
            if self.store.write(key, mine, None if found is None else found.revision, ttl):
                break
        claim = {"did": did, "url": "", "live": ttl}
        for _ in range(_CAS_TRIES):
            found = self.store.get(name)
            if found is not None and found.did != did:
                holder = self._listed(found, [] if found.live_ttl is None else self.store.scan(f"{name}.*"))
                if holder.state != "stale":
                    self.store.purge(key, _PURGE_TTL)
                    at = f" at {', '.join(holder.urls)}" if holder.urls else ""
                    raise DirectoryConflict(
                        f"cannot publish {name!r} ({did}) in {self.where}: the name is taken by another "
                        f"peer, {found.did}{at} ({holder.state}); serve it under another name, or remove "
                        f"the entry (peerbox directory remove {name} --state ...) if it is wrong")
            elif found is not None and found.live_ttl is None:
                return entry  # the operator's entry for this did: left as written
            if self.store.write(name, claim, None if found is None else found.revision, claim_ttl(ttl)):
                return entry
        raise DirectoryConflict(f"{name!r} in {self.where} keeps changing under this publish; try again")

    def withdraw(self, name: str, did: str, *, worker_id: str) -> bool:
        """A worker stopping cleanly: mark its record stopping; when no other live worker of ``did``
        is left, remove the published name (compare-and-set: a worker that just claimed it again
        keeps it); then remove its record. ``True`` if the name went."""
        key = f"{name}.{worker_id}"
        found = self.store.get(key)
        if found is not None:
            self.store.write(key, {**found.doc, "stopping": True}, found.revision, _PURGE_TTL)
        try:
            if any(w.did == did and not w.stopping for w in self.store.scan(f"{name}.*")):
                return False
            claim = self.store.get(name)
            if claim is None or claim.did != did or claim.live_ttl is None:
                return False
            return self.store.delete(name, last=claim.revision)
        finally:
            self.store.purge(key, _PURGE_TTL)


def _is_name(name: str) -> bool:
    try:
        validate_peer_name(name)
    except InvalidPeerName:
        return False
    return True


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
    for two key-value round trips (at most ``timeout`` s each); the async
    client makes it on a worker thread. Raises what :meth:`Directory.resolve`
    raises, :class:`NoLiveWorker` (exit 7) for a published name none of whose
    workers is live, :class:`~peerbox.net._jetstream.SharedStateError` (exit
    7) when the shared directory must be asked and cannot be, and
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
        neither has it, :class:`NoLiveWorker` (and what :meth:`Directory.resolve` raises for a
        broken ``peers.toml``)."""
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
