"""What the network libraries (``OSError``, ``ssl``, trio's streams and runs) may raise, and as what.

The boundary tables of :mod:`peerbox.net`, in the style of httpcore's
``_exceptions.py``: each maps a foreign exception class to the function
making what replaces it, and is applied with
:func:`peerbox._errors.map_exceptions` around the one call into the library
(``raise ... from exc``: the cause stays in the traceback). Everything the
network can throw at peerbox is listed here once; the modules that call
trio's streams (:mod:`._h2client`, :mod:`._h2server`, :mod:`._serving`,
:mod:`._client`) use these tables and catch only peerbox's own types.

A byte stream (TCP, or TLS over it) that is gone raises one of
:data:`STREAM_ERRORS`: the other side closed or reset it
(``trio.BrokenResourceError``, an ``OSError``), TLS failed (``ssl.SSLError``,
an ``OSError`` that trio usually wraps in ``BrokenResourceError``), or this
side closed it already (``trio.ClosedResourceError``). What that means
depends on the side:

* the client (:class:`~peerbox.net._h2client.H2Transport`): the request got
  no answer, a :class:`~peerbox.net._client_errors.TransportError` (exit 7)
  whose ``kind`` says where (``connect``, ``tls``, ``protocol``) and whose
  message names the reason (:func:`io_reason`): :func:`transport_errors`;
* the server (:mod:`._h2server`): the client went away, which ends that
  connection only; :class:`ConnectionLost`, which the server catches, logs at
  debug level and never lets out: :data:`CONNECTION_ERRORS` (a peer that stops
  reading until a send times out, ``trio.TooSlowError``, is gone too) and
  :data:`HANDSHAKE_ERRORS`.

Loading a certificate (:data:`TLS_FILE_ERRORS`) and a trio run that has
ended under a blocking client (:data:`CLIENT_CLOSED_ERRORS`) are the two
remaining boundaries: both are the caller's doing, a :class:`~peerbox.UsageError`.
"""

from __future__ import annotations

import ssl

import trio

from .._errors import ExceptionMapping, UsageError
from ._client_errors import TransportError

__all__ = [
    "STREAM_ERRORS",
    "ConnectionLost",
    "CONNECTION_ERRORS",
    "HANDSHAKE_ERRORS",
    "TLS_FILE_ERRORS",
    "CLIENT_CLOSED_ERRORS",
    "transport_errors",
    "io_reason",
]

#: What a byte stream raises once the connection is gone (closed or reset by the other side, TLS
#: failed, closed by this side). ``ssl.SSLError`` is an ``OSError``; it is listed to be said.
STREAM_ERRORS: tuple[type[Exception], ...] = (trio.BrokenResourceError, trio.ClosedResourceError,
                                               ssl.SSLError, OSError)


class ConnectionLost(Exception):
    """The server's connection to one client is gone: it ends that connection, and only it.

    Not a :class:`peerbox.Error`: it never reaches a user. The HTTP/2 server
    catches it where the connection is served, logs it at debug level and
    closes the connection; answers still being sent on it are dropped.
    """


def io_reason(exc: BaseException) -> str:
    """Why a stream failed, in a few words: the OS's text, else the cause's (TLS), else the exception's."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause):
        return str(cause)
    return str(exc) or type(exc).__name__


def transport_errors(what: str, *, kind: str = "protocol") -> ExceptionMapping:
    """The client's table: a stream failure while doing ``what`` is a :class:`TransportError`.

    Its message is ``"<what>: <reason>"`` (:func:`io_reason`), its ``kind``
    ``kind`` (``connect``, ``tls`` or ``protocol``): nothing was answered.
    """

    def no_answer(exc: BaseException) -> BaseException:
        return TransportError(f"{what}: {io_reason(exc)}", kind=kind)

    return dict.fromkeys(STREAM_ERRORS, no_answer)


def _lost(exc: BaseException) -> BaseException:
    return ConnectionLost(str(exc) or type(exc).__name__)


#: The server's table for reading and sending on an open connection: the client is gone, or it stopped
#: reading until a send timed out (``trio.TooSlowError``, raised by the server's own deadline).
CONNECTION_ERRORS: ExceptionMapping = {**dict.fromkeys(STREAM_ERRORS, _lost), trio.TooSlowError: _lost}


def _handshake_failed(exc: BaseException) -> BaseException:
    return ConnectionLost(f"TLS handshake failed: {exc}")


def _handshake_too_slow(exc: BaseException) -> BaseException:
    return ConnectionLost("TLS handshake timed out")


#: The server's table for a TLS handshake: it failed, or took longer than the server's deadline.
HANDSHAKE_ERRORS: ExceptionMapping = {**dict.fromkeys(STREAM_ERRORS, _handshake_failed),
                                      trio.TooSlowError: _handshake_too_slow}


def _unloadable(exc: BaseException) -> BaseException:
    return UsageError(f"cannot load the TLS certificate/key: {exc}")


#: Loading a server's certificate and key (``--tls-cert``/``--tls-key``): unreadable files or PEM
#: that ``ssl`` refuses are the caller's to fix.
TLS_FILE_ERRORS: ExceptionMapping = {ssl.SSLError: _unloadable, OSError: _unloadable}


def _client_closed(exc: BaseException) -> BaseException:
    return UsageError("this Client is closed")


#: A blocking :class:`~peerbox.net._client.Client` called after its trio thread ended.
CLIENT_CLOSED_ERRORS: ExceptionMapping = {trio.RunFinishedError: _client_closed}
