"""nats-py used from trio: one NATS connection on its own thread and asyncio loop, batched both ways.

nats-py is an asyncio library and peerbox runs on trio. :class:`NatsBridge`
keeps them apart: the NATS client lives on the process's NATS thread running
an asyncio loop (:mod:`peerbox.net._natslink`, shared with the JetStream
state), and trio code talks to it only through this class:

- **inbound** (subscriptions, replies to requests): nats-py calls a small
  coroutine per message on the asyncio thread, which turns the message into
  a :class:`NatsMessage` (plain bytes and strings: no nats-py object crosses)
  and appends it, with the trio-side handler it is for, to one queue. The
  first message of a burst schedules one wake-up of the trio loop
  (``TrioToken.run_sync_soon``); every message queued until the trio loop
  runs is handed over in that same pass. A handler is a plain function run
  on the trio thread (it starts a task, or wakes a waiting one).
- **outbound** (publishes: requests, replies): :meth:`NatsBridge.publish`
  is synchronous and never blocks the trio loop: it appends to a queue and
  the first publish of a burst schedules one flush on the asyncio loop
  (``call_soon_threadsafe``), which publishes everything queued by then.
- **control** (connect, subscribe, unsubscribe, close): :meth:`NatsBridge._call`
  runs a coroutine on the asyncio loop and parks the trio task until it ends
  (cancelling the trio task cancels the coroutine).

Reconnects are nats-py's (``max_reconnects`` attempts, -1: for ever,
``reconnect_wait`` apart; subscriptions are renewed by nats-py), each
disconnection, reconnection and asynchronous error is logged on
``peerbox.nats``. What nats-py and the asyncio machinery raise is turned into
:class:`~peerbox.net._client_errors.TransportError` by :func:`nats_errors`,
applied here and nowhere else (:func:`nats_error`, ``raise ... from exc``);
the server (:mod:`peerbox.net._natsserve`) turns a failed start into a
:class:`~peerbox.net._startup.ServeError`. nats-py itself is imported when a
bridge opens (``pip install 'peerbox[nats]'``), never by ``import peerbox``.

Measured on this 2-core machine (``bench/network.py``'s NATS row, loopback
nats-server): a request/reply crossing costs the trio side one wake-up per
burst rather than one per message; see the README ("NATS") for the figures.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import logging
import re
import threading
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import trio

from .._errors import ExceptionMapping, UsageError, map_exceptions
from ._client_errors import TransportError
from ._h2client import CALL_PATH, EXEC_PATH, LOGIC_PATH, REVOKE_PATH
from ._natslink import NatsLink, display_url

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

__all__ = ["NatsBridge", "NatsMessage", "NatsSubscription", "Handler", "nats_errors", "nats_error",
           "display_url", "subject_safe", "peer_subject", "queue_group", "NATS_SCHEME", "DEFAULT_PORT",
           "SUBJECT_PREFIX", "OPERATIONS", "STATUS_HEADER"]

log = logging.getLogger("peerbox.nats")

#: The URL scheme of a NATS server.
NATS_SCHEME = "nats"
#: nats-server's default client port.
DEFAULT_PORT = 4222
#: The NATS header carrying the HTTP status of a worker's answer.
STATUS_HEADER = "Peerbox-Status"
#: The first token of every peerbox subject.
SUBJECT_PREFIX = "peerbox"
#: Each operation (a subject's last token) and the worker path it is served as.
OPERATIONS: dict[str, str] = {"exec": EXEC_PATH, "call": CALL_PATH, "logic": LOGIC_PATH,
                              "revoke": REVOKE_PATH}
#: A did:key is ``did:key:z`` and base58btc: no ``.``, ``*``, ``>`` or white space, so one subject token.
_DID = re.compile(r"did:key:z[1-9A-HJ-NP-Za-km-z]+\Z")
_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True, slots=True)
class NatsMessage:
    """One message delivered to trio: its subject, reply subject ("" if none), data and headers."""

    subject: str
    reply: str
    data: bytes
    headers: Mapping[str, str]


#: A trio-side consumer of messages: a plain function run on the trio thread; it must not block.
Handler = Callable[[NatsMessage], None]
#: Called on the trio thread when a publish failed (already translated).
PublishFailed = Callable[[TransportError], None]


def subject_safe(did: str) -> bool:
    """Whether ``did`` is a ``did:key`` that can stand as one token of a NATS subject."""
    return _DID.match(did) is not None


def peer_subject(did: str, operation: str) -> str:
    """The subject of ``operation`` (``exec``, ``call``, ``logic``, ``revoke``) at the peer ``did``:
    ``peerbox.<did>.<operation>``. Raises :class:`~peerbox.UsageError` for a did that is not
    subject-safe or an unknown operation."""
    if not subject_safe(did):
        raise UsageError(f"{did!r} is not a did:key usable in a NATS subject")
    if operation not in OPERATIONS:
        raise UsageError(f"no NATS operation {operation!r} (one of {', '.join(OPERATIONS)})")
    return f"{SUBJECT_PREFIX}.{did}.{operation}"


def queue_group(did: str) -> str:
    """The queue group of every worker hosting ``did``: ``peerbox.<did>``."""
    if not subject_safe(did):
        raise UsageError(f"{did!r} is not a did:key usable in a NATS subject")
    return f"{SUBJECT_PREFIX}.{did}"


def _nats_errors() -> ExceptionMapping:
    """The table of this boundary (built on first use: it imports nats-py)."""
    import nats.errors as ne

    def make(kind: str, what: str | None = None) -> Callable[[BaseException], BaseException]:
        def translate(exc: BaseException) -> BaseException:
            return TransportError(what or f"NATS: {str(exc) or type(exc).__name__}", kind=kind)
        return translate

    def too_large(exc: BaseException) -> BaseException:
        return TransportError("NATS: the message is larger than the server's max_payload", kind="protocol")

    return {
        ne.NoRespondersError: make("unavailable", "NATS: no responders (no worker on the subject)"),
        ne.NoServersError: make("connect"),
        ne.AuthorizationError: make("connect"),
        ne.SecureConnFailedError: make("tls"),
        ne.SecureConnRequiredError: make("tls"),
        ne.SecureConnWantedError: make("tls"),
        ne.MaxPayloadError: too_large,
        ne.TimeoutError: make("timeout"),
        ne.Error: make("protocol"),
        asyncio.TimeoutError: make("timeout", "NATS: timed out"),
        ConnectionError: make("connect"),
        OSError: make("connect"),
        concurrent.futures.CancelledError: make("protocol", "NATS: the operation was cancelled (closing)"),
    }


@functools.cache
def nats_errors() -> ExceptionMapping:
    """What nats-py may raise, and as what: every ``nats.errors.Error`` is a :class:`TransportError`
    whose kind says where (``connect``, ``tls``, ``timeout``, ``unavailable`` for no responders,
    ``protocol`` for the rest), as are ``OSError`` and asyncio's timeouts. Built on first use (it
    imports nats-py), then the same table."""
    return _nats_errors()


def nats_error(exc: BaseException) -> TransportError:
    """``exc`` (raised by nats-py or asyncio) as the :class:`TransportError` of :func:`nats_errors`."""
    if isinstance(exc, TransportError):
        return exc
    for foreign, make in nats_errors().items():
        if isinstance(exc, foreign):
            made = make(exc)
            assert isinstance(made, TransportError)
            made.__cause__ = exc
            return made
    wrapped = TransportError(f"NATS: {type(exc).__name__}: {exc}", kind="protocol")
    wrapped.__cause__ = exc
    return wrapped


def _import_nats() -> Any:
    try:
        import nats
    except ImportError as exc:
        raise UsageError("nats:// needs the NATS client: pip install 'peerbox[nats]' (nats-py)") from exc
    return nats


def _soon(token: trio.lowlevel.TrioToken, fn: Callable[[], object]) -> None:
    """Run ``fn`` on the trio loop of ``token``, unless that run has ended."""
    try:
        token.run_sync_soon(fn)
    except trio.RunFinishedError:
        pass


@dataclasses.dataclass(slots=True)
class _Publish:
    subject: str
    data: bytes
    reply: str
    headers: dict[str, str] | None
    failed: PublishFailed | None


class NatsSubscription:
    """A subscription made through a bridge (opaque to trio code: end it with :meth:`NatsBridge.drain`)."""

    def __init__(self, sub: Subscription, subject: str, queue: str) -> None:
        self._sub = sub
        self.subject = subject
        self.queue = queue


class NatsBridge:
    """One NATS connection (nats-py on the process's NATS thread) used from one trio run.

    ``async with NatsBridge(url) as bridge`` connects (raising
    :class:`TransportError` kind ``connect`` if no server answers within
    ``connect_timeout`` s) and closes on exit (:meth:`aclose`: what was
    published is flushed first, then the connection is given back: closed,
    and the thread ended, unless another user shares them). ``share``: use
    the process's open connection to the same URL with the same reconnect
    options if there is one (:class:`~peerbox.net._natslink.NatsLink`; a
    worker's NATS listener and its ``--state`` then share one connection).
    ``name`` is the client name nats-server shows (``connz``).
    ``max_reconnects`` (-1: for ever) and ``reconnect_wait`` (s) drive
    nats-py's reconnection; ``on_closed`` (trio thread) is called once if the
    connection ends for good while the bridge is open (reconnects exhausted).
    ``pending_size`` bytes of publishes are buffered while reconnecting (more
    fail with ``protocol``).
    """

    def __init__(self, url: str, *, name: str = "peerbox", connect_timeout: float = 5.0,
                 max_reconnects: int = -1, reconnect_wait: float = 0.5, pending_size: int = 32 << 20,
                 on_closed: Callable[[], None] | None = None, share: bool = False) -> None:
        parts = urlsplit(url)
        if parts.scheme != NATS_SCHEME or not parts.hostname:
            raise UsageError(f"not a NATS server URL: {display_url(url)!r} (expected nats://HOST[:PORT])")
        self.url = url
        self.server = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
        self.name = name
        self.connect_timeout = connect_timeout
        self.max_reconnects = max_reconnects
        self.reconnect_wait = reconnect_wait
        self.pending_size = pending_size
        self.on_closed = on_closed
        self.share = share
        self._link: NatsLink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nc: NatsClient | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._closing = False
        # inbound: (handler, message) pairs for the trio loop; one wake-up scheduled per burst
        self._in: list[tuple[Handler, NatsMessage]] = []
        self._in_scheduled = False
        self._in_lock = threading.Lock()
        # outbound: publishes for the asyncio loop; one flush scheduled per burst
        self._out: list[_Publish] = []
        self._out_scheduled = False
        self._out_lock = threading.Lock()
        #: batches handed to trio and to asyncio (for the benchmark: messages per wake-up)
        self.inbound_batches = 0
        self.outbound_batches = 0

    # -- lifetime ------------------------------------------------------------------------------

    async def __aenter__(self) -> NatsBridge:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        with trio.CancelScope(shield=True):
            await self.aclose()

    @property
    def max_payload(self) -> int:
        """The largest message the server takes (its ``max_payload``), once connected."""
        return int(self._nc.max_payload) if self._nc is not None else 0

    async def open(self) -> None:
        """Connect (on the process's NATS thread: :class:`~peerbox.net._natslink.NatsLink`). Raises
        :class:`TransportError` (``connect``...) or :class:`~peerbox.UsageError` (nats-py missing,
        already open)."""
        if self._link is not None:
            raise UsageError("this NATS bridge is already open")
        _import_nats()
        self._token = trio.lowlevel.current_trio_token()
        acquire = functools.partial(NatsLink.acquire, self.url, name=self.name,
                                    connect_timeout=self.connect_timeout, max_reconnects=self.max_reconnects,
                                    reconnect_wait=self.reconnect_wait, pending_size=self.pending_size,
                                    share=self.share, on_closed=self._on_link_closed)
        with map_exceptions(nats_errors()):
            link = await trio.to_thread.run_sync(acquire)
        self._link, self._loop, self._nc = link, link.loop, link.nc

    def _on_link_closed(self) -> None:
        """(NATS thread) The connection ended for good (reconnects exhausted)."""
        if not self._closing and self.on_closed is not None and self._token is not None:
            _soon(self._token, self.on_closed)

    async def aclose(self) -> None:
        """Flush what was published, give the connection back (closed when no one else uses it).
        Idempotent; never raises for NATS trouble (a connection that cannot flush is closed all
        the same)."""
        if self._link is None or self._closing:
            return
        self._closing = True
        try:
            await self._call(self._drain_out())
        except TransportError as exc:
            log.debug("NATS %s: closing: %s", display_url(self.server), exc)
        link = self._link
        await trio.to_thread.run_sync(functools.partial(link.release, self._on_link_closed))
        self._nc = None

    async def _drain_out(self) -> None:
        while True:  # the publishes queued before closing go out first
            with self._out_lock:
                if not self._out and not self._out_scheduled:
                    break
            await asyncio.sleep(0.001)
        nc = self._nc
        if nc is not None and nc.is_connected:
            try:
                await nc.flush(timeout=2)
            except Exception as exc:  # noqa: BLE001 (closing anyway)
                log.debug("NATS flush before close failed: %s", exc)

    # -- control: a coroutine on the asyncio loop, awaited from trio ---------------------------

    async def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coro`` on the asyncio loop; its result, or its exception through :func:`nats_errors`."""
        loop, token = self._loop, self._token
        if loop is None or token is None:
            coro.close()
            raise UsageError("this NATS bridge is not open")
        fut: concurrent.futures.Future[_T] = asyncio.run_coroutine_threadsafe(coro, loop)
        done = trio.Event()
        fut.add_done_callback(lambda _f: _soon(token, done.set))
        try:
            await done.wait()
        except trio.Cancelled:
            fut.cancel()
            raise
        with map_exceptions(nats_errors()):
            return fut.result()

    async def subscribe(self, subject: str, handler: Handler, *, queue: str = "",
                        pending_msgs: int = 65536, pending_bytes: int = 64 << 20) -> NatsSubscription:
        """Subscribe to ``subject`` (in queue group ``queue``, "" for none); each message is given to
        ``handler`` on the trio thread. nats-py holds at most ``pending_msgs`` messages and
        ``pending_bytes`` bytes not yet handed over (beyond: dropped, logged as a slow consumer).
        Raises :class:`TransportError`."""
        deliver = self._deliver

        async def cb(msg: Msg) -> None:
            deliver(handler, NatsMessage(msg.subject, msg.reply, msg.data, msg.headers or {}))

        async def sub() -> Subscription:
            assert self._nc is not None
            return await self._nc.subscribe(subject, queue=queue, cb=cb, pending_msgs_limit=pending_msgs,
                                            pending_bytes_limit=pending_bytes)

        return NatsSubscription(await self._call(sub()), subject, queue)

    async def drain(self, sub: NatsSubscription) -> None:
        """End ``sub``: the server stops sending; messages already received are still handed over.
        Raises :class:`TransportError`."""

        async def drain() -> None:
            await sub._sub.drain()  # type: ignore[no-untyped-call]
            await asyncio.sleep(0)  # let the subscription's task hand over what it held

        await self._call(drain())

    def new_inbox(self) -> str:
        """A fresh inbox subject prefix of this connection (``_INBOX.<nuid>``)."""
        assert self._nc is not None, "the bridge is not open"
        return self._nc.new_inbox()

    # -- inbound: asyncio thread -> trio, one wake-up per burst --------------------------------

    def _deliver(self, handler: Handler, msg: NatsMessage) -> None:
        """(asyncio thread) Queue ``msg`` for ``handler``; wake the trio loop if it is not woken yet."""
        with self._in_lock:
            self._in.append((handler, msg))
            if self._in_scheduled:
                return
            self._in_scheduled = True
        if self._token is not None:
            _soon(self._token, self._hand_over)

    def _hand_over(self) -> None:
        """(trio thread) Give every queued message to its handler."""
        with self._in_lock:
            batch, self._in = self._in, []
            self._in_scheduled = False
        self.inbound_batches += 1
        for handler, msg in batch:
            try:
                handler(msg)
            except Exception:  # a bug in a handler must not end the trio run
                log.exception("NATS: handler for %s failed", msg.subject)

    # -- outbound: trio -> asyncio thread, one flush per burst ---------------------------------

    def publish(self, subject: str, data: bytes, *, reply: str = "", headers: dict[str, str] | None = None,
                failed: PublishFailed | None = None) -> None:
        """Queue a message for ``subject``; never blocks. A publish that fails (the connection is
        closed, the message is over ``max_payload``...) calls ``failed`` on the trio thread with the
        :class:`TransportError` (else it is logged)."""
        loop = self._loop
        if loop is None or self._closing:
            error = TransportError("NATS: the connection is closed", kind="protocol")
            if failed is None:
                log.debug("NATS: publish to %s dropped: %s", subject, error)
            else:
                failed(error)
            return
        with self._out_lock:
            self._out.append(_Publish(subject, data, reply, headers, failed))
            if self._out_scheduled:
                return
            self._out_scheduled = True
        loop.call_soon_threadsafe(self._start_flush)

    def _start_flush(self) -> None:
        assert self._loop is not None
        self._loop.create_task(self._flush())

    async def _flush(self) -> None:
        """(asyncio thread) Publish everything queued, batch after batch, until the queue is empty."""
        nc = self._nc
        while True:
            with self._out_lock:
                batch, self._out = self._out, []
                if not batch:
                    self._out_scheduled = False
                    return
            self.outbound_batches += 1
            for item in batch:
                try:
                    if nc is None:
                        raise TransportError("NATS: the connection is closed", kind="protocol")
                    await nc.publish(item.subject, item.data, reply=item.reply, headers=item.headers)
                except Exception as exc:  # noqa: BLE001 (translated, handed to the publisher)
                    error = nats_error(exc)
                    if item.failed is not None and self._token is not None:
                        _soon(self._token, _bind(item.failed, error))
                    else:
                        log.warning("NATS: publish to %s failed: %s", item.subject, error)


def _bind(failed: PublishFailed, error: TransportError) -> Callable[[], None]:
    return lambda: failed(error)
