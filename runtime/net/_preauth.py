"""What a worker (or an isolated-mode router) checks before a request reaches a hosted peer.

:class:`PreAuth` opens the body of ``POST /v1/exec``, ``/v1/logic``, ``/v1/call``
or ``/v1/revoke`` (:data:`ENVELOPE_PATHS`) in two steps, so nothing expensive
happens before the sender is known:

1. :func:`~peerbox.wire._envelope.preauthenticate`: size, the outer COSE_Sign1
   structure and the Ed25519 signature over the raw bytes, in a bounded
   number of Python steps whatever the input (the strict decoder is never
   called for an envelope whose signature does not verify);
2. only then the strict decoding and every field check
   (:func:`~peerbox.wire._envelope.open_request`,
   :func:`~peerbox.trust._logic_push.open_logic_request`,
   :func:`~peerbox.wire._call.open_call_request`,
   :func:`~peerbox.wire._revoke.open_revoke_request`).

Where it runs, and why: a body of at most :data:`INLINE_MAX` bytes (every
ordinary request) is opened on the event loop: step 1 is a few microseconds
of Python plus a verification of about 60 µs, cheaper than a thread hop,
and step 2 is bounded by the body's size. A larger body is opened on a trio
worker thread, at most ``threads`` at once: the verification of a 1 MiB
body takes 1-3 ms (SHA-512 in C, the GIL released), and the strict decoding
of a large authenticated payload is pure Python that would otherwise hold
the loop for as long as it runs (on a thread the interpreter hands the GIL
back to the loop every switch interval, 5 ms). A flood of large junk thus
queues behind ``threads`` threads instead of stalling other clients, and the
HTTP/2 server's failure budgets (``preauth_failure``, see
:class:`~peerbox.net._h2server.ServerLimits`) bound how much of it is accepted.
"""

from __future__ import annotations

import trio

from ..wire import (MAX_CALL_REQUEST, MAX_EXEC_REQUEST, MAX_REVOKE_REQUEST, open_call_request,
                    open_request, open_revoke_request, preauthenticate)
from ..trust import MAX_LOGIC_REQUEST, Envelope, open_logic_request

__all__ = ["PreAuth", "INLINE_MAX", "MAX_EXEC_REQUEST", "ENVELOPE_PATHS"]

#: Bodies up to this size are opened on the event loop; larger ones on a worker thread.
INLINE_MAX = 4096
#: The endpoints that take a signed request envelope (``POST``, ``content-type: application/cose``).
ENVELOPE_PATHS = ("/v1/exec", "/v1/logic", "/v1/call", "/v1/revoke")


def open_envelope(body: bytes, path: str) -> Envelope:
    """Open the body of ``path`` (one of :data:`ENVELOPE_PATHS`): signature first, then the strict checks.

    Returns a :data:`peerbox.trust.Envelope` (exec, logic, call or revoke request).
    The endpoint decides the type: an exec envelope posted to ``/v1/call``
    is refused ``wrong_type`` by the call decoder (and so on for each pair).
    Raises :class:`~peerbox.wire._cose.EnvelopeError` (the kinds of
    :func:`~peerbox.wire._envelope.preauthenticate`, then of ``open_request``,
    ``open_logic_request``, ``open_call_request`` or ``open_revoke_request``).
    """
    if path == "/v1/exec":
        key = preauthenticate(body, max_size=MAX_EXEC_REQUEST)
        return open_request(body, max_size=MAX_EXEC_REQUEST, preauthenticated=key)
    if path == "/v1/call":
        key = preauthenticate(body, max_size=MAX_CALL_REQUEST)
        return open_call_request(body, max_size=MAX_CALL_REQUEST, preauthenticated=key)
    if path == "/v1/revoke":
        key = preauthenticate(body, max_size=MAX_REVOKE_REQUEST)
        return open_revoke_request(body, max_size=MAX_REVOKE_REQUEST, preauthenticated=key)
    preauthenticate(body, max_size=MAX_LOGIC_REQUEST)
    return open_logic_request(body, max_size=MAX_LOGIC_REQUEST)


class PreAuth:
    """Opens request envelopes, small ones on the event loop, large ones on ``threads`` threads."""

    def __init__(self, *, threads: int = 2, inline_max: int = INLINE_MAX) -> None:
        self.limiter = trio.CapacityLimiter(max(1, threads))
        self.inline_max = inline_max

    async def open(self, body: bytes, path: str) -> Envelope:
        """:func:`open_envelope` where it belongs (see the module docstring). Raises what it raises."""
        if len(body) <= self.inline_max:
            return open_envelope(body, path)
        return await trio.to_thread.run_sync(open_envelope, body, path, limiter=self.limiter)
