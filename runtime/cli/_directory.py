"""``peerbox directory add|remove|list`` (and ``peers add``): the root's ``peers.toml`` from the shell.

::

    peerbox directory add NAME URL [--replace] [--root DIR]         a local peer: its did is looked up
    peerbox directory add NAME DID [URL] [--replace] [--root DIR]   any peer (no URL: it only calls)
    peerbox directory remove NAME [--root DIR]
    peerbox directory list [--json] [--root DIR]

each with ``--state nats://HOST:PORT`` (default ``$PEERBOX_STATE``): the same
command on the directory shared through JetStream
(:class:`peerbox.net._kvdirectory.KvDirectory`) instead of ``peers.toml``;
``add NAME URL`` still looks NAME's did up under ``--root``, which is how a
local peer is published to the others. Such an operator's entry never
expires unless ``add --ttl SECONDS`` gives it a TTL; ``list --state`` adds
each name's state (``static``, ``live``: published by workers that refresh
it, ``stale``: published, but none of its workers is left).

A thin layer over :class:`peerbox.peer.Directory`, which keeps the file's
comments, blank lines and order on every edit. Failures are
:class:`~peerbox.UsageError` subclasses (exit 2) for the CLI's error boundary.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .._errors import UsageError
from ..peer import Directory, PeerNotFound, PeerStore, RootNotFound
from ._args import add_root_argument

if TYPE_CHECKING:
    from ..net import KvDirectory

__all__ = ["add_directory_parser", "add_entry_arguments", "add_state_argument", "client_directory",
           "cmd_directory_add", "cmd_directory_remove", "cmd_directory_list", "split_did_url"]

#: ``--state`` defaults to this variable (the same name as :data:`peerbox.net._kvdirectory.ENV_STATE`,
#: repeated here so that parsing arguments loads no net code).
_ENV_STATE = "PEERBOX_STATE"


def add_state_argument(p: argparse.ArgumentParser, what: str) -> None:
    """Add ``--state nats://HOST:PORT`` (default ``$PEERBOX_STATE``): the shared directory, ``what`` for."""
    p.add_argument("--state", metavar="nats://HOST:PORT", default=os.environ.get(_ENV_STATE) or None,
                   help=f"the directory shared through NATS JetStream: {what} (default: ${_ENV_STATE})")


@contextlib.contextmanager
def _shared(url: str) -> Iterator[KvDirectory]:
    """The shared directory at ``url``, connected for the block. Raises
    :class:`~peerbox.net._jetstream.SharedStateError` (exit 7) when it cannot be reached."""
    from ..net import shared_directory

    with shared_directory(url) as directory:
        yield directory


@contextlib.contextmanager
def client_directory(root: str | None, state: str | None) -> Iterator[Directory]:
    """What ``send`` and ``call`` resolve ``--to`` in: ``peers.toml`` under ``root``, then, with
    ``state``, the shared directory (:class:`~peerbox.net._kvdirectory.SharedDirectory`, closed
    after the block)."""
    if state is None:
        yield Directory(root)
        return
    from ..net import SharedDirectory

    with SharedDirectory(root, state) as directory:
        yield directory


def add_entry_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``directory add`` and ``peers add``: NAME, [DID] [URL], --replace, --root."""
    p.add_argument("name", metavar="NAME", help="the peer's name here (what a policy's who = NAME matches)")
    p.add_argument("did", metavar="DID", nargs="?", default=None,
                   help="its did:key (leave out for a peer under this root: its did is looked up)")
    p.add_argument("url", metavar="URL", nargs="?", default=None,
                   help="http://HOST:PORT or https://HOST:PORT (leave out for a peer that only calls)")
    p.add_argument("--replace", action="store_true", help="change an existing entry")
    add_root_argument(p)
    add_state_argument(p, "add the entry there instead of to peers.toml")
    p.add_argument("--ttl", metavar="SECONDS", type=_ttl, default=None,
                   help="with --state: the NATS server removes the entry SECONDS after this write "
                   "(default: an operator's entry never expires)")


def _ttl(text: str) -> int:
    """``directory add --ttl``: whole seconds, at least 1."""
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1 (seconds)")
    return value


def add_directory_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``directory add|remove|list`` to ``subparsers``; each sets ``handler`` in its defaults."""
    pd = subparsers.add_parser(
        "directory", help="where remote peers are reachable (<root>/peers.toml)",
        description="The directory maps a peer name to its did and the URL of the worker hosting it "
        "(no URL: a peer that only calls). A policy's who = NAME matches the peers it names. Edits keep "
        "the file's comments, blank lines and order.",
    )
    sub = pd.add_subparsers(dest="directory_command", metavar="SUBCOMMAND", parser_class=type(pd))
    sub.required = True
    pa = sub.add_parser("add", help="add (or with --replace change) a peer: NAME [DID] [URL]",
                        description="Record that peer NAME is identified by DID and, with URL, served "
                        "there (http://HOST:PORT for h2c, https://HOST:PORT for TLS). For a peer under "
                        "this root, DID may be left out (`directory add bob http://127.0.0.1:7700`). "
                        "Leave URL out for a peer that only calls this root's peers.")
    add_entry_arguments(pa)
    pa.set_defaults(handler=cmd_directory_add)
    pr = sub.add_parser("remove", help="remove a peer's entry: NAME",
                        description="Remove the entry NAME from peers.toml (the rest of the file stays "
                        "as written). Exit 2 if there is no such entry.")
    pr.add_argument("name", metavar="NAME")
    add_root_argument(pr)
    add_state_argument(pr, "remove the entry there instead of from peers.toml")
    pr.set_defaults(handler=cmd_directory_remove)
    pl = sub.add_parser("list", help="list the directory")
    pl.add_argument("--json", action="store_true", help="one JSON array of {name, did, url}")
    add_root_argument(pl)
    add_state_argument(pl, "list it instead of peers.toml")
    pl.set_defaults(handler=cmd_directory_list)


def split_did_url(name: str, first: str | None, second: str | None,
                  store: PeerStore) -> tuple[str, str | None]:
    """The ``(did, url)`` that ``directory add NAME FIRST [SECOND]`` means.

    ``FIRST`` is a did (then ``SECOND`` is the optional URL) or a URL (then
    the did is the local peer ``NAME``'s, looked up under ``store``'s root).
    Raises :class:`UsageError` saying what is missing when neither works.
    """
    if first is not None and first.startswith("did:"):
        return first, second
    if second is not None:
        raise UsageError(f"expected NAME DID [URL], got a second argument {first!r:.80} that is not a did")
    try:
        did = store.get(name).did
    except (PeerNotFound, RootNotFound) as exc:
        what = "NAME DID [URL]" if first is None else f"{name} DID {first:.200}"
        raise UsageError(f"{name!r} is not a peer under {store.root}, so its did cannot be looked up: "
                         f"give it (peerbox directory add {what})") from exc
    if first is None:
        raise UsageError(f"{name!r} is a local peer (known here by name already): give the URL where it "
                         f"is served (peerbox directory add {name} URL)")
    return did, first


def cmd_directory_add(args: argparse.Namespace) -> int:
    """``peerbox directory add NAME [DID] [URL]`` (also ``peers add``): record the entry, say what
    was recorded on stderr."""
    did, url = split_did_url(args.name, args.did, args.url, PeerStore(args.root))
    ttl = getattr(args, "ttl", None)
    if getattr(args, "state", None) is not None:
        with _shared(args.state) as shared:
            entry, place = shared.add(args.name, did, url, replace=args.replace, ttl=ttl), shared.where
        if ttl is not None:
            place += f", removed in {ttl} s"
    elif ttl is not None:
        raise UsageError("--ttl applies to the shared directory (--state nats://HOST:PORT): peers.toml "
                         "entries do not expire")
    else:
        directory = Directory(args.root)
        entry, place = directory.add(args.name, did, url, replace=args.replace), str(directory.path)
    where = f" at {entry.url}" if entry.url is not None else " (a caller only: no URL)"
    sys.stderr.write(f"{entry.name} = {entry.did}{where} (in {place})\n")
    return 0


def cmd_directory_remove(args: argparse.Namespace) -> int:
    """``peerbox directory remove NAME``: remove the entry (exit 2 if there is none)."""
    if args.state is not None:
        with _shared(args.state) as shared:
            gone, place = shared.remove(args.name), shared.where
    else:
        directory = Directory(args.root)
        gone, place = directory.remove(args.name), str(directory.path)
    sys.stderr.write(f"removed {gone.name} = {gone.did} (from {place})\n")
    return 0


def cmd_directory_list(args: argparse.Namespace) -> int:
    """``peerbox directory list``: one ``NAME DID URL`` line per entry, ``-`` for no URL (or JSON,
    ``url`` null)."""
    if args.state is not None:
        return _list_shared(args.state, args.json)
    entries = Directory(args.root).list()
    if args.json:
        sys.stdout.write(json.dumps([{"name": e.name, "did": e.did, "url": e.url} for e in entries],
                                    ensure_ascii=False) + "\n")
    else:
        for e in entries:
            sys.stdout.write(f"{e.name}\t{e.did}\t{e.url if e.url is not None else '-'}\n")
    sys.stdout.flush()
    return 0


def _list_shared(state: str, as_json: bool) -> int:
    """``directory list --state``: every name with its state (``static``, ``live``, ``stale``); one
    ``NAME DID URL STATE`` line each (``URL``: the live workers' URLs, comma-separated, ``-`` for
    none), or JSON with ``urls``, ``workers`` and ``ttl`` too."""
    with _shared(state) as shared:
        listed = shared.listing()
    if as_json:
        sys.stdout.write(json.dumps([{"name": x.name, "did": x.did, "url": x.url, "state": x.state,
                                      "urls": list(x.urls), "workers": x.workers, "ttl": x.ttl}
                                     for x in listed], ensure_ascii=False) + "\n")
    else:
        for x in listed:
            state_shown = x.state if x.ttl is None else f"{x.state} ({x.workers} workers, TTL {x.ttl:g} s)"
            sys.stdout.write(f"{x.name}\t{x.did}\t{','.join(x.urls) or '-'}\t{state_shown}\n")
    sys.stdout.flush()
    return 0
