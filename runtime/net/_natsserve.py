"""Serving an app over NATS: ``serve_nats`` subscribes for each hosted peer and answers on the inbox.

For each hosted peer (``name``, ``did``) the worker subscribes to
``peerbox.<did>.exec``, ``.call``, ``.logic`` and ``.revoke`` in the queue
group ``peerbox.<did>``: every worker hosting the peer joins the group, and
nats-server hands each request to one of them. A message's data is the
envelope (the same bytes an HTTP/2 client POSTs); it becomes an
:class:`~peerbox.net._http.HttpRequest` (``POST``, the path of its subject's
last token, ``content-type: application/cose``) for the same app the HTTP/2
server drives, so verification, policy, admission, metrics and logs are the
same on every carrier. The answer goes to the message's reply subject: data
= the response body, NATS headers ``Peerbox-Status`` (the HTTP status),
``Content-Type`` and ``Retry-After`` when the app gave one.

Limits (:class:`~peerbox.net._http.ServerLimits`; one subscription plays the
part of one HTTP/2 connection): a message larger than ``max_body`` is
answered 413 ``too_large`` and the app is never called; at most
``max_concurrent_streams`` app calls and ``max_buffered_per_conn`` bytes of
envelopes are in flight per subscription, beyond which a message is answered
503 ``busy`` with ``Retry-After: 1`` at once; nats-py holds at most that many
messages (×4) not yet handed over (beyond: dropped and logged as a slow
consumer: the sender times out). Answers the app marks ``preauth_failure``
are charged to the sender's inbox prefix (``_INBOX.<id>``: one client
connection) in the per-address budgets of ``limits``; while a prefix is over
budget its messages are dropped unanswered. (Anyone may name any reply
subject, so this only slows a careless client: who may publish to
``peerbox.>`` at all is nats-server's authorization to decide.) A message
without a reply subject is dropped. Cancelling :func:`serve_nats` drains:
the subscriptions end (messages already received are still served),
in-flight calls get ``shutdown_grace`` s to finish and be answered, then
the connection is flushed and closed.
"""

from __future__ import annotations

import itertools
import logging

import trio

from ._budget import AddressBudgets
from ._endpoints import RETRY_LATER, error_response
from ._h2client import CONTENT_TYPE
from ._http import App, HttpRequest, HttpResponse, ServerLimits
from ._client_errors import TransportError
from ._natsbridge import (OPERATIONS, STATUS_HEADER, Handler, NatsBridge, NatsMessage, NatsSubscription,
                          display_url, peer_subject, queue_group, subject_safe)
from ._startup import ServeError, StartupFailure

__all__ = ["serve_nats"]

log = logging.getLogger("peerbox.nats")

def _sender(reply: str) -> str:
    """The client connection a reply subject belongs to: ``_INBOX.<id>.<token>`` -> ``_INBOX.<id>``."""
    return reply.rsplit(".", 1)[0] if reply.count(".") >= 2 else reply


class _Subscription:
    """What is in flight on one subscription (the NATS counterpart of one HTTP/2 connection)."""

    def __init__(self, path: str, sub_id: int) -> None:
        self.path = path
        self.sub_id = sub_id
        self.in_flight = 0
        self.buffered = 0


class _Server:
    """The trio side of :func:`serve_nats`: messages in, app calls, answers out."""

    def __init__(self, app: App, bridge: NatsBridge, limits: ServerLimits) -> None:
        self.app = app
        self.bridge = bridge
        self.limits = limits
        #: where app calls run; None before serving starts and once draining has ended
        self.calls: trio.Nursery | None = None
        self.ids = itertools.count(1)
        self.budgets = AddressBudgets(limits.max_preauth_failures_per_addr,
                                      limits.preauth_failure_rate_per_addr, limits.max_tracked_addrs)

    def on_message(self, sub: _Subscription, msg: NatsMessage) -> None:
        """(trio thread) Refuse at once, or start an app call for ``msg``."""
        if not msg.reply:
            log.debug("NATS %s: a message without a reply subject, dropped", msg.subject)
            return
        sender = _sender(msg.reply)
        if not self.budgets.available(sender, trio.current_time()):
            log.debug("NATS %s: %s is over its failure budget, dropped", msg.subject, sender)
            return
        size, limits = len(msg.data), self.limits
        if size > limits.max_body:
            self.answer(msg, error_response(413, "too_large", f"the envelope is {size} bytes, more than "
                                                              f"{limits.max_body}"))
            return
        full = sub.buffered + size > limits.max_buffered_per_conn
        if full or sub.in_flight >= limits.max_concurrent_streams:
            self.answer(msg, error_response(503, "busy", "too many requests in flight; retry later",
                                            RETRY_LATER))
            return
        if self.calls is None:  # handed over after the drain ended
            self.answer(msg, error_response(503, "unavailable", "the worker is shutting down", RETRY_LATER))
            return
        sub.in_flight += 1
        sub.buffered += size
        self.calls.start_soon(self.call, sub, msg, sender)

    async def call(self, sub: _Subscription, msg: NatsMessage, sender: str) -> None:
        """Run the app for ``msg`` and answer it (the app never raises for any input)."""
        try:
            ctype = msg.headers.get("Content-Type") or CONTENT_TYPE
            req = HttpRequest(method="POST", path=sub.path, headers=(("content-type", ctype),), body=msg.data,
                              client=f"nats:{sender}", stream_id=next(self.ids), conn_id=sub.sub_id)
            try:
                resp = await self.app(req)
            except Exception:  # a bug in the app: a 500, as the HTTP/2 server answers
                log.exception("NATS %s: app error", msg.subject)
                resp = error_response(500, "internal", "internal error")
        finally:
            sub.in_flight -= 1
            sub.buffered -= len(msg.data)
        if resp.preauth_failure and not self.budgets.charge(sender, trio.current_time()):
            log.debug("NATS %s: %s went over its failure budget", msg.subject, sender)
        self.answer(msg, resp)

    def answer(self, msg: NatsMessage, resp: HttpResponse) -> None:
        """Publish ``resp`` to ``msg``'s reply subject (status, content type and retry-after as headers)."""
        headers = {STATUS_HEADER: str(resp.status)}
        for name, value in resp.headers:
            if name == "content-type":
                headers["Content-Type"] = value
            elif name == "retry-after":
                headers["Retry-After"] = value
        self.bridge.publish(msg.reply, resp.body, headers=headers)


async def serve_nats(app: App, url: str, peers: list[tuple[str, str]], *, limits: ServerLimits | None = None,
                     task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Answer requests for ``peers`` (``(name, did)`` pairs) arriving through the NATS server at ``url``
    with ``app``, until cancelled (then drain: see the module docstring).

    Reports ``url`` (without credentials) through ``task_status.started`` once every subscription
    is in place. Raises :class:`ServeError` (exit 2): no peer, a did that is not subject-safe
    (``PEER``), no NATS server answering at ``url`` or a subscription refused (``ADDRESS``).
    Losing the connection later is not an error: nats-py reconnects (for ever, 0.5 s apart), the
    subscriptions are renewed and serving resumes; each step is logged on ``peerbox.nats``.
    """
    limits = limits or ServerLimits()
    if not peers:
        raise ServeError(StartupFailure.PEER, "no peer to serve over NATS")
    for name, did in peers:
        if not subject_safe(did):
            raise ServeError(StartupFailure.PEER, f"{name}: {did!r} is not a did:key usable in a NATS "
                             "subject", peer=name)
    plan = [(peer_subject(did, op), queue_group(did), path)
            for _, did in peers for op, path in OPERATIONS.items()]
    shown = display_url(url)
    bridge = NatsBridge(url, name="peerbox serve", max_reconnects=-1, share=True)
    try:
        await bridge.open()
    except TransportError as exc:
        raise ServeError(StartupFailure.ADDRESS,
                         f"cannot connect to the NATS server at {shown}: {exc}") from exc
    try:
        await _serve(app, bridge, limits, plan, shown, task_status)
    finally:
        with trio.CancelScope(shield=True):
            await bridge.aclose()


async def _serve(app: App, bridge: NatsBridge, limits: ServerLimits, plan: list[tuple[str, str, str]],
                 shown: str, task_status: trio.TaskStatus[str]) -> None:
    server = _Server(app, bridge, limits)
    stop = trio.Event()

    async def run_calls(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        # shielded: the app calls outlive the cancellation of serve_nats by at most the grace
        with trio.CancelScope(shield=True) as scope:
            try:
                async with trio.open_nursery() as calls:
                    server.calls = calls
                    task_status.started(scope)
                    await stop.wait()
            finally:
                server.calls = None

    subs: list[NatsSubscription] = []
    async with trio.open_nursery() as nursery:
        calls_scope: trio.CancelScope = await nursery.start(run_calls)
        try:
            for index, (subj, queue, path) in enumerate(plan, 1):
                try:
                    subs.append(await bridge.subscribe(
                        subj, _bound(server, _Subscription(path, index)), queue=queue,
                        pending_msgs=4 * limits.max_concurrent_streams,
                        pending_bytes=4 * limits.max_buffered_per_conn))
                except TransportError as exc:
                    raise ServeError(StartupFailure.ADDRESS,
                                     f"NATS {shown}: cannot subscribe to {subj}: {exc}") from exc
            log.info("NATS %s: serving %d subjects", shown, len(subs))
            task_status.started(shown)
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):  # no new message once the subscriptions end
                for sub in subs:
                    try:
                        await bridge.drain(sub)
                    except TransportError as exc:
                        log.debug("NATS %s: draining %s: %s", shown, sub.subject, exc)
            calls_scope.deadline = trio.current_time() + limits.shutdown_grace
            stop.set()


def _bound(server: _Server, sub: _Subscription) -> Handler:
    return lambda msg: server.on_message(sub, msg)
