"""Sending signed scripts to remote peers: the client, sync and async (trio).

::

    async with AsyncClient(alice_key, Directory(root)) as client:
        reply = await client.exec("bob", 'fs::write("inbox/hi.txt", "hi")')
        reply.ok, reply.value, reply.denied, reply.error, reply.log

    with Client(alice_key, Directory(root)) as client:      # from plain (non-trio) code
        reply = client.exec("bob", "40 + 2")

``exec`` resolves the target (a name or a ``did:key``) in the
:class:`~peerbox.peer._directory.Directory`, signs a request with
:func:`~peerbox.wire._envelope.make_request`, POSTs it to ``<url>/v1/exec``
(``content-type: application/cose``) and checks the answer with
:func:`~peerbox.wire._envelope.verify_reply`: signed by the target the directory
names and answering exactly this request. Every signed outcome is returned as
a verified :class:`~peerbox.wire._envelope.Reply`: a value, a script error, a limit
(``ok`` false, ``error.kind`` ``limit_*``) or a denial (``reply.denied``).
What is not a verified reply raises a :class:`ClientError` (CLI exit 7):
:class:`TransportError` (no connection, timeout, broken HTTP/2, an HTTP error
without a readable body), :class:`VerificationError` (a reply that does not
verify) or :class:`RemoteRejected` (the worker refused the envelope before
running anything: ``{error: {kind, message}}``, e.g. 409 ``replay``).

The transport sits behind :class:`Transport` (one method: send an envelope to
a URL, get back status, content type and body) so another carrier can be
added without touching the client. :class:`H2Transport` speaks HTTP/2 over
trio: cleartext with prior knowledge (h2c) for ``http://``, TLS with ALPN
``h2`` for ``https://``; one connection per origin, reused, with every
concurrent request multiplexed on it as its own stream (one reader task
dispatches frames to the waiting requests, one writer task flushes what h2
has to send, so a slow peer never blocks the reader).
"""

from __future__ import annotations

import abc
import contextlib
import math
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import cbor2
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import trio

from .._errors import Error, UsageError
from ..peer import Directory, Entry
from ..trust import make_logic_request
from ..wire import EnvelopeError, KeyPair, Reply, make_request, verify_reply

__all__ = [
    "AsyncClient",
    "Client",
    "Transport",
    "H2Transport",
    "ClientError",
    "TransportError",
    "VerificationError",
    "RemoteRejected",
    "EXEC_PATH",
    "CONTENT_TYPE",
    "EXIT_TRANSPORT",
]

#: Where a worker takes request envelopes.
EXEC_PATH = "/v1/exec"
LOGIC_PATH = "/v1/logic"
#: The content type of envelopes and replies.
CONTENT_TYPE = "application/cose"
#: The CLI exit code of every :class:`ClientError`.
EXIT_TRANSPORT = 7
_MAX_REPLY = 8 << 20
_READ_SIZE = 65536
_WINDOW = 1 << 24


# --------------------------------------------------------------------- errors


class ClientError(Error):
    """A remote call that did not end in a verified reply (CLI exit 7)."""

    exit_code = EXIT_TRANSPORT


class TransportError(ClientError):
    """The request did not get an answer: ``kind`` is ``connect``, ``tls``, ``timeout``,
    ``protocol`` (broken HTTP/2, reset stream, closed connection) or ``http`` (an
    HTTP status with no readable error body; ``status`` says which)."""

    def __init__(self, message: str, *, kind: str = "protocol", status: int | None = None,
                 retryable: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        #: The server did not process the request (GOAWAY / REFUSED_STREAM): safe to send again.
        self.retryable = retryable


class VerificationError(ClientError):
    """An answer that claims to be the target's reply but does not verify.

    ``kind`` is the :class:`~peerbox.wire._cbor_strict.EnvelopeError` kind:
    ``bad_signature`` (not signed by the target the directory names),
    ``wrong_request`` (answers another request), ``wrong_target``,
    ``malformed``... Treat the worker as broken or hostile.
    """

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class RemoteRejected(ClientError):
    """The worker refused the envelope before running anything (unsigned ``{error: {kind, message}}``).

    ``status`` is the HTTP status (400 malformed, 401 bad signature, 404 not
    hosted, 409 replay, 413 too large, 503 saturated...), ``kind`` and
    ``remote_message`` the worker's words, ``retry_after`` the seconds a 503
    asks to wait (when given).
    """

    def __init__(self, status: int, kind: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"refused by the worker (HTTP {status}): {kind}: {message}")
        self.status = status
        self.kind = kind
        self.remote_message = message
        self.retry_after = retry_after


# ------------------------------------------------------------------ transport


class Transport(abc.ABC):
    """Carries one envelope to a peer's URL and brings back the answer.

    Used as an async context manager around every use (the client does
    this); :meth:`aclose` releases connections. Implementations raise
    :class:`TransportError` for every failure to get an answer.
    """

    @abc.abstractmethod
    async def exec(self, url: str, envelope: bytes, timeout: float, *,
                   path: str | None = None) -> tuple[int, str, bytes]:
        """POST ``envelope`` to ``url``'s exec endpoint (or ``path``); return ``(status, ctype, body)``."""

    async def aclose(self) -> None:
        """Close every connection (the default has none)."""

    async def __aenter__(self) -> Transport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


@dataclass(eq=False)
class _Pending:
    """One request stream waiting for its response."""

    done: trio.Event = field(default_factory=trio.Event)
    status: int | None = None
    content_type: str = ""
    body: bytearray = field(default_factory=bytearray)
    error: TransportError | None = None

    def fail(self, error: TransportError) -> None:
        if not self.done.is_set():
            self.error = error
            self.done.set()


class _H2Conn:
    """One HTTP/2 connection (client side) and the streams in flight on it."""

    def __init__(self, stream: trio.abc.Stream, *, scheme: str, authority: str, max_reply: int) -> None:
        self.stream = stream
        self.scheme = scheme.encode("ascii")
        self.authority = authority.encode("ascii")
        self.max_reply = max_reply
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_inbound_headers=True))
        self.pending: dict[int, _Pending] = {}
        self.usable = True  # new streams may start here
        self.finished = trio.Event()
        self._wake = trio.Event()  # the writer has something to send
        self._changed = trio.Event()  # window, settings or stream count changed
        self._closing = False
        self._scope: trio.CancelScope | None = None
        self._error: TransportError | None = None

    # -- plumbing

    def _flush(self) -> None:
        self._wake.set()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _fail(self, error: TransportError) -> None:
        self.usable = False
        if self._error is None:
            self._error = error
        for p in self.pending.values():
            p.fail(error)
        self._notify()
        if self._scope is not None:
            self._scope.cancel()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the reader and writer until the connection ends; fail whatever is still waiting."""
        try:
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                self.h2.initiate_connection()
                self.h2.update_settings({h2.settings.SettingCodes.ENABLE_PUSH: 0,
                                         h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
                self.h2.increment_flow_control_window(_WINDOW)
                self._flush()
                nursery.start_soon(self._reader)
                nursery.start_soon(self._writer)
                task_status.started()
        finally:
            self._fail(self._error or TransportError("the connection was closed"))
            self.finished.set()
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self.stream)

    async def _writer(self) -> None:
        try:
            while True:
                data = self.h2.data_to_send()
                if data:
                    await self.stream.send_all(data)
                    continue
                if self._closing:
                    self._fail(TransportError("the connection was closed"))
                    return
                await self._wake.wait()
                self._wake = trio.Event()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._fail(TransportError(f"cannot send: {_reason(exc)}"))

    async def _reader(self) -> None:
        try:
            while True:
                data = await self.stream.receive_some(_READ_SIZE)
                if not data:
                    self._fail(TransportError("the server closed the connection"))
                    return
                try:
                    events = self.h2.receive_data(data)
                except h2.exceptions.ProtocolError as exc:
                    self._flush()  # h2 queued a GOAWAY
                    self._fail(TransportError(f"HTTP/2 protocol error from the server: {exc}"))
                    return
                for event in events:
                    self._dispatch(event)
                self._flush()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._fail(TransportError(f"the connection broke: {_reason(exc)}"))

    def _dispatch(self, event: h2.events.Event) -> None:
        sid = getattr(event, "stream_id", None)
        p = self.pending.get(sid) if sid is not None else None
        if isinstance(event, h2.events.ResponseReceived):
            if p is not None:
                for name, value in event.headers or ():
                    if name == b":status":
                        p.status = int(value)
                    elif name == b"content-type":
                        p.content_type = bytes(value).decode("latin-1")
        elif isinstance(event, h2.events.DataReceived):
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id)
            if p is not None and event.data:
                p.body += event.data
                if len(p.body) > self.max_reply:
                    self._reset(event.stream_id)
                    p.fail(TransportError(f"the reply is larger than {self.max_reply} bytes"))
        elif isinstance(event, h2.events.StreamEnded):
            if p is not None:
                if p.status is None:
                    p.fail(TransportError("the server ended the stream without a response"))
                p.done.set()
            self._notify()
        elif isinstance(event, h2.events.StreamReset):
            if p is not None:
                code = event.error_code
                refused = code == h2.errors.ErrorCodes.REFUSED_STREAM
                p.fail(TransportError(f"the server reset the stream ({_code_name(code)})",
                                      retryable=refused))
            self._notify()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.usable = False
            last = event.last_stream_id if event.last_stream_id is not None else 0
            goaway = event.error_code
            for other, q in self.pending.items():
                if other > last:
                    q.fail(TransportError("the server is closing the connection (GOAWAY) and did not "
                                          "process the request", retryable=True))
                elif goaway not in (None, h2.errors.ErrorCodes.NO_ERROR):
                    q.fail(TransportError(f"the server closed the connection ({_code_name(goaway)})"))
            self._notify()
        elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged,
                                h2.events.SettingsAcknowledged)):
            self._notify()

    def _reset(self, sid: int) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError, KeyError):
            self.h2.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
        self._flush()

    # -- requests

    async def request(self, path: str, body: bytes, content_type: str) -> tuple[int, str, bytes]:
        """Send one POST on a new stream and wait for its whole response."""
        while True:
            if not self.usable:
                raise TransportError("the connection is closing", retryable=True)
            limit = self.h2.remote_settings.max_concurrent_streams
            if self.h2.open_outbound_streams < limit:
                break
            await self._changed.wait()
        headers = [(b":method", b"POST"), (b":scheme", self.scheme), (b":authority", self.authority),
                   (b":path", path.encode("ascii")), (b"content-type", content_type.encode("ascii")),
                   (b"content-length", str(len(body)).encode("ascii"))]
        try:
            sid = self.h2.get_next_available_stream_id()
            self.h2.send_headers(sid, headers, end_stream=not body)
        except h2.exceptions.H2Error as exc:  # e.g. stream ids exhausted: nothing was sent
            self.usable = False
            raise TransportError(f"cannot start a stream: {exc}", retryable=True) from None
        p = _Pending()
        self.pending[sid] = p
        try:
            self._flush()
            view = memoryview(body)
            while view and not p.done.is_set():
                try:
                    window = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
                except h2.exceptions.StreamClosedError:
                    break  # the server answered or reset early: its answer says what happened
                if window <= 0:
                    await self._changed.wait()
                    continue
                chunk, view = view[:window], view[window:]
                self.h2.send_data(sid, bytes(chunk), end_stream=not view)
                self._flush()
            await p.done.wait()
        except BaseException:
            if not p.done.is_set():
                self._reset(sid)  # cancelled or timed out: free the server's slot at once
            raise
        finally:
            self.pending.pop(sid, None)
        if p.error is not None:
            raise p.error
        assert p.status is not None
        return p.status, p.content_type, bytes(p.body)

    def close(self) -> None:
        """Send GOAWAY and stop once it is written (requests in flight fail)."""
        self.usable = False
        self._closing = True
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.close_connection()
        self._flush()


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if cause is not None and str(cause):
        return str(cause)
    return str(exc) or type(exc).__name__


def _code_name(code: object) -> str:
    return getattr(code, "name", str(code))


class H2Transport(Transport):
    """HTTP/2 over trio: h2c (prior knowledge) for ``http://``, TLS + ALPN ``h2`` for ``https://``.

    One connection per origin, opened on first use and shared by every
    request to it (each request is one stream). ``ssl_context`` (default:
    the system's trust store) is used for ``https://``; its ALPN protocols are
    set to ``h2``. Must be used inside ``async with`` (the client does this):
    the connection tasks live in its nursery. ``connections_opened`` counts
    connections made (for tests and metrics).
    """

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None, connect_timeout: float = 10.0,
                 max_reply: int = _MAX_REPLY, path: str = EXEC_PATH) -> None:
        self.ssl_context = ssl_context
        self.connect_timeout = connect_timeout
        self.max_reply = max_reply
        self.path = path
        self.connections_opened = 0
        self._conns: dict[tuple[str, str, int], _H2Conn] = {}
        self._locks: dict[tuple[str, str, int], trio.Lock] = {}
        self._stack: contextlib.AsyncExitStack | None = None
        self._nursery: trio.Nursery | None = None

    async def __aenter__(self) -> H2Transport:
        if self._stack is not None:
            raise UsageError("this transport is already open")
        stack = contextlib.AsyncExitStack()
        self._nursery = await stack.enter_async_context(trio.open_nursery())
        self._stack = stack
        return self

    async def aclose(self) -> None:
        """Send GOAWAY on every connection, wait briefly for it to be written, close them all."""
        stack, nursery = self._stack, self._nursery
        if stack is None or nursery is None:
            return
        self._stack = self._nursery = None
        conns = list(self._conns.values())
        self._conns.clear()
        for conn in conns:
            conn.close()
        with trio.move_on_after(1.0):
            for conn in conns:
                await conn.finished.wait()
        nursery.cancel_scope.cancel()
        await stack.aclose()

    async def exec(self, url: str, envelope: bytes, timeout: float, *,
                   path: str | None = None) -> tuple[int, str, bytes]:
        """POST ``envelope`` to ``url`` + ``path`` (default: ``/v1/exec``); raises :class:`TransportError`.

        ``timeout`` covers connecting, sending and the whole answer. A request
        the server says it did not process (GOAWAY, REFUSED_STREAM) is sent
        once more on a fresh connection (the same bytes: a request that did
        run would be refused as a replay, never run twice).
        """
        if not (timeout > 0 and math.isfinite(timeout)):
            raise UsageError(f"timeout must be a positive number of seconds, got {timeout!r}")
        with trio.move_on_after(timeout):
            for attempt in range(2):
                conn = await self._connection(url)
                try:
                    return await conn.request(path or self.path, envelope, CONTENT_TYPE)
                except TransportError as exc:
                    if not exc.retryable or attempt:
                        raise TransportError(f"{url}: {exc}", kind=exc.kind, status=exc.status) from None
        raise TransportError(f"{url}: no answer within {timeout:g} s", kind="timeout")

    async def _connection(self, url: str) -> _H2Conn:
        if self._nursery is None:
            raise UsageError("H2Transport is not open: use it inside `async with` (AsyncClient does)")
        parts = urlsplit(url)
        scheme = parts.scheme
        host = parts.hostname
        if scheme not in ("http", "https") or not host:
            raise TransportError(f"unsupported URL {url!r} (expected http:// or https://)", kind="connect")
        port = parts.port or (443 if scheme == "https" else 80)
        key = (scheme, host, port)
        conn = self._conns.get(key)
        if conn is not None and conn.usable:
            return conn
        lock = self._locks.setdefault(key, trio.Lock())
        async with lock:
            conn = self._conns.get(key)
            if conn is not None and conn.usable:
                return conn
            stream = await self._open(url, scheme, host, port)
            conn = _H2Conn(stream, scheme=scheme, authority=parts.netloc, max_reply=self.max_reply)
            self.connections_opened += 1
            await self._nursery.start(conn.run)
            self._conns[key] = conn
            return conn

    async def _open(self, url: str, scheme: str, host: str, port: int) -> trio.abc.Stream:
        tcp: trio.abc.Stream
        with trio.move_on_after(self.connect_timeout):
            try:
                tcp = await trio.open_tcp_stream(host, port)
            except OSError as exc:
                raise TransportError(f"cannot connect to {url}: {_reason(exc)}", kind="connect") from None
            if scheme == "http":
                return tcp
            ctx = self.ssl_context or ssl.create_default_context()
            ctx.set_alpn_protocols(["h2"])
            tls = trio.SSLStream(tcp, ctx, server_hostname=host, https_compatible=True)
            try:
                await tls.do_handshake()
            except (trio.BrokenResourceError, OSError) as exc:
                await trio.aclose_forcefully(tls)
                raise TransportError(f"TLS with {url} failed: {_reason(exc)}", kind="tls") from None
            if tls.selected_alpn_protocol() != "h2":
                await trio.aclose_forcefully(tls)
                raise TransportError(f"{url} does not speak HTTP/2 over TLS (ALPN h2)", kind="tls")
            return tls
        raise TransportError(f"cannot connect to {url}: timed out after {self.connect_timeout:g} s",
                             kind="timeout")


# --------------------------------------------------------------------- client


def _limits_map(limits: Any) -> dict[str, int | float] | None:
    """A ``limits`` argument (a mapping or a :class:`peerbox.Limits`) as the envelope's map."""
    if limits is None or isinstance(limits, Mapping):
        return None if limits is None else dict(limits)
    out: dict[str, int | float] = {}
    for name in ("fuel", "timeout", "memory"):
        value = getattr(limits, name, None)
        if value is not None:
            out[name] = value
    return out


def _rejection(url: str, status: int, body: bytes) -> ClientError:
    """What a non-reply answer means: the worker's ``{error: {kind, message}}`` or a bare HTTP error."""
    try:
        doc = cbor2.loads(body) if body else None
    except Exception:  # any undecodable body is just "not an error map"
        doc = None
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, dict) and isinstance(err.get("kind"), str) and isinstance(err.get("message"), str):
        kind, message = err["kind"][:100], err["message"][:1000]
        return RemoteRejected(status, kind, message)
    text = ""
    if len(body) <= 200:
        try:
            text = body.decode("utf-8").strip()
        except UnicodeDecodeError:
            pass
    said = f": {text}" if text and text.isprintable() else " without a readable error"
    return TransportError(f"{url}: HTTP {status}{said}", kind="http", status=status)


class AsyncClient:
    """Sends scripts to remote peers as ``identity`` and returns their verified replies (trio).

    ``directory`` says where each peer is (a :class:`Directory`, or a peer
    root path for one). Use it as ``async with AsyncClient(...) as client``
    (or call :meth:`aclose` from the task that entered it); it owns its
    ``transport`` (default :class:`H2Transport`) and closes it.
    """

    def __init__(self, identity: KeyPair, directory: Directory | str | None = None, *,
                 transport: Transport | None = None, ttl: int = 300) -> None:
        if not isinstance(identity, KeyPair):
            raise UsageError("identity must be a KeyPair (e.g. PeerStore(root).get(name).signing_key())")
        self.identity = identity
        self.directory = directory if isinstance(directory, Directory) else Directory(directory)
        self.transport: Transport = transport if transport is not None else H2Transport()
        self.ttl = ttl
        self._entered = False

    async def __aenter__(self) -> AsyncClient:
        await self.transport.__aenter__()
        self._entered = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the transport's connections. Idempotent."""
        if self._entered:
            self._entered = False
            await self.transport.aclose()

    def resolve(self, target: str | Entry) -> Entry:
        """The directory entry of ``target`` (a name, a ``did:key`` or an :class:`Entry`)."""
        return target if isinstance(target, Entry) else self.directory.resolve(target)

    async def exec(self, target: str | Entry, script: str, params: Mapping[str, Any] | None = None,
                   caps: Iterable[bytes] = (), limits: Any = None, timeout: float = 30.0) -> Reply:
        """Ask ``target`` to run ``script`` with ``params``; return its verified :class:`Reply`.

        ``caps`` are capability tokens (bytes) to present; ``limits`` a map
        of ``fuel``/``timeout``/``memory`` (or a :class:`peerbox.Limits`) to
        ask for (the target's policy may give less); ``timeout`` bounds the
        whole call in seconds. A denial, script error or limit is a returned
        reply (``reply.ok`` false; ``reply.denied`` for a denial). Raises
        :class:`TransportError`, :class:`VerificationError`,
        :class:`RemoteRejected`, the directory's errors for an unknown target
        and :class:`~peerbox.wire._cbor_strict.EnvelopeError` (exit 2) for params
        a request cannot carry.
        """
        entry = self.resolve(target)
        envelope = make_request(self.identity, target=entry.public_key, script=script, params=params,
                                caps=caps, limits=_limits_map(limits), now=int(time.time()), ttl=self.ttl)
        status, _content_type, body = await self.transport.exec(entry.url, envelope, timeout)
        return self.check(entry, envelope, status, body)

    async def push_logic(self, target: str | Entry, module: str, source: str, caps: Iterable[bytes] = (),
                         timeout: float = 30.0) -> Reply:
        """Install ``source`` as ``target``'s module ``module`` (a ``peerbox/logic`` request).

        The target checks that this identity may (``logic.write``, as its
        owner or by one of ``caps``) and that the module and its dependents
        compile. Returns the verified reply: ``ok`` with ``value`` ``{module,
        version, sha256}``, else ``error.kind`` ``denied``, ``compile_error``
        or ``breaks_dependent``. Raises what :meth:`exec` raises, and
        :class:`~peerbox.wire._cbor_strict.EnvelopeError` for a module name or
        source a request cannot carry.
        """
        return await self.logic(target, "set", module, source, caps=caps, timeout=timeout)

    async def logic(self, target: str | Entry, op: str, module: str = "", source: str = "",
                    caps: Iterable[bytes] = (), timeout: float = 30.0) -> Reply:
        """Any ``peerbox/logic`` request (``op``: set, remove, list, show, history; see
        :mod:`peerbox.trust._logic_push` for what each carries and returns). Raises as :meth:`push_logic`."""
        entry = self.resolve(target)
        envelope = make_logic_request(self.identity, target=entry.public_key, module=module, source=source,
                                      op=op, caps=caps, now=int(time.time()), ttl=self.ttl)
        status, _content_type, body = await self.transport.exec(entry.url, envelope, timeout, path=LOGIC_PATH)
        return self.check(entry, envelope, status, body)

    def check(self, entry: Entry, envelope: bytes, status: int, body: bytes) -> Reply:
        """Turn an answer into a verified :class:`Reply`, or raise the matching :class:`ClientError`."""
        if status in (200, 403):
            try:
                return verify_reply(body, target=entry.public_key, request_bytes=envelope,
                                    max_size=_MAX_REPLY)
            except EnvelopeError as exc:
                raise VerificationError(
                    f"the reply from {entry.name} ({entry.url}) does not verify: {exc}", kind=exc.kind
                ) from None
        raise _rejection(entry.url, status, body)


class Client:
    """The blocking face of :class:`AsyncClient`, for plain (non-trio) code.

    A dedicated thread runs a trio loop holding one :class:`AsyncClient`, so
    connections are reused across calls and calls from several threads are
    multiplexed on one connection. Use ``with Client(...) as c`` or call
    :meth:`close`. Must not be called from inside a trio run (use
    :class:`AsyncClient` there).
    """

    def __init__(self, identity: KeyPair, directory: Directory | str | None = None, *,
                 transport: Transport | None = None, ttl: int = 300) -> None:
        self._async = AsyncClient(identity, directory, transport=transport, ttl=ttl)
        self.directory = self._async.directory
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._startup_error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._thread_main, name="peerbox-client", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            raise self._startup_error

    def _thread_main(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to the constructor (or lost after close)
            self._startup_error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with self._async:
            self._ready.set()
            await self._stop.wait()

    def exec(self, target: str | Entry, script: str, params: Mapping[str, Any] | None = None,
             caps: Iterable[bytes] = (), limits: Any = None, timeout: float = 30.0) -> Reply:
        """:meth:`AsyncClient.exec`, blocking; thread-safe."""
        caps = tuple(caps)

        async def call() -> Reply:
            return await self._async.exec(target, script, params, caps, limits, timeout)

        return self._call(call)

    def push_logic(self, target: str | Entry, module: str, source: str, caps: Iterable[bytes] = (),
                   timeout: float = 30.0) -> Reply:
        """:meth:`AsyncClient.push_logic`, blocking; thread-safe."""
        return self.logic(target, "set", module, source, caps, timeout)

    def logic(self, target: str | Entry, op: str, module: str = "", source: str = "",
              caps: Iterable[bytes] = (), timeout: float = 30.0) -> Reply:
        """:meth:`AsyncClient.logic`, blocking; thread-safe."""
        caps = tuple(caps)

        async def call() -> Reply:
            return await self._async.logic(target, op, module, source, caps, timeout)

        return self._call(call)

    def _call(self, call: Callable[[], Awaitable[Reply]]) -> Reply:
        if self._closed or self._token is None:
            raise UsageError("this Client is closed")
        try:
            return trio.from_thread.run(call, trio_token=self._token)
        except trio.RunFinishedError:
            raise UsageError("this Client is closed") from None

    def close(self) -> None:
        """Close the connections and stop the client's thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        stop, token = self._stop, self._token
        if stop is not None and token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(stop.set, trio_token=token)
        self._thread.join()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
