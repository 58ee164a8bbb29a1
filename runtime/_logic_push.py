"""Remote logic updates: a signed ``peerbox/logic`` request installs one module (sans-IO).

The owner of a peer, or a caller holding a capability that grants
``logic.write`` for the module, sends::

    {"v": 1, "typ": "peerbox/logic",
     "caller": bstr(32), "target": bstr(32), "nonce": bstr(16..32), "iat": int, "exp": int,
     "module": tstr,            ; the peer's own module, e.g. "inbox" (no layer but "peer:")
     "source": tstr,            ; the new source, at most 512 KiB
     "statement": bstr,         ; COSE_Sign1 by the caller: {by, peer, module, sha256, iat}
     ? "caps": [* bstr]}        ; capability tokens

as a COSE_Sign1 signed by the caller, to ``POST /v1/logic``. The statement is
what the peer's history keeps as the installer's signature (the source's
SHA-256, not the source), so the history can prove who installed what
without the host holding the installer's key.

:func:`verify_logic_request` checks it like an exec request (size,
structure, signature, target, time, then the nonce) plus the statement: it
must be signed by the caller and name this target, module, source and
``iat``. :func:`handle_logic` then decides ``logic.write`` on the module by
the target's policy and the capabilities (only chains rooted in the
target's own key: a peer the policy lets ``delegate`` cannot grant
``logic.write``), installs with
:meth:`peerbox._logic.PeerLogic.install` (compile checks: a refused version
changes nothing) and answers with a reply signed by the target whose value
is ``{module, version, sha256}``; a refused install is a signed ``ok:
false`` reply with kind ``compile_error`` or ``breaks_dependent``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from ._cbor_strict import EnvelopeError
from ._cose import decode1, sign1
from ._envelope import (VERSION, _bad, _check_signer, _check_typ_version, _key, _parse_addressing, _require,
                        check_delivery, make_reply)
from ._errors import Error
from ._history import HistoryError, make_statement, open_statement, sha256_hex
from ._identity import KeyPair, did_from_public_key
from ._logic import MAX_MODULE_SIZE, LogicError, LogicRefused, PeerLogic, split_module_name
from .policy import Request as PolicyRequest

if TYPE_CHECKING:
    from ._exec import ExecHandler, Handled

__all__ = ["LogicRequest", "make_logic_request", "open_logic_request", "verify_logic_request", "handle_logic",
           "TYP_LOGIC"]

TYP_LOGIC = "peerbox/logic"
_FIELDS = frozenset({"v", "typ", "caller", "target", "nonce", "iat", "exp", "module", "source", "statement",
                     "caps"})
#: The largest logic request (512 KiB of source, the envelope and its capabilities): the
#: worker's HTTP body limit.
MAX_LOGIC_REQUEST = 1 << 20


@dataclass(frozen=True)
class LogicRequest:
    """A verified logic update: install ``source`` as the target's ``module``."""

    caller: bytes
    target: bytes
    nonce: bytes
    iat: int
    exp: int
    module: str
    source: str
    statement: bytes
    caps: tuple[bytes, ...] = ()
    data: bytes = field(default=b"", repr=False)


def _parse(payload: dict[str, Any]) -> LogicRequest:
    _check_typ_version(payload, TYP_LOGIC, _FIELDS)
    caller, target, nonce, iat, exp, caps = _parse_addressing(payload)
    module, source, statement = (_require(payload, k) for k in ("module", "source", "statement"))
    if type(module) is not str or type(source) is not str or type(statement) is not bytes:
        raise _bad("'module' and 'source' must be text, 'statement' bytes")
    parsed = split_module_name(module)
    if parsed is None or parsed[0] not in (None, "peer"):
        raise _bad(f"'module' {module!r:.80} is not a name of one of the peer's own modules")
    if len(source.encode("utf-8")) > MAX_MODULE_SIZE:
        raise EnvelopeError("too_large", f"the module source is over {MAX_MODULE_SIZE} bytes")
    return LogicRequest(caller=caller, target=target, nonce=nonce, iat=iat, exp=exp, module=parsed[1],
                        source=source, statement=statement, caps=caps)


def make_logic_request(key: KeyPair, *, target: bytes, module: str, source: str, caps: Iterable[bytes] = (),
                       now: int, ttl: int = 300, nonce: bytes | None = None) -> bytes:
    """A request from ``key`` to install ``source`` as ``target``'s ``module``; signs the statement too.

    Raises :class:`EnvelopeError` for a request :func:`verify_logic_request` would refuse.
    """
    if type(ttl) is not int or ttl <= 0 or type(now) is not int:
        raise _bad("now and ttl must be integers (Unix seconds; ttl > 0)")
    parsed = split_module_name(module)
    name = parsed[1] if parsed is not None and parsed[0] in (None, "peer") else module
    payload: dict[str, Any] = {
        "v": VERSION, "typ": TYP_LOGIC, "caller": key.public_key, "target": bytes(target),
        "nonce": secrets.token_bytes(16) if nonce is None else bytes(nonce), "iat": now, "exp": now + ttl,
        "module": name, "source": source,
        "statement": make_statement(key, peer=bytes(target), module=name, source=source, now=now),
    }
    cap_list = [bytes(c) for c in caps]
    if cap_list:
        payload["caps"] = cap_list
    _parse(payload)
    _key(target, "target")
    return sign1(payload, key)


def open_logic_request(data: bytes, *, max_size: int = MAX_LOGIC_REQUEST) -> LogicRequest:
    """Decode a logic request and check what needs no context: structure, signatures, statement.

    Raises :class:`EnvelopeError` (the kinds of :func:`peerbox._envelope.open_request`,
    plus ``bad_statement`` for a statement that is not the caller's word for this install).
    """
    if isinstance(data, (bytes, bytearray, memoryview)) and len(data) > max_size:
        raise EnvelopeError("too_large", f"{len(data)} bytes, at most {max_size}")
    msg = decode1(data, max_size=max_size)
    req = _parse(msg.payload)
    _check_signer(msg, req.caller, "caller")
    try:
        st = open_statement(req.statement)
    except EnvelopeError as exc:
        raise EnvelopeError("bad_statement", f"the statement does not verify: {exc.message}") from None
    if st.remove or (st.by, st.peer, st.module, st.sha256, st.iat) != (
            req.caller, req.target, req.module, sha256_hex(req.source), req.iat):
        raise EnvelopeError("bad_statement", "the statement is not the caller's for this module, source, "
                                             "target and time")
    return LogicRequest(caller=req.caller, target=req.target, nonce=req.nonce, iat=req.iat, exp=req.exp,
                        module=req.module, source=req.source, statement=req.statement, caps=req.caps,
                        data=bytes(data))


def verify_logic_request(data: bytes, *, target: bytes, now: int, nonces: Any,
                         max_size: int = MAX_LOGIC_REQUEST) -> LogicRequest:
    """:func:`open_logic_request`, then target, time and (last) the nonce. Raises :class:`EnvelopeError`."""
    req = open_logic_request(data, max_size=max_size)
    check_delivery(caller=req.caller, target=req.target, nonce=req.nonce, iat=req.iat, exp=req.exp,
                   expected_target=target, now=now, nonces=nonces)
    return req


def handle_logic(handler: ExecHandler, data: bytes) -> Handled:
    """Verify, authorize (``logic.write``), install and answer one logic request.

    Never raises for bad input: a refused envelope is ``rejected``; a denial
    or a refused install is a signed reply.
    """
    from ._exec import Handled

    now, start = int(handler.clock()), time.perf_counter()
    try:
        req = verify_logic_request(data, target=handler.ctx.peer.public_key, now=now, nonces=handler.nonces)
    except EnvelopeError as exc:
        return Handled.rejected(exc)
    caller_did = did_from_public_key(req.caller)
    local = handler.store.index().get(caller_did)
    asked = PolicyRequest(caller_did, local.name if local else None, "logic.write", req.module,
                          handler.owner_did, now)
    policy = handler.policy.get()
    cap: bytes | None = None
    decision = policy.decide(asked)
    for token in req.caps if not decision else ():
        try:
            grants = handler.owner_rooted_grants(token, req.caller, now)
        except (Error, ValueError) as exc:
            return _answer(handler, req, now, start, ok=False, error={"kind": "denied", "rule": None,
                                                                 "message": f"capability refused: {exc}"})
        if policy.decide(asked, grants):
            decision, cap = policy.decide(asked, grants), token
            break
    if not decision:
        message = f"logic.write of module '{req.module}' is not allowed: {decision.reason}"
        return _answer(handler, req, now, start, ok=False, error={
            "kind": "denied", "message": message, "rule": str(decision.rule) if decision.rule else None})
    owner = req.caller == handler.ctx.peer.public_key
    rule = None if owner or cap is not None or decision.rule is None else str(decision.rule)
    logic = PeerLogic(handler.ctx.peer, clock=handler.clock)
    try:
        version = logic.install(req.module, req.source, statement=req.statement, cap=cap, rule=rule, now=now)
    except LogicRefused as exc:
        return _answer(handler, req, now, start, ok=False, error={"kind": exc.kind, "message": str(exc)})
    except (LogicError, HistoryError) as exc:
        return _answer(handler, req, now, start, ok=False, error={"kind": "io_error", "message": str(exc)})
    return _answer(handler, req, now, start, ok=True,
                   value={"module": version.module, "version": version.version, "sha256": version.sha256})


def _answer(handler: ExecHandler, req: LogicRequest, now: int, start: float, *, ok: bool, value: Any = None,
            error: Mapping[str, Any] | None = None) -> Handled:
    from ._exec import Handled

    body = make_reply(handler.key, request_bytes=req.data, caller=req.caller, now=now, ok=ok, value=value,
                      error=error, usage={"fuel": 0, "wall_ms": int((time.perf_counter() - start) * 1000),
                                          "peak_memory": 0})
    if ok:
        return Handled(outcome="ok", body=body)
    outcome = "denied" if error and error.get("kind") == "denied" else "script_error"
    return Handled(outcome=outcome, body=body, error=dict(error or {}))
