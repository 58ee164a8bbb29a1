"""Shared state on NATS JetStream: one connection, its key-value buckets, callable from any thread.

A worker started with ``peerbox serve --state nats://HOST:PORT`` keeps the
state several workers must agree on in JetStream key-value buckets instead
of SQLite files under its root (the stores themselves are
:mod:`peerbox.net._jsstores`):

=====================  ==============================================================  ==============
bucket                 key → value                                                     expiry
=====================  ==============================================================  ==============
``peerbox-nonces``     ``<target>.<sha256(caller ‖ nonce)>`` → the envelope's ``exp``  the envelope's
                                                                                       ``exp`` (per-
                                                                                       message TTL),
                                                                                       at most
                                                                                       :data:`NONCE_MAX_AGE`
``peerbox-revoked``    token id (hex) → ``{"at": unix time}``                          never
``peerbox-directory``  peer name → ``{"did": ..., "url": ...}``                        never
``peerbox-replies``    ``<target>.<request hash>`` → the signed answer                 the request's
                                                                                       ``exp``, at most
                                                                                       ``reply_ttl``;
                                                                                       oldest first
                                                                                       beyond
                                                                                       ``reply_bytes``
=====================  ==============================================================  ==============

(``<target>`` is the first 16 hex digits of SHA-256 of the target peer's public key: one
bucket serves every peer, and a key is a valid, bounded subject token.)
The rate-limit and quota buckets (``peerbox-rates``, ``peerbox-quota``) and
the logic bucket (``peerbox-logic``) are opened through ``buckets`` by the
worker's state; their stores are :mod:`peerbox.net._jslimits`,
:mod:`peerbox.net._jsquota` and :mod:`peerbox.net._jslogic`.
:meth:`JetStreamState.watch` follows a bucket (the revocations and the logic
records).

:class:`JetStreamState` is synchronous on purpose: the trust path checks a
request on a worker's pool thread, so each store call hands a coroutine to the
connection's asyncio loop (the process's NATS thread,
:class:`~peerbox.net._natslink.NatsLink`) and waits for its future. The
connection is shared with a :class:`~peerbox.net._natsbridge.NatsBridge`
opened with ``share=True`` to the same URL (a worker's ``--listen nats://``),
so a worker keeps one thread and one connection for both. Calls
from many pool threads are in flight at once on the one connection
(pipelined: JetStream acknowledges each publish on a shared reply
subscription), so a request costs one key-value round trip, not a queue
behind the others. What nats-py and asyncio raise is turned into
:class:`SharedStateError` here (:meth:`JetStreamState.call`) and nowhere else.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from .._errors import Error, UsageError
from ._natsbridge import NATS_SCHEME
from ._natslink import NatsLink, display_url

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from nats.js.client import JetStreamContext
    from nats.js.kv import KeyValue

__all__ = ["JetStreamState", "SharedStateError", "NONCE_MAX_AGE", "NONCE_BUCKET", "REVOKED_BUCKET",
           "DIRECTORY_BUCKET", "REPLY_BUCKET", "REPLY_TTL", "REPLY_BYTES", "target_token"]

log = logging.getLogger("peerbox.state")

#: The longest a nonce must be remembered: an envelope is valid at most 3600 s (``max_window`` of
#: :func:`~peerbox.wire.check_delivery`) and may be issued 60 s ahead (``max_skew``), so its ``exp``
#: is at most 3660 s after the moment it is checked. The bucket's ``max_age``; each key also
#: expires on its own at the envelope's ``exp`` (a per-message TTL).
NONCE_MAX_AGE = 3660.0
NONCE_BUCKET = "peerbox-nonces"
REVOKED_BUCKET = "peerbox-revoked"
DIRECTORY_BUCKET = "peerbox-directory"
REPLY_BUCKET = "peerbox-replies"
#: Default bound on how long a cached reply is kept (it also goes when its request expires).
REPLY_TTL = 600.0
#: Default bound on the reply cache's size (bytes; the oldest replies go first beyond it).
REPLY_BYTES = 256 << 20

_T = TypeVar("_T")


class SharedStateError(Error):
    """The shared state (NATS JetStream) cannot be reached or refused an operation: no server, a
    timeout, the connection closed, a bucket that cannot be created. A request that needed it is
    refused (signed ``unavailable``), never answered as if the state had said yes."""

    exit_code = 7


def target_token(public_key: bytes) -> str:
    """The key prefix of one peer's entries: 16 hex digits of SHA-256 of its public key."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def _translate(exc: BaseException, what: str) -> SharedStateError:
    """``exc`` (from nats-py, asyncio or the future) as a :class:`SharedStateError` about ``what``."""
    if isinstance(exc, (concurrent.futures.TimeoutError, asyncio.TimeoutError)):
        reason = "timed out"
    else:
        reason = str(exc) or type(exc).__name__
    return SharedStateError(f"JetStream {what}: {reason}")


class JetStreamState:
    """One NATS connection to JetStream for shared state, on its own thread and asyncio loop.

    ``JetStreamState(url)`` then :meth:`open` (synchronous: connects and
    creates or opens the buckets of the module docstring) and :meth:`close`.
    ``timeout`` (s) bounds every store operation (a server that does not
    acknowledge in time is an error: the request is refused, not run).
    ``replies``: keep the reply cache bucket (``reply_ttl`` s,
    ``reply_bytes`` bytes at most). Raises :class:`SharedStateError` (no
    server, JetStream off, a bucket refused) and :class:`~peerbox.UsageError`
    (not a ``nats://`` URL, nats-py missing).
    """

    def __init__(self, url: str, *, timeout: float = 5.0, connect_timeout: float = 5.0,
                 replies: bool = False, reply_ttl: float = REPLY_TTL, reply_bytes: int = REPLY_BYTES,
                 name: str = "peerbox-state", share: bool = True,
                 buckets: tuple[tuple[str, float | None], ...] = ()) -> None:
        parts = urlsplit(url)
        if parts.scheme != NATS_SCHEME or not parts.hostname:
            raise UsageError(f"not a NATS server URL for --state: {display_url(url)!r} "
                             "(expected nats://HOST[:PORT])")
        if timeout <= 0 or reply_ttl <= 0 or reply_bytes <= 0:
            raise UsageError("the state timeout, reply TTL and reply cache size must be positive")
        self.url = url
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.with_replies = replies
        self.reply_ttl = reply_ttl
        self.reply_bytes = reply_bytes
        self.name = name
        self.share = share
        #: more buckets to create or open (name, max age or None), e.g. the rate buckets
        self.extra_buckets = buckets
        self._link: NatsLink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._buckets: dict[str, KeyValue] = {}
        self._closed = False
        #: calls to :meth:`call` and those that failed (for metrics and tests)
        self.calls = 0
        self.failures = 0

    @property
    def shown(self) -> str:
        """The server's URL without credentials (for messages)."""
        return display_url(self.url)

    # -- lifetime ------------------------------------------------------------------------------

    def open(self) -> JetStreamState:
        """Connect (or share the process's connection to the same server), create or open the
        buckets; returns self. Raises :class:`SharedStateError` or :class:`~peerbox.UsageError`
        (see the class)."""
        if self._link is not None:
            raise UsageError("this JetStream state is already open")
        try:
            import nats  # noqa: F401 (only to say it is missing)
        except ImportError as exc:
            raise UsageError("--state nats:// needs the NATS client: pip install 'peerbox[nats]'") from exc
        try:
            self._link = NatsLink.acquire(self.url, name=self.name, connect_timeout=self.connect_timeout,
                                          max_reconnects=-1, reconnect_wait=0.5, share=self.share)
        except Exception as exc:
            self._closed = True
            raise _translate(exc, f"connect to {self.shown}") from exc
        self._loop, self._nc = self._link.loop, self._link.nc
        try:
            self.call(self._open_buckets, f"open the buckets on {self.shown}",
                      timeout=self.connect_timeout + self.timeout)
        except BaseException:
            self.close()
            raise
        return self

    async def _open_buckets(self) -> None:
        assert self._nc is not None
        js = self._js = self._nc.jetstream(timeout=self.timeout)
        await self._bucket(NONCE_BUCKET, ttl=NONCE_MAX_AGE)
        await self._bucket(REVOKED_BUCKET)
        await self._bucket(DIRECTORY_BUCKET)
        for name, ttl in self.extra_buckets:
            await self._bucket(name, ttl=ttl)
        if self.with_replies:
            await self._reply_bucket(js)

    async def _bucket(self, name: str, *, ttl: float | None = None) -> KeyValue:
        """Open bucket ``name``, creating it (history 1, file storage) if it does not exist."""
        import nats.js.errors as jse

        assert self._js is not None
        try:
            kv = await self._js.key_value(name)
        except jse.BucketNotFoundError:
            kv = await self._js.create_key_value(bucket=name, history=1, ttl=ttl)
        self._buckets[name] = kv
        return kv

    async def _reply_bucket(self, js: JetStreamContext) -> None:
        """The reply cache: a key-value bucket whose stream drops the oldest replies when full
        (``discard: old``; nats-py's own buckets refuse new writes instead)."""
        import nats.js.api as api
        import nats.js.errors as jse

        try:
            self._buckets[REPLY_BUCKET] = await js.key_value(REPLY_BUCKET)
            return
        except jse.BucketNotFoundError:
            pass
        await js.add_stream(api.StreamConfig(
            name=f"KV_{REPLY_BUCKET}", subjects=[f"$KV.{REPLY_BUCKET}.>"], allow_direct=True,
            allow_rollup_hdrs=True, allow_msg_ttl=True, deny_delete=True, discard=api.DiscardPolicy.OLD,
            duplicate_window=min(120.0, self.reply_ttl), max_age=self.reply_ttl, max_bytes=self.reply_bytes,
            max_msgs=-1, max_msgs_per_subject=1, max_consumers=-1, num_replicas=1,
            storage=api.StorageType.FILE))
        self._buckets[REPLY_BUCKET] = await js.key_value(REPLY_BUCKET)

    def close(self) -> None:
        """Give the connection back (closed when no one else uses it). Idempotent; never raises for
        NATS trouble."""
        if self._closed:
            return
        self._closed = True
        link, self._link = self._link, None
        if link is not None:
            link.release()
        self._nc = None

    def __enter__(self) -> JetStreamState:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls ---------------------------------------------------------------------------------

    def bucket(self, name: str) -> KeyValue:
        """An open bucket (:data:`NONCE_BUCKET`...). Raises :class:`SharedStateError` when it was not
        opened (the reply cache without ``replies``, or the state not open)."""
        kv = self._buckets.get(name)
        if kv is None:
            raise SharedStateError(f"JetStream {self.shown}: bucket {name} is not open")
        return kv

    def call(self, make: Callable[[], Coroutine[Any, Any, _T]], what: str, *,
             timeout: float | None = None) -> _T:
        """Run the coroutine ``make()`` on the connection's loop and wait for it (at most ``timeout``
        s, default :attr:`timeout` plus a second); its result. Call it from any thread but the
        loop's. Raises :class:`SharedStateError` naming ``what`` for whatever nats-py, asyncio or
        the wait raised (a :class:`~peerbox.Error` raised inside passes through)."""
        loop = self._loop
        self.calls += 1
        if loop is None or self._closed or loop.is_closed():
            self.failures += 1
            raise SharedStateError(f"JetStream {what}: the connection to {self.shown} is closed")
        nc = self._nc
        if nc is not None and not nc.is_connected:
            # fail now rather than let nats-py buffer the write until it reconnects: a write that
            # lands after its caller gave up would record a nonce for a request answered "unavailable"
            self.failures += 1
            raise SharedStateError(f"JetStream {what}: not connected to {self.shown} (reconnecting)")
        fut = asyncio.run_coroutine_threadsafe(make(), loop)
        try:
            return fut.result(timeout=timeout if timeout is not None else self.timeout + 1.0)
        except Error:
            self.failures += 1
            raise
        except Exception as exc:
            self.failures += 1
            fut.cancel()
            raise _translate(exc, what) from exc

    def watch(self, bucket: str, on_entry: Callable[[Any], None], caught_up: threading.Event, what: str, *,
              meta_only: bool = False) -> concurrent.futures.Future[None]:
        """Watch every key of ``bucket``: ``on_entry(entry)`` (on the connection's loop: keep it short)
        for each record there is, then for each new one; ``caught_up`` is set once the records there
        were are all in, and cleared when the watch ends (its error logged, naming ``what``). Raises
        :class:`SharedStateError` when the state is closed or the bucket not open."""
        kv = self.bucket(bucket)

        async def watch() -> None:
            watcher = await kv.watchall(meta_only=meta_only)
            async for entry in watcher:
                if entry is None:  # the records there were are all in
                    caught_up.set()
                    continue
                on_entry(entry)
                if entry.delta == 0:
                    caught_up.set()

        def ended(fut: concurrent.futures.Future[None]) -> None:
            caught_up.clear()
            if not fut.cancelled() and fut.exception() is not None:
                log.warning("JetStream %s: the watch ended: %s", what, fut.exception())

        fut = self.spawn(watch())
        fut.add_done_callback(ended)
        return fut

    def spawn(self, coro: Coroutine[Any, Any, None]) -> concurrent.futures.Future[None]:
        """Start ``coro`` on the connection's loop without waiting (a watcher). Raises
        :class:`SharedStateError` when the state is closed."""
        loop = self._loop
        if loop is None or self._closed or loop.is_closed():
            coro.close()
            raise SharedStateError(f"JetStream: the connection to {self.shown} is closed")
        return asyncio.run_coroutine_threadsafe(coro, loop)
