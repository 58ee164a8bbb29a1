"""The types between the HTTP/2 server (:mod:`peerbox.net._h2server`) and its app: requests, answers, limits.

Re-exported by :mod:`peerbox.net._h2server`, where they are documented for users
of the server; kept apart so that the server module holds only the protocol.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["App", "HttpRequest", "HttpResponse", "ServerLimits"]


@dataclass(frozen=True, kw_only=True)
class HttpRequest:
    """One complete request: pseudo-headers split out, body fully received.

    ``headers`` holds the regular headers (lower-case names, latin-1 decoded);
    ``client`` is the peer address; ``stream_id``/``conn_id`` identify the
    request for logs and metrics.
    """

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    client: str
    stream_id: int
    conn_id: int

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)


@dataclass(frozen=True, kw_only=True)
class HttpResponse:
    """What the app answers; ``content-length`` is added by the server.

    ``preauth_failure`` marks the refusal of a request whose sender could
    not be authenticated (or whose envelope did not parse): the server
    charges it to the connection's and the remote address's failure budgets
    (see :class:`ServerLimits`); it is not sent.
    """

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    preauth_failure: bool = False


App = Callable[[HttpRequest], Awaitable[HttpResponse]]


@dataclass(frozen=True, kw_only=True)
class ServerLimits:
    """Per-connection limits; the defaults are the documented server policy.

    - ``max_concurrent_streams`` (100) and ``max_header_list_size`` (16 KiB)
      are advertised in SETTINGS and enforced by h2 (a larger header block,
      however it is split into CONTINUATION frames, ends the connection with
      ENHANCE_YOUR_CALM; h2 also caps a header block at 64 CONTINUATIONs).
    - ``max_body`` (8 MiB, :data:`peerbox.wire.MAX_EXEC_REQUEST`: params of a
      few MiB must pass): a larger body (or content-length) gets 413 and
      the app is never called.
    - ``max_resets_per_sec`` (100): more client RST_STREAMs than this within
      one second is a rapid-reset attack (CVE-2023-44487): GOAWAY
      ENHANCE_YOUR_CALM and close. ``max_pings_settings_per_sec`` (50) does
      the same for PING and SETTINGS floods.
    - ``idle_timeout`` (60 s): no frame while nothing is in flight -> GOAWAY
      and close. ``body_timeout`` (10 s): a request whose body is not complete
      this long after its headers gets 408 and RST_STREAM.
    - ``max_inflight_per_conn`` (16): app calls running per connection.
      Beyond that up to ``max_queued_per_conn`` (100) complete requests wait
      in a FIFO for a slot (a reset stream leaves the queue); beyond that a
      request gets 503 with ``retry-after: 1`` at once.
      ``max_buffered_per_conn`` (16 MiB): bytes of request bodies arriving or
      queued on one connection; a request that would exceed it gets 503 (so
      100 streams x ``max_body`` cannot pin 800 MiB; two bodies of the
      largest size fit).
    - ``shutdown_grace`` (10 s): how long in-flight app calls may run after a
      graceful shutdown starts before they are cancelled.
    - Pre-authentication failure budgets (token buckets, :mod:`peerbox.net._budget`):
      each answer the app marks ``preauth_failure`` (a bad signature, an
      envelope that does not parse) costs a token of the connection
      (``max_preauth_failures_per_conn`` = 8, refilled at
      ``preauth_failure_rate_per_conn`` = 1 per second) and one of its remote
      address, shared by all its connections (``max_preauth_failures_per_addr``
      = 32, refilled at ``preauth_failure_rate_per_addr`` = 4 per second, for
      at most ``max_tracked_addrs`` = 4096 addresses). A failure when either
      is empty ends the connection (its answer is sent, then GOAWAY
      ENHANCE_YOUR_CALM and close; answers still running are dropped); while
      an address's bucket is empty, new connections from it are closed at
      once, unread. A failure costs the worker at most about 40 ms (an 8 MiB
      body received and hashed; measured 38 ms for 7 MiB), so a flood from
      one address costs at most about 4 x 40 ms = 16% of a core once the
      bursts are spent (a failure costs in proportion to its body: 5 ms per
      MiB). Requests that
      pass authentication are never charged: a client behind the same address
      keeps its established connections.
    """

    max_concurrent_streams: int = 100
    max_header_list_size: int = 16384
    max_body: int = 8 << 20
    max_resets_per_sec: int = 100
    max_pings_settings_per_sec: int = 50
    idle_timeout: float = 60.0
    body_timeout: float = 10.0
    max_inflight_per_conn: int = 16
    max_queued_per_conn: int = 100
    max_buffered_per_conn: int = 16 << 20
    shutdown_grace: float = 10.0
    max_preauth_failures_per_conn: int = 8
    preauth_failure_rate_per_conn: float = 1.0
    max_preauth_failures_per_addr: int = 32
    preauth_failure_rate_per_addr: float = 4.0
    max_tracked_addrs: int = 4096
