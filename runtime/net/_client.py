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
(``content-type: application/cose``) through a
:class:`~peerbox.net._h2client.Transport` (default
:class:`~peerbox.net._transports.SchemeTransport`: HTTP/2 for ``http(s)://``, WebSocket for
``ws(s)://``, NATS for ``nats://``) and checks the answer with
:func:`~peerbox.wire._reply.verify_reply`: signed by the target the directory
names and answering exactly this request. Every signed outcome is returned as
a verified :class:`~peerbox.wire._reply.Reply`: a value, a script error, a limit
(``ok`` false, ``error.kind`` ``limit_*``) or a denial (``reply.denied``).
What is not a verified reply raises a
:class:`~peerbox.net._client_errors.ClientError` (CLI exit 7):
``TransportError`` (no connection, timeout, broken HTTP/2, an HTTP error
without a readable body), ``VerificationError`` (a reply that does not
verify) or ``RemoteRejected`` (the worker refused the envelope before
running anything: ``{error: {kind, message}}``, e.g. 409 ``replay``).

``call`` invokes a function the target publishes (``export fn`` in its own
module; a ``peerbox/call`` envelope to ``<url>/v1/call``), which runs with the
target owner's rights::

    reply = await client.call("bob", "inbox::deliver", msg="hi")     # by name
    reply = await client.call("bob", "inbox::deliver", "hi")         # by position

and ``revoke`` tells a target's worker to refuse a capability token
(``peerbox/revoke`` to ``<url>/v1/revoke``). Their answers are checked as
exec's are; a 429 (rate limited) carries a signed reply too, returned like a
denial (``reply.error["kind"] == "rate_limited"``). A directory entry without
a URL (a peer known only as a caller) cannot be sent to: :class:`UnknownPeer`.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

import cbor2
import trio

from .._errors import UsageError, map_exceptions
from ..peer import Directory, Entry, UnknownPeer
from ..trust import make_logic_request
from ..wire import (EnvelopeError, KeyPair, Reply, make_call_request, make_request, make_revoke_request,
                    verify_reply)
from ._client_errors import ClientError, RemoteRejected, TransportError, VerificationError
from ._h2client import CALL_PATH, LOGIC_PATH, MAX_REPLY, REVOKE_PATH, H2Transport, Transport
from ._kvdirectory import SharedDirectory
from ._transports import SchemeTransport
from ._status import STATUS_PATH, authorization_header, make_status_token
from ._io_errors import CLIENT_CLOSED_ERRORS

__all__ = ["AsyncClient", "Client", "SIGNED_STATUSES"]

_T = TypeVar("_T")

#: The HTTP statuses whose body is a reply signed by the target: an answer (200), a denial (403),
#: a rate limit (429). Any other status carries at most the worker's unsigned ``{error}``.
SIGNED_STATUSES = (200, 403, 429)


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


def _call_params(function: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                 params: Mapping[str, Any] | Iterable[Any] | None) -> dict[str, Any] | list[Any] | None:
    """The arguments of :meth:`AsyncClient.call` as the envelope's ``params``: by name, by position
    or none. Raises :class:`UsageError` when more than one way is used."""
    given = [what for what, value in (("positional arguments", args), ("keyword arguments", kwargs),
                                      ("params=", params)) if value]
    if len(given) > 1:
        raise UsageError(f"call {function} with arguments by position or by name, not both "
                         f"({' and '.join(given)})")
    if args:
        return list(args)
    if kwargs:
        return dict(kwargs)
    if params is None:
        return None
    if isinstance(params, Mapping):
        return dict(params)
    if isinstance(params, (str, bytes, bytearray)):
        raise UsageError("params= is a mapping (arguments by name) or a list (by position)")
    return list(params)


def _split_function(function: object) -> tuple[str, str]:
    """``"inbox::deliver"`` -> ``("inbox", "deliver")``; raises :class:`UsageError` without ``::``."""
    if not isinstance(function, str) or "::" not in function:
        raise UsageError("a function to call is MODULE::FUNCTION (e.g. inbox::deliver), "
                         f"got {function!r:.80}")
    module, _, name = function.rpartition("::")
    return module, name


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
    root path for one; a :class:`~peerbox.net._kvdirectory.SharedDirectory`
    looks in ``peers.toml`` first, then in the directory shared through
    NATS JetStream). Use it as ``async with AsyncClient(...) as client``
    (or call :meth:`aclose` from the task that entered it); it owns its
    ``transport`` (default :class:`~peerbox.net._transports.SchemeTransport`: HTTP/2, WebSocket
    or NATS by the URL's scheme) and closes it.
    """

    def __init__(self, identity: KeyPair, directory: Directory | str | None = None, *,
                 transport: Transport | None = None, ttl: int = 300) -> None:
        if not isinstance(identity, KeyPair):
            raise UsageError("identity must be a KeyPair (e.g. PeerStore(root).get(name).signing_key())")
        self.identity = identity
        self.directory = directory if isinstance(directory, Directory) else Directory(directory)
        self.transport: Transport = transport if transport is not None else SchemeTransport()
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
        """The directory entry of ``target`` (a name, a ``did:key`` or an :class:`Entry`).

        Raises the directory's errors for an unknown target, and
        :class:`UnknownPeer` for an entry without a URL (a peer known only as a
        caller: nothing can be sent to it).
        """
        return self._where(target)[0]

    async def _locate(self, target: str | Entry) -> tuple[Entry, str]:
        """:meth:`_where`; a name a :class:`~peerbox.net._kvdirectory.SharedDirectory` may have to
        ask NATS for is resolved on a worker thread (one key-value round trip, never on trio's)."""
        if isinstance(target, str) and isinstance(self.directory, SharedDirectory):
            target = await trio.to_thread.run_sync(self.directory.resolve, target)
        return self._where(target)

    def _where(self, target: str | Entry) -> tuple[Entry, str]:
        """:meth:`resolve`, with the URL to send to."""
        entry = target if isinstance(target, Entry) else self.directory.resolve(target)
        if entry.url is None:
            raise UnknownPeer(f"{entry.name} has no URL in peers.toml: it is known as a caller only")
        return entry, entry.url

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
        entry, url = await self._locate(target)
        envelope = make_request(self.identity, target=entry.public_key, script=script, params=params,
                                caps=caps, limits=_limits_map(limits), now=int(time.time()), ttl=self.ttl)
        status, _content_type, body = await self.transport.exec(url, envelope, timeout)
        return self.check(entry, envelope, status, body)

    async def call(self, target: str | Entry, function: str, /, *args: Any,
                   params: Mapping[str, Any] | Iterable[Any] | None = None, caps: Iterable[bytes] = (),
                   limits: Any = None, timeout: float = 30.0, **kwargs: Any) -> Reply:
        """Call ``target``'s published ``function`` (``"MODULE::FUNCTION"``); return its verified reply.

        The arguments go by position (``*args``) or by name (``**kwargs``), not
        both; ``params=`` (a mapping or a list) passes them for names that
        collide with this method's own (``caps``, ``limits``, ``timeout``,
        ``params``). The function runs with the target owner's rights, if the
        target's policy (or one of ``caps``) lets this identity ``call`` it.
        A refusal, a script error, ``bad_arguments``, ``no_such_function`` or
        ``rate_limited`` is a returned reply (``reply.ok`` false). Raises
        :class:`UsageError` for a ``function`` without ``::`` or arguments
        given two ways, :class:`~peerbox.wire._cbor_strict.EnvelopeError`
        (exit 2) for a module or function name or arguments a call cannot
        carry, and what :meth:`exec` raises.
        """
        module, name = _split_function(function)
        payload = _call_params(function, args, kwargs, params)
        entry, url = await self._locate(target)
        envelope = make_call_request(self.identity, target=entry.public_key, module=module, function=name,
                                     params=payload, caps=caps, limits=_limits_map(limits),
                                     now=int(time.time()), ttl=self.ttl)
        status, _content_type, body = await self.transport.exec(url, envelope, timeout, path=CALL_PATH)
        return self.check(entry, envelope, status, body)

    async def revoke(self, target: str | Entry, token: bytes, timeout: float = 30.0) -> Reply:
        """Tell ``target``'s worker to refuse the capability ``token`` (and what was delegated from it).

        The worker accepts it from an issuer of a link of the token's chain, or
        from the target itself, for a token about the target. Returns the
        verified reply: ``ok`` with ``value`` ``{revoked: id hex, already:
        bool}``, else ``error.kind`` ``bad_token``, ``wrong_subject`` or
        ``denied``. Raises what :meth:`exec` raises, and
        :class:`~peerbox.wire._cbor_strict.EnvelopeError` for a token a
        revocation cannot carry (empty, over 64 KiB).
        """
        entry, url = await self._locate(target)
        envelope = make_revoke_request(self.identity, target=entry.public_key, token=token,
                                       now=int(time.time()), ttl=self.ttl)
        status, _content_type, body = await self.transport.exec(url, envelope, timeout, path=REVOKE_PATH)
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
        entry, url = await self._locate(target)
        envelope = make_logic_request(self.identity, target=entry.public_key, module=module, source=source,
                                      op=op, caps=caps, now=int(time.time()), ttl=self.ttl)
        status, _content_type, body = await self.transport.exec(url, envelope, timeout, path=LOGIC_PATH)
        return self.check(entry, envelope, status, body)

    async def status(self, target: str | Entry | None = None, *, url: str | None = None,
                     timeout: float = 10.0) -> dict[str, Any]:
        """The ``/v1/status`` document of the worker serving ``target`` (its directory URL) or at ``url``.

        The request carries a status token signed by this client's identity
        (:func:`~peerbox.net._status.make_status_token`): a worker that hosts
        that peer answers from anywhere, any worker answers a loopback client.
        Raises :class:`RemoteRejected` (401: not loopback and not a hosted
        peer's key), :class:`TransportError`, :class:`UsageError` (neither or
        both of ``target`` and ``url``; a transport that cannot GET).
        """
        if (target is None) == (url is None):
            raise UsageError("status needs a target peer or a URL (one of them)")
        where = url if url is not None else self._where(target)[1]  # type: ignore[arg-type]
        carrier = (await self.transport.transport_for(where) if isinstance(self.transport, SchemeTransport)
                   else self.transport)
        if not isinstance(carrier, H2Transport):
            raise UsageError("status needs the HTTP/2 transport (an http:// or https:// URL)")
        token = make_status_token(self.identity, now=int(time.time()))
        answer = await carrier.get(where.rstrip("/"), STATUS_PATH, timeout,
                                          headers=(authorization_header(token),))
        try:
            doc = json.loads(answer.body)
        except ValueError:
            doc = None
        if answer.status == 200 and isinstance(doc, dict):
            return doc
        err = doc.get("error") if isinstance(doc, dict) else None
        if isinstance(err, dict) and isinstance(err.get("kind"), str) and isinstance(err.get("message"), str):
            raise RemoteRejected(answer.status, err["kind"][:100], err["message"][:1000])
        raise _rejection(where, answer.status, answer.body)

    def check(self, entry: Entry, envelope: bytes, status: int, body: bytes) -> Reply:
        """Turn an answer into a verified :class:`Reply`, or raise the matching :class:`ClientError`.

        A 200, 403 or 429 (:data:`SIGNED_STATUSES`) must carry a reply signed
        by ``entry`` to exactly ``envelope``, else :class:`VerificationError`;
        any other status is :class:`RemoteRejected` (the worker's ``{error}``)
        or :class:`TransportError`.
        """
        where = entry.url or entry.name
        if status in SIGNED_STATUSES:
            try:
                return verify_reply(body, target=entry.public_key, request_bytes=envelope,
                                    max_size=MAX_REPLY)
            except EnvelopeError as exc:
                raise VerificationError(
                    f"the reply from {entry.name} ({where}) does not verify: {exc}", kind=exc.kind
                ) from exc
        raise _rejection(where, status, body)


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

    def call(self, target: str | Entry, function: str, /, *args: Any,
             params: Mapping[str, Any] | Iterable[Any] | None = None, caps: Iterable[bytes] = (),
             limits: Any = None, timeout: float = 30.0, **kwargs: Any) -> Reply:
        """:meth:`AsyncClient.call`, blocking; thread-safe."""
        module, name = _split_function(function)
        payload = _call_params(function, args, kwargs, params)
        caps = tuple(caps)

        async def call() -> Reply:
            return await self._async.call(target, f"{module}::{name}", params=payload, caps=caps,
                                          limits=limits, timeout=timeout)

        return self._call(call)

    def revoke(self, target: str | Entry, token: bytes, timeout: float = 30.0) -> Reply:
        """:meth:`AsyncClient.revoke`, blocking; thread-safe."""

        async def call() -> Reply:
            return await self._async.revoke(target, token, timeout)

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

    def status(self, target: str | Entry | None = None, *, url: str | None = None,
               timeout: float = 10.0) -> dict[str, Any]:
        """:meth:`AsyncClient.status`, blocking; thread-safe."""

        async def call() -> dict[str, Any]:
            return await self._async.status(target, url=url, timeout=timeout)

        return self._call(call)

    def _call(self, call: Callable[[], Awaitable[_T]]) -> _T:
        if self._closed or self._token is None:
            raise UsageError("this Client is closed")
        with map_exceptions(CLIENT_CLOSED_ERRORS):
            return trio.from_thread.run(call, trio_token=self._token)

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
