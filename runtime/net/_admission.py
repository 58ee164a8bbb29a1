"""Admission to a worker's run slots: who runs now, who waits, who is turned away (sans-IO).

:class:`Admission` is plain state with no clock, no threads and no I/O: the
worker calls :meth:`~Admission.admit` for a request that has already been
authenticated and authorized (signature, freshness, nonce, capabilities, the
``exec`` policy decision: see :meth:`peerbox.trust._exec.ExecHandler.check`), so a
replay or a key the peer's policy does not know never reaches it, and
:meth:`~Admission.release` when the run's thread returns (or when a waiting
request gives up). Both return the tickets that start as a result; the
caller wakes them.

The rules, all enforced here:

* **Slots.** ``max_runs`` regular slots, open to every caller, plus
  ``owner_reserve`` (default 1) reserved slots open only to *owners*: requests
  signed by the key of the peer they are addressed to (what the policy calls
  ``owner``). So a peer's owner always gets a slot at once, however many
  callers hold the others. The reserved slots are shared by the owners of all
  hosted peers (normally one operator).
* **Per peer.** At most ``per_peer`` regular slots run for one hosted peer,
  so a peer flooded with endless loops cannot stall the others; an owner's
  run in a reserved slot does not count (nor is it stopped by the cap).
* **Fair share.** When a slot frees, the waiting request that may take it
  whose caller has the fewest runs going starts (ties: the oldest request):
  max-min fairness across callers. A caller alone may use every regular
  slot, but as soon as another caller waits, each freed slot goes to the
  caller with fewer runs, so no caller gets a run above its share while
  another waits. (Runs are never preempted: a caller above its share when
  others arrive drops to it as its runs end.)
* **Bounded waiting.** At most ``queue`` requests wait in all, at most
  ``per_caller_queue`` of them for one caller (one caller cannot fill the
  queue), and at most ``per_caller`` requests of one caller are admitted at
  once (running or waiting); beyond any of these :meth:`~Admission.admit`
  returns ``None`` (the worker answers ``503`` with ``retry-after``).
  Nothing waits outside these counters, so memory stays bounded.
* **Work conserving.** After every call no waiting ticket could start: a
  ticket waits only while every slot it may use is taken.

Fairness is per caller key: it cannot tell apart many keys held by one party.
Such keys must each be allowed ``exec`` by the peer's policy to get here, and
even then they cannot take the owner's reserved slots.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["Admission", "Ticket"]

K = TypeVar("K", str, bytes)


@dataclass(eq=False)
class Ticket:
    """One admitted request: ``peer`` (the hosted peer's name), ``caller`` (the signer's key).

    ``owner``: the caller is the peer's own key. ``state`` is ``waiting``,
    ``running`` or ``done``; ``reserved`` tells a running ticket holds an
    owner-reserved slot. ``seq`` orders tickets by arrival.
    """

    peer: str
    caller: bytes
    owner: bool
    seq: int
    state: str = "waiting"
    reserved: bool = False

    @property
    def started(self) -> bool:
        """True once the ticket holds a slot (it may have finished since)."""
        return self.state != "waiting"


class Admission:
    """The run slots of one worker and the requests waiting for them (see the module docstring).

    Not thread-safe: the worker calls it from its event loop only. Raises
    :class:`ValueError` for a configuration without a single slot.
    """

    def __init__(self, *, max_runs: int, per_peer: int, per_caller: int, queue: int,
                 per_caller_queue: int | None = None, owner_reserve: int = 1) -> None:
        if max_runs < 1 or per_peer < 1 or per_caller < 1 or queue < 0 or owner_reserve < 0:
            raise ValueError("admission needs max_runs, per_peer, per_caller >= 1 and queue, "
                             "owner_reserve >= 0")
        self.max_runs, self.per_peer, self.per_caller, self.queue = max_runs, per_peer, per_caller, queue
        self.per_caller_queue = max(1, queue // 4) if per_caller_queue is None else max(0, per_caller_queue)
        self.owner_reserve = owner_reserve
        #: regular slots taken, reserved slots taken
        self.regular = 0
        self.reserved = 0
        #: regular runs per peer name
        self.by_peer: Counter[str] = Counter()
        #: runs (regular and reserved) per peer name
        self.running_by_peer: Counter[str] = Counter()
        #: runs (regular and reserved) per caller; admitted tickets per caller; waiting per caller
        self.running_of: Counter[bytes] = Counter()
        self.admitted_of: Counter[bytes] = Counter()
        self.waiting_of: Counter[bytes] = Counter()
        self._waiting: dict[int, Ticket] = {}  # by seq: insertion order is arrival order
        self._seq = itertools.count()

    # -- state ------------------------------------------------------------------------------

    @property
    def running(self) -> int:
        """Runs holding a slot now."""
        return self.regular + self.reserved

    @property
    def queued(self) -> int:
        """Requests waiting for a slot."""
        return len(self._waiting)

    @property
    def idle(self) -> bool:
        """Nothing running and nothing waiting."""
        return self.running == 0 and not self._waiting

    def waiting(self) -> list[Ticket]:
        """The waiting tickets, oldest first."""
        return list(self._waiting.values())

    def slot_for(self, peer: str, owner: bool) -> str | None:
        """The kind of slot a request to ``peer`` could start in now: ``regular``, ``reserved`` or None."""
        if self.regular < self.max_runs and self.by_peer[peer] < self.per_peer:
            return "regular"
        if owner and self.reserved < self.owner_reserve:
            return "reserved"
        return None

    # -- decisions --------------------------------------------------------------------------

    def can_admit(self, peer: str, caller: bytes, *, owner: bool) -> bool:
        """Whether :meth:`admit` would return a ticket now (changes nothing).

        The worker asks before the (costly, nonce-consuming) checks, so a
        request that would be turned away anyway is answered 503 while its
        envelope can still be sent again.
        """
        if self.admitted_of[caller] >= self.per_caller:
            return False
        if self.slot_for(peer, owner) is not None:
            return True
        return len(self._waiting) < self.queue and self.waiting_of[caller] < self.per_caller_queue

    def admit(self, peer: str, caller: bytes, *, owner: bool) -> Ticket | None:
        """A ticket for an authorized request to ``peer`` by ``caller``: running, or waiting; or
        ``None`` when its caller's quota or the queue is full (see the module docstring)."""
        if not self.can_admit(peer, caller, owner=owner):
            return None
        t = Ticket(peer, caller, owner, next(self._seq))
        self.admitted_of[caller] += 1
        slot = self.slot_for(peer, owner)
        if slot is not None:  # no waiting ticket could take it (work conserving), so nobody is overtaken
            self._start(t, slot)
        else:
            self._waiting[t.seq] = t
            self.waiting_of[caller] += 1
        return t

    def release(self, t: Ticket) -> list[Ticket]:
        """``t``'s run ended, or it gave up waiting: free what it held; return the tickets that start.

        Idempotent (a second release of a ticket returns ``[]``).
        """
        if t.state == "done":
            return []
        was = t.state
        t.state = "done"
        _dec(self.admitted_of, t.caller)
        if was == "waiting":
            del self._waiting[t.seq]
            _dec(self.waiting_of, t.caller)
            return []  # a waiting ticket held no slot: nobody else can start now who could not before
        _dec(self.running_of, t.caller)
        _dec(self.running_by_peer, t.peer)
        if t.reserved:
            self.reserved -= 1
        else:
            self.regular -= 1
            _dec(self.by_peer, t.peer)
        return self._schedule()

    # -- internals --------------------------------------------------------------------------

    def _start(self, t: Ticket, slot: str) -> None:
        t.state = "running"
        t.reserved = slot == "reserved"
        if t.reserved:
            self.reserved += 1
        else:
            self.regular += 1
            self.by_peer[t.peer] += 1
        self.running_of[t.caller] += 1
        self.running_by_peer[t.peer] += 1

    def _schedule(self) -> list[Ticket]:
        """Start waiting tickets while one can start: each time the one whose caller has the fewest
        runs going (ties: the oldest)."""
        started: list[Ticket] = []
        while True:
            best: tuple[int, int] | None = None
            chosen: tuple[Ticket, str] | None = None
            for w in self._waiting.values():
                slot = self.slot_for(w.peer, w.owner)
                if slot is None:
                    continue
                rank = (self.running_of[w.caller], w.seq)
                if best is None or rank < best:
                    best, chosen = rank, (w, slot)
            if chosen is None:
                return started
            w, slot = chosen
            del self._waiting[w.seq]
            _dec(self.waiting_of, w.caller)
            self._start(w, slot)
            started.append(w)


def _dec(counter: Counter[K], key: K) -> None:
    """Count one less of ``key``; drop it at zero (so the counters hold only what is going on)."""
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
