"""One NATS thread and connection per worker process (peerbox.net._natslink) against a real nats-server.

A worker's NATS listener (a :class:`NatsBridge` opened with ``share=True``) and its shared state
(:class:`JetStreamState`) on the same URL use one connection on one thread; the connection stays
open while either still uses it and closes with the last; a client's bridge keeps its own.
"""

from __future__ import annotations

import threading

import trio

from peerbox.net._jetstream import JetStreamState
from peerbox.net._natsbridge import NatsBridge, NatsMessage

from tests.conftest import NatsServer


def _nats_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "nats" and t.is_alive())


def test_the_listener_and_the_state_share_one_connection_and_thread(nats_server: NatsServer) -> None:
    before = _nats_threads()

    async def main() -> None:
        async with NatsBridge(nats_server.url, name="peerbox serve", share=True) as bridge:
            with JetStreamState(nats_server.url) as state:
                assert state._link is bridge._link  # one connection for both
                assert _nats_threads() == max(before, 1)
                async with NatsBridge(nats_server.url, name="peerbox client") as client:
                    assert client._link is not bridge._link  # a client's own connection
                    assert _nats_threads() == max(before, 1)  # on the same thread
            # the state let go: the listener's connection is still open and serving
            got: list[bytes] = []
            done = trio.Event()

            def handler(msg: NatsMessage) -> None:
                got.append(msg.data)
                done.set()

            sub = await bridge.subscribe("test.natslink", handler)
            bridge.publish("test.natslink", b"still here")
            with trio.fail_after(30):
                await done.wait()
            await bridge.drain(sub)
            assert got == [b"still here"]

    trio.run(main)
    assert _nats_threads() == before  # the last user closed it
