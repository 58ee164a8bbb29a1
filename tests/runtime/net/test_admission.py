"""peerbox.net._admission.Admission, the worker's run slots, driven directly (sans-IO).

Examples for each rule (owner reserve, per-peer cap, fair share, bounded
queues), then hypothesis: random admit/release sequences keep the invariants
(never more than the slots, the reserve only for owners and honoured, work
conserving, no start above the caller's share while another caller waits at
the same peer, caps on waiting) and every admitted ticket starts once the
others release.
"""

from __future__ import annotations

from typing import Any

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerbox.net._admission import Admission, Ticket

A, B, C = b"a" * 32, b"b" * 32, b"c" * 32
BOB_KEY = b"o" * 32  # bob's own key: an owner when addressed to bob


def test_owner_gets_the_reserved_slot_when_callers_hold_all_others() -> None:
    adm = Admission(max_runs=2, per_peer=2, per_caller=10, queue=10)
    hostile = [adm.admit("bob", A, owner=False) for _ in range(4)]
    assert [t.started for t in hostile if t] == [True, True, False, False]
    mine = adm.admit("bob", BOB_KEY, owner=True)
    assert mine is not None and mine.state == "running" and mine.reserved
    # a second owner run waits for a slot like everyone else, but the reserve is not for callers
    second = adm.admit("bob", BOB_KEY, owner=True)
    assert second is not None and not second.started
    assert adm.release(mine) == [second] and second.reserved
    assert adm.running == 3


def test_no_reserve_means_the_owner_queues() -> None:
    adm = Admission(max_runs=1, per_peer=1, per_caller=10, queue=10, owner_reserve=0)
    assert adm.admit("bob", A, owner=False).started  # type: ignore[union-attr]
    assert not adm.admit("bob", BOB_KEY, owner=True).started  # type: ignore[union-attr]


def test_freed_slot_goes_to_the_caller_with_fewer_runs() -> None:
    adm = Admission(max_runs=3, per_peer=3, per_caller=10, queue=10, owner_reserve=0)
    a_runs = [adm.admit("bob", A, owner=False) for _ in range(3)]
    a_wait = adm.admit("bob", A, owner=False)  # a was first in line...
    b_wait = adm.admit("bob", B, owner=False)
    c_wait = adm.admit("bob", C, owner=False)
    assert a_wait and b_wait and c_wait and not (a_wait.started or b_wait.started or c_wait.started)
    assert all(a_runs)
    assert adm.release(a_runs[0]) == [b_wait]  # type: ignore[arg-type]  # not None: asserted above  # ...but has 2 runs going, b none: b first
    assert adm.release(a_runs[1]) == [c_wait]  # type: ignore[arg-type]  # then c (a: 1 run, c: 0)
    assert adm.release(a_runs[2]) == [a_wait]  # type: ignore[arg-type]  # a, b, c: one run each


def test_per_peer_cap_lets_other_peers_through() -> None:
    adm = Admission(max_runs=2, per_peer=1, per_caller=10, queue=10)
    first = adm.admit("bob", A, owner=False)
    stuck = adm.admit("bob", A, owner=False)
    other = adm.admit("carol", A, owner=False)
    assert first and stuck and other and first.started and not stuck.started and other.started
    assert adm.release(other) == []  # bob's slot is still taken
    assert adm.release(first) == [stuck]


def test_queue_and_per_caller_caps() -> None:
    adm = Admission(max_runs=1, per_peer=1, per_caller=3, queue=4, per_caller_queue=2, owner_reserve=0)
    a = [adm.admit("bob", A, owner=False) for _ in range(4)]
    assert [t is not None for t in a] == [True, True, True, False]  # 1 running + 2 waiting: a's queue cap
    assert not adm.can_admit("bob", A, owner=False)
    b = [adm.admit("bob", B, owner=False) for _ in range(3)]
    assert [t is not None for t in b] == [True, True, False]  # the queue (4) is full
    assert adm.queued == 4
    assert b[0] is not None
    adm.release(b[0])  # b gives up waiting
    assert adm.queued == 3 and adm.can_admit("bob", C, owner=False)
    small = Admission(max_runs=4, per_peer=4, per_caller=2, queue=10)
    assert [small.admit("bob", A, owner=False) is not None for _ in range(3)] == [True, True, False]


def test_release_is_idempotent_and_idle() -> None:
    adm = Admission(max_runs=1, per_peer=1, per_caller=2, queue=1)
    t = adm.admit("bob", A, owner=False)
    assert t is not None and not adm.idle
    adm.release(t)
    assert adm.release(t) == [] and adm.idle and adm.running == 0
    assert not adm.admitted_of and not adm.running_of and not adm.by_peer


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError):
        Admission(max_runs=0, per_peer=1, per_caller=1, queue=0)


# ------------------------------------------------------------------ property

PEERS = ("bob", "carol")
OWNERS = {"bob": b"B" * 32, "carol": b"C" * 32}
CALLERS = (A, B, C, OWNERS["bob"], OWNERS["carol"])

ops = st.lists(
    st.one_of(
        st.tuples(st.just("admit"), st.sampled_from(PEERS), st.sampled_from(CALLERS)),
        st.tuples(st.just("release"), st.integers(0, 1000), st.booleans()),
    ),
    max_size=60,
)
configs = st.fixed_dictionaries({
    "max_runs": st.integers(1, 4), "per_peer": st.integers(1, 4), "per_caller": st.integers(1, 6),
    "queue": st.integers(0, 8), "per_caller_queue": st.integers(0, 4), "owner_reserve": st.integers(0, 2),
})


def check_invariants(adm: Admission, live: list[Ticket]) -> None:
    running = [t for t in live if t.state == "running"]
    waiting = [t for t in live if t.state == "waiting"]
    assert adm.running == len(running) <= adm.max_runs + adm.owner_reserve
    regular = [t for t in running if not t.reserved]
    reserved = [t for t in running if t.reserved]
    assert len(regular) == adm.regular <= adm.max_runs
    assert len(reserved) == adm.reserved <= adm.owner_reserve
    assert all(t.owner for t in reserved), "a caller took an owner's reserved slot"
    for peer in PEERS:
        assert sum(t.peer == peer for t in regular) <= adm.per_peer
    assert [t.seq for t in waiting] == [t.seq for t in adm.waiting()]
    assert len(waiting) <= adm.queue
    per_caller = Counter(t.caller for t in running + waiting)
    assert all(n <= adm.per_caller for n in per_caller.values())
    assert all(n <= adm.per_caller_queue for n in Counter(t.caller for t in waiting).values())
    # work conserving: nobody waits for a slot it could take
    for t in waiting:
        assert adm.slot_for(t.peer, t.owner) is None
        if t.owner:  # the owner waits only while owners hold every reserved slot
            assert adm.reserved == adm.owner_reserve


def check_fair_starts(before: Counter[bytes], waiting_before: list[Ticket], started: list[Ticket]) -> None:
    """Each start went to a caller with no more runs than any other caller waiting at that peer
    (which could have taken the same slot)."""
    running = Counter(before)
    still = list(waiting_before)
    for t in started:
        still.remove(t)
        for other in still:
            if other.peer == t.peer and other.caller != t.caller and (t.reserved <= other.owner):
                assert running[t.caller] <= running[other.caller], (t, other, running)
        running[t.caller] += 1


@settings(max_examples=150, deadline=None)
@given(configs, ops)
def test_random_admit_release_sequences_keep_the_invariants(config: dict[str, int], seq: list[tuple[Any, ...]]) -> None:
    adm = Admission(**config)
    live: list[Ticket] = []
    for op in seq:
        before, waiting_before = Counter(adm.running_of), adm.waiting()
        if op[0] == "admit":
            _, peer, caller = op
            owner = caller == OWNERS[peer]
            expected = adm.can_admit(peer, caller, owner=owner)
            t = adm.admit(peer, caller, owner=owner)
            assert (t is not None) == expected
            if t is not None:
                live.append(t)
                if t.started:
                    check_fair_starts(before, waiting_before + [t], [t])
        elif live:
            _, index, prefer_running = op
            pool = [t for t in live if t.started] if prefer_running else live
            t = (pool or live)[index % len(pool or live)]
            was_running = t.state == "running"
            started = adm.release(t)
            live.remove(t)
            assert all(s.state == "running" for s in started)
            if was_running:  # its run ended: its caller has one run less when the slot is handed on
                before[t.caller] -= 1
            check_fair_starts(before, [w for w in waiting_before if w is not t], started)
        check_invariants(adm, live)
    # liveness: once the runs end, every admitted ticket starts
    while live:
        running = [t for t in live if t.state == "running"]
        assert running, "tickets wait while nothing runs"
        adm.release(running[0])
        live.remove(running[0])
        check_invariants(adm, live)
    assert adm.idle and not adm.admitted_of and not adm.running_of and not adm.waiting_of
