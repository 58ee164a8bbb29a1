"""A signed ``peerbox/revoke``: a token's issuer tells this peer's worker to refuse it (sans-IO).

``peerbox cap revoke TOKEN --as ISSUER --notify bob`` records the revocation
in the issuer's own list, then sends bob's worker a COSE_Sign1 by the issuer
carrying the token (:mod:`peerbox.wire._revoke`). :func:`check_revoke_request`
answers it in the check phase (it never takes a run slot), in this order:

1. target, freshness and the nonce (the store every request uses: a replayed
   revocation is refused ``replay``);
2. the token decodes, every link's signature checks (else a signed
   ``bad_token``);
3. every link is about this peer (else a signed ``wrong_subject``);
4. the caller is this peer or the issuer of a link of the chain (UCAN-style:
   any issuer in the proof chain may revoke), else a signed denial of
   ``revoke`` (HTTP 403);
5. the token's id is recorded in the handler's :class:`~peerbox.trust._revocations.Revocations`:
   by default ``<peer dir>/revoked.json`` (atomic write, fsync, ``flock``), with shared state a
   JetStream key-value bucket every worker watches (revoking twice changes nothing); the reply says
   ``{revoked: id hex, already: bool}``.

From the next request on (of any process: the list is re-read when it
changes), and after restarts, the token and every token delegated from it
are denied with cause ``capability`` and kind ``revoked`` ("... denied: the capability is revoked").
"""

from __future__ import annotations

import time

from .._errors import Error
from ..wire import CapabilityError, RevokeRequest, decode_chain, token_id
from ..policy import DenialCause, Denied
from ._handled import Handled
from ._host import RequestHost
from ._outcome import Outcome

__all__ = ["MAX_REVOKED_DEPTH", "check_revoke_request"]

#: The longest chain a revocation may carry (a verified chain has at most 8 links; a longer one
#: is refused anyway, but its issuers may still want it on record).
MAX_REVOKED_DEPTH = 64


def check_revoke_request(handler: RequestHost, req: RevokeRequest) -> Handled:
    """Check and record one revocation already opened (:func:`~peerbox.wire.open_revoke_request`):
    steps 1–5 of the module docstring.

    Returns the unsigned ``rejected`` :class:`Handled` (wrong target,
    expired, replay...) or a signed reply: ok, ``bad_token``,
    ``wrong_subject``, a ``denied`` one, or ``unavailable`` when the nonce
    database or the revocation list fails (its message names no host path).
    Never raises for any input.
    """
    now, start = int(handler.clock()), time.perf_counter()
    refused = handler.delivered(req, now)
    if refused is not None:
        return refused
    target = handler.ctx.peer.public_key
    try:
        links = decode_chain(req.token, max_depth=MAX_REVOKED_DEPTH)
    except CapabilityError as exc:
        return handler.failed(req, now, Outcome.SCRIPT_ERROR,
                              {"kind": "bad_token", "message": str(exc)}, [], start)
    if any(link.sub != target for link in links):
        return handler.failed(req, now, Outcome.SCRIPT_ERROR,
                              {"kind": "wrong_subject",
                               "message": "this token is about another peer's resources"}, [], start)
    if req.caller != target and all(link.iss != req.caller for link in links):
        why = "only an issuer in the token's chain, or its subject, may revoke it"
        return handler.deny(req, now, Denied("revoke", None, DenialCause.NOT_PERMITTED, why))
    tid = token_id(req.token)
    try:
        already = handler.revocations.revoke_id(tid)
    except Error as exc:  # the list does not parse, the shared store is down: no host path in the message
        return handler.unavailable(req, now, exc, start)
    except OSError as exc:  # cannot write the list (disk full, permissions): no host path either
        return handler.failed(req, now, Outcome.SCRIPT_ERROR, {
            "kind": "unavailable",
            "message": f"the peer cannot record the revocation: {exc.strerror or type(exc).__name__}"},
            [], start)
    return handler.answer(req, now, {"revoked": tid.hex(), "already": already}, start)
