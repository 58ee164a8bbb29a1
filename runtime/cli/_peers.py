"""The ``peerbox init`` and ``peerbox peers`` commands: thin layers over :mod:`peerbox.peer._peers`.

::

    peerbox init NAME [--root DIR] [--backend fs|sqlite] [--json]
    peerbox peers [list] [--root DIR] [--json]
    peerbox peers show NAME [--did] [--json] [--root DIR]     (``--did``: only the did, for scripts)
    peerbox peers add NAME [DID] [URL] [--replace] [--root DIR]   (the same as ``directory add``)

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

from ..peer import BACKENDS, Directory, DirectoryError, Entry, Peer, PeerLogic, PeerStore
from ._args import add_root_argument
from ._directory import add_entry_arguments, cmd_directory_add

__all__ = ["add_parsers", "add_root_argument", "peer_json", "cmd_init", "cmd_peers", "cmd_peers_show",
           "COMMANDS"]

#: The subcommands this module adds.
COMMANDS = ("init", "peers")


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
        "peers", help="list the peers under a root, or show one (peers show NAME [--did])",
        description="List the peers under the root: name, did and storage backend (also `peers list`); "
        "`peers show NAME` shows one, `peers add` records a peer in peers.toml.",
    )
    add_root_argument(pp)
    pp.add_argument("--json", action="store_true", help="print a JSON array of peers")
    pp.set_defaults(handler=cmd_peers)
    # `peerbox peers list|show|add`; the bare `peerbox peers` lists too
    sub = pp.add_subparsers(dest="peers_command", metavar="{list,show,add}")
    sub.required = False
    pl = sub.add_parser("list", help="list the peers under the root (the same as `peerbox peers`)")
    add_root_argument(pl)
    pl.add_argument("--json", action="store_true", help="print a JSON array of peers")
    pl.set_defaults(handler=cmd_peers)
    ps = sub.add_parser("show", help="a peer's did, public key, files, modules and directory entry",
                        description="Show a local peer: its did (did:key, the multibase form of its "
                        "Ed25519 public key), the public key in hex, its directory, policy file, storage, "
                        "its own logic modules and its entry in peers.toml. Never the secret key. "
                        "With --did only the did, for scripts: bob=$(peerbox peers show bob --did).")
    ps.add_argument("name", metavar="NAME")
    ps.add_argument("--did", action="store_true", help="print only the did")
    ps.add_argument("--json", action="store_true", help="print one JSON object")
    add_root_argument(ps)
    ps.set_defaults(handler=cmd_peers_show)
    pa = sub.add_parser("add", help="record where a peer is reachable (<root>/peers.toml; as directory add)")
    add_entry_arguments(pa)
    pa.set_defaults(handler=cmd_directory_add)


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


def cmd_peers_show(args: argparse.Namespace) -> int:
    """``peerbox peers show NAME``: the public facts of one peer (``--did``: the did alone).

    Raises :class:`~peerbox.peer.PeerNotFound` (exit 2) for a name that is not under the root.
    """
    peer = PeerStore(args.root).get(args.name)
    if args.did:
        _out(peer.did)
        return 0
    modules = sorted(ref.name for ref in PeerLogic(peer).layers.modules() if ref.layer == "peer")
    try:
        entry: Entry | None = Directory(args.root).get(peer.name)
    except DirectoryError:
        entry = None
    info: dict[str, Any] = {
        **peer_json(peer), "public_key": peer.public_key.hex(), "policy": str(peer.paths.policy),
        "storage": str(peer.paths.storage), "modules": modules,
        "directory": None if entry is None else {"did": entry.did, "url": entry.url},
    }
    if args.json:
        _out(json.dumps(info, ensure_ascii=False))
        return 0
    listed = "not in peers.toml" if entry is None else (
        (entry.url or "no URL (a caller only)") + ("" if entry.did == peer.did else f", as {entry.did}"))
    _out(f"{peer.name}\n"
         f"  did:        {peer.did}\n"
         f"  public key: {info['public_key']} (Ed25519, hex)\n"
         f"  path:       {peer.paths.dir}\n"
         f"  policy:     {peer.paths.policy}\n"
         f"  storage:    {peer.backend} ({peer.paths.storage})\n"
         f"  modules:    {len(modules)}{': ' + ', '.join(modules) if modules else ''}\n"
         f"  directory:  {listed}\n"
         f"  created:    {peer.created}")
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

