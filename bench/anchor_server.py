"""The anchor of the network rows (issue 15): the least a server can do per delegated call.

A minimal trio + h2 server doing, inline on its one event loop, the essential
work of a delegated call and nothing else:

1. read the request body (any POST path; one HTTP/2 connection per client);
2. decode the COSE_Sign1 and its payload with cbor2's C decoder (no strict
   re-checks) and verify the one Ed25519 signature by the payload's
   ``caller`` (PyNaCl);
3. check the target and the expiry, then insert ``(caller, nonce, exp)`` into
   its own SQLite nonce table (WAL, ``synchronous=NORMAL``, one autocommit
   transaction per call: the durability the worker's nonce store gives);
   a duplicate is answered 409;
4. run the script with ``peerbox.compile(script).run(params)`` (compiled
   once per distinct script and kept in a dict: a fresh wasmtime store and
   instance per call, exactly the run a worker pays);
5. build the reply payload of :func:`peerbox.wire.make_reply`, encode it with
   cbor2 ``canonical=True`` (byte-for-byte what ``make_reply`` produces for
   these values: deterministic CBOR, text keys shorter than 24 bytes) and
   sign it once, so the project's client verifies it like any worker's reply.

No policy, no capabilities, no limits beyond the defaults, no metrics, no
threads, no admission control, no hardening: it is a yardstick, not a
server. It writes its port to ``--port-file`` once listening and stops on
SIGTERM/SIGINT.

    python bench/anchor_server.py --root ROOT --peer NAME --port-file F [--listen 127.0.0.1:0]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import cbor2
import h2.config
import h2.connection
import h2.events
import h2.settings
import nacl.exceptions
import nacl.signing
import trio

import peerbox

PROTECTED = cbor2.dumps({1: -8})          # the only protected header peerbox signs with
_SCHEMA = ("CREATE TABLE IF NOT EXISTS nonces (caller BLOB NOT NULL, nonce BLOB NOT NULL, "
           "exp INTEGER NOT NULL, PRIMARY KEY (caller, nonce)) WITHOUT ROWID")


class Anchor:
    """The per-call work: ``handle(body) -> (status, body)``; no I/O but SQLite."""

    def __init__(self, key: peerbox.KeyPair, db_path: Path) -> None:
        self.signing_key: nacl.signing.SigningKey = key.signing_key
        self.public_key = key.public_key
        self.db = sqlite3.connect(str(db_path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(_SCHEMA)
        self.programs: dict[str, peerbox.Program] = {}

    def close(self) -> None:
        self.db.close()

    def handle(self, body: bytes) -> tuple[int, bytes]:
        try:
            outer = cbor2.loads(body)
            protected, _unprotected, payload_bytes, signature = outer.value
            payload: dict[str, Any] = cbor2.loads(payload_bytes)
            caller: bytes = payload["caller"]
            to_be_signed = cbor2.dumps(["Signature1", protected, b"", payload_bytes])
            nacl.signing.VerifyKey(caller).verify(to_be_signed, signature)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError, TypeError,
                KeyError, AttributeError, cbor2.CBORDecodeError):
            return 400, b"bad envelope"
        now = int(time.time())
        if payload.get("target") != self.public_key or payload.get("exp", 0) <= now:
            return 403, b"wrong target or expired"
        try:
            self.db.execute("INSERT INTO nonces VALUES (?, ?, ?)", (caller, payload["nonce"], payload["exp"]))
        except sqlite3.IntegrityError:
            return 409, b"replay"
        script: str = payload["script"]
        prog = self.programs.get(script)
        if prog is None:
            prog = self.programs[script] = peerbox.compile(script)
        reply: dict[str, Any] = {
            "v": 1, "typ": "peerbox/reply", "caller": caller, "target": self.public_key,
            "req": hashlib.sha256(body).digest(), "iat": now,
        }
        try:
            res = prog.run(payload.get("params", {}))
        except peerbox.Error as exc:
            reply.update(ok=False, error={"kind": type(exc).__name__, "message": str(exc)[:200]}, log=[],
                         usage={"fuel": 0, "wall_ms": 0, "peak_memory": 0})
        else:
            reply.update(ok=True, value=res.value, log=list(res.log),
                         usage={"fuel": res.fuel_used or 0, "wall_ms": int(res.wall_time * 1000),
                                "peak_memory": res.peak_memory})
        reply_bytes = cbor2.dumps(reply, canonical=True)
        sig = self.signing_key.sign(cbor2.dumps(["Signature1", PROTECTED, b"", reply_bytes])).signature
        return 200, b"\xd2" + cbor2.dumps([PROTECTED, {4: self.public_key}, reply_bytes, sig], canonical=True)


async def serve_connection(stream: trio.SocketStream, anchor: Anchor) -> None:
    """One HTTP/2 connection: frames in, each finished request handled inline, one write per read."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
    conn.initiate_connection()
    conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000})
    await stream.send_all(conn.data_to_send())
    bodies: dict[int, bytearray] = {}
    async with stream:
        while True:
            try:
                data = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                return
            if not data:
                return
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.RequestReceived):
                    bodies[ev.stream_id] = bytearray()
                elif isinstance(ev, h2.events.DataReceived):
                    bodies.setdefault(ev.stream_id, bytearray()).extend(ev.data)
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    status, out = anchor.handle(bytes(bodies.pop(ev.stream_id, b"")))
                    ctype = b"application/cose" if status == 200 else b"text/plain"
                    conn.send_headers(ev.stream_id, [(b":status", str(status).encode()),
                                                     (b"content-type", ctype),
                                                     (b"content-length", str(len(out)).encode())])
                    conn.send_data(ev.stream_id, out, end_stream=True)
                elif isinstance(ev, h2.events.StreamReset):
                    bodies.pop(ev.stream_id, None)
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    return
            out = conn.data_to_send()
            if out:
                try:
                    await stream.send_all(out)
                except trio.BrokenResourceError:
                    return


async def main_async(anchor: Anchor, host: str, port: int, port_file: Path | None) -> None:
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]
    if port_file is not None:
        tmp = port_file.with_name(port_file.name + ".tmp")
        tmp.write_text(f"{bound}\n")
        os.replace(tmp, port_file)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, lambda s: serve_connection(s, anchor), listeners)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, required=True, help="the peer root")
    ap.add_argument("--peer", required=True, help="the peer whose key signs the replies")
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--port-file", type=Path, default=None)
    ap.add_argument("--db", type=Path, default=None, help="nonce database (default ROOT/anchor-PID.sqlite)")
    args = ap.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    key = peerbox.PeerStore(args.root).get(args.peer).signing_key()
    anchor = Anchor(key, args.db or args.root / f"anchor-{os.getpid()}.sqlite")
    try:
        trio.run(main_async, anchor, host, int(port), args.port_file)
    finally:
        anchor.close()
        if args.port_file is not None:
            args.port_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
