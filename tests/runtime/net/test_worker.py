"""The worker app (peerbox.net._worker.Worker) with HttpRequest objects, no sockets.

Routing by target, every HTTP status, saturation (503), per-peer isolation of
stuck runs, runs that outlive their request, health, peers and metrics.
"""

from __future__ import annotations

import json
import sqlite3
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
import trio

import peerbox
from peerbox.wire._envelope import MAX_EXEC_REQUEST, make_request
from peerbox.wire._reply import verify_reply
from peerbox.net._h2server import HttpRequest, HttpResponse
from peerbox.net._worker import Worker

LOOP = "let i = 0; loop { i += 1; }"


class World:
    def __init__(self, root: Path, policy: str) -> None:
        self.root = root
        self.store = peerbox.PeerStore(root)
        for name in ("alice", "bob", "carol", "dave"):
            self.store.init(name)
        (root / "peers" / "bob" / "policy.toml").write_text(policy)
        (root / "peers" / "carol" / "policy.toml").write_text(policy)  # alice may exec at carol too
        self.now = int(time.time())
        self.workers: list[Worker] = []

    def worker(self, peers: list[str] | None | str = "default", **kw: Any) -> Worker:
        chosen = ["bob", "carol"] if peers == "default" else peers
        assert not isinstance(chosen, str)
        w = Worker(self.root, chosen, clock=lambda: self.now, **kw)
        self.workers.append(w)
        return w

    def envelope(self, script: str, *, sender: str = "alice", to: str = "bob", **kw: Any) -> bytes:
        key = self.store.get(sender).signing_key()
        return make_request(key, target=self.store.get(to).public_key, script=script, now=self.now, **kw)

    def close(self) -> None:
        for w in self.workers:
            w.close()


@pytest.fixture
def world(tmp_path: Path, demo_policy: str) -> Iterator[World]:
    w = World(tmp_path, demo_policy)
    yield w
    w.close()


def post(body: bytes, *, ctype: str = "application/cose", path: str = "/v1/exec",
         method: str = "POST") -> HttpRequest:
    return HttpRequest(method=method, path=path, headers=(("content-type", ctype),), body=body,
                       client="127.0.0.1:1", stream_id=1, conn_id=1)


def get(path: str) -> HttpRequest:
    return HttpRequest(method="GET", path=path, headers=(), body=b"", client="127.0.0.1:1", stream_id=1,
                       conn_id=1)


def header(resp: HttpResponse, name: str) -> str | None:
    return next((v for k, v in resp.headers if k == name), None)


def error_of(resp: HttpResponse) -> dict[str, Any]:
    assert header(resp, "content-type") == "application/cbor"
    doc = cbor2.loads(resp.body)
    assert set(doc) == {"error"} and set(doc["error"]) == {"kind", "message"}
    return dict(doc["error"])


def reply_of(world: World, resp: HttpResponse, req: bytes, to: str = "bob") -> Any:
    assert header(resp, "content-type") == "application/cose"
    return verify_reply(resp.body, target=world.store.get(to).public_key, request_bytes=req)


def metrics(text: str) -> dict[str, float]:
    """Parse the exposition format into {'name{labels}': value}; fail on a malformed line."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            assert re.match(r"# (HELP|TYPE) \w+ ", line) or not line, line
            continue
        m = re.fullmatch(r'([a-zA-Z_:][\w:]*)(\{[a-z_]+="[^"]*"(?:,[a-z_]+="[^"]*")*\})? (\S+)', line)
        assert m, line
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


async def test_allowed_script_gets_a_signed_reply_routed_by_target(world: World) -> None:
    w = world.worker()
    req = world.envelope('fs::mkdir("inbox"); fs::write("inbox/n.txt", "hi"); 40 + 2')
    resp = await w.app(post(req))
    assert resp.status == 200
    reply = reply_of(world, resp, req)
    assert reply.ok and reply.value == 42
    req2 = world.envelope("target.name", to="carol")
    resp2 = await w.app(post(req2))
    assert resp2.status == 200 and reply_of(world, resp2, req2, "carol").value == "carol"


async def test_status_codes(world: World) -> None:
    w = world.worker()
    # 403: dave may not exec at bob: a signed denial
    req = world.envelope("1", sender="dave")
    resp = await w.app(post(req))
    assert resp.status == 403 and reply_of(world, resp, req).denied
    # 200 with a script error, and a host call the policy refuses (counted as a denial of fs.read)
    req = world.envelope('fs::read("private.txt")')
    resp = await w.app(post(req))
    reply = reply_of(world, resp, req)
    assert resp.status == 200 and not reply.ok and reply.error["kind"] == "denied"
    req = world.envelope("1 / 0")
    resp = await w.app(post(req))
    assert resp.status == 200 and reply_of(world, resp, req).error["kind"] == "division_by_zero"
    # 200 with a limit
    req = world.envelope(LOOP, limits={"fuel": 200_000})
    resp = await w.app(post(req))
    assert resp.status == 200 and reply_of(world, resp, req).error["kind"].startswith("limit")
    # 409: the same bytes again
    resp = await w.app(post(req))
    assert resp.status == 409 and error_of(resp)["kind"] == "replay"
    # 401: a forged signature
    good = world.envelope("1")
    forged = good[:-1] + bytes([good[-1] ^ 1])
    resp = await w.app(post(forged))
    assert resp.status == 401 and error_of(resp)["kind"] == "bad_signature"
    # 404: a target this worker does not host
    resp = await w.app(post(world.envelope("1", to="dave")))
    assert resp.status == 404 and error_of(resp)["kind"] == "wrong_target"
    # 400: malformed, and expired
    resp = await w.app(post(b"\xd2\x84garbage"))
    assert resp.status == 400
    old = make_request(world.store.get("alice").signing_key(), target=world.store.get("bob").public_key,
                       script="1", now=world.now - 1000, ttl=10)
    resp = await w.app(post(old))
    assert resp.status == 400 and error_of(resp)["kind"] == "expired"
    # 413, 415, 404 path, 405 method
    resp = await w.app(post(b"\xd2" + b"\x00" * MAX_EXEC_REQUEST))
    assert resp.status == 413 and error_of(resp)["kind"] == "too_large"
    resp = await w.app(post(good, ctype="application/json"))
    assert resp.status == 415
    resp = await w.app(post(good, ctype="application/cose; charset=binary"))
    assert resp.status == 200
    assert (await w.app(get("/nope"))).status == 404
    assert (await w.app(get("/v1/exec"))).status == 405
    assert (await w.app(post(b"", path="/metrics"))).status == 405

    m = metrics((await w.app(get("/metrics"))).body.decode())
    assert m['peerbox_requests_total{outcome="ok"}'] == 1
    assert m['peerbox_requests_total{outcome="denied"}'] == 1
    assert m['peerbox_requests_total{outcome="script_error"}'] == 2
    assert m['peerbox_requests_total{outcome="limit"}'] == 1
    assert m['peerbox_requests_total{outcome="rejected"}'] == 6
    assert m['peerbox_requests_total{outcome="unsupported_media_type"}'] == 1
    assert m['peerbox_denials_total{action="exec"}'] == 1
    assert m['peerbox_denials_total{action="fs.read"}'] == 1
    assert m['peerbox_rejections_total{kind="replay"}'] == 1
    assert m['peerbox_run_fuel_count'] == 4
    assert m['peerbox_run_fuel_bucket{le="+Inf"}'] == 4
    assert m['peerbox_run_seconds_count'] == 7  # every handled run: the replay and the expired one too
    buckets = [v for k, v in m.items() if k.startswith("peerbox_run_seconds_bucket")]
    assert buckets == sorted(buckets)  # cumulative
    assert m["peerbox_runs_in_flight"] == 0


async def test_health_and_peers(world: World) -> None:
    w = world.worker()
    resp = await w.app(get("/v1/health"))
    doc = json.loads(resp.body)
    assert resp.status == 200 and doc["status"] == "ok" and doc["peers"] == 2
    resp = await w.app(get("/v1/peers"))
    assert json.loads(resp.body) == [{"name": n, "did": world.store.get(n).did} for n in ("bob", "carol")]
    everyone = world.worker(None)
    assert len(json.loads((await everyone.app(get("/v1/peers"))).body)) == 4


async def test_saturated_worker_answers_503_with_retry_after(world: World) -> None:
    w = world.worker(max_runs=1, queue=1, per_caller=10)
    statuses: list[int] = []
    retry: list[str | None] = []

    async def send() -> None:
        resp = await w.app(post(world.envelope(LOOP, limits={"timeout": 0.3})))
        statuses.append(resp.status)
        retry.append(header(resp, "retry-after"))

    async with trio.open_nursery() as n:
        for _ in range(3):
            n.start_soon(send)
    assert sorted(statuses) == [200, 200, 503]
    assert retry.count("1") == 1
    m = metrics((await w.app(get("/metrics"))).body.decode())
    assert m['peerbox_requests_total{outcome="busy"}'] == 1
    assert m['peerbox_requests_total{outcome="limit"}'] == 2


@pytest.mark.slow
async def test_per_caller_cap(world: World) -> None:
    w = world.worker(max_runs=2, queue=4, per_caller=1)
    statuses: list[int] = []

    async def send(sender: str) -> None:
        to = "bob" if sender == "alice" else "carol"
        script = LOOP if sender == "alice" else "1"
        resp = await w.app(post(world.envelope(script, sender=sender, to=to, limits={"timeout": 0.3})))
        statuses.append(resp.status)

    async with trio.open_nursery() as n:
        n.start_soon(send, "alice")
        n.start_soon(send, "alice")
        await trio.sleep(0.05)
        n.start_soon(send, "carol")  # carol, at her own peer: not alice's quota
    assert sorted(statuses) == [200, 200, 503]


@pytest.mark.slow
async def test_a_stuck_peer_does_not_stall_another(world: World) -> None:
    w = world.worker(max_runs=2, per_peer=1, queue=8)
    done: dict[str, float] = {}
    start = trio.current_time()

    async def send(name: str, to: str, script: str) -> None:
        resp = await w.app(post(world.envelope(script, to=to, limits={"timeout": 0.5})))
        assert resp.status == 200
        done[name] = trio.current_time() - start

    async with trio.open_nursery() as n:
        n.start_soon(send, "loop1", "bob", LOOP)
        n.start_soon(send, "loop2", "bob", LOOP)
        await trio.sleep(0.05)
        n.start_soon(send, "quick", "carol", "1 + 1")
    first, second = sorted((done["loop1"], done["loop2"]))
    assert done["quick"] < 0.45 < first
    assert second > 0.9  # waited for the first loop: per_peer=1


async def test_a_cancelled_request_keeps_its_slot_until_the_run_ends(world: World) -> None:
    w = world.worker(max_runs=1, queue=0)
    with trio.move_on_after(0.1):
        await w.app(post(world.envelope(LOOP, limits={"timeout": 0.4})))
    assert w.admission.running == 1  # the run goes on
    resp = await w.app(post(world.envelope("1")))
    assert resp.status == 503
    assert await w.drain(5.0)
    assert w.admission.running == 0
    m = metrics((await w.app(get("/metrics"))).body.decode())
    assert m['peerbox_requests_total{outcome="limit"}'] == 1
    resp = await w.app(post(world.envelope("1")))
    assert resp.status == 503  # draining: no new runs
    assert json.loads((await w.app(get("/v1/health"))).body)["status"] == "draining"


async def test_runs_use_big_stack_threads(world: World) -> None:
    w = world.worker(max_runs=1)
    deep = "fn f(n) { if n == 0 { 0 } else { 1 + f(n - 1) } } f(2000)"
    req = world.envelope(deep)
    resp = await w.app(post(req))
    assert resp.status == 200 and reply_of(world, resp, req).value == 2000
    assert w.pool is not None
    assert all(t.name.startswith("peerbox-run-") for t in w.pool._threads)


async def _until(cond: Any, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not cond():
            await trio.sleep(0.01)


@pytest.mark.slow
async def test_refusals_denials_and_reads_never_take_a_run_slot(world: World) -> None:
    from peerbox.trust._logic_push import make_logic_request

    w = world.worker(max_runs=1, queue=1, per_caller=4, owner_reserve=0)
    loop_done = trio.Event()

    async def spin() -> None:
        await w.app(post(world.envelope(LOOP, limits={"timeout": 1.5})))
        loop_done.set()

    async with trio.open_nursery() as n:
        n.start_soon(spin)
        await _until(lambda: w.admission.running == 1)
        # the one slot is taken, yet these are all answered at once, by the check, and never queue
        denied = world.envelope("1", sender="dave")
        assert (await w.app(post(denied))).status == 403
        assert (await w.app(post(denied))).status == 409
        listing = make_logic_request(world.store.get("alice").signing_key(),
                                     target=world.store.get("bob").public_key, op="list", now=world.now)
        resp = await w.app(post(listing, path="/v1/logic"))
        assert resp.status == 200 and reply_of(world, resp, listing).value == []
        assert not loop_done.is_set()
        assert w.admission.running == 1 and w.admission.queued == 0
        n.start_soon(w.app, post(world.envelope("1")))  # allowed: it waits for the slot
        await _until(lambda: w.admission.queued == 1)
        # a full queue turns away before the check (the envelope is not used up: it may be sent again)
        later = world.envelope("1", sender="dave")
        assert (await w.app(post(later))).status == 503
    assert (await w.app(post(later))).status == 403
    doc = json.loads((await w.app(get("/v1/health"))).body)
    assert (doc["in_flight"], doc["queued"], doc["checking"]) == (0, 0, 0)


@pytest.mark.slow
async def test_the_owner_takes_the_reserved_slot_while_a_caller_holds_the_others(world: World) -> None:
    w = world.worker(["bob"], max_runs=1, queue=4)
    loop_done = trio.Event()

    async def spin() -> None:
        resp = await w.app(post(world.envelope(LOOP, limits={"timeout": 2.0})))
        assert resp.status == 200
        loop_done.set()

    async with trio.open_nursery() as n:
        n.start_soon(spin)
        await _until(lambda: w.admission.running == 1)
        req = world.envelope("2 + 2", sender="bob")
        resp = await w.app(post(req))
        assert resp.status == 200 and reply_of(world, resp, req).value == 4
        assert not loop_done.is_set()  # the owner did not wait for alice's loop
        # the reserve is the owner's: alice's next request waits for her loop
        n.start_soon(w.app, post(world.envelope("1")))
        await _until(lambda: w.admission.queued == 1)
    assert w.admission.idle


async def test_params_a_script_cannot_hold_get_a_signed_error_not_a_500(world: World) -> None:
    w = world.worker()
    req = world.envelope("params.n", params={"n": 2 ** 63})
    resp = await w.app(post(req))
    assert resp.status == 200 and reply_of(world, resp, req).error["kind"] == "invalid_argument"


async def test_the_compile_shares_the_callers_timeout_and_a_budget_refusal_is_a_signed_compile_error(
        world: World) -> None:
    w = world.worker()
    big = "".join(f"let v{i} = {i};\n" for i in range(20_000))  # ~100,000 tokens: far over 10 ms to compile
    req = world.envelope(big, limits={"timeout": 0.01})
    resp = await w.app(post(req))
    reply = reply_of(world, resp, req)
    assert resp.status == 200 and reply.error["kind"] == "compile_error"
    assert "compile limit 'timeout'" in reply.error["message"]


async def test_any_fuel_a_request_may_carry_is_run_not_a_500(world: World) -> None:
    w = world.worker()
    req = world.envelope("6 * 7", limits={"fuel": 2 ** 63 - 1})
    resp = await w.app(post(req))
    assert resp.status == 200 and reply_of(world, resp, req).value == 42


# ------------------------------------------------------------------ one hand-off per call


def count_hand_offs(w: Worker, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every job the worker hands to its pool threads, by the name of the thread that queued it."""
    import threading

    assert w.pool is not None
    real = w.pool.submit
    jobs: list[str] = []

    def spy(fn: Any) -> None:
        jobs.append(threading.current_thread().name)
        real(fn)

    monkeypatch.setattr(w.pool, "submit", spy)
    return jobs


async def test_a_call_is_one_hand_off_from_the_event_loop_even_when_it_waits_for_a_slot(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening, checking, running and signing a request take one trip to a pool thread; a request
    that waits for a slot is run by the thread that frees it, with no trip back to the loop between."""
    import threading

    w = world.worker(["bob"], max_runs=1, owner_reserve=0, queue=8, per_caller=8, per_caller_queue=8)
    jobs = count_hand_offs(w, monkeypatch)
    main = threading.main_thread().name
    req = world.envelope("40 + 2")
    assert reply_of(world, await w.app(post(req)), req).value == 42
    assert jobs == [main]
    jobs.clear()
    replies: dict[int, Any] = {}

    async def send(i: int, script: str) -> None:
        body = world.envelope(script, params={"i": i}, limits={"timeout": 0.3})
        resp = await w.app(post(body))
        assert resp.status == 200
        reply = reply_of(world, resp, body)
        replies[i] = reply.value if reply.ok else reply.error["kind"]

    async with trio.open_nursery() as n:
        n.start_soon(send, 0, LOOP)
        await _until(lambda: w.admission.running == 1)
        for i in range(1, 5):
            n.start_soon(send, i, "params.i * 10")
        await _until(lambda: w.admission.queued == 4)
    assert replies == {0: "limit_timeout", 1: 10, 2: 20, 3: 30, 4: 40}
    assert jobs == [main] * 5  # one hand-off each; the parked ones were run by the freeing thread
    assert w.idle


@pytest.mark.slow
async def test_replays_under_load_never_take_a_run_slot_nor_a_waiting_callers_place(world: World) -> None:
    """With the one slot busy and a request waiting, a burst of replayed envelopes is refused (409)
    by the check alone: none holds or waits for a slot, and the waiting request runs next."""
    w = world.worker(["bob"], max_runs=1, owner_reserve=0, queue=2, per_caller=40, per_caller_queue=2)
    used = world.envelope("1 + 1")
    assert (await w.app(post(used))).status == 200
    order: list[str] = []
    replays: list[int] = []

    async def send(name: str, body: bytes) -> None:
        resp = await w.app(post(body))
        assert resp.status == 200
        order.append(name)

    async def replay() -> None:
        replays.append((await w.app(post(used))).status)
        assert w.admission.running == 1 and w.admission.queued == 1

    async with trio.open_nursery() as n:
        n.start_soon(send, "loop", world.envelope(LOOP, limits={"timeout": 3.0}))
        await _until(lambda: w.admission.running == 1)
        n.start_soon(send, "waiting", world.envelope("2 + 2"))
        await _until(lambda: w.admission.queued == 1)
        async with trio.open_nursery() as burst:
            for _ in range(30):
                burst.start_soon(replay)
        assert order == []  # the burst was answered while the loop still ran
    assert replays == [409] * 30
    # the waiting request ran once the loop's slot was free (it was queued throughout the burst: see
    # replay()); the two answers may reach the loop in one batch, and tasks woken together run in any order
    assert sorted(order) == ["loop", "waiting"]
    m = metrics((await w.app(get("/metrics"))).body.decode())
    assert m['peerbox_rejections_total{kind="replay"}'] == 30
    assert w.idle


async def test_a_request_given_up_while_it_waits_leaves_the_queue_and_never_runs(world: World) -> None:
    w = world.worker(["bob"], max_runs=1, owner_reserve=0, queue=4)
    ran_before = 0

    async with trio.open_nursery() as n:
        n.start_soon(w.app, post(world.envelope(LOOP, limits={"timeout": 0.3})))
        await _until(lambda: w.admission.running == 1)
        with trio.move_on_after(0.05):
            await w.app(post(world.envelope('fs::write("inbox/late.txt", "ran"); 1')))
        assert w.admission.queued == 0 and w.admission.running == 1
        ran_before = w.metrics.requests["ok"]
    assert await w.drain(5.0)
    assert w.metrics.requests["ok"] == ran_before == 0
    assert not (world.root / "peers" / "bob" / "storage" / "inbox" / "late.txt").exists()
    assert w.idle


@pytest.mark.slow
async def test_many_concurrent_calls_to_two_peers_all_get_their_own_answer(world: World) -> None:
    """Callers, peers and slots shared by the loop and the pool threads: every request gets the
    reply to itself, nothing is lost or counted twice, and the worker ends idle."""
    w = world.worker(max_runs=2, queue=64, per_caller=64, per_caller_queue=64)
    got: dict[tuple[str, int], int] = {}

    async def send(to: str, i: int) -> None:
        body = world.envelope("params.i * 3", to=to, params={"i": i})
        resp = await w.app(post(body))
        assert resp.status == 200
        got[(to, i)] = reply_of(world, resp, body, to).value

    async with trio.open_nursery() as n:
        for i in range(30):
            n.start_soon(send, "bob", i)
            n.start_soon(send, "carol", i)
    assert got == {(to, i): 3 * i for to in ("bob", "carol") for i in range(30)}
    assert w.metrics.requests["ok"] == 60 and w.metrics.seconds.count == 60
    doc = json.loads((await w.app(get("/v1/health"))).body)
    assert (doc["in_flight"], doc["queued"], doc["checking"]) == (0, 0, 0)
    assert w.idle


@pytest.mark.slow
async def test_a_batch_whose_nonce_commit_fails_runs_nothing_and_spends_no_nonce(world: World) -> None:
    """Issue 15: a reply leaves only once the batch holding its nonce is durable. Another process
    holds bob's nonce database locked past its busy timeout, so the batch commit fails: every
    request of it is answered ``unavailable`` without running (no file written), and once the
    lock is gone the very same envelopes are accepted, once each: none of their nonces was spent."""
    w = world.worker(["bob"])
    bodies = [world.envelope(f'fs::write("inbox/n{i}.txt", "ran"); {i}') for i in range(4)]
    assert (await w.app(post(world.envelope("0")))).status == 200  # bob's nonce database exists
    inbox = world.store.get("bob").paths.storage / "inbox"
    inbox.mkdir()
    holder = sqlite3.connect(world.root / "peers" / "bob" / "nonces.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    kinds: list[str] = []

    async def send(body: bytes) -> None:
        resp = await w.app(post(body))
        reply = reply_of(world, resp, body)
        assert not reply.ok
        kinds.append(reply.error["kind"])

    try:
        async with trio.open_nursery() as n:
            for body in bodies:
                n.start_soon(send, body)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert kinds == ["unavailable"] * 4
    assert list(inbox.iterdir()) == []
    replies = [reply_of(world, await w.app(post(b)), b) for b in bodies]
    assert all(r.ok for r in replies), [r.error for r in replies]
    values = [r.value for r in replies]
    assert sorted(values) == [0, 1, 2, 3]
    assert sorted(p.name for p in inbox.iterdir()) == [f"n{i}.txt" for i in range(4)]
    assert [(await w.app(post(b))).status for b in bodies] == [409] * 4


async def test_metrics_show_the_runs_in_flight_and_queued_while_they_are(world: World) -> None:
    """The gauges are read from the admission when scraped, not when an answer goes out: a run
    started by a pool thread is in flight for /metrics (and /v1/health) at once."""
    w = world.worker(["bob"], max_runs=1, owner_reserve=0, queue=2, per_caller=4, per_caller_queue=2)
    async with trio.open_nursery() as n:
        n.start_soon(w.app, post(world.envelope(LOOP, limits={"timeout": 0.5})))
        await _until(lambda: w.admission.running == 1)
        n.start_soon(w.app, post(world.envelope("1")))
        await _until(lambda: w.admission.queued == 1)
        m = metrics((await w.app(get("/metrics"))).body.decode())
        assert (m["peerbox_runs_in_flight"], m["peerbox_runs_queued"]) == (1, 1)
        health = json.loads((await w.app(get("/v1/health"))).body)
        assert (health["in_flight"], health["queued"]) == (1, 1)
    m = metrics((await w.app(get("/metrics"))).body.decode())
    assert (m["peerbox_runs_in_flight"], m["peerbox_runs_queued"]) == (0, 0)
