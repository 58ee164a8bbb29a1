"""HTTP/1.1 on the cleartext listener, for probes only: a sans-IO parser and a tiny serializer.

The worker speaks HTTP/2 (:mod:`peerbox.net._h2server`); health checkers,
load balancers, Kubernetes probes, most Prometheus scrapers and plain ``curl``
speak HTTP/1.1. The server reads the first bytes of a cleartext connection
(:func:`is_h2_preface`): the HTTP/2 connection preface goes to HTTP/2, anything
else to this module, which serves only ``GET``/``HEAD`` of :data:`PROBE_PATHS`.
An envelope endpoint (``POST /v1/exec``...) answers ``426 Upgrade Required``
with a one-line explanation (signed requests need HTTP/2); every other path
``404``.

Nothing here does I/O. :class:`Http1Parser` takes bytes (:meth:`~Http1Parser.feed`)
and gives back events (:meth:`~Http1Parser.next_event`): a complete
:class:`Http1Request` head, an :class:`Http1Error` (answer it, then close), or
``None`` (more bytes needed). Its states are explicit (:class:`Phase`). Limits:
a request head (request line and headers) of at most :attr:`Http1Limits.max_head`
bytes and :attr:`Http1Limits.max_headers` lines; request bodies are never read
(a request that announces one is answered and the connection closed).
:func:`route` decides what a parsed request gets; :func:`render` writes an
answer. The I/O loop that drives them is :mod:`peerbox.net._http1conn`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from email.utils import formatdate

from ._preauth import ENVELOPE_PATHS

__all__ = ["H2_PREFACE", "PROBE_PATHS", "Http1Limits", "Http1Request", "Http1Error", "Http1Parser", "Phase",
           "Forward", "Answer", "route", "render", "text_answer", "is_h2_preface", "might_be_h2_preface"]

#: What an HTTP/2 client sends first (RFC 9113 §3.4); the server reads up to this many bytes to decide.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: The paths HTTP/1.1 may ``GET``/``HEAD``; everything a peer signs needs HTTP/2.
PROBE_PATHS = frozenset({"/v1/health", "/v1/ready", "/metrics", "/v1/status"})

_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            405: "Method Not Allowed", 408: "Request Timeout", 426: "Upgrade Required",
            431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
            503: "Service Unavailable", 505: "HTTP Version Not Supported"}
#: Response headers the serializer writes itself (an app's own are dropped).
_OWN = frozenset({"content-length", "connection", "date", "transfer-encoding", "keep-alive"})


def is_h2_preface(first: bytes) -> bool:
    """Whether the first bytes of a connection are HTTP/2's connection preface."""
    return first[:len(H2_PREFACE)] == H2_PREFACE


def might_be_h2_preface(first: bytes) -> bool:
    """Whether more bytes are needed to tell: ``first`` is a proper prefix of the preface."""
    return len(first) < len(H2_PREFACE) and H2_PREFACE.startswith(first)


@dataclass(frozen=True, kw_only=True)
class Http1Limits:
    """The bounds of an HTTP/1.1 probe connection.

    ``max_head`` (8 KiB): request line plus headers; more is ``431`` and close.
    ``max_headers`` (100 lines). ``read_timeout`` (10 s): a request head must
    arrive whole within this long of the previous answer (or of the
    connection's first bytes); a connection silent that long is closed, one
    with a partial head gets ``408``. ``max_requests`` (100): answers per
    connection (keep-alive), the last one carries ``connection: close``.
    """

    max_head: int = 8192
    max_headers: int = 100
    read_timeout: float = 10.0
    max_requests: int = 100


class Phase(enum.Enum):
    """Where an :class:`Http1Parser` is: reading a request head, or done (answer the error, close)."""

    HEAD = "head"
    CLOSED = "closed"


@dataclass(frozen=True, kw_only=True)
class Http1Request:
    """One parsed request head. ``path`` is the origin-form target (query included); ``headers`` have
    lower-case names; ``keep_alive``: the client allows another request on this connection;
    ``has_body``: it announced a body (never read: the connection closes after the answer)."""

    method: str
    path: str
    version: str
    headers: tuple[tuple[str, str], ...]
    keep_alive: bool
    has_body: bool

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (lower-case), or None."""
        return next((v for k, v in self.headers if k == name), None)


@dataclass(frozen=True)
class Http1Error:
    """A request that cannot be parsed: answer ``status`` with ``message``, then close."""

    status: int
    message: str


class Http1Parser:
    """Request heads from a byte stream (sans-IO, see the module docstring).

    :meth:`feed` appends bytes; :meth:`next_event` returns the next complete
    head, an :class:`Http1Error` (the parser is then :attr:`Phase.CLOSED` and
    returns ``None`` from then on), or ``None`` when it needs more bytes.
    Leading empty lines before a request line are skipped (RFC 9112 §2.2).
    Never raises for any input.
    """

    def __init__(self, limits: Http1Limits | None = None) -> None:
        self.limits = limits or Http1Limits()
        self.phase = Phase.HEAD
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes received and not yet part of a returned event."""
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        """Take more bytes of the stream (ignored once :attr:`Phase.CLOSED`)."""
        if self.phase is Phase.HEAD:
            self._buf += data

    def next_event(self) -> Http1Request | Http1Error | None:
        """The next request head, an error, or None (more bytes needed, or closed)."""
        if self.phase is not Phase.HEAD:
            return None
        while self._buf[:2] == b"\r\n" or self._buf[:1] == b"\n":
            del self._buf[:2 if self._buf[:1] == b"\r" else 1]
        end = self._buf.find(b"\n\r\n")
        size = end + 3
        bare = self._buf.find(b"\n\n")
        if bare != -1 and (end == -1 or bare < end):
            end, size = bare, bare + 2
        if end == -1:
            if len(self._buf) > self.limits.max_head:
                return self._fail(431, "request head over 8 KiB" if self.limits.max_head == 8192
                                  else f"request head over {self.limits.max_head} bytes")
            return None
        if size > self.limits.max_head:
            return self._fail(431, f"request head over {self.limits.max_head} bytes")
        head = bytes(self._buf[:end])
        del self._buf[:size]
        event = self._parse(head)
        if isinstance(event, Http1Error):
            return self._fail(event.status, event.message)
        return event

    def _fail(self, status: int, message: str) -> Http1Error:
        self.phase = Phase.CLOSED
        self._buf.clear()
        return Http1Error(status, message)

    def _parse(self, head: bytes) -> Http1Request | Http1Error:
        lines = [line[:-1] if line.endswith(b"\r") else line for line in head.split(b"\n")]
        if len(lines) - 1 > self.limits.max_headers:
            return Http1Error(431, f"more than {self.limits.max_headers} header lines")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[0] or not set(parts[0]) <= _TOKEN:
            return Http1Error(400, "malformed request line")
        method, target, version = (p.decode("latin-1") for p in parts)
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            if version.startswith("HTTP/") and version[5:6].isdigit():
                return Http1Error(505, f"{version[:16]} is not spoken here: HTTP/1.1, or HTTP/2 with prior "
                                  "knowledge")
            return Http1Error(400, "malformed request line")
        path = _origin_form(target)
        if path is None:
            return Http1Error(400, "malformed request target")
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or not set(name) <= _TOKEN:  # obs-fold and spaces before ':' too
                return Http1Error(400, "malformed header line")
            text = value.strip(b" \t")
            if any(c < 0x20 and c != 0x09 or c == 0x7F for c in text):
                return Http1Error(400, "control character in a header value")
            headers.append((name.decode("ascii").lower(), text.decode("latin-1")))
        return _request(method, path, version, tuple(headers))


def _origin_form(target: str) -> str | None:
    """The path (and query) of a request target: origin form, or absolute form's path; else None."""
    if target.startswith("/"):
        return target if target.isprintable() and " " not in target else None
    for scheme in ("http://", "https://"):
        if target.lower().startswith(scheme):
            rest = target[len(scheme):]
            slash = rest.find("/")
            return _origin_form(rest[slash:]) if slash != -1 else "/"
    return None


def _request(method: str, path: str, version: str,
             headers: tuple[tuple[str, str], ...]) -> Http1Request | Http1Error:
    lengths = {v.strip() for k, v in headers if k == "content-length"}
    chunked = any(k == "transfer-encoding" for k, _ in headers)
    if len(lengths) > 1 or any(not n.isdigit() for n in lengths) or (chunked and lengths):
        return Http1Error(400, "conflicting or malformed content-length")
    if version == "HTTP/1.1" and not any(k == "host" for k, _ in headers):
        return Http1Error(400, "an HTTP/1.1 request needs a host header")
    tokens = {t.strip().lower() for k, v in headers if k == "connection" for t in v.split(",")}
    keep_alive = "keep-alive" in tokens if version == "HTTP/1.0" else "close" not in tokens
    has_body = chunked or any(int(n) > 0 for n in lengths)
    return Http1Request(method=method, path=path, version=version, headers=headers, keep_alive=keep_alive,
                        has_body=has_body)


@dataclass(frozen=True)
class Forward:
    """Hand the request to the worker's app as ``GET path`` (a ``HEAD`` is answered without the body)."""

    path: str


@dataclass(frozen=True)
class Answer:
    """Answer at once with ``status``, a one-line text ``message`` and ``headers``."""

    status: int
    message: str
    headers: tuple[tuple[str, str], ...] = ()


def route(req: Http1Request) -> Forward | Answer:
    """What an HTTP/1.1 request gets: ``GET``/``HEAD`` of a probe path goes to the app; an envelope
    endpoint is ``426`` (it needs HTTP/2); another method on a probe path ``405``; anything else ``404``."""
    path = req.path.split("?", 1)[0]
    if path in PROBE_PATHS:
        if req.method in ("GET", "HEAD"):
            return Forward(req.path)
        return Answer(405, f"{path} takes GET or HEAD", (("allow", "GET, HEAD"),))
    if path in ENVELOPE_PATHS:
        return Answer(426, f"{path} needs HTTP/2 (prior knowledge on cleartext, ALPN h2 over TLS): "
                      "HTTP/1.1 serves only /v1/health, /v1/ready, /metrics and /v1/status",
                      (("upgrade", "h2c"),))
    return Answer(404, f"no such endpoint over HTTP/1.1: {path[:100]} (HTTP/1.1 serves /v1/health, "
                  "/v1/ready, /metrics and /v1/status; the rest needs HTTP/2)")


def render(status: int, headers: tuple[tuple[str, str], ...], body: bytes, *, head_only: bool = False,
           close: bool = False) -> bytes:
    """One HTTP/1.1 answer: status line, ``headers`` (those with CR, LF or NUL, and the framing headers
    this function writes itself, are dropped), ``date``, ``content-length``, ``connection: close`` if
    ``close``, and ``body`` unless ``head_only`` (a ``HEAD``: same length, no body)."""
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
    for name, value in headers:
        if name.lower() in _OWN or any(c in name + value for c in "\r\n\0") or ":" in name:
            continue
        lines.append(f"{name}: {value}")
    lines.append(f"date: {formatdate(usegmt=True)}")
    lines.append(f"content-length: {len(body)}")
    if close:
        lines.append("connection: close")
    out = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
    return out if head_only else out + body


def text_answer(status: int, message: str, headers: tuple[tuple[str, str], ...] = (), *,
                head_only: bool = False, close: bool = False) -> bytes:
    """:func:`render` of a one-line ``text/plain`` answer."""
    return render(status, (("content-type", "text/plain; charset=utf-8"), *headers),
                  message.encode() + b"\n", head_only=head_only, close=close)
