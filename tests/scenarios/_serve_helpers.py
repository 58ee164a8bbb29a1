"""Serving peers over loopback HTTP/2 in the scenario tests, shared and isolated mode alike.

``async with shared(root) as (url, _)`` runs a shared-mode worker in this
process, ``isolated(root)`` a router with one child process per peer; both on
a free loopback port and both stopped on exit. :data:`MODES` names them, so one
test body runs against both. ``on_nats(root, nats_url)`` serves a shared-mode
worker through a NATS server instead. :class:`Caller` signs exec, call and revoke
envelopes (any local peer's key, or a key from another root) and posts them
through one :class:`H2Transport`, returning what came back unverified, so the
tests see statuses, headers and refusals as a client would.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import cbor2
import trio

import peerbox
from peerbox.net import Worker
from peerbox.net._h2client import CALL_PATH, EXEC_PATH, REVOKE_PATH, H2Transport, Transport
from peerbox.net._h2clientconn import Answer
from peerbox.net._access import access_logged
from peerbox.net._isolated import serve_isolated
from peerbox.net._listeners import BoundListener, Carrier, ListenSpec, parse_listen_url
from peerbox.net._serving import listen_socket
from peerbox.net._natsserve import serve_nats
from peerbox.net._shared import serve_worker
from peerbox.net._transports import SchemeTransport
from peerbox.wire import (KeyPair, Reply, make_call_request, make_request, make_revoke_request,
                          verify_reply)

__all__ = ["shared", "isolated", "on_nats", "worker_on", "MODES", "TRANSPORTS", "Caller", "Sent", "rejection"]

#: What :class:`Caller` gives back: (HTTP status, content type, body, the request's bytes).
Sent = tuple[int, str, bytes, bytes]


def _listeners(ws: bool, nats: str | None) -> list[BoundListener]:
    """The listeners besides HTTP/2: with ``ws`` a WebSocket one bound on a free loopback port, with
    ``nats`` (a ``nats://`` URL) one subscribing on that NATS server."""
    extra = []
    if ws:
        sock = listen_socket("127.0.0.1", 0)
        extra.append(BoundListener(ListenSpec(Carrier.WS, "127.0.0.1", sock.getsockname()[1]), sock))
    if nats is not None:
        extra.append(BoundListener(parse_listen_url(nats)))
    return extra


def _ws_url(extra: list[BoundListener]) -> str | None:
    """The ``ws://`` URL of the WebSocket listener among ``extra`` (None: there is none)."""
    return next((b.spec.argv for b in extra if b.spec.carrier is Carrier.WS), None)


def _close(extra: list[BoundListener]) -> None:
    for bound in extra:
        if bound.sock is not None:
            bound.sock.close()


@asynccontextmanager
async def shared(root: Path, peers: list[str] | None = None, *,
                 max_runs: int = 2, ws: bool = False, nats: str | None = None) -> AsyncIterator[tuple[str, Any]]:
    """A shared-mode worker for ``peers`` (default bob and carol) under ``root``; yields (url, None),
    or with ``ws`` (url, the ``ws://`` URL of its WebSocket listener). With ``nats`` (the URL of a
    NATS server) it also answers there, as ``--listen nats://...`` does."""
    worker = Worker(root, peers or ["bob", "carol"], max_runs=max_runs)
    extra = _listeners(ws, nats)
    try:
        async with trio.open_nursery() as n:
            port = await n.start(lambda task_status: serve_worker(
                worker, host="127.0.0.1", port=0, quiet=True, handle_signals=False, grace=2.0,
                extra=extra, task_status=task_status))
            yield f"http://127.0.0.1:{port}", _ws_url(extra)
            n.cancel_scope.cancel()
    finally:
        worker.close()
        _close(extra)


@asynccontextmanager
async def on_nats(root: Path, nats_url: str, peers: list[str] | None = None, *,
                  max_runs: int = 2) -> AsyncIterator[tuple[str, Worker]]:
    """A shared-mode worker for ``peers`` (default bob and carol) answering through the NATS server at
    ``nats_url`` (:func:`~peerbox.net._natsserve.serve_nats`, the worker's access-logged app, as
    ``peerbox serve --listen nats://...`` serves it); yields (nats_url, the worker)."""
    worker = Worker(root, peers or ["bob", "carol"], max_runs=max_runs)
    try:
        async with trio.open_nursery() as n:
            url = await n.start(lambda task_status: serve_nats(
                access_logged(worker.app, "nats"), nats_url, worker.peers, task_status=task_status))
            yield url, worker
            n.cancel_scope.cancel()
    finally:
        worker.close()


@asynccontextmanager
async def isolated(root: Path, peers: list[str] | None = None, *,
                   max_runs: int = 2, ws: bool = False, nats: str | None = None) -> AsyncIterator[tuple[str, Any]]:
    """An isolated-mode router (one child process per peer); yields (url, None), or with ``ws``
    (url, the ``ws://`` URL of the router's WebSocket listener); with ``nats`` the router also
    answers through that NATS server (and forwards to the children, as over HTTP/2)."""
    extra = _listeners(ws, nats)
    try:
        async with trio.open_nursery() as n:
            port = await n.start(lambda task_status: serve_isolated(
                str(root), peers or ["bob", "carol"], host="127.0.0.1", port=0, max_runs=max_runs, quiet=True,
                handle_signals=False, grace=2.0, extra=extra, task_status=task_status))
            yield f"http://127.0.0.1:{port}", _ws_url(extra)
            n.cancel_scope.cancel()
    finally:
        _close(extra)


MODES: dict[str, Callable[..., Any]] = {"shared": shared, "isolated": isolated}

#: The carriers a worker answers on (what :func:`worker_on` takes).
TRANSPORTS = ["h2", "ws", "nats"]


@asynccontextmanager
async def worker_on(mode: str, transport: str, root: Path, peers: list[str] | None = None,
                  nats: str | None = None) -> AsyncIterator[tuple[str, Transport]]:
    """A worker of ``mode`` for ``peers`` answering on ``transport`` (``h2``, ``ws`` or ``nats``, the
    last through the NATS server at ``nats``); yields (its URL for that carrier, a client transport
    for it, open)."""
    async with MODES[mode](root, peers, ws=transport == "ws", nats=nats if transport == "nats" else None) \
            as (h2, ws), SchemeTransport() as carrier:
        yield {"h2": h2, "ws": ws, "nats": nats}[transport], carrier


def rejection(body: bytes) -> str:
    """The ``error.kind`` of a worker's unsigned refusal (``{error: {kind, message}}``)."""
    kind = cbor2.loads(body)["error"]["kind"]
    assert isinstance(kind, str)
    return kind


class Caller:
    """Signs envelopes as a named peer and posts them to one worker ``url``.

    A name is looked up in ``keys`` first (peers under other roots), then in
    ``store``; a target name is a peer of ``store`` (the worker's root).
    """

    def __init__(self, store: peerbox.PeerStore, transport: Transport, url: str,
                 keys: Mapping[str, KeyPair] | None = None) -> None:
        self.store, self.transport, self.url = store, transport, url
        self.keys = dict(keys or {})

    def key(self, name: str) -> KeyPair:
        """The signing key of ``name``: from ``keys``, else the local peer's."""
        return self.keys[name] if name in self.keys else self.store.get(name).signing_key()

    def target(self, name: str) -> bytes:
        """The public key of the local peer ``name``."""
        return self.store.get(name).public_key

    async def post(self, path: str, data: bytes) -> Answer:
        """POST ``data`` to ``path`` of the worker: the whole answer (status, body and, over HTTP/2,
        the other headers; the other carriers have none)."""
        if isinstance(self.transport, H2Transport):
            return await self.transport.post(self.url, data, 20.0, path=path)
        status, ctype, body = await self.transport.exec(self.url, data, 20.0, path=path)
        return Answer(status, ctype, body)

    async def _sent(self, path: str, req: bytes) -> Sent:
        answer = await self.post(path, req)
        return answer.status, answer.content_type, answer.body, req

    async def send(self, script: str, *, sender: str = "alice", to: str = "bob",
                   data: bytes | None = None, **kw: Any) -> Sent:
        """An exec request of ``script`` (or the bytes ``data``) to ``/v1/exec``."""
        req = data if data is not None else make_request(
            self.key(sender), target=self.target(to), script=script, now=int(time.time()), **kw)
        return await self._sent(EXEC_PATH, req)

    def call_request(self, function: str, params: Mapping[str, Any] | Sequence[Any] | None = None, *,
                     sender: str = "carol", to: str = "bob", **kw: Any) -> bytes:
        """A signed ``peerbox/call`` of ``function`` (``MODULE::FUNCTION``); ``kw`` as make_call_request."""
        module, _, name = function.rpartition("::")
        kw.setdefault("now", int(time.time()))
        return make_call_request(self.key(sender), target=self.target(to), module=module, function=name,
                                 params=params, **kw)

    async def call(self, function: str, params: Mapping[str, Any] | Sequence[Any] | None = None, *,
                   sender: str = "carol", to: str = "bob", data: bytes | None = None, **kw: Any) -> Sent:
        """A call request of ``function`` with ``params`` (or the bytes ``data``) to ``/v1/call``."""
        req = data if data is not None else self.call_request(function, params, sender=sender, to=to, **kw)
        return await self._sent(CALL_PATH, req)

    def revoke_request(self, token: bytes, *, sender: str = "alice", to: str = "bob", **kw: Any) -> bytes:
        """A signed ``peerbox/revoke`` of ``token``; ``kw`` as make_revoke_request."""
        kw.setdefault("now", int(time.time()))
        return make_revoke_request(self.key(sender), target=self.target(to), token=token, **kw)

    async def revoke(self, token: bytes, *, sender: str = "alice", to: str = "bob",
                     data: bytes | None = None, **kw: Any) -> Sent:
        """A revocation of ``token`` (or the bytes ``data``) to ``/v1/revoke``."""
        req = data if data is not None else self.revoke_request(token, sender=sender, to=to, **kw)
        return await self._sent(REVOKE_PATH, req)

    def reply(self, body: bytes, req: bytes, to: str = "bob") -> Reply:
        """``body`` verified as ``to``'s signed reply to exactly ``req``."""
        return verify_reply(body, target=self.target(to), request_bytes=req)
