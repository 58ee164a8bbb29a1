"""The network: the HTTP/2 worker that serves peers, and the client that calls one.

In the order a request arrives::

    _h2server    the HTTP/2 server (trio + h2): listening, ``serve``/``serve_stream``
    _listen      what the HTTP/2 and WebSocket listeners share: binding, TLS, address budgets
    _h2conn      one server connection: request assembly, app tasks, answers, the connection's timer
    _h2out       the sending side: one writer task per connection, response HEADERS checked once per set
    _http1       HTTP/1.1 for probes on the cleartext listener (sans-IO): the preface test, parser, routes
    _http1conn   its I/O: reading the first bytes (HTTP/2 or not), serving HTTP/1.1 probe requests
    _http        the server's request/response types and ``ServerLimits``
    _budget      per-address token buckets (connections, failures)
    _preauth     opening a body before admission: the signature first, then strict decoding
    _admission   fair admission to run slots, per caller
    _runpool     the run threads (large native stacks)
    _metrics     the worker's Prometheus counters, fed typed answers (outcome, usage, denied action)
    _endpoints   what a worker and a router answer: /v1/exec, /v1/logic, health, ready, status, peers,
                 metrics; the HTTP status of each outcome
    _status      who may read /v1/status (loopback, or a peerbox/status token), readiness answers
    _worker      the shared worker: check threads, run slots
    _logsetup    how a serving process logs: --log-level, --log-format, the audit rotation
    _access      the access log (one line per request) and the audit records of decisions
    _shared      serving a shared worker: ``serve_worker``, ``run_shared``
    _serving     serving an app: --listen, TLS, the port file, signals
    _accept      accepting on a socket several worker processes share, balanced by open connections
    _supervisor  ``serve --workers N``: N worker processes on one address, restarted, drained
    _isolated    isolated mode: one child worker per peer, a router in front
    _startup     ``serve``'s start-up checks (root, peers, TLS, the peers' locks, the address): ``ServeError``
    _localchan   isolated mode's channel: length-prefixed frames on a socketpair, router and child ends
    _child       an isolated-mode child: one peer's Worker served over the channel
    _natsserve   ``serve_nats``: the same app over NATS (queue group per peer, answers on the inbox)
    _natsbridge  nats-py on its own thread and asyncio loop, used from trio (batched both ways)
    _localnats   ``LocalNats``: a local nats-server (JetStream on) for ``peerbox dev up``, tests, benches

And the calling side::

    _client_errors  ``ClientError`` and its kinds: a call that got no verified reply (exit 7)
    _h2client    ``Transport``, ``H2Transport``: HTTP/2 over trio, one multiplexed connection per origin
    _natsclient  ``NatsTransport``: an envelope per NATS request/reply, one connection per server
    _h2clientconn  one client HTTP/2 connection: reader, writer, deadline timer; a call parks its task
                 and the reader wakes it
    _client      ``Client``/``AsyncClient``: sign (exec, call, logic, revoke), send through a transport,
                 verify the reply (200, 403 and 429 carry one)

Below: :mod:`peerbox.trust` (what a request may do), :mod:`peerbox.peer`, :mod:`peerbox.wire`.
Above: :mod:`peerbox.cli` (``peerbox serve``, ``send``, ``logic push``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import attach

if TYPE_CHECKING:
    from ._client import AsyncClient, Client
    from ._client_errors import ClientError, RemoteRejected, TransportError, VerificationError
    from ._isolated import run_isolated
    from ._localchan import ChannelBusy, ChannelClosed, ChannelError, ChannelTimeout, FrameError
    from ._shared import run_shared
    from ._startup import ServeError, StartupFailure
    from ._worker import Worker
    from ._logsetup import LogFormat, LogLevel, LogOptions, add_log_arguments
    from ._localnats import LocalNats, LocalNatsError
    from ._kvdirectory import DirectoryConflict, KvDirectory, NoLiveWorker, SharedDirectory, shared_directory

__all__ = ["AsyncClient", "Client", "ClientError", "RemoteRejected", "TransportError", "VerificationError",
           "ChannelError", "ChannelClosed", "ChannelTimeout", "ChannelBusy", "FrameError",
           "run_isolated", "Worker", "run_shared", "ServeError", "StartupFailure", "LogOptions", "LogLevel",
           "LogFormat", "add_log_arguments", "LocalNats", "LocalNatsError", "SharedStateError",
           "SharedDirectory", "KvDirectory", "DirectoryConflict", "NoLiveWorker", "shared_directory"]

__getattr__, __dir__ = attach(__name__, {
    "LogOptions": "._logsetup",
    "LocalNats": "._localnats",
    "LocalNatsError": "._localnats",
    "SharedDirectory": "._kvdirectory",
    "KvDirectory": "._kvdirectory",
    "DirectoryConflict": "._kvdirectory",
    "NoLiveWorker": "._kvdirectory",
    "shared_directory": "._kvdirectory",
    "LogLevel": "._logsetup",
    "LogFormat": "._logsetup",
    "add_log_arguments": "._logsetup",
    "AsyncClient": "._client",
    "Client": "._client",
    "ClientError": "._client_errors",
    "RemoteRejected": "._client_errors",
    "TransportError": "._client_errors",
    "VerificationError": "._client_errors",
    "ChannelError": "._localchan",
    "ChannelClosed": "._localchan",
    "ChannelTimeout": "._localchan",
    "ChannelBusy": "._localchan",
    "FrameError": "._localchan",
    "run_isolated": "._isolated",
    "Worker": "._worker",
    "run_shared": "._shared",
    "ServeError": "._startup",
    "StartupFailure": "._startup",
    "SharedStateError": "._jetstream",
})
