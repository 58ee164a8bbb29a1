"""What handling one request came to: :class:`Handled`, the answer a transport sends.

Every request handler (exec, :mod:`._exec`; logic, :mod:`._logic_push`; call,
:mod:`._call`; revoke, :mod:`._revoke`)
answer with it; a transport (the worker, ``peerbox handle``) reads its typed
fields — :attr:`~Handled.outcome`, :attr:`~Handled.usage`,
:attr:`~Handled.denied_action` — to count and route, and sends its ``body``
(which it never has to decode).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..wire import EnvelopeError
from ..wire import cbor_dumps
from ._outcome import Outcome, Usage

__all__ = ["Handled"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Handled:
    """The answer to one request.

    ``outcome``: an :class:`~peerbox.trust._outcome.Outcome` — ``ok`` (the
    script's value), ``script_error``, ``limit`` (a resource limit stopped
    it), ``denied`` (by policy or a capability), ``rate_limited`` (the
    caller's rate limit refused it; nothing ran) — all signed replies — or
    ``rejected`` (the envelope itself was refused: ``body`` is unsigned CBOR
    ``{error: {kind, message}}``). ``error`` is the error map sent, if any.
    ``usage`` is what the run used (``None`` when nothing ran: a denial, a
    refusal). ``denied_action`` is the policy action refused: ``exec`` (or
    ``logic.read``/``logic.write``) for a ``denied`` outcome, the host call's
    action (``fs.read``...) for a script that ended on a host call the
    policy refused; ``rule`` the rule that decided, if one did.
    ``retry_after`` is set for ``rate_limited``: the whole seconds until the
    caller may try again (the transport's ``retry-after`` header).
    """

    outcome: Outcome
    body: bytes
    error: dict[str, Any] | None = None
    usage: Usage | None = None
    denied_action: str | None = None
    rule: str | None = None
    retry_after: int | None = None

    @property
    def signed(self) -> bool:
        """Whether ``body`` is a reply signed by the target (all but ``rejected``)."""
        return self.outcome.signed

    @property
    def kind(self) -> str | None:
        """The error kind sent (``None`` for an ``ok`` answer)."""
        kind = (self.error or {}).get("kind")
        return None if kind is None else str(kind)

    @classmethod
    def rejected(cls, exc: EnvelopeError) -> Handled:
        """The unsigned answer to an envelope refused before it was authenticated."""
        error = {"kind": exc.kind, "message": exc.message}
        return cls(outcome=Outcome.REJECTED, body=cbor_dumps({"error": error}), error=error)
