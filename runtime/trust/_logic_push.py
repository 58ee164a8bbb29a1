"""Remote logic: a signed ``peerbox/logic`` request installs, removes or reads a peer's modules (sans-IO).

The owner of a peer, or a caller the peer's policy or a capability lets,
sends to ``POST /v1/logic`` a COSE_Sign1 signed by the caller::

    {"v": 1, "typ": "peerbox/logic",
     "caller": bstr(32), "target": bstr(32), "nonce": bstr(16..32), "iat": int, "exp": int,
     ? "op": "set" / "remove" / "list" / "show" / "history",   ; default "set"
     ? "module": tstr,          ; set, remove, history: the peer's own module ("inbox"); show: any
                                ; name a script could import ("builtin:inbox"); list: none
     ? "source": tstr,          ; set: the new source, at most 512 KiB
     ? "statement": bstr,       ; set, remove: COSE_Sign1 by the caller: {by, peer, module, sha256,
                                ;   iat, remove?} -- what the peer's history keeps as their signature
     ? "caps": [* bstr]}        ; capability tokens

The statement names the source's SHA-256, not the source, so the history can
prove who installed what without the host holding the installer's key.

:func:`verify_logic_request` checks it like an exec request (size,
structure, signature, target, time, then the nonce) plus the statement: it
must be signed by the caller and name this target, module, source (the
empty one for a removal, with ``remove: true``) and ``iat``.
:func:`handle_logic` (:func:`check_logic` then :func:`run_logic`: the reads
are answered by the first phase, a change is done by the second, which a
worker runs in a run slot) then decides ``logic.write`` (set, remove) or
``logic.read`` (list, show, history) on the module by the target's policy
and the capabilities (only chains rooted in the target's own key: a peer the
policy lets ``delegate`` cannot grant either), and answers with a reply
signed by the target. Values: set/remove ``{module, version, sha256}``;
list the modules the caller may read (as ``peerbox logic list --json``);
show ``{module, file, sha256, source}``; history ``{module, versions,
head}`` (the entries as stored, statements and seals included, so the
caller can check them). A refused install is ``ok: false`` with kind
``compile_error`` or ``breaks_dependent``; a refusal by policy ``denied``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from .._errors import Error
from ..peer import (HistoryError, HistoryMismatch, LogicError, LogicRefused, PeerLogic, PeerNames, PeerStore,
                    make_statement, open_statement, sha256_hex)
from ..policy import Decision, GrantSet, PolicyCache
from ..run import MAX_MODULE_SIZE, split_module_name
from ..policy import Request as PolicyRequest
from ..wasm_guests.lang import CompileLimits
from ..wire import (VERSION, EnvelopeError, KeyPair, ReplayGuard, bad_field, check_delivery,
                    check_public_key, check_signer, check_typ_version, decode1, did_from_public_key,
                    make_reply, parse_addressing, preauthenticate, require_field, sign1)
from ._denials import capability_denied
from ._handled import Handled
from ._outcome import Outcome, Usage, outcome_of

if TYPE_CHECKING:  # a type only: importing it at run time would load wasmtime for a format check
    from ..peer import PeerContext

class LogicHost(Protocol):
    """What the logic handlers use of the handler of one peer's requests (an ``ExecHandler``)."""

    ctx: PeerContext
    store: PeerStore
    key: KeyPair
    nonces: ReplayGuard
    policy: PolicyCache
    owner_did: str
    clock: Callable[[], float]
    names: PeerNames

    def owner_rooted_grants(self, token: bytes, caller: bytes, now: int) -> GrantSet: ...

__all__ = ["LogicRequest", "LogicAdmitted", "make_logic_request", "open_logic_request",
           "verify_logic_request", "handle_logic", "check_logic", "check_logic_request", "run_logic",
           "TYP_LOGIC", "OPS"]

TYP_LOGIC = "peerbox/logic"
#: The operations of a logic request; the first two write (``logic.write``), the rest read.
OPS = ("set", "remove", "list", "show", "history")
_FIELDS = frozenset({"v", "typ", "caller", "target", "nonce", "iat", "exp", "op", "module", "source",
                     "statement", "caps"})
#: Which optional fields each operation carries (the others must be absent).
_OP_FIELDS = {"set": {"module", "source", "statement"}, "remove": {"module", "statement"}, "list": set(),
              "show": {"module"}, "history": {"module"}}
#: The largest logic request (512 KiB of source, the envelope and its capabilities): the
#: worker's HTTP body limit.
MAX_LOGIC_REQUEST = 1 << 20
#: The budget of each compile a remote install checks (the module, then each module importing it):
#: the compiler's defaults with a 10 s deadline, as for a request's script.
REMOTE_INSTALL_LIMITS = CompileLimits(timeout=10.0)


@dataclass(frozen=True)
class LogicRequest:
    """A verified logic request: ``op`` on the target's ``module`` ("" for ``list``)."""

    caller: bytes
    target: bytes
    nonce: bytes
    iat: int
    exp: int
    module: str
    source: str
    statement: bytes
    caps: tuple[bytes, ...] = ()
    op: str = "set"
    data: bytes = field(default=b"", repr=False)


def _parse(payload: dict[str, Any]) -> LogicRequest:
    check_typ_version(payload, TYP_LOGIC, _FIELDS)
    caller, target, nonce, iat, exp, caps = parse_addressing(payload)
    op = payload.get("op", "set")
    if op not in OPS:
        raise bad_field(f"'op' must be one of {', '.join(OPS)}")
    wanted = _OP_FIELDS[op]
    extra = {"module", "source", "statement"} & set(payload) - wanted
    if extra:
        raise bad_field(f"a {op!r} request has no {', '.join(sorted(extra))}")
    for k in sorted(wanted):
        require_field(payload, k)
    module, source, statement = (payload[k] if k in wanted else d
                                 for k, d in (("module", ""), ("source", ""), ("statement", b"")))
    if type(module) is not str or type(source) is not str or type(statement) is not bytes:
        raise bad_field("'module' and 'source' must be text, 'statement' bytes")
    name = ""
    if "module" in wanted:
        parsed = split_module_name(module)
        if parsed is None or (op != "show" and parsed[0] not in (None, "peer")):
            raise bad_field(f"'module' {module!r:.80} is not a name of one of the peer's own modules")
        name = module if op == "show" else parsed[1]
    if len(source.encode("utf-8")) > MAX_MODULE_SIZE:
        raise EnvelopeError("too_large", f"the module source is over {MAX_MODULE_SIZE} bytes")
    return LogicRequest(caller=caller, target=target, nonce=nonce, iat=iat, exp=exp, module=name,
                        source=source, statement=statement, caps=caps, op=op)


def make_logic_request(key: KeyPair, *, target: bytes, module: str = "", source: str = "",
                       op: str = "set", caps: Iterable[bytes] = (), now: int, ttl: int = 300,
                       nonce: bytes | None = None) -> bytes:
    """A request from ``key`` to do ``op`` (default: install ``source`` as ``target``'s ``module``).

    Signs the statement a ``set`` or ``remove`` needs. Raises
    :class:`EnvelopeError` for a request :func:`verify_logic_request` would refuse.
    """
    if type(ttl) is not int or ttl <= 0 or type(now) is not int:
        raise bad_field("now and ttl must be integers (Unix seconds; ttl > 0)")
    if op not in OPS:
        raise bad_field(f"'op' must be one of {', '.join(OPS)}")
    parsed = split_module_name(module)
    name = parsed[1] if parsed is not None and parsed[0] in (None, "peer") and op != "show" else module
    payload: dict[str, Any] = {
        "v": VERSION, "typ": TYP_LOGIC, "caller": key.public_key, "target": bytes(target),
        "nonce": secrets.token_bytes(16) if nonce is None else bytes(nonce), "iat": now, "exp": now + ttl,
    }
    if op != "set":
        payload["op"] = op
    wanted = _OP_FIELDS[op]
    if "module" in wanted:
        payload["module"] = name
    if "source" in wanted:
        payload["source"] = source
    if "statement" in wanted:
        payload["statement"] = make_statement(key, peer=bytes(target), module=name, source=source, now=now,
                                              remove=op == "remove")
    cap_list = [bytes(c) for c in caps]
    if cap_list:
        payload["caps"] = cap_list
    _parse(payload)
    check_public_key(target, "target")
    return sign1(payload, key)


def open_logic_request(data: bytes, *, max_size: int = MAX_LOGIC_REQUEST) -> LogicRequest:
    """Decode a logic request and check what needs no context: structure, signatures, statement.

    Raises :class:`EnvelopeError` (the kinds of :func:`peerbox.wire._envelope.open_request`,
    plus ``bad_statement`` for a statement that is not the caller's word for this change).
    """
    key = preauthenticate(data, max_size=max_size)  # the signature first: nothing decoded for a forgery
    msg = decode1(data, max_size=max_size)
    req = _parse(msg.payload)
    check_signer(msg, req.caller, "caller", verified=key)
    if req.op in ("set", "remove"):
        try:
            st = open_statement(req.statement)
        except EnvelopeError as exc:
            raise EnvelopeError("bad_statement", f"the statement does not verify: {exc.message}") from exc
        if st.remove != (req.op == "remove") or (st.by, st.peer, st.module, st.sha256, st.iat) != (
                req.caller, req.target, req.module, sha256_hex(req.source), req.iat):
            raise EnvelopeError("bad_statement", f"the statement is not the caller's for this {req.op} of "
                                                 "this module and source, to this target at this time")
    return replace(req, data=bytes(data))


def verify_logic_request(data: bytes, *, target: bytes, now: int, nonces: Any,
                         max_size: int = MAX_LOGIC_REQUEST) -> LogicRequest:
    """:func:`open_logic_request`, then target, time and (last) the nonce. Raises :class:`EnvelopeError`."""
    req = open_logic_request(data, max_size=max_size)
    check_delivery(caller=req.caller, target=req.target, nonce=req.nonce, iat=req.iat, exp=req.exp,
                   expected_target=target, now=now, nonces=nonces)
    return req


@dataclass(frozen=True, slots=True, kw_only=True)
class LogicAdmitted:
    """A change (``set`` or ``remove``) that passed :func:`check_logic`: what :func:`run_logic` needs.

    ``req`` verified (its nonce recorded), ``now`` the time it was checked
    at, ``owner``: signed by the peer's own key, ``cap`` the capability token
    that granted ``logic.write`` (None: the policy did), ``rule`` the policy
    rule that did (recorded in the history; None for the owner or a token).
    """

    req: LogicRequest
    now: int
    owner: bool
    cap: bytes | None
    rule: str | None

    @property
    def caller(self) -> bytes:
        """The caller's public key (what a transport shares its run slots by)."""
        return self.req.caller


def handle_logic(handler: LogicHost, data: bytes) -> Handled:
    """Verify, authorize (``logic.write`` or ``logic.read``), do and answer one logic request:
    :func:`check_logic`, then :func:`run_logic`.

    Never raises for bad input: a refused envelope is ``rejected``; a denial
    or a refused install is a signed reply.
    """
    checked = check_logic(handler, data)
    return run_logic(handler, checked) if isinstance(checked, LogicAdmitted) else checked


def check_logic(handler: LogicHost, data: bytes) -> LogicAdmitted | Handled:
    """The first phase of a logic request on raw bytes: :func:`open_logic_request` (the signature
    first, then the strict decoding and the statement), then :func:`check_logic_request`.

    Returns the unsigned ``rejected`` :class:`~peerbox.trust._handled.Handled`
    for an envelope refused before it is authenticated, else what
    :func:`check_logic_request` returns. Never raises for any input.
    """
    try:
        req = open_logic_request(data)
    except EnvelopeError as exc:
        return Handled.rejected(exc)
    return check_logic_request(handler, req)


def check_logic_request(handler: LogicHost, req: LogicRequest) -> LogicAdmitted | Handled:
    """The first phase of a logic request already opened by :func:`open_logic_request` (a
    transport that opened it to route it passes it down: decoded and verified once): target,
    time and (last) the nonce, then ``logic.write`` or ``logic.read`` by the target's policy and
    the capabilities, and the reads answered.

    Returns the unsigned ``rejected`` :class:`~peerbox.trust._handled.Handled`
    for a request refused before it is delivered (wrong target, expired,
    replay...); a signed reply for a denial and for ``list``, ``show`` and
    ``history`` (cheap reads of the peer's files: they take no run slot); a
    :class:`LogicAdmitted` for a ``set`` or ``remove`` (which compiles the
    new module and its dependents: that is for :func:`run_logic`, in a run
    slot). Never raises for any input: a :class:`~peerbox.Error` after the
    signature is verified (the nonce database fails) is a signed
    ``unavailable`` reply.
    """
    now, start = int(handler.clock()), time.perf_counter()

    def answer(ok: bool, value: Any = None, error: Mapping[str, Any] | None = None,
               denied_action: str | None = None) -> Handled:
        return _answer(handler, req, now, start, ok=ok, value=value, error=error, denied_action=denied_action)

    try:
        check_delivery(caller=req.caller, target=req.target, nonce=req.nonce, iat=req.iat, exp=req.exp,
                       expected_target=handler.ctx.peer.public_key, now=now, nonces=handler.nonces)
    except EnvelopeError as exc:
        return Handled.rejected(exc)
    except Error as exc:
        return answer(False, error=_unavailable(exc))
    try:
        return _decide(handler, req, now, answer)
    except Error as exc:
        return answer(False, error=_unavailable(exc))


def _decide(handler: LogicHost, req: LogicRequest, now: int,
            answer: Callable[..., Handled]) -> LogicAdmitted | Handled:
    """The policy's (and the capabilities') word on a verified logic request; the reads answered."""
    action = "logic.write" if req.op in ("set", "remove") else "logic.read"
    try:
        may = _Rights(handler, req, now)
    except (Error, ValueError) as exc:
        return answer(False, error=capability_denied(action, req.module or None, exc).fields(),
                      denied_action=action)
    logic = PeerLogic(handler.ctx.peer, clock=handler.clock)
    if req.op == "list":
        return answer(True, value=[m.doc() for m in logic.list() if may("logic.read", m.ref.name)[0]])
    bare = (split_module_name(req.module) or (None, req.module))[1]
    decision, cap = may(action, bare)
    if not decision:
        return answer(False, error=decision.denial(action, req.module).fields(), denied_action=action)
    try:
        if req.op == "show":
            found = logic.find(req.module)
            return answer(True, value={"module": req.module, "file": found.file, "source": found.source,
                                       "sha256": sha256_hex(found.source)})
        if req.op == "history":
            head = logic.history.head().get(req.module)
            return answer(True, value={"module": req.module, "head": list(head) if head else None,
                                       "versions": [v.record() for v in logic.versions(req.module)]})
    except LogicError as exc:  # an unknown module
        return answer(False, error={"kind": "not_found", "message": str(exc)})
    except HistoryError as exc:
        return answer(False, error={"kind": "io_error", "message": str(exc)})
    owner = req.caller == handler.ctx.peer.public_key
    rule = None if owner or cap is not None or decision.rule is None else str(decision.rule)
    return LogicAdmitted(req=req, now=now, owner=owner, cap=cap, rule=rule)


def run_logic(handler: LogicHost, admitted: LogicAdmitted) -> Handled:
    """The second phase of a ``set`` or ``remove``: install the change (compiling the module and
    its dependents), answer with a signed reply.

    A refused install is ``ok: false`` (kind ``compile_error``,
    ``breaks_dependent``, ``not_found`` for the removal of a module the peer
    does not have, ``io_error``; ``unavailable`` for another
    :class:`~peerbox.Error` of the peer's). Only a bug in peerbox raises.
    """
    req, now, start = admitted.req, admitted.now, time.perf_counter()

    def answer(ok: bool, value: Any = None, error: Mapping[str, Any] | None = None,
               denied_action: str | None = None) -> Handled:
        return _answer(handler, req, now, start, ok=ok, value=value, error=error, denied_action=denied_action)

    logic = PeerLogic(handler.ctx.peer, clock=handler.clock)
    try:
        version = logic.install(req.module, req.source, statement=req.statement, cap=admitted.cap,
                                rule=admitted.rule, action="remove" if req.op == "remove" else "set", now=now,
                                limits=REMOTE_INSTALL_LIMITS)
    except LogicRefused as exc:
        return answer(False, error={"kind": exc.kind, "message": str(exc)})
    except LogicError as exc:  # the removal of a module the peer does not have
        return answer(False, error={"kind": "not_found", "message": str(exc)})
    except HistoryMismatch as exc:  # the live module or the history was changed by hand
        return answer(False, error={"kind": "history_mismatch", "message": str(exc)})
    except HistoryError as exc:
        return answer(False, error={"kind": "io_error", "message": str(exc)})
    except Error as exc:
        return answer(False, error=_unavailable(exc))
    return answer(True, value={"module": version.module, "version": version.version,
                               "sha256": version.sha256})


def _unavailable(exc: Error) -> dict[str, Any]:
    """The error of a signed reply when the peer itself failed (its nonce database, its storage...)."""
    return {"kind": "unavailable", "message": f"the peer cannot handle the request: {exc}"}


class _Rights:
    """What the caller of ``req`` may do: ``rights(action, module) -> (decision, cap token or None)``.

    The policy first; else each capability (verified once, rooted in the
    target's key) in turn. Raises what verifying a token raises.
    """

    def __init__(self, handler: LogicHost, req: LogicRequest, now: int) -> None:
        did = did_from_public_key(req.caller)
        self.who = (did, handler.names.of_did(did).name)  # a local peer's name, else its peers.toml name
        self.owner_did, self.now = handler.owner_did, now
        self.policy = handler.policy.get()
        self.grants = [(t, handler.owner_rooted_grants(t, req.caller, now)) for t in req.caps]

    def __call__(self, action: str, module: str) -> tuple[Decision, bytes | None]:
        asked = PolicyRequest(self.who[0], self.who[1], action, module, self.owner_did, self.now)
        decision = self.policy.decide(asked)
        if decision:
            return decision, None
        for token, grants in self.grants:
            granted = self.policy.decide(asked, grants)
            if granted:
                return granted, token
        return decision, None


def _answer(handler: LogicHost, req: LogicRequest, now: int, start: float, *, ok: bool, value: Any = None,
            error: Mapping[str, Any] | None = None, denied_action: str | None = None) -> Handled:
    """The signed reply to a logic request; a denial names the action refused (``denied_action``)."""
    usage = Usage(wall_ms=int((time.perf_counter() - start) * 1000))
    body = make_reply(handler.key, request_bytes=req.data, caller=req.caller, now=now, ok=ok, value=value,
                      error=error, usage=usage.as_map())
    if ok:
        return Handled(outcome=Outcome.OK, body=body, usage=usage)
    err = dict(error or {})
    outcome = outcome_of(False, err.get("kind"), logic=True)
    if outcome is Outcome.DENIED:  # nothing ran: no usage to count
        rule = err.get("rule")
        return Handled(outcome=outcome, body=body, error=err, denied_action=denied_action or "logic.write",
                       rule=None if rule is None else str(rule))
    return Handled(outcome=outcome, body=body, error=err, usage=usage)
