"""``peerbox serve --listen URL`` (several at once): what each URL means and how its listener starts.

Every listener of a worker (or of isolated mode's router) drives the same
:data:`~peerbox.net._http.App`; only the carrier differs:

=========================================  ==========================================================
``HOST:PORT``, ``h2://``, ``http://``      HTTP/2 (TLS iff ``--tls-cert``/``--tls-key`` are given, as
                                           before); ``https://`` asks for TLS (the files are then
                                           required). Served by :func:`~peerbox.net._serving.serve_app`,
                                           which also answers the probes and ``/metrics``.
``ws://HOST:PORT``, ``wss://HOST:PORT``    WebSocket (:func:`~peerbox.net._wsserve.serve_ws`), upgraded
                                           at ``/v1/ws``; ``wss://`` needs the TLS files.
``nats://HOST:PORT``                       NATS (``serve_nats`` of :mod:`peerbox.net._natsserve`): the
                                           worker subscribes there for the peers it hosts.
=========================================  ==========================================================

At most one listener per carrier (``h2``, ``ws``, ``nats``). :func:`parse_listen_url`
is sans-IO; :func:`extra_listener` turns a bound WebSocket (or a NATS) spec into
the task :func:`~peerbox.net._serving.serve_app` starts beside HTTP/2 in its
nursery, so one ``listening on`` line names every URL and one signal stops
them all. The start-up checks (:func:`~peerbox.net._startup.prepare`) bind
every TCP listener before anything is served, so an address in use is exit 2.
"""

from __future__ import annotations

import enum
import functools
import importlib
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from .._errors import UsageError
from ._http import App, ServerLimits
from ._serving import Starter, parse_listen, tls_context
from ._wsserve import serve_ws

__all__ = ["Carrier", "ListenSpec", "parse_listen_url", "parse_listens", "extra_listener", "nats_available",
           "BoundListener"]


class Carrier(enum.Enum):
    """The transport a listener speaks."""

    H2 = "h2"
    WS = "ws"
    NATS = "nats"


@dataclass(frozen=True)
class ListenSpec:
    """One ``--listen`` URL: the ``carrier``, ``host`` and ``port`` (0: any free one), and
    ``tls`` (``https://``/``wss://``; for HTTP/2 given as ``HOST:PORT``/``http://``/``h2://``:
    None, meaning "as ``--tls-cert`` says")."""

    carrier: Carrier
    host: str
    port: int
    tls: bool | None = None
    text: str = ""

    def with_port(self, port: int) -> ListenSpec:
        """The same listener on ``port`` (once bound)."""
        return ListenSpec(self.carrier, self.host, port, self.tls, self.text)

    @property
    def argv(self) -> str:
        """The ``--listen`` value that names this listener (with its current port)."""
        shown = f"[{self.host}]" if ":" in self.host else self.host
        if self.carrier is Carrier.H2:
            return f"{'https' if self.tls else 'h2'}://{shown}:{self.port}"
        if self.carrier is Carrier.WS:
            return f"{'wss' if self.tls else 'ws'}://{shown}:{self.port}"
        return self.text


#: Scheme -> (carrier, TLS).
_SCHEMES: dict[str, tuple[Carrier, bool | None]] = {
    "h2": (Carrier.H2, None), "http": (Carrier.H2, None), "https": (Carrier.H2, True),
    "ws": (Carrier.WS, False), "wss": (Carrier.WS, True), "nats": (Carrier.NATS, False),
}


def parse_listen_url(text: str) -> ListenSpec:
    """``--listen`` → :class:`ListenSpec`. Raises :class:`~peerbox.UsageError` (exit 2) for anything else.

    ``HOST:PORT`` (``[::1]:7700``, ``:7700``) is HTTP/2 as before; a URL takes
    ``scheme://HOST:PORT`` with no path, query or user info (``nats://`` may
    name a default port, 4222).
    """
    if "://" not in text:
        host, port = parse_listen(text)
        return ListenSpec(Carrier.H2, host, port, None, text)
    try:
        parts = urlsplit(text)
        given = parts.port
    except ValueError as exc:
        raise UsageError(f"--listen {text!r}: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise UsageError(f"--listen {text!r}: unknown scheme {scheme!r} (expected h2://, http://, https://, "
                         "ws://, wss:// or nats://, or HOST:PORT)")
    carrier, tls = _SCHEMES[scheme]
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise UsageError(f"--listen {text!r}: give only scheme://HOST:PORT")
    if given is None and carrier is not Carrier.NATS:
        raise UsageError(f"--listen {text!r}: a port is needed (0 picks a free one)")
    port = 4222 if given is None else given
    return ListenSpec(carrier, parts.hostname or "127.0.0.1", port, tls, text)


def parse_listens(texts: str | Sequence[str]) -> list[ListenSpec]:
    """Every ``--listen`` value, parsed; at most one per carrier. Raises :class:`~peerbox.UsageError`."""
    specs = [parse_listen_url(t) for t in ([texts] if isinstance(texts, str) else texts)]
    if not specs:
        raise UsageError("--listen needs at least one address")
    seen: set[Carrier] = set()
    for spec in specs:
        if spec.carrier in seen:
            raise UsageError(f"--listen: at most one {spec.carrier.value} listener "
                             f"(got a second: {spec.text!r})")
        seen.add(spec.carrier)
    return specs


def nats_available() -> bool:
    """Whether this build has the NATS listener (:mod:`peerbox.net._natsserve`)."""
    try:
        importlib.import_module("peerbox.net._natsserve")
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class BoundListener:
    """A non-HTTP/2 listener ready to serve: its spec and, for TCP carriers, the socket bound for it
    (None: bind when served; a socket is left open: its owner closes it)."""

    spec: ListenSpec
    sock: socket.socket | None = None


def _ws_tls(cert: str | None, key: str | None) -> ssl.SSLContext:
    ctx = tls_context(cert, key)
    if ctx is None:
        raise UsageError("wss:// listeners need --tls-cert and --tls-key")
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def extra_listener(app: App, bound: BoundListener, *, tls_cert: str | None = None, tls_key: str | None = None,
                   limits: ServerLimits | None = None, peers: Sequence[tuple[str, str]] = ()) -> Starter:
    """The task that serves ``app`` on ``bound`` (started by :func:`~peerbox.net._serving.serve_app`
    with ``nursery.start``; it reports its URL). ``peers``: the (name, did) pairs hosted, for NATS.

    Raises :class:`~peerbox.UsageError` for ``wss://`` without TLS files, an HTTP/2 spec (served
    by ``serve_app`` itself), or ``nats://`` in a build without the NATS transport.
    """
    spec = bound.spec
    if spec.carrier is Carrier.WS:
        ctx = _ws_tls(tls_cert, tls_key) if spec.tls else None
        return functools.partial(serve_ws, app, spec.host, spec.port, ssl_context=ctx, limits=limits,
                                 sock=bound.sock)
    if spec.carrier is Carrier.NATS:
        try:
            module = importlib.import_module("peerbox.net._natsserve")
        except ImportError as exc:
            raise UsageError("nats:// listeners need the NATS transport") from exc
        serve_nats = module.serve_nats
        return functools.partial(serve_nats, app, spec.text, list(peers), limits=limits)
    raise UsageError("HTTP/2 listeners are served by serve_app")
