"""What a worker and an isolated-mode router answer over HTTP: endpoints, pre-checks, statuses.

:class:`Endpoints` is the HTTP application both share: ``POST /v1/exec``,
``/v1/logic``, ``/v1/call`` and ``/v1/revoke`` (``content-type: application/cose``; the signature over
the raw bytes first, then strict decoding: :mod:`peerbox.net._preauth`; a
``target`` not hosted is 404), ``GET /v1/health`` (liveness), ``/v1/ready``
(readiness), ``/v1/status`` (the operator's, :mod:`peerbox.net._status`),
``/v1/peers`` and ``/metrics`` (:mod:`peerbox.net._metrics`). A subclass says which targets
it hosts and answers a pre-checked request (:class:`~peerbox.net._worker.Worker`
runs it, :class:`~peerbox.net._isolated.Router` forwards it).

HTTP status follows the typed outcome (:func:`status_for`): a signed reply
is 200, a signed denial 403, a signed ``rate_limited`` reply 429 with
``retry-after`` (the whole seconds the caller's rate limit asks it to wait),
an envelope refused unsigned 400/401/404/409/413 by kind; a saturated worker
503 with ``retry-after`` (:data:`RETRY_LATER`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Awaitable, Callable

from ..trust import Envelope, Handled, Outcome
from ..wire import EnvelopeError, cbor_dumps, did_from_public_key
from ._access import current_note
from ._h2server import HttpRequest, HttpResponse
from ._metrics import Metrics
from ._preauth import ENVELOPE_PATHS, PreAuth
from ._status import AUTH_SCHEME, READY_PATH, STATUS_PATH, Readiness, decide_access, errors_of

__all__ = ["Endpoints", "RETRY_LATER", "DENIED_ACTION", "status_for", "error_response", "answer_response",
           "COSE", "CBOR"]

COSE = "application/cose"
CBOR = "application/cbor"
JSON = "application/json"
PROM = "text/plain; version=0.0.4; charset=utf-8"
#: The endpoints read with ``GET``/``HEAD`` (the probes, the peer list, the operator's status).
#: A ``/v1/status`` document (JSON-able).
StatusDoc = dict[str, object]
_GET_PATHS = frozenset({"/v1/health", "/v1/peers", "/metrics", READY_PATH, STATUS_PATH})

_REJECTED_STATUS = {"bad_signature": 401, "bad_key": 401, "replay": 409, "too_large": 413,
                    "wrong_target": 404}
#: The header of a 503 that a client may retry a second later.
RETRY_LATER = (("retry-after", "1"),)
#: The response header in which an isolated-mode child tells its router the action its policy refused
#: (``Handled.denied_action``: ``exec``, ``logic.write``, ``fs.read``...), so the router counts it from a
#: field, never from the signed reply's message. Sent only to a router; the router never forwards it.
DENIED_ACTION = "peerbox-denied-action"


def status_for(handled: Handled) -> int:
    """The HTTP status of a handled request.

    ``ok``/``script_error``/``limit`` → 200 (a signed reply), ``denied`` → 403
    (a signed denial), ``rate_limited`` → 429 (a signed refusal: nothing ran),
    ``rejected`` by kind: ``bad_signature``/``bad_key`` 401, ``replay`` 409,
    ``too_large`` 413, ``wrong_target`` 404, else 400.
    """
    if handled.outcome is Outcome.DENIED:
        return 403
    if handled.outcome is Outcome.RATE_LIMITED:
        return 429
    if handled.outcome.signed:
        return 200
    return _REJECTED_STATUS.get(handled.kind or "", 400)


def error_response(status: int, kind: str, message: str,
                   headers: tuple[tuple[str, str], ...] = ()) -> HttpResponse:
    """An unsigned CBOR ``{error: {kind, message}}`` answer."""
    body = cbor_dumps({"error": {"kind": kind, "message": message}})
    return HttpResponse(status=status, headers=(("content-type", CBOR), *headers), body=body)


def _header(req: HttpRequest, name: str) -> str | None:
    for k, v in req.headers:
        if k.lower() == name:
            return v
    return None


def _is_cose(req: HttpRequest) -> bool:
    value = _header(req, "content-type")
    return value is not None and value.split(";", 1)[0].strip().lower() == COSE


# ------------------------------------------------------------------ the apps


class Endpoints:
    """What a worker and an isolated-mode router share: endpoints, pre-checks, metrics."""

    def __init__(self, peers: list[tuple[str, str]]) -> None:
        self.peers = peers
        self.metrics = Metrics()
        self.closing = False
        self.started = time.time()
        self.preauth = PreAuth()
        #: how requests reach this app, for the access log: ``h2c``, or ``h2`` over TLS
        self.transport = "h2c"
        #: ``shared`` or ``isolated`` (what ``/v1/status`` says)
        self.mode = "shared"
        #: a loopback client may read ``/v1/status`` without a token (False: everyone shows one)
        self.trust_local = True
        #: the ``worker`` label of every ``/metrics`` series (``serve --name``; empty: no label)
        self.worker_name = ""

    async def app(self, req: HttpRequest) -> HttpResponse:
        """Answer one HTTP request (never raises for bad input)."""
        path = req.path.split("?", 1)[0]
        if path in ENVELOPE_PATHS:
            if req.method != "POST":
                return error_response(405, "method_not_allowed", "use POST", (("allow", "POST"),))
            return await self._exec_checked(req, path)
        if path in _GET_PATHS:
            if req.method not in ("GET", "HEAD"):
                return error_response(405, "method_not_allowed", "use GET", (("allow", "GET, HEAD"),))
            if path == "/v1/health":
                return self.health_response()
            if path == READY_PATH:
                return (await self.readiness()).response()
            if path == STATUS_PATH:
                return await self.status_response(req)
            if path == "/v1/peers":
                return _json([{"name": n, "did": d} for n, d in self.peers])
            return HttpResponse(status=200, headers=(("content-type", PROM),),
                                body=self.metrics.render(self.worker_name).encode())
        return error_response(404, "not_found", f"no such endpoint: {path[:100]}")

    def health(self) -> dict[str, object]:
        """The ``/v1/health`` document: ``status`` is ``ok``, or ``draining`` during shutdown (a router
        whose peers' processes are all down says ``unavailable``)."""
        return {"status": "draining" if self.closing else "ok", "peers": len(self.peers),
                "uptime": round(time.time() - self.started, 3)}

    def health_response(self) -> HttpResponse:
        """``/v1/health``, the liveness probe: 200 while this process answers, with :meth:`health`
        (whose ``status`` tells the truth: ``ok``, ``draining``, or ``unavailable`` when nothing here
        can serve); whether it can serve is ``/v1/ready``'s to say (503)."""
        return _json(self.health())

    async def readiness(self) -> Readiness:
        """What ``/v1/ready`` answers: not ready while draining; a subclass adds its peers' state."""
        ready = Readiness()
        if self.closing:
            ready.waiting["worker"] = "shutting down"
        return ready

    async def status_response(self, req: HttpRequest,
                              status: Callable[[], Awaitable[StatusDoc]] | None = None) -> HttpResponse:
        """``/v1/status`` for its operator (:func:`~peerbox.net._status.decide_access`): the
        :meth:`status` document (or ``status()``'s) as JSON (CBOR if ``accept`` asks for it), or 401."""
        access = decide_access(req.client, req.header("authorization"), hosts=self.hosts,
                               now=int(time.time()), trust_local=self.trust_local)
        if not access.allowed:
            refusal = {"error": {"kind": "unauthorized", "message": access.message}}
            return HttpResponse(status=401, body=json.dumps(refusal).encode(),
                                headers=(("content-type", JSON), ("www-authenticate", AUTH_SCHEME)))
        doc = await (status or self.status)()
        if CBOR in (req.header("accept") or ""):
            return HttpResponse(status=200, headers=(("content-type", CBOR),), body=cbor_dumps(doc))
        return _json(doc)

    async def status(self) -> dict[str, object]:
        """The ``/v1/status`` document: mode, pid, uptime, hosted peers (:meth:`peer_status`), runs,
        answers by outcome and errors by kind (see the README, "peerbox status")."""
        m = self.metrics
        return {"mode": self.mode, "status": "draining" if self.closing else "ok", "pid": os.getpid(),
                "uptime": round(time.time() - self.started, 3), "in_flight": m.in_flight, "queued": m.queued,
                "peers": await self.peer_status(), "requests": dict(sorted(m.requests.items())),
                "errors": errors_of(m.requests, m.rejections, m.denials)}

    async def peer_status(self) -> list[dict[str, object]]:
        """One entry per hosted peer: ``name``, ``did`` and what a subclass knows of its runs."""
        return [{"name": n, "did": d} for n, d in self.peers]

    async def _exec_checked(self, req: HttpRequest, path: str) -> HttpResponse:
        """Check a request envelope (any of :data:`~peerbox.net._preauth.ENVELOPE_PATHS`) before it
        reaches a hosted peer: signature first.

        :meth:`exec_body` opens the envelope: the size, the outer structure
        and the signature over the raw bytes in bounded time before the
        strict decoding (:class:`~peerbox.net._preauth.PreAuth` by default,
        on the event loop for small bodies, on a thread for large ones; the
        worker does it on the pool thread that runs the request). Every
        refusal here (bad signature, malformed, a target not hosted) is
        marked ``preauth_failure``, so the HTTP/2 server charges it to the
        connection's and the address's budgets.
        """
        if not _is_cose(req):
            _note_unhandled("unsupported_media_type")
            self.metrics.unhandled("unsupported_media_type")
            return error_response(415, "unsupported_media_type", f"content-type must be {COSE}")
        if self.closing:
            _note_unhandled("busy")
            self.metrics.unhandled("busy")
            return error_response(503, "unavailable", "the worker is shutting down", RETRY_LATER)
        return await self.exec_body(req, path)

    async def exec_body(self, req: HttpRequest, path: str) -> HttpResponse:
        """Open a request's envelope (:class:`~peerbox.net._preauth.PreAuth`: the signature first),
        refuse it if its target is not hosted, else :meth:`exec_opened`. A subclass may do all
        of it elsewhere (the worker: on the thread that runs the request), with the same answers
        (:meth:`refused_envelope`, :meth:`not_hosted`)."""
        try:
            envelope = await self.preauth.open(req.body, path)
        except EnvelopeError as exc:
            return self.refused_envelope(exc)
        note = current_note()
        if note is not None:
            note.envelope = envelope
        if not self.hosts(envelope.target):
            return self.not_hosted(envelope.target)
        return await self.exec_opened(req, envelope, path)

    def refused_envelope(self, exc: EnvelopeError) -> HttpResponse:
        """Count and answer an envelope refused before it is authenticated (``preauth_failure``)."""
        error = {"kind": exc.kind, "message": exc.message}
        note = current_note()
        if note is not None:
            note.kind = exc.kind
        rejected = Handled(outcome=Outcome.REJECTED, body=b"", error=error)
        self.metrics.record(rejected)
        return dataclasses.replace(error_response(status_for(rejected), exc.kind, exc.message),
                                   preauth_failure=True)

    def not_hosted(self, target: bytes) -> HttpResponse:
        """Count and answer an authentic envelope for a ``target`` not hosted here
        (404, ``preauth_failure``)."""
        note = current_note()
        if note is not None:
            note.kind = "wrong_target"
        self.metrics.record(Handled(outcome=Outcome.REJECTED, body=b"", error={"kind": "wrong_target"}))
        return dataclasses.replace(error_response(
            404, "wrong_target", f"this worker does not host {did_from_public_key(target)}"),
            preauth_failure=True)

    def hosts(self, target: bytes) -> bool:
        raise NotImplementedError

    async def exec_opened(self, req: HttpRequest, envelope: Envelope, path: str) -> HttpResponse:
        """Answer a pre-checked request whose envelope is opened (decoded, its signature verified):
        by default :meth:`exec` with its target and caller; a subclass that uses the envelope
        (the worker: it is not decoded twice) overrides this."""
        return await self.exec(req, envelope.target, envelope.caller, path)

    async def exec(self, req: HttpRequest, target: bytes, caller: bytes, path: str) -> HttpResponse:
        """Answer a pre-checked envelope ``POST`` to ``path`` (one of
        :data:`~peerbox.net._preauth.ENVELOPE_PATHS`) for a hosted ``target``."""
        raise NotImplementedError


def _note_unhandled(what: str) -> None:
    note = current_note()
    if note is not None:
        note.unhandled = what


def _json(doc: object) -> HttpResponse:
    return HttpResponse(status=200, headers=(("content-type", JSON),), body=json.dumps(doc).encode())


def answer_response(handled: Handled, *, for_router: bool = False) -> HttpResponse:
    """The HTTP response carrying a handled request's answer.

    ``for_router`` (a child of isolated mode answering its router) adds the
    :data:`DENIED_ACTION` header when the policy refused an action; the body
    is the same signed bytes either way. A ``rate_limited`` answer (429)
    carries ``retry-after``: :attr:`Handled.retry_after` seconds (at least 1).
    """
    headers: tuple[tuple[str, str], ...] = (("content-type", COSE if handled.signed else CBOR),)
    if handled.outcome is Outcome.RATE_LIMITED:  # a client must wait at least a second
        headers += (("retry-after", str(max(1, handled.retry_after or 1))),)
    if for_router and handled.denied_action is not None:
        headers += ((DENIED_ACTION, handled.denied_action),)
    return HttpResponse(status=status_for(handled), headers=headers, body=handled.body)
