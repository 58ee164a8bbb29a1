"""The ``peerbox envelope`` commands: make and inspect signed requests (a thin layer).

::

    peerbox envelope make --from NAME --to NAME|DID SCRIPT [--param k=v]... [--ttl S]
                          [--root DIR] -o OUT
    peerbox envelope inspect FILE [--json] [--root DIR]

``make`` signs a request from local peer ``--from`` to ``--to`` (a local peer
name or a ``did:key``) to run the script file ``SCRIPT`` (``-`` for stdin)
and writes the COSE bytes to ``OUT`` (``-`` for stdout). ``inspect`` decodes a
request or reply, checks its structure and signature (not its freshness,
target or nonce: those depend on who receives it, and are shown as facts),
prints the fields and exits 0; an invalid envelope prints
``invalid envelope: KIND: MESSAGE`` on stderr and exits 2. Keys are shown as
dids, with the local peer name when ``--root`` knows it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from .._errors import UsageError
from ..peer import PeerStore, sha256_hex
from ..trust import MAX_LOGIC_REQUEST, TYP_LOGIC, LogicRequest, open_logic_request
from ..wire import (TYP_REPLY, TYP_REQUEST, EnvelopeError, IdentityError, Reply, Request, decode1,
                    did_from_public_key, make_request, open_reply, open_request, public_key_from_did)
from ._args import parse_param
from ._input import MAX_SCRIPT_BYTES, read_input
from ._peers import add_root_argument

__all__ = ["add_parsers", "cmd_make", "cmd_inspect", "COMMANDS", "EXIT_INVALID"]

COMMANDS = ("envelope",)
#: ``inspect`` exits with this when the envelope is invalid.
EXIT_INVALID = 2


def add_parsers(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``envelope make`` and ``envelope inspect``; each sets ``handler`` in its defaults."""
    pe = subparsers.add_parser(
        "envelope", help="make and inspect signed request envelopes (COSE_Sign1)",
        description="Signed requests (COSE_Sign1, EdDSA) asking a peer to run a script.",
    )
    sub = pe.add_subparsers(dest="envelope_command", metavar="SUBCOMMAND", parser_class=type(pe))
    sub.required = True

    pm = sub.add_parser(
        "make", help="sign a request to run SCRIPT",
        description="Sign a request from peer --from to peer --to to run SCRIPT and write it to OUT.",
    )
    pm.add_argument("script", metavar="SCRIPT", help="the script file ('-' for stdin)")
    pm.add_argument("--from", dest="sender", metavar="NAME", required=True, help="the signing (caller) peer")
    pm.add_argument("--to", dest="to", metavar="NAME|DID", required=True,
                    help="the target peer: a local name or a did:key")
    pm.add_argument("--param", metavar="KEY=VALUE", action="append", default=[],
                    help="a script parameter (VALUE as JSON if it parses, else a string); repeatable")
    pm.add_argument("--ttl", metavar="S", type=int, default=300,
                    help="seconds the request stays valid (default 300)")
    pm.add_argument("-o", dest="output", metavar="OUT", required=True, help="output file ('-' for stdout)")
    add_root_argument(pm)
    pm.set_defaults(handler=cmd_make)

    pi = sub.add_parser(
        "inspect", help="decode an envelope, check its signature, print its fields",
        description="Decode a request or reply, check its structure and signature, print the fields. "
        "Exits 2 with the reason when it is invalid.",
    )
    pi.add_argument("file", metavar="FILE", help="the envelope ('-' for stdin)")
    pi.add_argument("--json", action="store_true", help="print the fields as one JSON object")
    add_root_argument(pi)
    pi.set_defaults(handler=cmd_inspect)


def _read_bytes(path: str, limit: int, what: str) -> bytes:
    """At most ``limit`` bytes of ``path`` (``-``: stdin); :class:`UsageError` if there are more."""
    return read_input(path, limit, what)


def _target_key(store: PeerStore, to: str) -> bytes:
    if to.startswith("did:"):
        try:
            return public_key_from_did(to)
        except IdentityError as exc:
            raise UsageError(f"--to: {exc}") from exc
    return store.get(to).public_key


def cmd_make(args: argparse.Namespace) -> int:
    """``peerbox envelope make``: sign a request and write it."""
    store = PeerStore(args.root)
    key = store.get(args.sender).signing_key()
    target = _target_key(store, args.to)
    raw = _read_bytes(args.script, MAX_SCRIPT_BYTES, "a script")
    try:
        script = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{args.script} is not UTF-8 text") from exc
    params = dict(parse_param(p) for p in args.param)
    if args.ttl <= 0:
        raise UsageError("--ttl must be a positive number of seconds")
    try:
        data = make_request(key, target=target, script=script, params=params or None,
                            now=int(time.time()), ttl=args.ttl)
    except EnvelopeError as exc:
        raise UsageError(f"cannot make the envelope: {exc}") from exc
    if args.output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        try:
            Path(args.output).write_bytes(data)
        except OSError as exc:
            raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
        sys.stderr.write(f"wrote {len(data)} bytes to {args.output}\n")
    return 0


def _names(root: str | None) -> dict[bytes, str]:
    try:
        peers, _ = PeerStore(root).scan()
    except Exception:  # a missing root only means no names to show
        return {}
    return {p.public_key: p.name for p in peers}


def _key(key: bytes, names: dict[bytes, str]) -> str:
    did = did_from_public_key(key)
    name = names.get(key)
    return f"{did} ({name})" if name else did


def _plain(value: Any) -> Any:
    """A JSON-able copy: bytes as ``{"hex": ...}``."""
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value != value:
        return None
    return value


def _time_status(iat: int, exp: int, now: int) -> str:
    if now >= exp:
        return f"expired {now - exp} s ago"
    if iat > now:
        return f"issued {iat - now} s in the future"
    return f"valid for {exp - now} s more"


def _fields(env: Request | Reply | LogicRequest, names: dict[bytes, str], now: int) -> dict[str, Any]:
    common = {"caller": _key(env.caller, names), "target": _key(env.target, names)}
    if isinstance(env, LogicRequest):
        return {
            "type": TYP_LOGIC, "signature": "valid (by caller; its statement too)", **common,
            "nonce": env.nonce.hex(), "iat": env.iat, "exp": env.exp,
            "time": _time_status(env.iat, env.exp, now), "module": env.module,
            "source_sha256": sha256_hex(env.source), "source": env.source,
            "caps": [c.hex() for c in env.caps],
        }
    if isinstance(env, Request):
        status = _time_status(env.iat, env.exp, now)
        return {
            "type": TYP_REQUEST, "signature": "valid (by caller)", **common,
            "nonce": env.nonce.hex(), "iat": env.iat, "exp": env.exp, "time": status,
            "sha256": env.digest.hex(), "script": env.script, "params": _plain(env.params),
            "caps": [c.hex() for c in env.caps], "limits": env.limits,
        }
    out: dict[str, Any] = {
        "type": TYP_REPLY, "signature": "valid (by target)", **common, "req": env.req.hex(),
        "iat": env.iat, "ok": env.ok,
    }
    if env.ok:
        out["value"] = _plain(env.value)
    else:
        out["error"] = _plain(env.error)
    out["log"] = list(env.log)
    out["usage"] = env.usage
    return out


def cmd_inspect(args: argparse.Namespace) -> int:
    """``peerbox envelope inspect``: 0 and the fields if valid, 2 and the reason if not."""
    data = _read_bytes(args.file, MAX_LOGIC_REQUEST, "an envelope")
    try:
        typ = decode1(data, max_size=MAX_LOGIC_REQUEST).payload.get("typ")
        env: Request | Reply | LogicRequest = (
            open_reply(data) if typ == TYP_REPLY else open_logic_request(data) if typ == TYP_LOGIC
            else open_request(data))
    except EnvelopeError as exc:
        if args.json:
            _out(json.dumps({"valid": False, "error": {"kind": exc.kind, "message": exc.message}}))
        sys.stderr.write(f"invalid envelope: {exc.kind}: {exc.message}\n")
        return EXIT_INVALID
    fields = _fields(env, _names(args.root), int(time.time()))
    if args.json:
        _out(json.dumps({"valid": True, **fields}, ensure_ascii=False))
        return 0
    width = max(len(k) for k in fields)
    lines = []
    for k, v in fields.items():
        if k in ("script", "source"):
            text = str(v).rstrip("\n")
            v = text if "\n" not in text else "\n" + "\n".join("    " + ln for ln in text.split("\n"))
        elif not isinstance(v, str):
            v = json.dumps(v, ensure_ascii=False)
        lines.append(f"{k + ':':<{width + 1}} {v}")
    _out("\n".join(lines))
    return 0


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
