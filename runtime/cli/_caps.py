"""The ``peerbox cap`` commands: make, delegate, inspect and revoke capability tokens.

::

    peerbox cap grant --from bob --to alice --allow 'fs.write:inbox/**' [--allow ...]
                      --expires 1h [--root DIR] -o cap.cose
    peerbox cap delegate cap.cose --from alice --to carol --allow 'fs.write:inbox/carol/**'
                      [--expires 30m] [--root DIR] -o sub.cose
    peerbox cap inspect FILE [--json] [--root DIR]
    peerbox cap revoke FILE --as NAME [--notify PEER]... [--timeout S] [--root DIR]

``--from``/``--as`` name local peers (their keys sign); ``--to`` is a local
peer name or a ``did:key``. Durations are ``30s``, ``10m``, ``1h``, ``7d``,
combinations such as ``1h30m``, or plain seconds. :func:`add_parsers` adds
``cap`` to the CLI's subparsers; each subcommand sets ``handler``
(``args.handler(args) -> int``). Failures raise :class:`~peerbox.Error`
subclasses (:class:`~peerbox.wire._caps.CapabilityError`, exit 2) for the CLI's
error boundary to render.

``revoke --notify bob`` also sends bob's worker a signed ``peerbox/revoke``
request, so that the worker refuses the token from its next request on (a
worker knows only the revocations it is sent or that are recorded under its
own root). ``inspect`` counts the revocations recorded under the root
(``--root``, else ``$PEERBOX_ROOT``, else ``./peerbox-data``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import datetime, UTC
from typing import Any

from ..wire import (
    REVOCATION_FILE, CapabilityError, Link, RevocationList, decode_chain, delegate, grant, verify_chain,
)
from ._peers import add_root_argument
from .._atomic import write_atomic
from .._errors import UsageError
from ..wire import did_from_public_key, public_key_from_did
from ..peer import Directory, PeerError, PeerStore, RootNotFound
from ..trust import exit_code, outcome_of
from ..wire import Reply
from .. import net

__all__ = ["add_parsers", "parse_duration", "cmd_grant", "cmd_delegate", "cmd_inspect", "cmd_revoke",
           "COMMANDS"]

#: The subcommand this module adds.
COMMANDS = ("cap",)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(?:\d{1,9}[smhd])+|\d{1,9}")
_MAX_TOKEN_FILE = 1 << 20


def parse_duration(text: str) -> int:
    """Seconds in ``30s``, ``10m``, ``1h``, ``7d``, ``1h30m`` or ``90``; must be > 0.

    Raises ``argparse.ArgumentTypeError`` (argparse turns it into a usage error).
    """
    if not _DURATION.fullmatch(text):
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (use e.g. 30s, 10m, 1h, 7d)")
    seconds = int(text) if text.isdigit() else sum(
        int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)([smhd])", text))
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"duration {text!r} must be more than zero")
    return seconds


def add_parsers(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``cap`` (with ``grant``, ``delegate``, ``inspect``, ``revoke``) to ``subparsers``."""
    pc = subparsers.add_parser(
        "cap", help="capability tokens: grant, delegate, inspect, revoke",
        description="Signed, delegable capabilities: a peer lets another act on its resources; "
        "the holder may pass on a narrower part of it.",
    )
    sub = pc.add_subparsers(dest="cap_command", required=True, metavar="COMMAND")

    pg = sub.add_parser("grant", help="issue a capability on your own resources",
                        description="Issue a root capability: --from (the subject, who signs) lets "
                        "--to do the --allow grants on its resources until --expires from now.")
    pg.add_argument("--from", dest="issuer", required=True, metavar="NAME", help="the issuing local peer")
    _common(pg, expires_required=True)
    pg.set_defaults(handler=cmd_grant)

    pd = sub.add_parser("delegate", help="pass on a narrower part of a capability you hold",
                        description="Delegate a capability held by --from to --to; the grants and "
                        "expiry must lie within the parent's (the default expiry is the parent's).")
    pd.add_argument("parent", metavar="FILE", help="the capability held by --from")
    pd.add_argument("--from", dest="issuer", required=True, metavar="NAME", help="the holder (a local peer)")
    _common(pd, expires_required=False)
    pd.set_defaults(handler=cmd_delegate)

    pi = sub.add_parser("inspect", help="decode a capability chain and check it",
                        description="Print each link of the chain (issuer, audience, subject, grants, "
                        "validity), check the signatures and the chain rules, and say whether it is "
                        "valid now, counting the revocations recorded by the peers under the root "
                        "(--root, else $PEERBOX_ROOT, else ./peerbox-data; a --root that does not exist "
                        "is an error). Exits 0 when the chain is valid now, 2 when it is not (or is not "
                        "a token).")
    pi.add_argument("file", metavar="FILE")
    pi.add_argument("--json", action="store_true", help="print one JSON object")
    add_root_argument(pi)
    pi.set_defaults(handler=cmd_inspect)

    pr = sub.add_parser("revoke", help="revoke a capability (and everything delegated from it)",
                        description="Record the token's id in NAME's revocation list "
                        f"(<root>/peers/NAME/{REVOCATION_FILE}). NAME must be an issuer in the "
                        "token's chain, or its subject. With --notify PEER, also send PEER's worker a "
                        "revocation signed by NAME (it refuses the token from its next request on). "
                        "Exits 0 when every worker recorded it, 2 when a worker says it is not a token "
                        "about it, 6 when a worker denied it, 7 when one gave no verified reply.")
    pr.add_argument("file", metavar="FILE")
    pr.add_argument("--as", dest="revoker", required=True, metavar="NAME", help="the revoking local peer")
    pr.add_argument("--notify", action="append", default=[], metavar="PEER",
                    help="a remote peer (in <root>/peers.toml) whose worker should learn of it; repeatable")
    pr.add_argument("--timeout", type=float, default=30.0, metavar="S",
                    help="with --notify: seconds for each notification (default 30)")
    add_root_argument(pr)
    pr.set_defaults(handler=cmd_revoke)


def _common(p: argparse.ArgumentParser, *, expires_required: bool) -> None:
    p.add_argument("--to", dest="audience", required=True, metavar="PEER",
                   help="who receives it: a local peer name or a did:key")
    p.add_argument("--allow", action="append", required=True, metavar="GRANT",
                   help="a grant: exec, or ACTION:PATTERN such as fs.write:inbox/** (repeatable)")
    p.add_argument("--expires", type=parse_duration, required=expires_required, metavar="DURATION",
                   help="validity from now: 30s, 10m, 1h, 7d")
    p.add_argument("-o", dest="output", required=True, metavar="OUT", help="where to write the token")
    add_root_argument(p)


def _public_key(store: PeerStore, who: str) -> bytes:
    return public_key_from_did(who) if who.startswith("did:") else store.get(who).public_key


def _read_token(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_TOKEN_FILE + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > _MAX_TOKEN_FILE:
        raise CapabilityError("bad_token", f"{path} is larger than {_MAX_TOKEN_FILE} bytes")
    return data


def _write_token(path: str, token: bytes) -> None:
    try:
        write_atomic(path, token)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from exc


def cmd_grant(args: argparse.Namespace) -> int:
    """``peerbox cap grant``: a root token signed by ``--from`` on its own resources."""
    store = PeerStore(args.root)
    issuer = store.get(args.issuer)
    token = grant(issuer.signing_key(), audience=_public_key(store, args.audience),
                  subject=issuer.public_key, grants=args.allow, now=int(time.time()), ttl=args.expires)
    _write_token(args.output, token)
    _err(f"wrote {args.output}: {args.issuer} grants {', '.join(args.allow)} to {args.audience}")
    return 0


def cmd_delegate(args: argparse.Namespace) -> int:
    """``peerbox cap delegate``: a narrower child of a token held by ``--from``."""
    store = PeerStore(args.root)
    token = delegate(_read_token(args.parent), store.get(args.issuer).signing_key(),
                     audience=_public_key(store, args.audience), grants=args.allow, now=int(time.time()),
                     ttl=args.expires)
    _write_token(args.output, token)
    _err(f"wrote {args.output}: {args.issuer} delegates {', '.join(args.allow)} to {args.audience}")
    return 0


def _local_revocations(root: str | None) -> list[RevocationList]:
    """The revocation lists of every local peer under the root (``root``, else ``$PEERBOX_ROOT``,
    else the default).

    Raises :class:`RootNotFound` when ``root`` was given and is not a directory; a default root
    that does not exist gives no lists, with a note on stderr.
    """
    store = PeerStore(root)
    if not store.root.is_dir():
        if root is not None:
            raise RootNotFound(f"the peer root {store.root} is not a directory")
        _err(f"note: no peer root at {store.root}: revocations not checked")
        return []
    if not store.peers_dir.is_dir():
        return []
    return [RevocationList(p.paths.dir / REVOCATION_FILE) for p in store.list()]


def cmd_inspect(args: argparse.Namespace) -> int:
    """``peerbox cap inspect``: print the chain; exit 0 if it is valid now, 2 if not (1 is kept for bugs)."""
    token = _read_token(args.file)
    links = decode_chain(token, max_depth=64)  # structure and signatures; raises if broken
    lists = _local_revocations(args.root)
    now = int(time.time())
    reason: CapabilityError | None = None
    try:
        verify_chain(token, caller=links[-1].aud, subject=links[0].sub, now=now,
                     revoked=lambda tid: any(r.is_revoked(tid) for r in lists),
                     may_delegate=lambda iss: True, max_depth=64)
    except CapabilityError as exc:
        reason = exc
    root_by_sub = links[0].iss == links[0].sub
    if args.json:
        out: dict[str, Any] = {
            "links": [_describe(link) for link in links], "valid": reason is None,
            "root_issued_by_subject": root_by_sub,
            "reason": None if reason is None else {"kind": reason.kind, "message": str(reason)},
        }
        _out(json.dumps(out, ensure_ascii=False))
    else:
        lines = []
        for i, link in enumerate(links):
            d = _describe(link)
            lines += [f"link {i}{' (root)' if i == 0 else ''}{' (leaf)' if i == len(links) - 1 else ''}",
                      f"  id:     {d['id']}", f"  iss:    {d['iss']}", f"  aud:    {d['aud']}",
                      f"  sub:    {d['sub']}", f"  grants: {', '.join(d['grants'])}",
                      f"  valid:  {_when(link.nbf)} .. {_when(link.exp)}"]
            if link.version == 1:
                lines.append("  v1 token: fs.write also grants fs.append, fs.mkdir")
        if not root_by_sub:
            lines.append("note: the root is not issued by the subject; it needs the subject's policy "
                         "to let its issuer delegate")
        lines.append("valid now" if reason is None else f"NOT valid now: {reason}")
        _out("\n".join(lines))
    return 0 if reason is None else 2


def cmd_revoke(args: argparse.Namespace) -> int:
    """``peerbox cap revoke``: record the token's id in ``--as``'s revocation list."""
    store = PeerStore(args.root)
    peer = store.get(args.revoker)
    token = _read_token(args.file)
    links = decode_chain(token, max_depth=64)
    if not any(peer.public_key in (link.iss, link.sub) for link in links):
        raise CapabilityError("wrong_signer", f"{args.revoker} issued no link of this chain and is not "
                              "its subject, so it cannot revoke it")
    try:
        tid = RevocationList(peer.paths.dir / REVOCATION_FILE).revoke(token)
    except OSError as exc:
        raise PeerError(f"cannot write the revocation list of {args.revoker}: {exc.strerror or exc}",
                        peer=args.revoker) from exc
    _err(f"revoked {tid.hex()} (recorded in {peer.paths.dir / REVOCATION_FILE})")
    if not args.notify:
        return 0
    if not args.timeout > 0:
        raise UsageError("--timeout must be a positive number of seconds")
    return _notify(store, peer.signing_key(), token, args.notify, args.timeout)


def _notify(store: PeerStore, key: Any, token: bytes, targets: list[str], timeout: float) -> int:
    """Send ``token``'s revocation, signed with ``key``, to each of ``targets`` (names or dids in
    the directory); print one line per target; return the worst exit code (0 all recorded, 2 not
    a token about that target, 6 denied, 7 no verified reply)."""
    import trio  # here, not at the top: only commands that call a worker load trio and h2

    directory = Directory(store.root)
    entries = [directory.resolve(t) for t in targets]  # an unknown target is a usage error, before any send
    codes: list[int] = []

    async def send_all() -> None:
        async with net.AsyncClient(key, directory) as client:
            for entry in entries:
                try:
                    reply = await client.revoke(entry, token, timeout=timeout)
                except net.ClientError as err:
                    _err(f"{entry.name}: error: {err}")
                    codes.append(err.exit_code)
                    continue
                codes.append(_notified(entry.name, reply))

    trio.run(send_all)
    return max(codes, default=0)


def _notified(target: str, reply: Reply) -> int:
    """Report one target's verified reply to a revocation; its exit code."""
    if reply.ok:
        value = reply.value if isinstance(reply.value, dict) else {}
        already = " (already)" if value.get("already") else ""
        _out(f"{target}: revoked {value.get('revoked', '?')}{already}")
        return 0
    error = dict(reply.error or {})
    kind, message = str(error.get("kind", "error")), str(error.get("message", ""))
    code = exit_code(outcome_of(False, kind), kind, via="revoke")
    _err(f"{target}: {message}" if code == 6 else f"{target}: refused: {kind}: {message}")
    return code


def _describe(link: Link) -> dict[str, Any]:
    """A link as JSON-ready data (dids, grant strings, id in hex)."""
    return {"id": link.id.hex(), "iss": did_from_public_key(link.iss), "aud": did_from_public_key(link.aud),
            "sub": did_from_public_key(link.sub), "grants": [str(g) for g in link.grants],
            "nbf": link.nbf, "exp": link.exp}


def _when(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
