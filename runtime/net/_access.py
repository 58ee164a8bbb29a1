"""The access log: one line per request on the ``peerbox.access`` logger, and the audit records.

:func:`access_logged` wraps an HTTP app (a shared worker's, isolated mode's
router's or child's): for each request it opens an :class:`AccessNote` (a
context variable of the request's task), lets the app answer, and writes one
``info`` line from what the layers noted on the way (the opened envelope, the
hosted peer, the caller's name, the typed answer) and the response (status,
bytes): see :func:`access_fields` for the fields. ``GET`` endpoints
(health, metrics) are written at ``debug`` only. Nothing is built when the
level is disabled: the wrapper costs one ``isEnabledFor`` then. When it is
enabled the line's fields are a :class:`~peerbox.net._logqueue.LazyFields`:
built by the log writer's thread as it formats the line (never for a line
the full log queue dropped), so the event loop pays for a log record and a
queue append only (the note, the request and the answer no longer change
once the answer is known).

The line never holds params, script source or file contents; at ``debug`` a
request's params are added, cut at :data:`PARAMS_SHOWN` characters.

In isolated mode exactly one process writes a request's line: the child, which
knows the decision, for every request its router forwarded and it answered
(the router passes the transport and the client's address in
:data:`TRANSPORT_HEADER` and :data:`CLIENT_HEADER`); the router for what it
answers itself (refused before forwarding, a child down or silent).

:func:`audit_record` makes the :class:`~peerbox.peer.AuditRecord` of an
authenticated request the worker decided (see :mod:`peerbox.peer._audit`).
"""

from __future__ import annotations

import contextvars
import enum
import functools
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ..peer import AuditRecord, Decision
from ..trust import Envelope, Handled, Outcome
from ..wire import CallRequest, Request, RevokeRequest, did_from_public_key
from ._h2server import App, HttpRequest, HttpResponse
from ._logsetup import FIELDS_ATTR, LazyFields

__all__ = ["ACCESS_LOG", "AccessNote", "RequestType", "access_logged", "current_note", "access_fields",
           "audit_record", "access_rule", "TRANSPORT_HEADER", "CLIENT_HEADER", "PARAMS_SHOWN", "NO_RULE"]

ACCESS_LOG = logging.getLogger("peerbox.access")
#: Headers an isolated-mode router adds to a forwarded request: how and from where it came.
TRANSPORT_HEADER = "peerbox-transport"
CLIENT_HEADER = "peerbox-client"
#: At most this many characters of a request's params are logged (at ``debug`` only).
PARAMS_SHOWN = 1024
#: The ``rule`` of a denial no rule decided.
NO_RULE = "no rule allowed it"
_LOGIC_READS = frozenset({"list", "show", "history"})


class RequestType(enum.StrEnum):
    """What a request asks: run a script, call a published function, change or read logic, revoke."""

    EXEC = "exec"
    CALL = "call"
    LOGIC = "logic"
    REVOKE = "revoke"


#: The request type of each envelope endpoint.
TYPE_OF_PATH: Mapping[str, RequestType] = MappingProxyType({
    "/v1/exec": RequestType.EXEC, "/v1/call": RequestType.CALL, "/v1/logic": RequestType.LOGIC,
    "/v1/revoke": RequestType.REVOKE})


@dataclass(slots=True)
class AccessNote:
    """What the layers answering one request learned about it, for its access line: the opened
    ``envelope``, the hosted ``target`` peer's name, the caller's did and name, the typed answer
    (``handled``, or ``unhandled``: ``busy``, ``unavailable``...), the error ``kind`` of a
    refusal, the ``rule`` that allowed it; ``forwarded``: an isolated child answered (it writes
    the line); ``transport``/``client`` as the router saw them."""

    transport: str
    client: str
    envelope: Envelope | None = None
    target: str | None = None
    caller_did: str | None = None
    caller_name: str | None = None
    handled: Handled | None = None
    unhandled: str | None = None
    kind: str | None = None
    rule: str | None = None
    forwarded: bool = False


_NOTE: contextvars.ContextVar[AccessNote | None] = contextvars.ContextVar("peerbox_access_note", default=None)


def current_note() -> AccessNote | None:
    """The note of the request the calling task answers (None when access logging is off)."""
    return _NOTE.get()


def access_logged(app: App, transport: str, *, from_router: bool = False) -> App:
    """``app`` writing one access line per request (see the module docstring); ``transport`` is how
    requests reach it (``h2c``, ``h2`` for TLS, ``ws``, ``nats``). With ``from_router`` (an isolated
    child, whose only client is its router) the request's :data:`TRANSPORT_HEADER` and
    :data:`CLIENT_HEADER` say how and from where it reached the router; from anyone else those
    headers are ignored, so a remote client cannot choose what the log says about it.

    With the access log off, the note is still kept (it costs about a microsecond): a router
    forwards its transport and client to the child, whose log may be on."""
    log = ACCESS_LOG

    async def logged(req: HttpRequest) -> HttpResponse:
        path = req.path.split("?", 1)[0]
        level = logging.INFO if path in TYPE_OF_PATH else logging.DEBUG
        if from_router:
            note = AccessNote(req.header(TRANSPORT_HEADER) or transport,
                              req.header(CLIENT_HEADER) or req.client)
        else:
            note = AccessNote(transport, req.client)
        token = _NOTE.set(note)
        if not log.isEnabledFor(level):
            try:
                return await app(req)
            finally:
                _NOTE.reset(token)
        start = time.perf_counter()
        try:
            resp = await app(req)
        finally:
            _NOTE.reset(token)
        if not note.forwarded:
            seconds = time.perf_counter() - start
            fields = LazyFields(functools.partial(access_fields, req, path, resp, note, seconds,
                                                  debug=log.isEnabledFor(logging.DEBUG)))
            log.log(level, "%s %s %d", req.method, path, resp.status, extra={FIELDS_ATTR: fields})
        return resp

    return logged


def _resource(env: Envelope) -> tuple[str, str | None]:
    """The field name and value naming what a request is about (never its contents)."""
    if isinstance(env, Request):
        return "script", hashlib.sha256(env.script.encode()).hexdigest()[:16]
    if isinstance(env, CallRequest):
        return "function", f"{env.module}::{env.function}"
    if isinstance(env, RevokeRequest):
        return "token", hashlib.sha256(env.token).hexdigest()[:16]
    return "module", f"{env.op} {env.module}".strip()


def _params(env: Envelope) -> str | None:
    params = getattr(env, "params", None)
    if params is None:
        return None
    text = json.dumps(params, ensure_ascii=False, default=repr, sort_keys=True)
    return text if len(text) <= PARAMS_SHOWN else text[:PARAMS_SHOWN] + "…"


def access_fields(req: HttpRequest, path: str, resp: HttpResponse, note: AccessNote, seconds: float, *,
                  debug: bool = False) -> dict[str, Any]:
    """The fields of one access line, in a stable order: ``transport``, ``client``, ``caller`` (did),
    ``caller_name``, ``target`` (the hosted peer's name, else its did), ``type``, the resource
    (``script`` hash, ``function``, ``module`` or ``token`` hash), ``outcome``, ``kind``, ``rule``,
    ``status``, ``duration_ms``, ``fuel``, ``request_bytes``, ``response_bytes``, ``nonce``; with
    ``debug``, ``params`` (cut at :data:`PARAMS_SHOWN` characters). Unknown ones are None."""
    env = note.envelope
    handled = note.handled
    caller = note.caller_did
    target = note.target
    if env is not None:
        if caller is None:
            caller = did_from_public_key(env.caller)
        if target is None:
            target = did_from_public_key(env.target)
    kind = handled.kind if handled is not None else note.kind
    if handled is not None:
        outcome = str(handled.outcome)
    elif note.unhandled is not None:
        outcome = note.unhandled
    elif resp.status == 503:
        outcome = "busy"
    else:
        outcome = str(Outcome.REJECTED) if 400 <= resp.status < 500 else "internal_error"
    rule = handled.rule if handled is not None and handled.rule else note.rule
    if handled is not None and handled.outcome is Outcome.DENIED and rule is None:
        rule = NO_RULE
    kind_of = TYPE_OF_PATH.get(path)
    fields: dict[str, Any] = {
        "transport": note.transport, "client": note.client, "caller": caller, "caller_name": note.caller_name,
        "target": target, "type": str(kind_of) if kind_of is not None else None}
    if env is not None:
        name, value = _resource(env)
        fields[name] = value
    usage = handled.usage if handled is not None else None
    fields.update({
        "outcome": outcome, "kind": kind, "rule": rule, "status": resp.status,
        "duration_ms": round(seconds * 1000, 3), "fuel": usage.fuel if usage is not None else None,
        "request_bytes": len(req.body), "response_bytes": len(resp.body),
        "nonce": env.nonce.hex() if env is not None else None})
    if debug and env is not None:
        fields["params"] = _params(env)
    return fields


def _action(env: Envelope) -> str:
    if isinstance(env, Request):
        return "exec"
    if isinstance(env, CallRequest):
        return "call"
    if isinstance(env, RevokeRequest):
        return "revoke"
    return "logic.read" if env.op in _LOGIC_READS else "logic.write"


def _type(env: Envelope) -> RequestType:
    if isinstance(env, Request):
        return RequestType.EXEC
    if isinstance(env, CallRequest):
        return RequestType.CALL
    if isinstance(env, RevokeRequest):
        return RequestType.REVOKE
    return RequestType.LOGIC


def access_rule(admitted: object) -> str | None:
    """The rule that allowed an admitted request (``Admitted.rule``), if the check phase names one."""
    rule = getattr(admitted, "rule", None)
    return rule if isinstance(rule, str) else None


def audit_record(env: Envelope, handled: Handled, *, caller_did: str, caller_name: str | None,
                 rule: str | None, now: float) -> AuditRecord | None:
    """The audit record of a request a peer decided (a signed answer), or None for one it did not
    (refused unsigned before any decision: a replay, an expired envelope)."""
    outcome = handled.outcome
    if not outcome.signed:
        return None
    if outcome is Outcome.DENIED:
        decision, action = Decision.DENIED, handled.denied_action or _action(env)
    elif outcome is Outcome.RATE_LIMITED:
        decision, action = Decision.RATE_LIMITED, _action(env)
    else:
        decision, action = Decision.ALLOWED, _action(env)
    decided = handled.rule or rule
    if decision is Decision.DENIED and decided is None:
        decided = NO_RULE
    if isinstance(env, Request):
        resource = "sha256:" + hashlib.sha256(env.script.encode()).hexdigest()
    elif isinstance(env, RevokeRequest):
        resource = "sha256:" + hashlib.sha256(env.token).hexdigest()
    else:
        resource = _resource(env)[1] or ""
    refused = handled.denied_action if decision is Decision.ALLOWED else None
    return AuditRecord(time=now, caller=caller_did, caller_name=caller_name, type=str(_type(env)),
                       action=action, resource=resource, decision=decision, rule=decided,
                       outcome=str(outcome), nonce=env.nonce.hex(), denied_action=refused)
