"""The ``peerbox init`` and ``peerbox peers`` commands: thin layers over :mod:`peerbox.peer._peers`.

::

    peerbox init NAME [--root DIR] [--backend fs|sqlite] [--json]
    peerbox peers [--root DIR] [--json]
    peerbox peers add NAME DID [URL] [--replace] [--root DIR]   (the same as ``directory add``)

:func:`add_parsers` adds ``init`` and ``peers`` to the CLI's subparsers; each subparser sets
``handler`` (``args.handler(args) -> int``, the exit code). Failures are
raised as :class:`~peerbox.Error` subclasses (:class:`~peerbox.peer._peers.PeerError`
and friends, exit 2) for the CLI's one error boundary to render. The secret
key is never printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..peer import BACKENDS, DEFAULT_ROOT, ENV_ROOT, Directory, Peer, PeerStore

__all__ = ["add_parsers", "add_root_argument", "peer_json", "cmd_init", "cmd_peers", "COMMANDS"]

#: The subcommands this module adds.
COMMANDS = ("init", "peers")


def add_root_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--root DIR`` (for every command that works on peers, e.g. ``run --peer``)."""
    parser.add_argument(
        "--root", metavar="DIR", default=None,
        help=f"the peer root (default: ${ENV_ROOT}, else ./{DEFAULT_ROOT})",
    )


def add_parsers(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``init`` and ``peers`` to ``subparsers``; each sets ``handler`` in its defaults."""
    pi = subparsers.add_parser(
        "init", help="create a peer: an Ed25519 identity and its directory",
        description="Create a peer under <root>/peers/NAME: a new Ed25519 key pair (peer.key, "
        "mode 0600, never printed), policy.toml (the owner may do everything, everyone else "
        "nothing), logic/ and the storage (files/ or storage.sqlite).",
    )
    pi.add_argument("name", metavar="NAME", help="the peer's local name: a-z, 0-9, '_', '-' (max 63)")
    add_root_argument(pi)
    pi.add_argument("--backend", choices=BACKENDS, default="fs",
                    help="where the peer's files are stored (default fs)")
    pi.add_argument("--json", action="store_true", help="print the new peer as one JSON object")
    pi.set_defaults(handler=cmd_init)

    pp = subparsers.add_parser(
        "peers", help="list the peers under a root",
        description="List the peers under the root: name, did and storage backend.",
    )
    add_root_argument(pp)
    pp.add_argument("--json", action="store_true", help="print a JSON array of peers")
    pp.set_defaults(handler=cmd_peers)
    # `peerbox peers add NAME DID [URL]`: who a remote peer is, and where it is reachable (same as
    # `directory add`)
    sub = pp.add_subparsers(dest="peers_command", metavar="add")
    sub.required = False
    pa = sub.add_parser("add", help="record where a remote peer is reachable (<root>/peers.toml)")
    pa.add_argument("name", metavar="NAME")
    pa.add_argument("did", metavar="DID")
    pa.add_argument("url", metavar="URL", nargs="?", default=None,
                    help="http://HOST:PORT or https://HOST:PORT (leave out for a peer that only calls)")
    pa.add_argument("--replace", action="store_true", help="replace an existing entry of that name")
    add_root_argument(pa)
    pa.set_defaults(handler=_cmd_peers_add)


def _cmd_peers_add(args: argparse.Namespace) -> int:
    return cmd_directory_add(args)


def cmd_directory_add(args: argparse.Namespace) -> int:
    """``peerbox directory add NAME DID [URL]`` (no URL: a peer known only as a caller, which
    ``who = NAME`` in a policy can then name)."""
    directory = Directory(args.root)
    entry = directory.add(args.name, args.did, args.url, replace=args.replace)
    where = f" at {entry.url}" if entry.url is not None else " (a caller only: no URL)"
    sys.stderr.write(f"{entry.name} = {entry.did}{where} (in {directory.path})\n")
    return 0


def peer_json(peer: Peer) -> dict[str, str]:
    """The public facts about a peer, for JSON output (never the secret key)."""
    return {
        "name": peer.name,
        "did": peer.did,
        "backend": peer.backend,
        "created": peer.created,
        "path": str(peer.paths.dir),
    }


def cmd_init(args: argparse.Namespace) -> int:
    """``peerbox init NAME``: create the peer, print its name, did and directory."""
    peer = PeerStore(args.root).init(args.name, args.backend)
    if args.json:
        _out(json.dumps(peer_json(peer), ensure_ascii=False))
    else:
        _out(
            f"created peer {peer.name}\n"
            f"  did:     {peer.did}\n"
            f"  backend: {peer.backend}\n"
            f"  path:    {peer.paths.dir}"
        )
    return 0


def cmd_peers(args: argparse.Namespace) -> int:
    """``peerbox peers``: a table (or JSON array) of name, did, backend.

    Peers that do not load are reported on stderr, one line each, and
    listed nowhere else; the exit code is still 0 if the root exists.
    """
    store = PeerStore(args.root)
    peers, errors = store.scan()
    for err in errors:
        sys.stderr.write(f"warning: {err}\n")
    if args.json:
        _out(json.dumps([peer_json(p) for p in peers], ensure_ascii=False))
        return 0
    if not peers:
        sys.stderr.write(f"no peers in {store.peers_dir} (create one with `peerbox init NAME`)\n")
        return 0
    rows = [("NAME", "DID", "BACKEND")] + [(p.name, p.did, p.backend) for p in peers]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    _out("\n".join(f"{a:<{w0}}  {b:<{w1}}  {c}".rstrip() for a, b, c in rows))
    return 0


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()

