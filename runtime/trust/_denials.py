"""How the trust path words a refused capability: one :class:`~peerbox.policy.Denied`, one reason.

A policy's own denials come from :meth:`peerbox.policy.Decision.denial`;
a request whose capability token is refused is denied the same way, with
cause ``capability`` and the token's one reason (expired, not yet valid,
revoked, widened, wrong audience, bad signature, chain too deep, unknown
issuer...), so every handler (exec, call, logic) says it in the same words:
``exec denied: the capability expired at 2026-03-01T12:00:00Z (now ...)``.
"""

from __future__ import annotations

from ..policy import DenialCause, Denied
from ..wire import CapabilityError, EnvelopeError

__all__ = ["capability_denied", "UNCHECKED"]

#: The reason when the worker itself failed to check a token (its message may name host paths).
UNCHECKED = "the capability could not be checked on this worker"


def capability_denied(action: str, resource: str | None, exc: BaseException) -> Denied:
    """The denial of ``action`` on ``resource`` because a capability was refused with ``exc``: a
    :class:`~peerbox.wire.CapabilityError` gives its message and kind; an
    :class:`~peerbox.wire.EnvelopeError` (a token that is not even COSE) is ``bad_token``; anything
    else (the check itself failed on this worker) says only :data:`UNCHECKED`. Never raises."""
    if isinstance(exc, CapabilityError):
        return Denied(action, resource, DenialCause.CAPABILITY, exc.message, capability=exc.kind)
    if isinstance(exc, EnvelopeError):
        return Denied(action, resource, DenialCause.CAPABILITY,
                      f"the capability is not a valid token: {exc.kind}: {exc.message}",
                      capability="bad_token")
    return Denied(action, resource, DenialCause.CAPABILITY, UNCHECKED)
