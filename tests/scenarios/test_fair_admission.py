"""One caller cannot starve a peer (issue 12, finding 4), against a real `peerbox serve`.

bob is served with ``--max-runs 2``. alice, whom bob's policy lets ``exec``,
keeps four spinning scripts going (two run, two wait); keys bob's policy
does not know each send one envelope and then replay it. Meanwhile bob's
owner (a request signed by bob's own key) makes sequential calls.

Before the fix, requests were admitted to the run slots before the policy
and nonce checks: the owner waited behind alice's loops (or got 503), and the
unknown keys' replays queued for slots too. Now the owner takes the slot
reserved for owners at once, and the unknown keys are answered 403/409 by the
check, which runs before admission and never holds a run slot. Every bound
is an ordering derived from the configuration (each answer arrives before
alice's first loop reaches its timeout), not a wall-clock figure.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import trio

import peerbox
from peerbox.net import AsyncClient, RemoteRejected
from peerbox.net._h2client import H2Transport
from peerbox.peer import Directory
from peerbox.wire import KeyPair, make_request


#: How long alice's loops spin: every other answer must come before the first of them ends.
SPIN = 8.0
POLICY = f"""
version = 1
[[rule]]
effect = "allow"
who = "owner"
actions = ["*"]

[[rule]]
effect = "allow"
who = "alice"
actions = ["exec"]
limits = {{ timeout = {SPIN} }}
"""


def health(port: int) -> dict[str, Any]:
    out = subprocess.run(["curl", "-s", "--max-time", "5", "--http2-prior-knowledge",
                          f"http://127.0.0.1:{port}/v1/health"], capture_output=True, check=True)
    return dict(json.loads(out.stdout))


@pytest.mark.slow
@pytest.mark.serial
def test_owner_is_served_while_a_caller_floods_and_unknown_keys_replay(tmp_path: Path, serving: Any) -> None:
    store = peerbox.PeerStore(tmp_path)
    store.init("alice")
    bob = store.init("bob")
    (tmp_path / "peers" / "bob" / "policy.toml").write_text(POLICY)
    strangers = [KeyPair.generate() for _ in range(4)]

    with serving(tmp_path, "--peers", "bob", "--max-runs", "2", "--workers", "1") as (port, _):
        directory = Directory(tmp_path)
        directory.add("bob", bob.did, f"http://127.0.0.1:{port}")
        url = f"http://127.0.0.1:{port}"
        loops_done: list[float] = []
        loop_kinds: list[str] = []
        owner_done: list[float] = []
        stranger_statuses: list[int] = []
        stranger_done: list[float] = []
        busy_during: list[dict[str, Any]] = []

        async def main() -> None:
            async with AsyncClient(store.get("alice").signing_key(), directory) as alice, \
                    AsyncClient(store.get("bob").signing_key(), directory) as owner, \
                    H2Transport() as raw:
                assert (await owner.exec("bob", "0")).value == 0  # warm: connection, compile cache

                async def spin() -> None:
                    reply = await alice.exec("bob", "loop {}", limits={"timeout": SPIN}, timeout=4 * SPIN + 30)
                    loops_done.append(time.monotonic())
                    loop_kinds.append(str((reply.error or {}).get("kind")))

                async with trio.open_nursery() as nursery:
                    for _ in range(4):
                        nursery.start_soon(spin)
                    # wait until alice holds both regular slots and two more of hers wait
                    with trio.fail_after(SPIN / 2):
                        while True:
                            doc = await trio.to_thread.run_sync(health, port)
                            if doc["in_flight"] == 2 and doc["queued"] == 2:
                                break
                            await trio.sleep(0.05)

                    async def replaying(key: KeyPair) -> None:
                        envelope = make_request(key, target=bob.public_key, script="1", now=int(time.time()))
                        for _ in range(3):
                            status, _, _ = await raw.exec(url, envelope, SPIN)
                            stranger_statuses.append(status)
                        stranger_done.append(time.monotonic())

                    async with trio.open_nursery() as strangers_nursery:
                        for key in strangers:
                            strangers_nursery.start_soon(replaying, key)
                    busy_during.append(await trio.to_thread.run_sync(health, port))

                    for i in range(5):
                        try:
                            reply = await owner.exec("bob", f"{i} * 2", timeout=SPIN)
                        except RemoteRejected as exc:  # 503 before the fix
                            pytest.fail(f"the owner's call {i} was refused: {exc}")
                        assert reply.ok and reply.value == i * 2
                        owner_done.append(time.monotonic())
                    busy_during.append(await trio.to_thread.run_sync(health, port))

        trio.run(main)

    first_loop_end = min(loops_done)
    assert loop_kinds == ["limit_timeout"] * 4
    # the owner's five calls all completed while alice's first two loops were still spinning
    assert len(owner_done) == 5 and max(owner_done) < first_loop_end, "the owner waited for alice's loops"
    # the strangers were answered by the check (403, then 409 for each replay), without waiting for a slot
    assert sorted(stranger_statuses) == [403] * 4 + [409] * 8
    assert max(stranger_done) < first_loop_end
    # and they never held a slot: alice's two runs and two waiting requests are all there was
    for doc in busy_during:
        assert doc["in_flight"] == 2 and doc["queued"] == 2, doc
