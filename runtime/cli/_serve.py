"""The ``peerbox serve`` command: a thin layer over :mod:`peerbox.net._worker`.

::

    peerbox serve [--root DIR] [--peers a,b | --all] [--listen URL]...
                  [--mode shared|isolated] [--tls-cert F --tls-key F] [--port-file F]
                  [--max-runs N] [--workers N] [--name NAME] [--quiet]
                  [--state nats://HOST:PORT [--reply-cache] [--publish [--publish-ttl SECONDS]]]
                  [--log-level debug|info|warning|error] [--log-format text|json]
                  [--audit-max-bytes SIZE] [--audit-keep K] [--no-audit]

Shared mode hosts every named peer in each of ``--workers`` processes (default:
the number of CPUs; 1 serves in this process) on one address, supervised by
this one; isolated mode starts one supervised child (``python -m peerbox.net._child``) per peer and
routes to them (``--workers`` above 1 is a usage error there). Prints ``listening on
URL, URL... (peers: ...)`` to stderr once it accepts connections; stops
cleanly (exit 0) on SIGINT/SIGTERM. ``--port-file`` receives the bound port
(useful with ``--listen 127.0.0.1:0``). Also runnable as
``python -m peerbox.cli._serve serve ...`` (how ``--workers`` starts its worker processes).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Sequence
from typing import Any

from .. import net
from ..net import LogOptions, add_log_arguments
from .._errors import Error, UsageError

__all__ = ["add_parsers", "cmd_serve", "main", "COMMANDS", "DEFAULT_LISTEN", "default_worker_name"]

#: The subcommand this module adds.
COMMANDS = ("serve",)
DEFAULT_LISTEN = "127.0.0.1:7700"


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


#: ``--publish-ttl``: the default and the least (repeated from :mod:`peerbox.net._kvrecords`, so that
#: parsing arguments loads no net code).
_DEFAULT_PUBLISH_TTL = 30
_MIN_PUBLISH_TTL = 2


def _publish_ttl(text: str) -> int:
    """``--publish-ttl``: whole seconds, at least :data:`_MIN_PUBLISH_TTL`."""
    value = _positive(text)
    if value < _MIN_PUBLISH_TTL:
        raise argparse.ArgumentTypeError(f"must be at least {_MIN_PUBLISH_TTL} (seconds)")
    return value


def _worker_name(text: str) -> str:
    """``--name``: 1-128 printable characters."""
    if not 0 < len(text) <= 128 or not text.isprintable():
        raise argparse.ArgumentTypeError("expects 1 to 128 printable characters")
    return text


def default_worker_name() -> str:
    """``HOSTNAME:PID`` of this process: the ``worker`` label when ``--name`` is not given."""
    return f"{socket.gethostname()}:{os.getpid()}"


def add_parsers(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``serve`` to ``subparsers``; it sets ``handler`` (``args -> exit code``)."""
    ps = subparsers.add_parser(
        "serve", help="host peers over HTTP/2 (POST /v1/exec, /v1/call, /v1/logic, /v1/revoke; GET "
        "/v1/health, /v1/ready, /v1/status, /v1/peers, /metrics)",
        description="Serve signed requests for local peers over HTTP/2: scripts to run (POST /v1/exec), "
        "calls of a peer's published functions, run with its owner's rights (POST /v1/call), logic "
        "updates (POST /v1/logic) and revocations of capability tokens (POST /v1/revoke), each answered "
        "with a signed reply (429 with retry-after when the caller's rate limit refuses it); GET /v1/health, "
        "/v1/ready, /v1/status, /v1/peers and /metrics (Prometheus) for operators (health, ready, status "
        "and metrics over HTTP/1.1 too). h2c on loopback by default, TLS with ALPN h2 with "
        "--tls-cert/--tls-key. Stops cleanly on SIGINT/SIGTERM.",
    )
    ps.add_argument("--root", metavar="DIR", default=None,
                    help="the peer root (default: $PEERBOX_ROOT, else ./peerbox-data)")
    who = ps.add_mutually_exclusive_group()
    who.add_argument("--peers", metavar="A,B", help="the peers to host (comma-separated)")
    who.add_argument("--all", action="store_true", help="host every peer under the root (the default)")
    ps.add_argument("--listen", metavar="URL", action="append",
                    help=f"where to listen, repeatable, one per transport: HOST:PORT, h2://, http:// or "
                    "https:// (HTTP/2), ws:// or wss:// (WebSocket, at /v1/ws), nats:// (NATS) "
                    f"(default {DEFAULT_LISTEN}; port 0 picks a free one)")
    ps.add_argument("--mode", choices=("shared", "isolated"), default="shared",
                    help="shared: one process for all peers; isolated: one supervised process per peer")
    ps.add_argument("--tls-cert", metavar="FILE", help="PEM certificate chain (enables TLS)")
    ps.add_argument("--tls-key", metavar="FILE", help="PEM private key for --tls-cert")
    ps.add_argument("--port-file", metavar="FILE", help="write the bound port here (removed on exit)")
    ps.add_argument("--max-runs", type=_positive, metavar="N",
                    help="script runs at once in each worker process (default: the number of CPUs)")
    ps.add_argument("--workers", type=_positive, metavar="N",
                    help="shared mode: worker processes on the one address, each hosting every peer "
                    "(default: the number of CPUs; 1: serve in this process)")
    ps.add_argument("--state", metavar="nats://HOST:PORT",
                    help="keep the state workers share (nonces, revocations, the reply cache) in NATS "
                    "JetStream key-value buckets on this server, so several workers can host one peer "
                    "(default: SQLite files and lists under the root)")
    ps.add_argument("--reply-cache", action="store_true",
                    help="with --state: keep each signed answer until its request expires, so a client "
                    "retrying the same signed bytes after a lost reply gets the same reply, not 'replay'")
    ps.add_argument("--publish", action="store_true",
                    help="with --state: announce each hosted peer (name, did and the --listen nats:// URL) "
                    "in the shared directory while this worker serves (refreshed every third of "
                    "--publish-ttl, removed on a clean stop); a name the directory gives to another live "
                    "did stops the start (exit 2)")
    ps.add_argument("--publish-ttl", metavar="SECONDS", type=_publish_ttl,
                    help="with --publish: an entry this worker has not refreshed for SECONDS is gone "
                    f"(lookups skip it, the NATS server removes it) (default {_DEFAULT_PUBLISH_TTL}, "
                    f"at least {_MIN_PUBLISH_TTL})")
    ps.add_argument("--name", metavar="NAME", type=_worker_name,
                    help="this worker's name, the `worker` label of every /metrics series (default "
                    "HOSTNAME:PID), so one Prometheus can scrape many workers hosting the same peers")
    ps.add_argument("--quiet", action="store_true", help="do not print the 'listening on' line")
    add_log_arguments(ps)
    ps.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    # A worker process of `serve --workers N` (given by its supervisor): the inherited listening
    # socket, the process's index and the supervisor's runtime directory; all three or none.
    # One --listen-fd per TCP listener, in --listen order.
    ps.add_argument("--listen-fd", type=int, action="append", help=argparse.SUPPRESS)
    ps.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    ps.add_argument("--worker-dir", help=argparse.SUPPRESS)
    ps.set_defaults(handler=cmd_serve)


def _peer_list(args: argparse.Namespace) -> list[str] | None:
    if args.all or args.peers is None:
        return None
    names = [n.strip() for n in args.peers.split(",") if n.strip()]
    if not names:
        raise UsageError("--peers needs at least one peer name")
    return names


def _workers(args: argparse.Namespace) -> int | None:
    """``--workers``: given, else 1 for a process some supervisor started, else None (the CPUs)."""
    if args.workers is not None:
        return int(args.workers)
    if args.exit_with_parent or args.listen_fd is not None:
        return 1  # a child of isolated mode or of `serve --workers N`
    return None


def _listens(args: argparse.Namespace) -> list[str]:
    """The ``--listen`` values given, else the default address."""
    return list(args.listen) if args.listen else [DEFAULT_LISTEN]


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the worker (shared or isolated) until a signal; exit code 0 after a clean stop.

    Raises :class:`UsageError` (exit 2) for ``--workers`` above 1 with ``--mode isolated``
    (one process per peer already) and the usage errors of the modes.
    """
    workers = _workers(args)
    name = args.name or default_worker_name()
    logs = LogOptions.from_args(args)
    logs.configure()
    if args.publish_ttl is not None and not args.publish:
        raise UsageError("--publish-ttl applies to --publish (the entries a worker announces)")
    if args.mode == "isolated":
        if args.workers is not None and args.workers > 1:
            raise UsageError("--workers applies to shared mode; isolated mode runs one process per peer")
        if args.state is not None or args.reply_cache or args.publish:
            raise UsageError("--state, --reply-cache and --publish apply to shared mode (not yet to "
                             "--mode isolated)")
        return net.run_isolated(args.root, _peer_list(args), _listens(args), tls_cert=args.tls_cert,
                            tls_key=args.tls_key, port_file=args.port_file, max_runs=args.max_runs,
                            quiet=args.quiet, logs=logs, name=name)
    return net.run_shared(args.root, _peer_list(args), _listens(args), tls_cert=args.tls_cert,
                          tls_key=args.tls_key, port_file=args.port_file, max_runs=args.max_runs,
                          quiet=args.quiet, exit_with_parent=args.exit_with_parent,
                          workers=workers, listen_fd=args.listen_fd, worker_index=args.worker_index,
                          worker_dir=args.worker_dir, logs=logs, state=args.state,
                          reply_cache=args.reply_cache, name=name, publish=args.publish,
                          publish_ttl=args.publish_ttl or _DEFAULT_PUBLISH_TTL)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m peerbox.cli._serve serve ...``: the command alone (isolated mode's children).

    Errors are printed to stderr (exit 2 for a usage error, 1 for anything else).
    """
    parser = argparse.ArgumentParser(prog="peerbox")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parsers(sub)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        code: int = args.handler(args)
        return code
    except Error as exc:
        print(f"peerbox: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
