"""The peers' logic modules shared by every worker hosting them (``peerbox serve --state``).

A logic change one worker accepts (a ``peerbox/logic`` set or remove, on any
transport) is recorded in that worker's root as without shared state, then
published to the ``peerbox-logic`` key-value bucket before the answer leaves:

==================  ===========================================================  ======
bucket              key → value                                                  expiry
==================  ===========================================================  ======
``peerbox-logic``   ``<target>.<module>`` → ``{"entry": the version entry as      never
                    the history stores it (sealed by the peer), "source": its
                    source}`` (JSON)
==================  ===========================================================  ======

Every worker watches the bucket (:meth:`JetStreamState.watch
<peerbox.net._jetstream.JetStreamState.watch>`, as the revocations do) and
hands each record of a peer it hosts to
:meth:`PeerLogic.adopt <peerbox.peer.PeerLogic.adopt>` on a thread of its own
(compiling is not for the connection's loop): an entry the peer's key did not
seal, whose installer statement does not verify (signature, peer, module,
source, the capability chain of an installer other than the peer) or whose
source is not the one it names is refused and logged (``logic sync:
refused``), never applied; one recorded here already, or older than the
module's latest version here, is skipped; any other is checked (compiled, with
the modules importing it) and recorded as this root's next version, sealed
here. :meth:`SharedLogic.follow` returns once the records the bucket held
when it was called are applied, so a starting worker runs the lattice's code
from its first answer.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Sequence
from typing import Any

from .._errors import Error
from ..peer import LogicRefused, Peer, PeerLogic, Version
from ._jetstream import JetStreamState, SharedStateError, target_token

__all__ = ["SharedLogic", "LOGIC_BUCKET"]

log = logging.getLogger("peerbox.state")

LOGIC_BUCKET = "peerbox-logic"


class SharedLogic:
    """Logic changes of the ``peers`` a worker hosts, published to and followed from the bucket."""

    def __init__(self, state: JetStreamState, peers: Sequence[Peer]) -> None:
        self.state = state
        self.peers = {target_token(p.public_key): p for p in peers}
        self._inbox: queue.Queue[tuple[str, bytes | None] | threading.Event] = queue.Queue()
        self._caught_up = threading.Event()
        self._thread: threading.Thread | None = None
        #: records applied and refused (for tests and metrics)
        self.applied = 0
        self.refused = 0

    # -- publishing ------------------------------------------------------------------------

    def publish(self, peer: Peer, module: str, statement: bytes) -> None:
        """Publish ``peer``'s latest version of ``module`` if it is the one ``statement`` installed
        (acknowledged before returning). Never raises: a failure is logged (the change stays on this
        worker's root until the module changes again)."""
        try:
            history = PeerLogic(peer).history
            last = history.last(module)
            if last is None or last.statement != statement:
                return  # refused, or another change came after it: that one publishes itself
            value = json.dumps({"entry": last.record(), "source": history.source(last.sha256)}).encode()
            kv = self.state.bucket(LOGIC_BUCKET)
            key = f"{target_token(peer.public_key)}.{module}"

            async def put() -> None:
                await kv.put(key, value)

            self.state.call(put, "logic publish")
        except Error as exc:
            log.warning("logic sync: version of %s of peer %s not shared with the other workers: %s",
                        module, peer.name, exc)

    # -- following -------------------------------------------------------------------------

    def follow(self, timeout: float) -> None:
        """Start the watch and the thread applying it; return once the records the bucket holds now
        are applied. Raises :class:`SharedStateError` when that takes over ``timeout`` s."""
        self._thread = threading.Thread(target=self._apply_all, name="peerbox-logic-sync", daemon=True)
        self._thread.start()
        self.state.watch(LOGIC_BUCKET, self._arrived, self._caught_up, "logic")
        done = threading.Event()
        if not self._caught_up.wait(timeout):
            raise SharedStateError(f"JetStream {self.state.shown}: the logic bucket was not read "
                                   f"in {timeout:g} s")
        self._inbox.put(done)  # after every record the watch delivered before it caught up
        if not done.wait(timeout):
            raise SharedStateError(f"the shared logic changes were not applied in {timeout:g} s")

    def _arrived(self, entry: Any) -> None:
        """On the connection's loop: queue the record (None: deleted) for the applying thread."""
        self._inbox.put((entry.key, entry.value if entry.operation is None else None))

    def _apply_all(self) -> None:
        while True:
            item = self._inbox.get()
            if isinstance(item, threading.Event):
                item.set()
                continue
            key, value = item
            if value is not None:
                self.apply(key, value)

    def apply(self, key: str, value: bytes) -> Version | None:
        """Apply one record of the bucket (see the module docstring): the version recorded here, or
        None (not a hosted peer's, already here, older, or refused: logged). Never raises."""
        token, _, module = key.partition(".")
        peer = self.peers.get(token)
        if peer is None:
            return None
        try:
            try:
                doc = json.loads(value)
                entry, source = Version.parse(doc["entry"]), doc["source"]
                if not isinstance(source, str) or entry.module != module:
                    raise ValueError("the source is not text, or the entry is for another module")
            except (ValueError, KeyError, TypeError) as exc:
                raise LogicRefused(f"peer:{module}: not a logic record: {exc}", kind="forged",
                                   module=module) from exc
            version = PeerLogic(peer).adopt(entry, source)
        except LogicRefused as exc:
            self.refused += 1
            log.warning("logic sync: refused a change of peer %s from the shared bucket: %s", peer.name, exc)
            return None
        except Error as exc:
            self.refused += 1
            log.warning("logic sync: could not apply a change of %s of peer %s: %s", module, peer.name, exc)
            return None
        if version is not None:
            self.applied += 1
            log.info("logic sync: peer %s module %s: installed version %d (from another worker)",
                     peer.name, module, version.version)
        return version
