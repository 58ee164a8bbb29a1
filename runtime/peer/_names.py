"""Who a did is, here: a caller's name from the local peers, then the directory (``peers.toml``).

A worker names each verified caller once per request: the name is what the
script reads as ``caller.name`` and what a policy's ``who = "carol"``
matches. Peers under the same root are named by their local name; a peer on
another machine by its entry in the root's directory::

    [peers.carol]                   # peerbox directory add carol DID   (no URL: a caller only)
    did = "did:key:z6Mk..."

The rules, in order:

* a local peer's name wins;
* otherwise the did's directory entries, by name; the first that is not
  *in conflict* (a name that is also a local peer's, with another did: only
  the local peer has it) names the did;
* a did with several directory names is known by the first; the others are
  *shadowed*: no caller is ever named by them, so a rule naming one matches
  nobody (:meth:`PeerNames.resolve` says so, for ``policy check``).

A broken ``peers.toml`` never fails a request: it is logged (once per
distinct problem) and naming falls back to the local peers; ``policy check``
reports the file. Because the directory now decides who a name is, whoever
may edit ``peers.toml`` moves the rights granted to its names: protect it
like ``policy.toml`` (see the README).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from ._directory import CorruptDirectory, Directory, Entry
from ._peers import Peer, PeerStore

__all__ = ["Known", "NameResolution", "PeerNames"]

_log = logging.getLogger(__name__)

Source = Literal["local", "directory", "none"]
Resolution = Literal["local", "directory", "local+directory", "none", "conflict", "shadowed"]


@dataclass(frozen=True, slots=True)
class Known:
    """What a did is called here: ``name`` (None: unknown) and where it came from (``source``)."""

    did: str
    name: str | None
    source: Source


@dataclass(frozen=True, slots=True)
class NameResolution:
    """What a name in a policy means here: the ``did`` of the callers it matches (None: none),
    how it resolved (``source``), and a ``note`` for ``policy check``/``explain`` when the
    name matches nobody or is ambiguous (None when it resolved cleanly)."""

    name: str
    did: str | None
    source: Resolution
    note: str | None = None


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """The names derived from one version of the local peers and of ``peers.toml``."""

    index: Mapping[str, Peer]               # the store's index this was built from (compared by identity)
    entries: tuple[Entry, ...] | None       # the directory's entries (None: unreadable)
    by_did: dict[str, Known]
    local: dict[str, str]                   # local name -> did
    listed: dict[str, Entry]                # directory name -> entry


def _build(index: Mapping[str, Peer], entries: tuple[Entry, ...] | None) -> _Snapshot:
    by_did = {did: Known(did, peer.name, "local") for did, peer in index.items()}
    local = {peer.name: did for did, peer in index.items()}
    listed: dict[str, Entry] = {}
    for entry in entries or ():
        listed[entry.name] = entry
        if entry.did in by_did:
            continue  # a local peer, or a did already named by an earlier entry
        if entry.name in local:
            continue  # in conflict with the local peer of that name: only the local peer has it
        by_did[entry.did] = Known(entry.did, entry.name, "directory")
    return _Snapshot(index=index, entries=entries, by_did=by_did, local=local, listed=listed)


class PeerNames:
    """Names of dids under one root: :meth:`of_did` for callers, :meth:`resolve` for policy names.

    Thread-safe. The names are rebuilt when the store's peer index or the
    directory's entries change; both are checked at most every ``ttl``
    seconds of ``clock``, and at once for a did not known yet, so a peer
    added locally or to ``peers.toml`` is named from the next request on
    (a removed one may keep its name for up to ``ttl``). Errors reading the
    local peers propagate (:class:`~peerbox.peer.PeerError`); a broken
    ``peers.toml`` does not (see the module's docstring).
    """

    def __init__(self, store: PeerStore, directory: Directory | None = None, *, ttl: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.directory = directory if directory is not None else Directory(store.root)
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._snap: _Snapshot | None = None
        self._checked = float("-inf")
        self._reported: str | None = None  # the directory problem logged last

    def _entries(self) -> tuple[Entry, ...] | None:
        try:
            entries = self.directory.entries()
        except CorruptDirectory as exc:
            message = str(exc)
            if message != self._reported:
                self._reported = message
                _log.warning("peer names: ignoring the directory, only local peers are named: %s", message)
            return None
        self._reported = None
        return entries

    def _current(self, force: bool) -> _Snapshot:
        now = self.clock()
        snap = self._snap
        if snap is not None and not force and now - self._checked < self.ttl:
            return snap
        with self._lock:
            index = self.store.index()
            entries = self._entries()
            snap = self._snap
            if snap is None or snap.index is not index or snap.entries is not entries:
                snap = _build(index, entries)
                self._snap = snap
            self._checked = now
            return snap

    def of_did(self, did: str) -> Known:
        """What ``did`` is called here (``Known.name`` None: nothing names it)."""
        known = self._current(False).by_did.get(did)
        if known is None:
            known = self._current(True).by_did.get(did)
        return known if known is not None else Known(did, None, "none")

    def resolve(self, name: str) -> NameResolution:
        """Which callers ``who = name`` matches here, and how the name resolved (see the class)."""
        snap = self._current(True)
        local = snap.local.get(name)
        entry = snap.listed.get(name)
        if local is not None:
            if entry is None:
                return NameResolution(name, local, "local")
            if entry.did == local:
                return NameResolution(name, local, "local+directory")
            return NameResolution(name, local, "conflict",
                                  f'"{name}" is the local peer {name} ({local}) and peers.toml names '
                                  f"{entry.did} for it: only the local peer matches")
        if entry is not None:
            known = snap.by_did.get(entry.did)
            if known is not None and known.name == name:
                return NameResolution(name, entry.did, "directory")
            other = known.name if known is not None else None
            return NameResolution(name, entry.did, "shadowed",
                                  f'"{name}" is peers.toml\'s second name for a did known as "{other}": '
                                  f'callers with that did are named "{other}", so a rule naming '
                                  f'"{name}" never matches')
        return NameResolution(name, None, "none",
                              f'"{name}" names no local peer and no peers.toml entry: the rule matches no '
                              f"caller (peerbox directory add {name} DID)")
