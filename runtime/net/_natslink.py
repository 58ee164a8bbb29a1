"""One nats-py connection on the process's NATS thread, shared by whoever asks for the same one.

nats-py is an asyncio library; peerbox runs on trio (the NATS transport,
:class:`~peerbox.net._natsbridge.NatsBridge`) and on plain threads (the
shared state, :class:`~peerbox.net._jetstream.JetStreamState`). Both stand on
this module:

- **one thread per process.** Every connection lives on one asyncio loop,
  on one daemon thread (``nats``), started by the first :meth:`NatsLink.acquire`
  and ended when the last connection is released.
- **one connection per server and options.** :meth:`NatsLink.acquire` with
  ``share=True`` hands back the open connection to the same URL with the same
  reconnect options if there is one (counting its users), so a worker that
  serves ``--listen nats://X`` and keeps ``--state nats://X`` has one thread
  and one TCP connection for both. :meth:`NatsLink.release` closes the
  connection when its last user lets go. ``share=False`` (a client) always
  opens its own.

Callers turn what nats-py raises into their own errors (the bridge into
:class:`~peerbox.net._client_errors.TransportError`, the shared state into
:class:`~peerbox.net._jetstream.SharedStateError`): :meth:`NatsLink.acquire`
lets nats-py's and asyncio's exceptions through untouched for that. The
first connection is tried twice, ``reconnect_wait`` apart; once connected,
nats-py reconnects ``max_reconnects`` times (-1: for ever). Disconnections,
reconnections and asynchronous errors are logged on ``peerbox.nats``; when a
connection ends for good (reconnects exhausted) each user's ``on_closed``
(called on the NATS thread) is told.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient

__all__ = ["NatsLink", "display_url"]

log = logging.getLogger("peerbox.nats")

_T = TypeVar("_T")
_Key = tuple[str, int, float, int]


def display_url(url: str) -> str:
    """``url`` without its user information (credentials never reach a log line or a banner)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class _LoopThread:
    """The process's NATS thread and its asyncio loop (started and ended by :class:`NatsLink`)."""

    def __init__(self) -> None:
        started = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

        def main() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)  # this thread's loop (nats-py asks for it)
            self.loop = loop
            started.set()
            try:
                loop.run_forever()
                left = asyncio.all_tasks(loop)  # cancelled calls, nats-py's tasks of a closed client
                for task in left:
                    task.cancel()
                if left:
                    loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            finally:
                loop.close()

        self.thread = threading.Thread(target=main, name="nats", daemon=True)
        self.thread.start()
        started.wait()

    def stop(self) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        if self.thread is not threading.current_thread():
            self.thread.join(timeout=10)


_lock = threading.Lock()
_links: dict[_Key, NatsLink] = {}
_thread: _LoopThread | None = None
_thread_users = 0


def _loop_acquire() -> asyncio.AbstractEventLoop:
    global _thread, _thread_users
    with _lock:
        if _thread is None or _thread.loop is None or _thread.loop.is_closed():
            _thread = _LoopThread()
        _thread_users += 1
        assert _thread.loop is not None
        return _thread.loop


def _loop_release() -> None:
    global _thread, _thread_users
    with _lock:
        _thread_users -= 1
        if _thread_users > 0 or _thread is None:
            return
        thread, _thread = _thread, None
    thread.stop()


class NatsLink:
    """A connection to one NATS server on the process's NATS thread (see the module docstring).

    Made by :meth:`acquire`, given back by :meth:`release` (once per acquire).
    :attr:`nc` is the nats-py client: use it only on :attr:`loop` (:meth:`submit`).
    """

    def __init__(self, url: str, key: _Key | None, loop: asyncio.AbstractEventLoop) -> None:
        self.url = url
        self.key = key
        self.loop = loop
        self.nc: NatsClient | None = None
        self.users = 1
        self.closing = False
        self._closed_listeners: list[Callable[[], None]] = []

    @property
    def shown(self) -> str:
        """The server's URL without credentials."""
        return display_url(self.url)

    @property
    def is_connected(self) -> bool:
        nc = self.nc
        return nc is not None and bool(nc.is_connected)

    @classmethod
    def acquire(cls, url: str, *, name: str = "peerbox", connect_timeout: float = 5.0,
                max_reconnects: int = -1, reconnect_wait: float = 0.5, pending_size: int = 32 << 20,
                share: bool = True, on_closed: Callable[[], None] | None = None) -> NatsLink:
        """A connection to ``url`` (blocking until connected; call it from any thread but the NATS
        thread). With ``share`` an open one with the same URL and options is reused (``name`` and
        ``connect_timeout`` are the first user's). ``on_closed`` is called (on the NATS thread) if
        the connection ends for good while this user holds it. Raises what nats-py or asyncio
        raise (no server, a timeout) and ImportError when nats-py is missing."""
        import nats

        key: _Key | None = (url, max_reconnects, reconnect_wait, pending_size) if share else None
        with _lock:
            link = _links.get(key) if key is not None else None
            if link is not None and not link.closing:
                link.users += 1
                if on_closed is not None:
                    link._closed_listeners.append(on_closed)
                return link
        loop = _loop_acquire()
        link = cls(url, key, loop)
        if on_closed is not None:
            link._closed_listeners.append(on_closed)
        fut = asyncio.run_coroutine_threadsafe(
            link._connect(nats, name, connect_timeout, max_reconnects, reconnect_wait, pending_size), loop)
        try:
            link.nc = fut.result(timeout=2 * connect_timeout + 2 * reconnect_wait + 5)
        except BaseException:
            fut.cancel()
            _loop_release()
            raise
        if key is not None:
            with _lock:
                other = _links.get(key)
                if other is None or other.closing:
                    _links[key] = link
        return link

    async def _connect(self, nats: Any, name: str, connect_timeout: float, max_reconnects: int,
                       reconnect_wait: float, pending_size: int) -> NatsClient:
        shown = self.shown

        async def disconnected() -> None:
            if not self.closing:
                log.warning("NATS %s: disconnected; reconnecting", shown)

        async def reconnected() -> None:
            log.warning("NATS %s: reconnected", shown)

        async def error(exc: Exception) -> None:
            if self.nc is None:  # the first connection failed: raised to the caller, not logged
                return
            log.warning("NATS %s: %s: %s", shown, type(exc).__name__, exc)

        async def closed() -> None:
            if self.closing:
                return
            log.error("NATS %s: connection closed (reconnects exhausted)", shown)
            with _lock:
                if self.key is not None and _links.get(self.key) is self:
                    del _links[self.key]  # a later acquire opens a fresh one
                listeners = list(self._closed_listeners)
            for listener in listeners:
                try:
                    listener()
                except Exception:  # a user's bug must not stop the others being told
                    log.exception("NATS %s: on_closed failed", shown)

        # Two attempts, ``reconnect_wait`` apart, for the first connection (nats-py would retry it as
        # many times as it reconnects, for ever with -1): a server that is not there is the caller's
        # error now. Reconnecting is switched on once connected; nats-py reads these options when a
        # connection drops.
        nc: NatsClient = await nats.connect(
            self.url, name=name, connect_timeout=max(1, round(connect_timeout)),
            allow_reconnect=False, max_reconnect_attempts=1,
            reconnect_time_wait=reconnect_wait, pending_size=pending_size,
            disconnected_cb=disconnected, reconnected_cb=reconnected, error_cb=error, closed_cb=closed)
        nc.options["allow_reconnect"] = True
        nc.options["max_reconnect_attempts"] = max_reconnects
        return nc

    def submit(self, coro: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        """Start ``coro`` on the NATS thread; its future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def release(self, on_closed: Callable[[], None] | None = None, *, flush: bool = True) -> None:
        """Give this user's hold back (``on_closed``: the listener it registered, if any). The last
        user closes the connection (flushed first with ``flush``) and, if no other connection is
        open, ends the NATS thread. Blocking; never raises for NATS trouble."""
        with _lock:
            if on_closed is not None and on_closed in self._closed_listeners:
                self._closed_listeners.remove(on_closed)
            self.users -= 1
            if self.users > 0:
                return
            self.closing = True
            if self.key is not None and _links.get(self.key) is self:
                del _links[self.key]
        nc = self.nc
        if nc is not None and not self.loop.is_closed():
            try:
                self.submit(self._close(nc, flush)).result(timeout=10)
            except Exception as exc:  # noqa: BLE001 (closing anyway)
                log.debug("NATS %s: closing: %s", self.shown, exc)
        _loop_release()

    @staticmethod
    async def _close(nc: NatsClient, flush: bool) -> None:
        if flush and nc.is_connected:
            try:
                await nc.flush(timeout=2)
            except Exception as exc:  # noqa: BLE001 (closing anyway)
                log.debug("NATS flush before close failed: %s", exc)
        await nc.close()
