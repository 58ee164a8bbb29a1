"""A signed ``peerbox/call``: run a function the peer publishes, with the owner's rights (sans-IO).

A peer's own module publishes a function by marking it ``export fn``; a
caller names it (``module``, ``function``) and passes plain values
(``params``: by name or by position) in a COSE_Sign1 envelope
(:mod:`peerbox.wire._call`). The two phases mirror an exec request's:

:func:`check_call_request` (cheap, no guest code; a worker runs it before
taking a run slot), in this order:

1. target, freshness and the nonce (the store exec requests use: one nonce
   serves one request of any kind);
2. the caller's name (:class:`~peerbox.peer.PeerNames`: local peers, then
   ``peers.toml``) and its capability chains;
3. the policy's ``call`` decision on ``MODULE::FUNCTION`` (a denial is a
   signed reply, ``denied_action = "call"``);
4. the caller's rate (a signed ``rate_limited`` reply);
5. the function: published by the peer's own layer
   (:func:`~peerbox.peer.find_published`), else a signed
   ``no_such_function``, the same answer for a missing module, a missing,
   plain or ``private`` function, one only a shared or built-in module
   exports, and a module that does not parse, so a caller learns nothing of
   the owner's code;
6. the arguments (:func:`~peerbox.peer.bind_args`; a record-typed parameter
   against the peer's schema, as ``db::insert`` validates), else a signed
   ``bad_arguments``, and nothing runs (a parameter type the schema no longer
   declares: a signed ``unavailable``);
7. the run's limits and the caller's quota caps, from the caller's ``call``
   rules.

:func:`run_call` then compiles a fixed stub (:func:`~peerbox.peer.call_source`:
``import "peer:M" as api; api::F(params["a"], ...)``; module and function are
checked identifiers, the arguments are values in ``params``, so no code of the
caller's runs) with no import filter, and runs it with ``caller`` the verified
caller and every host call decided as if the owner made it (deny rules
included, no capabilities), charging the *caller's* quota. A stub that no
longer compiles (the module changed since the check) is ``unavailable``
without the compiler's message, which would show the owner's source.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .._errors import Error
from ..hostcalls import HostCallError, RowScope, Schema, SchemaError
from ..peer import (CALL_FILE, BadArguments, PublishedFn, SignatureError, bind_args, call_source,
                    find_published, load_schema)
from ..policy import DB_ACTIONS, Denied, Policy
from ..policy import Request as PolicyRequest
from ..run import Limits, LogicLayers
from ..wire import CallRequest
from ._handled import Handled
from ._host import RequestHost
from ._outcome import Outcome

__all__ = ["CallAdmitted", "check_call_request", "run_call"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallAdmitted:
    """A call that passed :func:`check_call_request`: authentic, fresh, its nonce recorded, ``call``
    allowed, within the caller's rate, naming a published function with matching arguments.

    ``fn`` is the function, ``args`` its arguments by parameter name (checked,
    in parameter order), ``limits`` the run's limits, ``max_bytes`` and
    ``max_files`` the caller's quota caps (None: uncapped), ``policy`` the
    policy that decided (the run's host calls are decided by it, as the
    owner's).
    """

    req: CallRequest
    now: int
    caller_did: str
    caller_name: str | None
    owner: bool
    policy: Policy
    fn: PublishedFn
    args: dict[str, Any]
    limits: Limits
    max_bytes: int | None = None
    max_files: int | None = None
    rule: str | None = None  # the policy rule that allowed ``call`` (None: a capability, or unknown)

    @property
    def caller(self) -> bytes:
        """The caller's public key (what a transport shares its run slots by)."""
        return self.req.caller


def check_call_request(handler: RequestHost, req: CallRequest) -> CallAdmitted | Handled:
    """The first phase of a call already opened (:func:`~peerbox.wire.open_call_request`: decoded,
    its signature verified): steps 1–7 of the module docstring.

    Returns the unsigned ``rejected`` :class:`Handled` (wrong target,
    expired, replay...), a signed refusal (``denied``, ``rate_limited``,
    ``no_such_function``, ``bad_arguments``), or the :class:`CallAdmitted`
    call. Never raises for any input: a :class:`~peerbox.Error` of the peer's
    (its nonce or rate database, its peer list) is a signed ``unavailable``.
    """
    now = int(handler.clock())
    refused = handler.delivered(req, now)
    if refused is not None:
        return refused
    try:
        return _admit(handler, req, now)
    except Error as exc:
        return handler.unavailable(req, now, exc, time.perf_counter())


def _admit(handler: RequestHost, req: CallRequest, now: int) -> CallAdmitted | Handled:
    start = time.perf_counter()
    caller_did = handler.did_of(req.caller)
    caller_name = handler.name_of(caller_did)
    policy = handler.policy.get()
    grants = handler.checked_grants(req, now, policy, action="call")
    if isinstance(grants, Handled):
        return grants
    asked = PolicyRequest(caller_did, caller_name, "call", req.resource, handler.owner_did, now)
    decision = policy.decide(asked, grants)
    if not decision:
        return handler.deny(req, now, decision.denial("call", req.resource))
    cap = policy.limits_for(asked)
    limited = handler.rate_check(policy, asked, req, now, cap=cap)
    if limited is not None:
        return limited
    fn = find_published(LogicLayers.of(handler.ctx.peer), req.module, req.function)
    if fn is None:
        message = f"{handler.ctx.peer.name} publishes no function {req.resource}"
        return handler.failed(req, now, Outcome.SCRIPT_ERROR,
                              {"kind": "no_such_function", "message": message}, [], start)
    try:
        args = bind_args(fn, req.params, lambda: _schema_of(handler))
    except BadArguments as exc:
        return handler.failed(req, now, Outcome.SCRIPT_ERROR, {"kind": "bad_arguments", "message": str(exc)},
                              [], start)
    except SignatureError as exc:  # the owner's schema no longer declares a parameter's type
        return handler.unavailable(req, now, exc, start)
    return CallAdmitted(req=req, now=now, caller_did=caller_did, caller_name=caller_name,
                        owner=req.caller == handler.ctx.peer.public_key, policy=policy, fn=fn, args=args,
                        limits=handler.limits_of(cap, req.limits),
                        max_bytes=cap.max_bytes if cap else None, max_files=cap.max_files if cap else None,
                        rule=str(decision.rule) if decision.rule else None)


def _schema_of(handler: RequestHost) -> Schema | None:
    """The schema the peer's records are kept under (what ``db::`` validates with); when they cannot
    open (S3 storage, a schema not applied yet), its ``schema.toml``; None without one."""
    try:
        return handler.ctx.records().schema
    except HostCallError:
        try:
            return load_schema(handler.ctx.peer)
        except SchemaError:
            return None


def run_call(handler: RequestHost, admitted: CallAdmitted) -> Handled:
    """The second phase: run the published function with the owner's rights; the signed reply.

    Outcomes as for an exec run (the value, a script error, a limit, a
    host call the owner's policy refuses: kind ``denied``), except that a
    stub that does not compile is ``unavailable`` with no compiler excerpt.
    Only a bug in peerbox raises. Runs the owner's code with the caller's
    arguments: call it on a run slot's thread, as :meth:`~peerbox.trust.ExecHandler.run`.
    """
    req, now, policy = admitted.req, admitted.now, admitted.policy
    owner_did, owner_name = handler.owner_did, handler.ctx.peer.name
    refused: list[Denied] = []

    def owner_authorize(action: str, path: str) -> RowScope:
        request = PolicyRequest(owner_did, owner_name, action, path, owner_did, now)
        d = policy.decide(request)
        if not d:
            denied = d.denial(action, path)
            refused.append(denied)
            raise HostCallError("denied", str(denied))
        return policy.row_filters(request) if action in DB_ACTIONS else None

    return handler.execute(
        req, now, source=call_source(admitted.fn), filename=CALL_FILE, may_import=None, params=admitted.args,
        limits=admitted.limits, caller={"id": admitted.caller_did, "name": admitted.caller_name or ""},
        authorize=owner_authorize, refused=refused,
        quota=handler.ctx.quota_for(admitted.caller_did, admitted.max_bytes, admitted.max_files),
        unavailable_compile=f"{req.resource} of {owner_name} cannot be compiled now")
