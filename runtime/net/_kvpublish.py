"""A worker's published names (``serve --state URL --publish``), kept alive while it serves.

:class:`Publication` announces each hosted peer in the shared directory at
start-up (:meth:`~peerbox.net._kvdirectory.KvDirectory.publish`: this
process's own worker record plus a claim on the name), then refreshes them
on a thread of its own every third of the TTL (``--publish-ttl``, default
:data:`~peerbox.net._kvrecords.DEFAULT_PUBLISH_TTL` s), and on a clean stop
(SIGTERM, SIGINT: :meth:`Publication.stop`) removes this process's records,
and the name with them when no other worker of the peer is left. A worker
that dies without stopping (SIGKILL, a crash, a lost machine) stops
refreshing: the NATS server removes its record once the TTL has passed, and
lookups stop giving its URL out.

Every process of ``serve --workers N`` publishes on its own (one worker
record each), so one stopping never removes another's.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence

from ..peer import Entry
from ._jetstream import JetStreamState, SharedStateError
from ._kvdirectory import DirectoryConflict, KvDirectory
from ._kvrecords import DEFAULT_PUBLISH_TTL
from ._natsbridge import display_url

__all__ = ["Publication", "publish_hosted"]

log = logging.getLogger("peerbox.state")


class Publication:
    """The names one worker process publishes, for ``ttl`` s at a time (see the module docstring).

    ``peers``: ``(name, did)`` of each hosted peer; ``url``: where the
    worker is reached (its ``--listen nats://`` URL without credentials;
    None: the entries have no URL); ``label``: the worker's name, shown by
    ``directory list --state``. :meth:`start` raises
    :class:`~peerbox.net._kvdirectory.DirectoryConflict` and
    :class:`~peerbox.net._jetstream.SharedStateError`; the heartbeat and
    :meth:`stop` log what fails and never raise.
    """

    def __init__(self, state: JetStreamState, peers: Sequence[tuple[str, str]], url: str | None, *,
                 ttl: float = DEFAULT_PUBLISH_TTL, label: str = "") -> None:
        self.directory = KvDirectory(state)
        self.peers = list(peers)
        self.url = url
        self.ttl = float(ttl)
        self.label = label
        #: this process's own key suffix: 32 random hex digits
        self.worker_id = uuid.uuid4().hex
        self.published: list[Entry] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def interval(self) -> float:
        """Seconds between two heartbeats: a third of the TTL."""
        return self.ttl / 3

    def _publish(self, name: str, did: str) -> Entry:
        return self.directory.publish(name, did, self.url, worker_id=self.worker_id, label=self.label,
                                      ttl=self.ttl)

    def start(self) -> list[Entry]:
        """Publish every peer, then start the heartbeat. On a failure what was published is
        withdrawn before the error is raised."""
        try:
            for name, did in self.peers:
                self.published.append(self._publish(name, did))
        except (DirectoryConflict, SharedStateError):
            self._withdraw()
            raise
        for entry in self.published:
            log.info("published %s = %s%s in %s (TTL %g s, refreshed every %.3g s)", entry.name, entry.did,
                     f" at {entry.url}" if entry.url else "", self.directory.where, self.ttl, self.interval)
        self._thread = threading.Thread(target=self._run, name="directory heartbeat", daemon=True)
        self._thread.start()
        return self.published

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        """Refresh every published name once (what fails is logged: the next beat tries again)."""
        for entry in self.published:
            if self._stop.is_set():
                return
            try:
                self._publish(entry.name, entry.did)
            except DirectoryConflict as exc:
                log.error("directory heartbeat: %s", exc)
            except SharedStateError as exc:
                log.warning("directory heartbeat for %s: %s", entry.name, exc)

    def _withdraw(self) -> None:
        for entry in self.published:
            try:
                gone = self.directory.withdraw(entry.name, entry.did, worker_id=self.worker_id)
            except SharedStateError as exc:
                log.warning("withdrawing %s from %s: %s (the server removes it after %g s)", entry.name,
                            self.directory.where, exc, self.ttl)
                continue
            log.info("withdrew %s from %s%s", entry.name, self.directory.where,
                     "" if gone else " (other workers still publish it)")
        self.published = []

    def stop(self) -> None:
        """Stop the heartbeat and withdraw what was published (a clean stop). Idempotent."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.directory.state.timeout * 4 + 1)
        self._withdraw()


def publish_hosted(state: JetStreamState, peers: Sequence[tuple[str, str]], nats_url: str | None, *,
                   ttl: float = DEFAULT_PUBLISH_TTL, label: str = "") -> Publication:
    """A worker's announcement (``serve --state URL --publish``): each hosted ``(name, did)`` in the
    shared directory, at ``nats_url`` (its ``--listen nats://`` URL, without credentials) if it has
    one, else without a URL (known by name, reached some other way), kept alive until
    :meth:`Publication.stop`. Raises :class:`DirectoryConflict` for a name the directory gives to
    another did (nothing stays published), and :class:`SharedStateError`."""
    url = None if nats_url is None else display_url(nats_url)
    publication = Publication(state, peers, url, ttl=ttl, label=label)
    publication.start()
    return publication
