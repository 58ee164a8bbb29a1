"""Where a peer's worker looks up and records revoked capability tokens (an interface and its default).

:class:`Revocations` is what the trust path needs: whether a token id is
revoked, and recording one (a ``peerbox/revoke`` request,
:mod:`peerbox.trust._revoke`). :class:`LocalRevocations`, the default, is
today's behaviour on one machine: every local peer's ``revoked.json`` is
consulted (an issuer records its revocations in its own directory) and a
revocation sent to a peer is written to that peer's file. A worker sharing
state with others (``peerbox serve --state nats://...``) is given a shared
implementation instead (:mod:`peerbox.net._jsstores`: a JetStream key-value
bucket, checked together with the local files).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ..peer import Peer
from ..wire import REVOCATION_FILE, RevocationList

__all__ = ["Revocations", "LocalRevocations"]


class Revocations(Protocol):
    """A set of revoked token ids (:func:`~peerbox.wire.token_id`)."""

    def is_revoked(self, tid: bytes) -> bool:
        """Whether the token with id ``tid`` is revoked. Raises
        :class:`~peerbox.wire.CapabilityError` or another :class:`~peerbox.Error` when the
        record cannot be read (never "not revoked" for "do not know")."""
        ...

    def revoke_id(self, tid: bytes) -> bool:
        """Record ``tid`` as revoked (durably, before returning); ``True`` if it already was.
        Raises :class:`~peerbox.Error` (or ``OSError`` for a local file) when it cannot be recorded."""
        ...


class LocalRevocations:
    """The revocation lists of the local peers: ``own`` (the peer requests are for: revocations sent
    to it are written to its ``revoked.json``) and every peer ``peers()`` lists (a token revoked by
    any local issuer is refused). Reads re-read a file only when it changed."""

    def __init__(self, own: Path, peers: Callable[[], dict[str, Peer]]) -> None:
        self._own = RevocationList(own / REVOCATION_FILE)
        self._peers = peers
        self._lists: dict[Path, RevocationList] = {}

    def _list(self, directory: Path) -> RevocationList:
        found = self._lists.get(directory)
        if found is None:
            found = self._lists[directory] = RevocationList(directory / REVOCATION_FILE)
        return found

    def is_revoked(self, tid: bytes) -> bool:
        """Revoked in any local peer's list. Raises :class:`~peerbox.wire.CapabilityError` for a
        list that does not parse."""
        return any(self._list(p.paths.dir).is_revoked(tid) for p in self._peers().values())

    def revoke_id(self, tid: bytes) -> bool:
        """Write ``tid`` to the own peer's list; ``True`` if it was there already. Raises
        :class:`~peerbox.wire.CapabilityError` (unreadable list) or ``OSError`` (cannot write)."""
        already = self._own.is_revoked(tid)
        self._own.revoke_id(tid)
        return already
