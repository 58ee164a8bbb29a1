"""What handling one request came to: :class:`Handled`, the answer a transport sends.

Both request handlers (exec, :mod:`._exec`; logic, :mod:`._logic_push`)
answer with it; a transport (the worker, ``peerbox handle``) reads its
``outcome`` to count and route, and sends its ``body``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..wire import EnvelopeError
from ..wire import cbor_dumps

__all__ = ["Handled"]


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
