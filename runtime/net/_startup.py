"""``peerbox serve``'s start-up: every check that can fail, done before anything is served.

:func:`prepare` is the one place where the top-level serve process (the only
process with ``--workers 1``, the supervisor with ``--workers N``, the router
in isolated mode) turns its arguments into what it serves, in this order:

1. ``--listen`` parses;
2. the root exists and is readable, and each named peer exists (``--all``:
   at least one peer loads);
3. ``--tls-cert``/``--tls-key`` are readable PEM and the key matches the
   certificate;
4. no other ``peerbox serve`` serves any of these peers: each peer's
   :class:`PeerLock` (a non-blocking ``flock`` on ``<peer dir>/serve.lock``);
5. the address is bound and listening (:func:`~peerbox.net._serving.listen_socket`);
6. each ``nats://`` listener's server answers: a TCP connection gets nats-server's ``INFO``
   greeting within :data:`NATS_PROBE_TIMEOUT` s (:func:`probe_nats`).

Each failure is a :class:`ServeError` (exit 2) whose ``failure`` says which
step, raised before any child process starts, any port file is written or
"listening on" is printed; whatever was taken before it (locks) is released.
What is left to fail later is a child or worker process that does not start
(``StartupFailure.WORKER``), which the supervisor and the router raise, and
which :func:`run_serving` lets out of ``trio.run`` as itself rather than
wrapped in an exception group.

The lock is held for the life of the serving process tree: the top-level
process takes it and its children inherit the descriptor (``pass_fds``), so
it is released when the last of them exits, by the kernel on a crash too.
The file stays (removing it would race another process opening it); it
records the holder's pid and URL for the message a second serve prints, and
is emptied on a clean exit. A stale file never blocks a start: only a held
lock does.
"""

from __future__ import annotations

import enum
import errno
import fcntl
import os
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio

from .._errors import Error, UsageError
from ..peer import Peer, PeerError, PeerNotFound, PeerStore, RootNotFound
from ._listeners import BoundListener, Carrier, ListenSpec, nats_available, parse_listens
from ._serving import listen_socket, tls_context

__all__ = ["ServeError", "StartupFailure", "PeerLock", "Startup", "prepare", "run_serving", "LOCK_FILE",
           "probe_nats", "NATS_PROBE_TIMEOUT"]

#: The lock file in each served peer's directory.
LOCK_FILE = "serve.lock"
#: How long :func:`probe_nats` waits for a NATS server to connect and greet, in seconds.
NATS_PROBE_TIMEOUT = 5.0


class StartupFailure(enum.Enum):
    """Which start-up check of ``peerbox serve`` failed."""

    ROOT = "root"  # the root is missing or unreadable
    PEER = "peer"  # a named peer does not exist or does not load; no peer at all
    TLS = "tls"  # --tls-cert/--tls-key unreadable, not PEM, or not a pair
    PEER_SERVED = "peer_served"  # another peerbox serve holds the peer's lock
    ADDRESS = "address"  # --listen cannot be bound (in use, not local, unknown host), or no NATS server
    WORKER = "worker"  # a worker or isolated child process exited (or hung) before it served
    STATE = "state"  # --state: the shared state (NATS JetStream) cannot be reached or set up


class ServeError(UsageError):
    """``peerbox serve`` cannot start: ``failure`` names the check, the message what and where.

    Exit code 2, like every usage error: the operator's setup is to fix,
    not peerbox. ``peer`` is the peer concerned, if one is.
    """

    exit_code = 2

    def __init__(self, failure: StartupFailure, message: str, *, peer: str | None = None) -> None:
        super().__init__(message)
        self.failure = failure
        self.peer = peer


class PeerLock:
    """The exclusive claim of one ``peerbox serve`` process tree on one peer (``<peer dir>/serve.lock``).

    :meth:`acquire` takes a non-blocking ``flock``; the descriptor is left
    open (and may be inherited by children) until :meth:`release`. Raises
    :class:`ServeError` (``PEER_SERVED``) when another process holds it.
    """

    def __init__(self, name: str, peer_dir: Path) -> None:
        self.name = name
        self.path = peer_dir / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and record this process's pid in it. Raises :class:`ServeError`."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise ServeError(StartupFailure.PEER, f"cannot open {self.path}: {exc.strerror or exc}",
                             peer=self.name) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ServeError(StartupFailure.PEER_SERVED,
                                 f"peer {self.name!r} is already served by another `peerbox serve`"
                                 f"{holder} (lock {self.path})", peer=self.name) from exc
            raise ServeError(StartupFailure.PEER, f"cannot lock {self.path}: {exc.strerror or exc}",
                             peer=self.name) from exc
        self.fd = fd
        self.record(None)

    def record(self, url: str | None) -> None:
        """Write this process's pid (and ``url``, once bound) into the lock file (best effort)."""
        if self.fd is None:
            return
        text = f"pid={os.getpid()}\n" + (f"url={url}\n" if url else "")
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, text.encode(), 0)
        except OSError:
            pass  # only the message of a second serve would miss it

    def release(self) -> None:
        """Empty the file and drop the lock (children that inherited it keep it until they exit)."""
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        os.close(fd)


def _read_holder(fd: int) -> str:
    """``" (pid N, URL)"`` from a held lock file, or ``""`` if it says nothing readable."""
    try:
        text = os.pread(fd, 512, 0).decode("utf-8", "replace")
    except OSError:
        return ""
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    parts = [f"pid {fields['pid']}"] if fields.get("pid", "").isdigit() else []
    if fields.get("url", "").startswith(("http://", "https://", "ws://", "wss://", "nats://")):
        parts.append(fields["url"])
    return f" ({', '.join(parts)})" if parts else ""


@dataclass(eq=False)
class Startup:
    """What :func:`prepare` checked and holds: close it (or use ``with``) to release the socket and locks."""

    store: PeerStore
    peers: list[Peer]
    host: str
    port: int
    ssl_context: ssl.SSLContext | None
    sock: socket.socket | None
    locks: list[PeerLock] = field(default_factory=list)
    #: the listeners besides HTTP/2 (WebSocket sockets bound, NATS specs), in ``--listen`` order
    extra: list[BoundListener] = field(default_factory=list)
    #: whether there is an HTTP/2 listener (``host``/``port``/``sock`` are its); else ``extra`` only
    h2: bool = True

    @property
    def url(self) -> str:
        """``http(s)://HOST:PORT`` of the bound HTTP/2 socket (without one: the first other listener's)."""
        if not self.h2 and self.extra:
            return self.extra[0].spec.argv
        scheme = "https" if self.ssl_context is not None else "http"
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{shown}:{self.port}"

    @property
    def urls(self) -> list[str]:
        """Every listener's URL (HTTP/2 first), as bound."""
        return ([self.url] if self.h2 else []) + [b.spec.argv for b in self.extra]

    @property
    def listen_args(self) -> list[str]:
        """``--listen`` values naming every listener as bound (what a supervised process is given)."""
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return ([f"{shown}:{self.port}"] if self.h2 else []) + [b.spec.argv for b in self.extra]

    @property
    def names(self) -> list[str]:
        """The served peers' names, in order."""
        return [p.name for p in self.peers]

    @property
    def lock_fds(self) -> tuple[int, ...]:
        """The locks' descriptors, for children to inherit (``pass_fds``)."""
        return tuple(lock.fd for lock in self.locks if lock.fd is not None)

    def close(self) -> None:
        """Close the socket and release the locks (idempotent)."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        for bound in self.extra:
            if bound.sock is not None:
                bound.sock.close()
        self.extra = []
        for lock in self.locks:
            lock.release()

    def __enter__(self) -> Startup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _peers(root: str | None, names: Sequence[str] | None) -> tuple[PeerStore, list[Peer]]:
    try:
        store = PeerStore(root)
        if names is None:
            chosen = store.list()
            if not chosen:
                raise ServeError(StartupFailure.PEER, f"no peers under {store.root} to serve "
                                 "(create one with `peerbox init NAME`)")
            return store, chosen
        return store, [store.get(n) for n in dict.fromkeys(names)]
    except RootNotFound as exc:
        raise ServeError(StartupFailure.ROOT, str(exc)) from exc
    except PeerNotFound as exc:
        raise ServeError(StartupFailure.PEER, str(exc), peer=exc.peer) from exc
    except PeerError as exc:
        raise ServeError(StartupFailure.ROOT if exc.peer is None else StartupFailure.PEER, str(exc),
                         peer=exc.peer) from exc


def _tls(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """:func:`tls_context`, after checking each file on its own so the message names the one at fault."""
    if cert is None or key is None:
        return tls_context(cert, key)  # None, or "--tls-cert and --tls-key go together"
    for flag, path, marker in (("--tls-cert", cert, b"-----BEGIN CERTIFICATE-----"),
                               ("--tls-key", key, b"PRIVATE KEY-----")):
        try:
            with open(path, "rb") as f:
                head = f.read(1 << 20)
        except OSError as exc:
            raise ServeError(StartupFailure.TLS, f"{flag} {path}: {exc.strerror or exc}") from exc
        if marker not in head:
            what = "a PEM certificate" if flag == "--tls-cert" else "a PEM private key"
            raise ServeError(StartupFailure.TLS, f"{flag} {path}: not {what}")
    try:
        return tls_context(cert, key)
    except UsageError as exc:
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLError) and "KEY_VALUES_MISMATCH" in str(cause):
            raise ServeError(StartupFailure.TLS,
                             f"--tls-key {key} is not the key of --tls-cert {cert}") from exc
        reason = getattr(cause, "reason", None) or str(cause or exc)
        raise ServeError(StartupFailure.TLS, f"cannot load --tls-cert {cert} with --tls-key {key}: "
                         f"{reason}") from exc


def _listener_needs(specs: list[ListenSpec], tls_cert: str | None) -> None:
    """What the listeners ask beyond parsing: TLS files for ``https://``/``wss://``, the NATS transport."""
    for spec in specs:
        if spec.tls and tls_cert is None:
            raise ServeError(StartupFailure.TLS, f"--listen {spec.text}: TLS needs --tls-cert and --tls-key")
        if spec.carrier is Carrier.NATS and not nats_available():
            raise ServeError(StartupFailure.ADDRESS, f"--listen {spec.text}: nats:// listeners need the NATS "
                             "transport")


def prepare(root: str | None, peers: Sequence[str] | None, listen: str | Sequence[str], *,
            tls_cert: str | None = None, tls_key: str | None = None, lock: bool = True,
            bind: bool = True) -> Startup:
    """Check everything ``peerbox serve`` needs, in the module's order; what it serves, held.

    ``listen``: the ``--listen`` values (:func:`~peerbox.net._listeners.parse_listens`); every
    TCP listener (HTTP/2, WebSocket) is bound here. ``lock``: take each peer's :class:`PeerLock`
    (the top-level process only); ``bind``: bind the listeners now (else ``sock`` is None and
    the ports the ones asked). Raises :class:`ServeError` (or :class:`~peerbox.UsageError` for a
    malformed ``--listen``), having released whatever it took.
    """
    specs = parse_listens(listen)
    h2 = next((s for s in specs if s.carrier is Carrier.H2), None)
    host, port = (h2.host, h2.port) if h2 is not None else (specs[0].host, specs[0].port)
    store, chosen = _peers(root, peers)
    ctx = _tls(tls_cert, tls_key)
    _listener_needs(specs, tls_cert)
    started = Startup(store, chosen, host, port, ctx, None, h2=h2 is not None)
    try:
        if lock:
            for peer in chosen:
                claim = PeerLock(peer.name, peer.paths.dir)
                claim.acquire()
                started.locks.append(claim)
        for spec in specs:
            if spec.carrier is Carrier.H2 and bind:
                started.sock = _bind(host, port)
                started.port = int(started.sock.getsockname()[1])
            elif spec.carrier is Carrier.WS and bind:
                sock = _bind(spec.host, spec.port)
                started.extra.append(BoundListener(spec.with_port(int(sock.getsockname()[1])), sock))
            elif spec.carrier is not Carrier.H2:
                if bind:
                    probe_nats(spec)
                started.extra.append(BoundListener(spec))
        if h2 is None and started.extra:  # no HTTP/2: the first other listener's port is the one reported
            started.port = started.extra[0].spec.port
        if bind:
            for claim in started.locks:
                claim.record(started.url)
    except BaseException:
        started.close()
        raise
    return started


def probe_nats(spec: ListenSpec, timeout: float = NATS_PROBE_TIMEOUT) -> None:
    """Check that a NATS server answers at ``spec``'s host and port: a TCP connection whose first
    bytes are nats-server's ``INFO`` greeting (what every NATS server sends first, TLS or not).

    Raises :class:`ServeError` (``ADDRESS``, exit 2) when the connection fails or times out, or
    something else answers. Done by the top-level process before anything is served, so that a
    server that is down is one line and exit 2 in every mode (:func:`serve_nats` connecting later
    would fail in each worker process instead, each with its own line). A server that goes down
    after this check is still :func:`serve_nats`'s start-up failure.
    """
    where = f"{spec.host}:{spec.port}"
    try:
        with socket.create_connection((spec.host, spec.port), timeout=timeout) as sock:
            greeting = sock.recv(5)
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ServeError(StartupFailure.ADDRESS, f"--listen {spec.text}: cannot connect to the NATS server "
                         f"at {where}: {reason}") from exc
    if greeting != b"INFO ":
        raise ServeError(StartupFailure.ADDRESS, f"--listen {spec.text}: no NATS server at {where} (it did "
                         "not greet with INFO)")


def _bind(host: str, port: int) -> socket.socket:
    try:
        return listen_socket(host, port)
    except UsageError as exc:
        raise ServeError(StartupFailure.ADDRESS, str(exc)) from exc


def _first_error(group: BaseExceptionGroup[BaseException]) -> Error | None:
    """The first peerbox :class:`Error` among ``group``'s leaves (nested groups included), if any."""
    for exc in group.exceptions:
        if isinstance(exc, Error):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _first_error(exc)
            if found is not None:
                return found
    return None


def run_serving(fn: Callable[[], Awaitable[object]]) -> None:
    """``trio.run(fn)``, letting a peerbox :class:`Error` out as itself, not in an exception group.

    trio's nurseries wrap what their tasks raise in ``ExceptionGroup``\\ s; a
    start-up failure (:class:`ServeError`) raised by a supervised child's
    task would reach the command as "internal error". The first peerbox error
    of such a group is raised ``from`` the group; a group holding none (a
    bug) is raised unchanged.
    """
    try:
        trio.run(fn)
    except BaseExceptionGroup as group:
        found = _first_error(group)
        if found is None:
            raise
        raise found from (found.__cause__ or group)
