"""Handling a signed request in a peer's context: the whole trust path, sans sockets.

``request bytes`` → strict decode and signature check (``_envelope``) →
capability chains (``_caps``) → the target's policy: may this caller
``exec``? (``peerbox.policy``) → the caller's rate (``_rate``) → compile →
run with every host call checked against the policy with the path it names
→ a reply signed by the target.

A request that fails before it is authenticated gets an unsigned
``{error: {kind, message}}`` (nobody to answer to); a denial is a *signed*
reply (``ok: false``, kind ``denied``, the deciding rule), so a caller can
prove what the target refused; so is a refusal by a rate limit (kind
``rate_limited``). :class:`Handled` tells the transport (the worker) which of
these it is.

The pipeline has two phases, so a transport can admit a request to its run
slots only once it is known to deserve one: :meth:`ExecHandler.check`
(everything up to and including the policy's ``exec`` decision, the rate and
the run's limits; cheap, no untrusted code) returns a :class:`Handled`
refusal or an :class:`Admitted` request, and :meth:`ExecHandler.run` compiles
and runs it and signs the reply. :meth:`ExecHandler.handle` is the two in a
row. A transport that opened the envelope already (to route it by its target)
calls :meth:`ExecHandler.check_envelope` with it (any request type: exec,
``peerbox/logic``, ``peerbox/call``, ``peerbox/revoke``), so it is decoded
and its signature verified once. A call (:mod:`._call`) goes through the same
two phases; a revocation (:mod:`._revoke`) and a logic read are answered by
the first.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import EllipsisType
from typing import Any

from ..wire import (CallRequest, EnvelopeError, KeyPair, NonceStore, ReplayGuard,
                    Request, RevokeRequest, check_delivery, did_from_public_key, make_denial,
                    make_reply, open_call_request, open_request, open_revoke_request, verify_chain)
from ..peer import Peer, PeerContext, PeerNames, PeerStore
from .._errors import Error, LimitExceeded, ScriptError, ValueConversionError
from ..run import MAX_FUEL, MIN_MEMORY, CborParams, CompileLimits, Limits
from ..hostcalls import CallerQuota, HostCallError, RowScope
from ..policy import (DB_ACTIONS, Denied, Grant, GrantSet, Policy, PolicyCache, PolicyLimits, compile_grants,
                      parse_grant)
from ..policy import Request as PolicyRequest
from ..wasm_guests.lang import CompileError
from ._call import CallAdmitted, check_call_request, run_call
from ._denials import capability_denied
from ._handled import Handled
from ._host import Authorize, Delivered
from ._outcome import Outcome, Usage
from ._logic_push import LogicAdmitted, LogicRequest, check_logic, check_logic_request, run_logic
from ._rate import RATES_FILE, RateDenial, RateLimiter, RateStore
from ._revoke import check_revoke_request
from ._revocations import LocalRevocations, Revocations

__all__ = ["Handled", "Admitted", "AnyAdmitted", "Delivered", "Envelope", "ExecHandler", "NONCE_FILE"]

NONCE_FILE = "nonces.sqlite"

#: How many callers' did:key an :class:`ExecHandler` remembers.
_DID_CACHE = 4096

#: Every request type :meth:`ExecHandler.check_envelope` takes (what a transport opened).
Envelope = Request | LogicRequest | CallRequest | RevokeRequest

#: The most a request may ask for, whatever the policy says (the policy may ask for less).
_CEILING = Limits()


def _params_of(req: Request) -> dict[str, Any] | CborParams:
    """The params a request's script gets: their bytes in the verified envelope, handed to the guest as
    they are (no Python objects in between; the guest's decoder checks what a script can take), or a
    copy of the decoded ones for a request not opened from bytes."""
    return CborParams(req.params_cbor) if req.params_cbor is not None else dict(req.params or {})


@dataclass(frozen=True, slots=True, kw_only=True)
class Admitted:
    """An exec request that passed :meth:`ExecHandler.check`: authentic, fresh, for us, its nonce
    recorded, its capabilities valid, ``exec`` allowed by the policy.

    Carries what :meth:`ExecHandler.run` needs: the verified ``req``, the
    time it was checked at (``now``: the reply and every later policy
    decision use it), the caller's identity (``caller_did``, the local
    ``caller_name`` if any, ``owner``: signed by the peer's own key), the
    ``policy`` and ``grants`` that decided (the run's host calls and imports
    are decided by the same), the run's ``limits``, and the caller's quota
    caps from the matching ``exec`` rules (``max_bytes``, ``max_files``; None:
    uncapped), charged through :meth:`~peerbox.peer.PeerContext.quota_for`.
    """

    req: Request
    now: int
    caller_did: str
    caller_name: str | None
    owner: bool
    policy: Policy
    grants: GrantSet | None
    limits: Limits
    max_bytes: int | None = None
    max_files: int | None = None
    rule: str | None = None  # the policy rule that allowed ``exec`` (None: a capability, or unknown)

    @property
    def caller(self) -> bytes:
        """The caller's public key (what a transport shares its run slots by)."""
        return self.req.caller


#: What :meth:`ExecHandler.run` takes: an admitted run, logic change or call.
AnyAdmitted = Admitted | LogicAdmitted | CallAdmitted


class ExecHandler:
    """Answers signed requests addressed to one peer. Thread-safe; close() releases files.

    The peer's policy file is re-read when it changes, so an edited policy
    applies from the next request on; its nonces persist in
    ``<peer dir>/nonces.sqlite`` so a replay is caught after a restart too.

    The untrusted compile happens in :meth:`run`, so a worker does it on the
    run slot's thread (off the event loop, counted against the caller's
    slots), under the caller's limits applied to compile and run together:
    the compile's wall-time budget (:class:`~peerbox.CompileLimits`
    ``timeout``) is the run's timeout, and the run gets what the compile left
    of it. A compile refused for a budget is a signed reply of kind
    ``compile_error`` whose message names the limit. The compile runs in
    process, not in a subprocess: every other budget (source bytes, tokens,
    nodes, nesting depth and expression height, locals, WAT bytes in all and
    per function) is checked as the compiler goes, so its memory and time
    grow at most linearly with limits that are small, its recursion is
    bounded by the depth and height limits (the run threads' 64 MiB stacks
    hold it), and Cranelift never gets more WAT than ``wat_bytes``; a
    subprocess per request would cost far more than a typical compile (tens
    of milliseconds of start-up against a few) and would isolate nothing
    these budgets leave open.
    """

    def __init__(self, ctx: PeerContext, store: PeerStore, *,
                 clock: Callable[[], float] = time.time, nonces: ReplayGuard | None = None,
                 revocations: Revocations | None = None, rates: RateStore | None = None) -> None:
        self.ctx = ctx
        self.store = store
        self.key: KeyPair = ctx.peer.signing_key()
        self.policy = PolicyCache(ctx.peer.paths.policy)
        #: the replay guard (default: ``<peer dir>/nonces.sqlite``; a worker with shared state
        #: passes a JetStream one); closed with the handler
        self.nonces: ReplayGuard = (nonces if nonces is not None
                                    else NonceStore(os.fspath(ctx.peer.paths.dir / NONCE_FILE)))
        #: revoked token ids (default: the local peers' ``revoked.json``)
        self.revocations: Revocations = (revocations if revocations is not None
                                         else LocalRevocations(ctx.peer.paths.dir, self._local_peers))
        self.clock = clock
        self.owner_did = ctx.peer.did
        #: who a did is here: local peers, then the root's ``peers.toml`` (``caller.name``, ``who = NAME``)
        self.names = PeerNames(store)
        #: the per-caller rate buckets (default ``<peer dir>/rates.sqlite``, opened by the first rated
        #: request; a worker with shared state passes a JetStream one); closed with the handler
        self.rates: RateStore = rates if rates is not None else RateLimiter(ctx.peer.paths.dir / RATES_FILE)
        #: did:key of the keys seen lately (validating a key and its base58 cost ~8 µs a call)
        self._dids: dict[bytes, str] = {}

    def did_of(self, key: bytes) -> str:
        """The did:key of ``key``, a caller's or an issuer's public key (already checked by the
        envelope or chain that carried it); remembered for the next requests, at most
        :data:`_DID_CACHE` keys (then forgotten all at once). Raises what
        :func:`~peerbox.wire._identity.did_from_public_key` raises."""
        did = self._dids.get(key)
        if did is None:
            did = did_from_public_key(key)
            if len(self._dids) >= _DID_CACHE:
                self._dids = {}
            self._dids[key] = did
        return did

    def _local_peers(self) -> dict[str, Peer]:
        """The local peers by did (the store's one cached index, shared by every handler)."""
        return self.store.index()

    def name_of(self, did: str) -> str | None:
        """What ``did`` is called here (:class:`~peerbox.peer.PeerNames`: a local peer's name, else
        its name in ``peers.toml``; None when nothing names it). Found in names read at most a
        second ago, a miss re-reads them, so a peer added since is named at once. Raises
        :class:`~peerbox.peer.PeerError` when the local peers cannot be listed."""
        return self.names.of_did(did).name

    def close(self) -> None:
        """Close the nonce and rate-limit databases. Idempotent."""
        self.nonces.close()
        self.rates.close()

    def __enter__(self) -> ExecHandler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the pipeline -------------------------------------------------------------------

    def handle(self, data: bytes) -> Handled:
        """Verify, authorize, run and answer one exec request: :meth:`check`, then :meth:`run`.

        Never raises for bad input (what :meth:`run` raises aside: bugs only).
        """
        checked = self.check(data)
        return checked if isinstance(checked, Handled) else self.run(checked)

    def check(self, data: bytes) -> Admitted | Handled:
        """The first phase on raw bytes: strict decoding and the caller's signature
        (:func:`~peerbox.wire._envelope.open_request`), then :meth:`check_request`.

        Returns an unsigned ``rejected`` :class:`Handled` for an envelope
        refused before it is authenticated, else what :meth:`check_request`
        returns. Never raises for any input.
        """
        try:
            req = open_request(data)
        except EnvelopeError as exc:
            return Handled.rejected(exc)
        return self.check_request(req)

    def check_envelope(self, env: Envelope) -> AnyAdmitted | Handled:
        """The first phase of any request already opened (decoded, its signature verified), by its
        type: :meth:`check_request` (exec), :meth:`check_logic_request`,
        :func:`~peerbox.trust._call.check_call_request`,
        :func:`~peerbox.trust._revoke.check_revoke_request` (answered here: never admitted).
        Never raises for any input."""
        if isinstance(env, Request):
            return self.check_request(env)
        if isinstance(env, CallRequest):
            return check_call_request(self, env)
        if isinstance(env, LogicRequest):
            return check_logic_request(self, env)
        return check_revoke_request(self, env)

    def check_request(self, req: Request) -> Admitted | Handled:
        """The first phase of a request already opened (decoded, its signature verified): everything
        that decides whether it may run, nothing that runs.

        ``req`` must come from :func:`~peerbox.wire._envelope.open_request`
        (a transport that opened the envelope to route it passes it down, so
        it is decoded and verified once). Checks the target, freshness, then
        (last, so only a request that passed everything else uses up its
        nonce) the replay check; the capability chains; the policy's ``exec``
        decision; the caller's rate; the run's limits. Returns an unsigned
        ``rejected`` :class:`Handled` (wrong target, expired, replay...), a
        signed denial or ``rate_limited`` reply, or the :class:`Admitted`
        request. Cheap (no compiling, no guest code) but not free: the nonce
        check may write a database (and a rated caller's rate check does),
        so call it off an event loop. Never raises for any input: a
        :class:`~peerbox.Error` after the signature is verified (the nonce
        database fails) becomes a signed ``unavailable`` reply.
        """
        now = int(self.clock())
        refused = self.delivered(req, now)
        if refused is not None:
            return refused
        try:
            return self._authorize(req, now)
        except Error as exc:
            return self.unavailable(req, now, exc, time.perf_counter())

    def delivered(self, req: Request | CallRequest | RevokeRequest, now: int) -> Handled | None:
        """Target, freshness and (last) the nonce of an opened request: None when it is for us, now,
        and new (its nonce is then recorded); else the unsigned ``rejected`` answer, or a signed
        ``unavailable`` one when the nonce database fails. One nonce store for every request type,
        so a nonce used by one kind of request cannot be used by another. Never raises."""
        try:
            check_delivery(caller=req.caller, target=req.target, nonce=req.nonce, iat=req.iat, exp=req.exp,
                           expected_target=self.ctx.peer.public_key, now=now, nonces=self.nonces)
        except EnvelopeError as exc:
            return Handled.rejected(exc)
        except Error as exc:
            return self.unavailable(req, now, exc, time.perf_counter())
        return None

    def _authorize(self, req: Request, now: int) -> Admitted | Handled:
        """Capabilities, the ``exec`` decision, the rate and the limits of an authentic, fresh request."""
        caller_did = self.did_of(req.caller)
        caller_name = self.name_of(caller_did)
        policy = self.policy.get()
        grants = self.checked_grants(req, now, policy, action="exec")
        if isinstance(grants, Handled):
            return grants
        asked = PolicyRequest(caller_did, caller_name, "exec", None, self.owner_did, now)
        decision = policy.decide(asked, grants)
        if not decision:
            return self.deny(req, now, decision.denial("exec", None))
        cap = policy.limits_for(asked)
        limited = self.rate_check(policy, asked, req, now, cap=cap)
        if limited is not None:
            return limited
        return Admitted(req=req, now=now, caller_did=caller_did, caller_name=caller_name,
                        owner=req.caller == self.ctx.peer.public_key, policy=policy, grants=grants,
                        limits=_limits(cap, req.limits), max_bytes=cap.max_bytes if cap else None,
                        max_files=cap.max_files if cap else None,
                        rule=str(decision.rule) if decision.rule else None)

    def run(self, admitted: AnyAdmitted) -> Handled:
        """The second phase: compile and run an :class:`Admitted` request, answer with a signed reply
        (a :class:`~peerbox.trust._logic_push.LogicAdmitted` one: do the change, see
        :func:`~peerbox.trust._logic_push.run_logic`; a
        :class:`~peerbox.trust._call.CallAdmitted` one: run the published function with its
        owner's rights, see :func:`~peerbox.trust._call.run_call`).

        Every outcome is a signed reply: the value; a compile error, runtime
        error or limit (``ok: false``); a :class:`~peerbox.Error` the peer
        raised on purpose (its storage failed: kind ``unavailable``). Only a
        bug in peerbox raises. Runs untrusted code: call it on a thread with a
        large stack (the compiler recurses, wasm uses the native stack).
        """
        if not isinstance(admitted, Admitted):
            if isinstance(admitted, CallAdmitted):
                return run_call(self, admitted)
            return run_logic(self, admitted)
        req, now, policy, grants = admitted.req, admitted.now, admitted.policy, admitted.grants
        caller_did, caller_name = admitted.caller_did, admitted.caller_name

        refused: list[Denied] = []  # the host calls the policy refused, in order

        def authorize(action: str, path: str) -> RowScope:
            request = PolicyRequest(caller_did, caller_name, action, path, self.owner_did, now)
            d = policy.decide(request, grants)
            if not d:
                denied = d.denial(action, path)
                refused.append(denied)
                raise HostCallError("denied", str(denied))
            return policy.row_filters(request) if action in DB_ACTIONS else None

        def may_import(name: str) -> bool:
            return bool(policy.decide(
                PolicyRequest(caller_did, caller_name, "module.import", name, self.owner_did, now), grants))

        return self.execute(req, now, source=req.script, filename="request.rhai", may_import=may_import,
                            params=_params_of(req), limits=admitted.limits,
                            caller={"id": caller_did, "name": caller_name or ""}, authorize=authorize,
                            refused=refused,
                            quota=self.ctx.quota_for(caller_did, admitted.max_bytes, admitted.max_files))

    def execute(self, req: Delivered, now: int, *, source: str, filename: str,
                may_import: Callable[[str], bool] | None, params: dict[str, Any] | CborParams, limits: Limits,
                caller: dict[str, str], authorize: Authorize, refused: list[Denied],
                quota: CallerQuota | None, unavailable_compile: str | None = None) -> Handled:
        """Compile ``source`` and run it in the peer's context; the signed reply to ``req``.

        The compile and the run share ``limits.timeout`` (the run gets what
        the compile left). ``refused`` is the list ``authorize`` appends the
        host calls it refused to (a run ending on one is a denial of the last:
        the reply's error carries its action, resource, rule and cause).
        A compile error is kind ``compile_error`` with its message and line,
        or, when ``unavailable_compile`` is set (a published function: the
        message would show the owner's source), kind ``unavailable`` with
        that message alone. Only a bug in peerbox raises.
        """
        start = time.perf_counter()
        timeout = limits.timeout
        try:
            program = self.ctx.compile(source, filename, may_import=may_import,
                                       limits=CompileLimits(timeout=timeout))
            if timeout is not None:  # the run gets what the compile left of the timeout
                left = timeout - (time.perf_counter() - start)
                if left <= 0:
                    raise LimitExceeded("timeout", f"the compile used the whole timeout of {timeout:g} s")
                limits = dataclasses.replace(limits, timeout=left)
            res = self.ctx.run(program, params, limits=limits, caller=caller, authorize=authorize,
                               quota=quota)
        except CompileError as exc:  # over a compile budget too (CompileLimitExceeded, named in the message)
            if unavailable_compile is not None:
                return self.failed(req, now, Outcome.SCRIPT_ERROR,
                                   {"kind": "unavailable", "message": unavailable_compile}, [], start)
            return self.failed(req, now, Outcome.SCRIPT_ERROR, {"kind": "compile_error", "message": str(exc),
                                                                "line": exc.line}, [], start)
        except ScriptError as exc:
            err: dict[str, Any] = {"kind": exc.kind, "message": exc.message}
            if exc.line:
                err["line"] = exc.line
            # a script that ends on a refused host call counts as a denial of that call's action
            action = None
            if exc.kind == "denied":
                action = refused[-1].action if refused else "host_call"
                if refused:  # the typed fields of the denial: no client parses the message
                    fields = refused[-1].fields().items()
                    err.update((k, v) for k, v in fields if k not in ("kind", "message"))
            return self.failed(req, now, Outcome.SCRIPT_ERROR, err, list(exc.log), start,
                               denied_action=action)
        except LimitExceeded as exc:
            message = str(exc)
            if exc.limit == "timeout" and timeout is not None:  # the caller's timeout, not what was left
                message = f"script exceeded its {timeout} s timeout (compile and run together)"
            return self.failed(req, now, Outcome.LIMIT, {"kind": f"limit_{exc.limit}", "message": message},
                               exc.log, start, fuel=limits.fuel if exc.limit == "fuel" else None)
        except ValueConversionError as exc:  # params the language cannot take
            return self.failed(req, now, Outcome.SCRIPT_ERROR,
                               {"kind": "invalid_argument", "message": str(exc)}, [], start)
        except Error as exc:
            return self.unavailable(req, now, exc, start)
        usage = _usage(res.fuel_used, start, res.peak_memory)
        reply = functools.partial(make_reply, self.key, request_bytes=req.data, caller=req.caller, now=now,
                                  ok=True, log=res.log, usage=usage.as_map(), check=False)
        try:
            try:  # the guest's result bytes, signed as they are (no decode, no encode)
                raw = res.value_cbor
                body = reply(value_cbor=raw) if raw is not None else reply(value=res.value)
            except EnvelopeError:  # not bytes a reply takes as they are: the value decides, the ordinary way
                body = reply(value=res.value)
        except EnvelopeError as exc:  # a value the reply cannot carry (e.g. a NaN key): say so, signed
            return self.failed(req, now, Outcome.SCRIPT_ERROR,
                               {"kind": "invalid_argument", "message": f"the result cannot be sent: {exc}"},
                               res.log, start)
        except Error as exc:  # the guest runtime's bytes decode to no script value (a bug in peerbox)
            return self.unavailable(req, now, exc, start)
        return Handled(outcome=Outcome.OK, body=body, usage=usage)

    # -- calls and revocations ------------------------------------------------------------

    def handle_call(self, data: bytes) -> Handled:
        """Verify, authorize, run and answer one ``peerbox/call`` request (see :mod:`peerbox.trust._call`):
        :func:`~peerbox.wire.open_call_request`, :func:`~peerbox.trust._call.check_call_request`, then
        :meth:`run`. Never raises for bad input."""
        try:
            req = open_call_request(data)
        except EnvelopeError as exc:
            return Handled.rejected(exc)
        checked = check_call_request(self, req)
        return checked if isinstance(checked, Handled) else self.run(checked)

    def handle_revoke(self, data: bytes) -> Handled:
        """Verify and answer one ``peerbox/revoke`` request (see :mod:`peerbox.trust._revoke`):
        :func:`~peerbox.wire.open_revoke_request`, then
        :func:`~peerbox.trust._revoke.check_revoke_request`. Never raises for bad input."""
        try:
            req = open_revoke_request(data)
        except EnvelopeError as exc:
            return Handled.rejected(exc)
        return check_revoke_request(self, req)

    # -- helpers --------------------------------------------------------------------------

    def grants_for(self, req: Request | CallRequest, now: int, policy: Policy) -> GrantSet | None:
        """The grants of the capability tokens ``req`` carries (None: it carries none), each chain
        verified for this peer, the caller and ``now``, with roots issued by this peer or by a
        peer ``policy`` lets ``delegate``. Raises :class:`CapabilityError` (or
        :class:`EnvelopeError`) for the first token refused, another :class:`~peerbox.Error` when
        the check itself failed (a local peer's revocation list cannot be read)."""
        if not req.caps:
            return None
        may_delegate = self._may_delegate(policy, now)
        grants: list[Grant] = []
        for token in req.caps:
            chain = verify_chain(token, caller=req.caller, subject=self.ctx.peer.public_key, now=now,
                                 revoked=self._revoked, may_delegate=may_delegate)
            grants.extend(parse_grant(g) for g in chain.grants)
        return compile_grants(grants)

    def checked_grants(self, req: Request | CallRequest, now: int, policy: Policy, *,
                       action: str) -> GrantSet | None | Handled:
        """:meth:`grants_for`, a refused token answered: a signed denial of ``action`` (on the
        request's resource, if it names one) giving the token's one reason
        (:func:`~peerbox.trust._denials.capability_denied`; only "could not be checked on this
        worker" when the worker itself failed: its message may name host paths). Never raises."""
        resource = req.resource if isinstance(req, CallRequest) else None
        try:
            return self.grants_for(req, now, policy)
        except Error as exc:
            return self.deny(req, now, capability_denied(action, resource, exc))

    def owner_rooted_grants(self, token: bytes, caller: bytes, now: int) -> GrantSet:
        """The grants of one capability token presented by ``caller`` whose chain is rooted in
        this peer's own key (a root issued by a peer the policy lets ``delegate`` does not count:
        what may change the peer's code comes from its owner only). Raises :class:`CapabilityError`."""
        chain = verify_chain(token, caller=caller, subject=self.ctx.peer.public_key, now=now,
                             revoked=self._revoked)
        return compile_grants([parse_grant(g) for g in chain.grants])

    def _may_delegate(self, policy: Policy, now: int) -> Callable[[bytes], bool]:
        def may_delegate(issuer: bytes) -> bool:
            did = self.did_of(issuer)
            asked = PolicyRequest(did, self.name_of(did), "delegate", None, self.owner_did, now)
            return bool(policy.decide(asked))
        return may_delegate

    def rate_check(self, policy: Policy, asked: PolicyRequest, req: Delivered, now: int, *,
                   cap: PolicyLimits | EllipsisType | None = ...) -> Handled | None:
        """Count one request of ``asked``'s caller against the rate limits of the allow rules that
        match it (:meth:`~peerbox.policy.Policy.rates_for`); None when it may go on, else the signed
        ``rate_limited`` answer. ``cap`` (optional) is ``policy.limits_for(asked)`` when the caller
        has it already: a request with no ``calls_per_minute`` in it skips the rate lookup. An
        unrated request never opens the database. Raises :class:`~peerbox.trust.RateStoreError`
        when the database fails (a handler answers ``unavailable``)."""
        if cap is None or (isinstance(cap, PolicyLimits) and cap.calls_per_minute is None):
            return None
        limits = policy.rates_for(asked)
        if not limits:
            return None
        denial = self.rates.take(asked.caller_did, limits, float(self.clock()))
        return None if denial is None else self.rate_limited(req, now, denial)

    def rate_limited(self, req: Delivered, now: int, denial: RateDenial) -> Handled:
        """The signed ``rate_limited`` answer (nothing ran): the rule, its rate and the wait, which
        the transport also sends as ``retry-after`` (:attr:`Handled.retry_after`)."""
        rule = str(denial.limit.rule)
        error = {"kind": "rate_limited", "message": denial.message(), "rule": rule}
        body = make_reply(self.key, request_bytes=req.data, caller=req.caller, now=now, ok=False, error=error,
                          usage=Usage().as_map())
        return Handled(outcome=Outcome.RATE_LIMITED, body=body, error=error, rule=rule,
                       retry_after=denial.retry_seconds)

    def _revoked(self, token_id: bytes) -> bool:
        """Revoked according to :attr:`revocations` (by default: by any local peer, as an issuer
        records its revocations in its own directory)."""
        return self.revocations.is_revoked(token_id)

    def deny(self, req: Delivered, now: int, denied: Denied) -> Handled:
        """The signed denial ``denied`` (of ``exec``, ``call``, ``revoke``...: its action, resource,
        and the deciding rule or the reason none did)."""
        body = make_denial(self.key, request_bytes=req.data, caller=req.caller, now=now, denial=denied)
        rule = None if denied.rule is None else str(denied.rule)
        return Handled(outcome=Outcome.DENIED, body=body, error=denied.fields(), denied_action=denied.action,
                       rule=rule)

    def unavailable(self, req: Delivered, now: int, exc: Error, start: float) -> Handled:
        """The signed answer when the peer itself failed (its nonce database, its storage...)."""
        return self.failed(req, now, Outcome.SCRIPT_ERROR,
                           {"kind": "unavailable", "message": f"the peer cannot handle the request: {exc}"},
                           [], start)

    def failed(self, req: Delivered, now: int, outcome: Outcome, error: dict[str, Any], log: list[str],
               start: float, *, denied_action: str | None = None, fuel: int | None = None) -> Handled:
        """A signed ``ok: false`` reply with ``error`` and the run's ``log`` (usage: the wall time
        since ``start``, and ``fuel`` when known: a run stopped by its fuel limit used all of it)."""
        usage = _usage(fuel, start)
        body = make_reply(self.key, request_bytes=req.data, caller=req.caller, now=now, ok=False,
                          error=error, log=log, usage=usage.as_map())
        return Handled(outcome=outcome, body=body, error=error, usage=usage, denied_action=denied_action)

    def answer(self, req: Delivered, now: int, value: Any, start: float) -> Handled:
        """A signed ``ok`` reply carrying ``value`` (nothing ran: usage is the wall time since ``start``)."""
        usage = _usage(None, start)
        body = make_reply(self.key, request_bytes=req.data, caller=req.caller, now=now, ok=True, value=value,
                          usage=usage.as_map())
        return Handled(outcome=Outcome.OK, body=body, usage=usage)

    # -- logic requests -------------------------------------------------------------------

    def handle_logic(self, data: bytes) -> Handled:
        """Verify, authorize and do one ``peerbox/logic`` request (see :mod:`peerbox.trust._logic_push`):
        :meth:`check_logic`, then :meth:`run`."""
        checked = self.check_logic(data)
        return checked if isinstance(checked, Handled) else self.run(checked)

    def check_logic(self, data: bytes) -> LogicAdmitted | Handled:
        """The first phase of a ``peerbox/logic`` request (:func:`peerbox.trust._logic_push.check_logic`):
        a refusal, a denial or a read's answer; or the admitted change (set, remove)."""
        return check_logic(self, data)

    def check_logic_request(self, req: LogicRequest) -> LogicAdmitted | Handled:
        """:meth:`check_logic` of a request already opened
        (:func:`~peerbox.trust._logic_push.check_logic_request`): decoded and verified once."""
        return check_logic_request(self, req)

    @staticmethod
    def limits_of(cap: PolicyLimits | None, requested: dict[str, Any] | None) -> Limits:
        """A run's limits: the defaults, capped by the policy's ``cap``, then by what the caller asked for."""
        return _limits(cap, requested)


def _usage(fuel: int | None, start: float, peak_memory: int = 0) -> Usage:
    """What the run used: fuel (0 when unmetered), wall-clock ms, guest memory at its largest."""
    return Usage(fuel=fuel or 0, wall_ms=int((time.perf_counter() - start) * 1000), peak_memory=peak_memory)


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
    return Limits(timeout=timeout, memory=max(memory, MIN_MEMORY),
                  fuel=None if fuel is None else min(max(fuel, 1), MAX_FUEL))
