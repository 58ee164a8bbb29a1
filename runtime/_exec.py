"""Handling a signed request in a peer's context: the whole trust path, sans sockets.

``request bytes`` → strict decode and signature check (``_envelope``) →
capability chains (``_caps``) → the target's policy: may this caller
``exec``? (``peerbox.policy``) → compile → run with every host call checked
against the policy with the path it names → a reply signed by the target.

A request that fails before it is authenticated gets an unsigned
``{error: {kind, message}}`` (nobody to answer to); a denial is a *signed*
reply (``ok: false``, kind ``denied``, the deciding rule), so a caller can
prove what the target refused. :class:`Handled` tells the transport (the
worker, in a later issue) which of these it is.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._caps import REVOCATION_FILE, CapabilityError, RevocationList, verify_chain
from ._cbor_strict import EnvelopeError
from ._cbor_strict import dumps as cbor_dumps
from ._context import PeerContext
from ._errors import Error, LimitExceeded, ScriptError
from ._envelope import Request, make_denial, make_reply, verify_request
from ._identity import KeyPair, did_from_public_key
from ._nonces import NonceStore
from ._peers import Peer, PeerStore
from ._program import _MIN_MEMORY, Limits
from .hostcalls import HostCallError
from .policy import Grant, GrantSet, Policy, PolicyCache, PolicyLimits, compile_grants, parse_grant
from .policy import Request as PolicyRequest
from .wasm_guests.lang import CompileError

__all__ = ["Handled", "ExecHandler", "NONCE_FILE"]

NONCE_FILE = "nonces.sqlite"

#: The most a request may ask for, whatever the policy says (the policy may ask for less).
_CEILING = Limits()


@dataclass(frozen=True, slots=True, kw_only=True)
class Handled:
    """The answer to one request.

    ``outcome``: ``ok`` (the script's value), ``script_error``, ``limit``
    (a resource limit stopped it), ``denied`` (by policy or a capability) —
    all signed replies — or ``rejected`` (the envelope itself was refused:
    ``body`` is unsigned CBOR ``{error: {kind, message}}``). ``error`` is the
    error map sent, if any.
    """

    outcome: str
    body: bytes
    error: dict[str, Any] | None = None

    @property
    def signed(self) -> bool:
        return self.outcome != "rejected"

    @classmethod
    def rejected(cls, exc: EnvelopeError) -> Handled:
        """The unsigned answer to an envelope refused before it was authenticated."""
        error = {"kind": exc.kind, "message": exc.message}
        return cls(outcome="rejected", body=cbor_dumps({"error": error}), error=error)


class ExecHandler:
    """Answers signed requests addressed to one peer. Thread-safe; close() releases files.

    The peer's policy file is re-read when it changes, so an edited policy
    applies from the next request on; its nonces persist in
    ``<peer dir>/nonces.sqlite`` so a replay is caught after a restart too.
    """

    def __init__(self, ctx: PeerContext, store: PeerStore, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.ctx = ctx
        self.store = store
        self.key: KeyPair = ctx.peer.signing_key()
        self.policy = PolicyCache(ctx.peer.paths.policy)
        self.nonces = NonceStore(os.fspath(ctx.peer.paths.dir / NONCE_FILE))
        self.clock = clock
        self.owner_did = ctx.peer.did

    def _local_peers(self) -> dict[str, Peer]:
        """The local peers by did (the store's one cached index, shared by every handler)."""
        return self.store.index()

    def close(self) -> None:
        self.nonces.close()

    def __enter__(self) -> ExecHandler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the pipeline -------------------------------------------------------------------

    def handle(self, data: bytes) -> Handled:
        """Verify, authorize, run and answer one request (never raises for bad input)."""
        now = int(self.clock())
        try:
            req = verify_request(data, target=self.ctx.peer.public_key, now=now, nonces=self.nonces)
        except EnvelopeError as exc:
            return Handled.rejected(exc)
        caller_did = did_from_public_key(req.caller)
        local = self._local_peers().get(caller_did)
        caller_name = local.name if local is not None else None
        policy = self.policy.get()
        try:
            grants = self._grants(req, now, self._may_delegate(policy, now))
        except (CapabilityError, EnvelopeError, Error) as exc:
            return self._deny(req, now, f"capability refused: {exc}", None)
        asked = PolicyRequest(caller_did, caller_name, "exec", None, self.owner_did, now)
        decision = policy.decide(asked, grants)
        if not decision:
            return self._deny(req, now, decision.reason, str(decision.rule) if decision.rule else None)
        cap = policy.limits_for(asked)
        limits = _limits(cap, req.limits)

        def authorize(action: str, path: str) -> None:
            d = policy.decide(PolicyRequest(caller_did, caller_name, action, path, self.owner_did, now),
                              grants)
            if not d:
                raise HostCallError("denied", f"{action} of '{path}' is not allowed: {d.reason}")

        caller = {"id": caller_did, "name": caller_name or ""}
        start = time.perf_counter()
        try:
            program = self.ctx.compile(req.script, "request.rhai", may_import=lambda name: bool(policy.decide(
                PolicyRequest(caller_did, caller_name, "module.import", name, self.owner_did, now), grants)))
            res = self.ctx.run(program, dict(req.params or {}), limits=limits, caller=caller,
                               authorize=authorize)
        except CompileError as exc:
            return self._failed(req, now, "script_error", {"kind": "compile_error", "message": str(exc),
                                                          "line": exc.line}, [], start)
        except ScriptError as exc:
            err: dict[str, Any] = {"kind": exc.kind, "message": exc.message}
            if exc.line:
                err["line"] = exc.line
            return self._failed(req, now, "script_error", err, list(exc.log), start)
        except LimitExceeded as exc:
            return self._failed(req, now, "limit", {"kind": f"limit_{exc.limit}", "message": str(exc)},
                                exc.log, start)
        usage = _usage(res.fuel_used, start, res.peak_memory)
        try:
            body = make_reply(self.key, request_bytes=req.data, caller=req.caller, now=now, ok=True,
                              value=res.value, log=res.log, usage=usage)
        except EnvelopeError as exc:  # a value the reply cannot carry (e.g. a NaN key): say so, signed
            return self._failed(req, now, "script_error", {"kind": "invalid_argument",
                                                          "message": f"the result cannot be sent: {exc}"},
                                res.log, start)
        return Handled(outcome="ok", body=body)

    # -- helpers --------------------------------------------------------------------------

    def _grants(self, req: Request, now: int, may_delegate: Callable[[bytes], bool]) -> GrantSet | None:
        if not req.caps:
            return None
        grants: list[Grant] = []
        for token in req.caps:
            chain = verify_chain(token, caller=req.caller, subject=self.ctx.peer.public_key, now=now,
                                 revoked=self._revoked, may_delegate=may_delegate)
            grants.extend(parse_grant(g) for g in chain.grants)
        return compile_grants(grants)

    def owner_rooted_grants(self, token: bytes, caller: bytes, now: int) -> GrantSet:
        """The grants of one capability token presented by ``caller`` whose chain is rooted in
        this peer's own key (a root issued by a peer the policy lets ``delegate`` does not count:
        what may change the peer's code comes from its owner only). Raises :class:`CapabilityError`."""
        chain = verify_chain(token, caller=caller, subject=self.ctx.peer.public_key, now=now,
                             revoked=self._revoked)
        return compile_grants([parse_grant(g) for g in chain.grants])

    def _may_delegate(self, policy: Policy, now: int) -> Callable[[bytes], bool]:
        def may_delegate(issuer: bytes) -> bool:
            did = did_from_public_key(issuer)
            peer = self._local_peers().get(did)
            asked = PolicyRequest(did, peer.name if peer else None, "delegate", None, self.owner_did, now)
            return bool(policy.decide(asked))
        return may_delegate

    def handle_logic(self, data: bytes) -> Handled:
        """Verify, authorize and install one ``peerbox/logic`` request (see :mod:`peerbox._logic_push`)."""
        from ._logic_push import handle_logic

        return handle_logic(self, data)

    def _revoked(self, token_id: bytes) -> bool:
        """Revoked by any local peer (an issuer records its revocations in its own directory)."""
        return any(RevocationList(p.paths.dir / REVOCATION_FILE).is_revoked(token_id)
                   for p in self._local_peers().values())

    def _deny(self, req: Request, now: int, message: str, rule: str | None) -> Handled:
        body = make_denial(self.key, request_bytes=req.data, caller=req.caller, now=now, message=message,
                           rule=rule)
        return Handled(outcome="denied", body=body,
                       error={"kind": "denied", "message": message, "rule": rule})

    def _failed(self, req: Request, now: int, outcome: str, error: dict[str, Any], log: list[str],
                start: float) -> Handled:
        body = make_reply(self.key, request_bytes=req.data, caller=req.caller, now=now, ok=False,
                          error=error, log=log, usage=_usage(None, start))
        return Handled(outcome=outcome, body=body, error=error)


def _usage(fuel: int | None, start: float, peak_memory: int = 0) -> dict[str, int]:
    """What the run used: fuel (0 when unmetered), wall-clock ms, guest memory at its largest."""
    return {"fuel": fuel or 0, "wall_ms": int((time.perf_counter() - start) * 1000),
            "peak_memory": peak_memory}


def _limits(cap: PolicyLimits | None, requested: dict[str, Any] | None) -> Limits:
    """The run's limits: the defaults, capped by the policy, then by what the caller asked for."""
    timeout = _CEILING.timeout
    memory = _CEILING.memory
    fuel = _CEILING.fuel
    for source in (cap, requested):
        if source is None:
            continue
        get = source.get if isinstance(source, dict) else lambda k, s=source: getattr(s, k)
        t, m, f = get("timeout"), get("memory"), get("fuel")
        if t is not None:
            timeout = min(timeout, t) if timeout is not None else t
        if m is not None:
            memory = min(memory, m)
        if f is not None:
            fuel = min(fuel, f) if fuel is not None else f
    return Limits(timeout=timeout, memory=max(memory, _MIN_MEMORY),
                  fuel=None if fuel is None else max(fuel, 1))
