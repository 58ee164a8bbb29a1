"""What a remote call raises when it does not end in a verified reply: :class:`ClientError` and its kinds.

Every one exits the CLI with :data:`EXIT_TRANSPORT` (7):
:class:`TransportError` (no answer: connection, TLS, timeout, broken HTTP/2,
an HTTP error without a readable body), :class:`VerificationError` (an
answer that claims to be the target's reply and does not verify) and
:class:`RemoteRejected` (the worker refused the envelope before running
anything). Raised by the transport (:mod:`peerbox.net._h2client`) and the
clients (:mod:`peerbox.net._client`).
"""

from __future__ import annotations

from .._errors import Error

__all__ = ["ClientError", "TransportError", "VerificationError", "RemoteRejected", "EXIT_TRANSPORT"]

#: The CLI exit code of every :class:`ClientError`.
EXIT_TRANSPORT = 7


class ClientError(Error):
    """A remote call that did not end in a verified reply (CLI exit 7)."""

    exit_code = EXIT_TRANSPORT


class TransportError(ClientError):
    """The request did not get an answer: ``kind`` is ``connect``, ``tls``, ``timeout``,
    ``protocol`` (broken HTTP/2, reset stream, closed connection) or ``http`` (an
    HTTP status with no readable error body; ``status`` says which)."""

    def __init__(self, message: str, *, kind: str = "protocol", status: int | None = None,
                 retryable: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        #: The server did not process the request (GOAWAY / REFUSED_STREAM): safe to send again.
        self.retryable = retryable


class VerificationError(ClientError):
    """An answer that claims to be the target's reply but does not verify.

    ``kind`` is the :class:`~peerbox.wire._cbor_strict.EnvelopeError` kind:
    ``bad_signature`` (not signed by the target the directory names),
    ``wrong_request`` (answers another request), ``wrong_target``,
    ``malformed``... Treat the worker as broken or hostile.
    """

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class RemoteRejected(ClientError):
    """The worker refused the envelope before running anything (unsigned ``{error: {kind, message}}``).

    ``status`` is the HTTP status (400 malformed, 401 bad signature, 404 not
    hosted, 409 replay, 413 too large, 503 saturated...), ``kind`` and
    ``remote_message`` the worker's words, ``retry_after`` the seconds a 503
    asks to wait (when given).
    """

    def __init__(self, status: int, kind: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"refused by the worker (HTTP {status}): {kind}: {message}")
        self.status = status
        self.kind = kind
        self.remote_message = message
        self.retry_after = retry_after
