"""Capability tokens: delegable, attenuable grants signed as COSE_Sign1.

A capability says "``iss`` lets ``aud`` do ``grants`` to the resources of
``sub`` between ``nbf`` and ``exp``". It is a COSE_Sign1 (made and decoded by
:mod:`peerbox.wire._cose`) whose payload is a CBOR map::

    v 2, typ "peerbox/cap", iss, aud, sub (32-byte Ed25519 public keys),
    grants ["fs.write:inbox/**", "module.import:notes", "exec", ...],
    nbf, exp (Unix seconds), nonce (16 bytes),
    prf (the parent token's bytes; only in a delegated token)

Version 1 tokens (made before ``fs.append`` and ``fs.mkdir`` were actions)
are still accepted; their ``fs.write`` grants are read as they were meant,
``fs.write`` + ``fs.append`` + ``fs.mkdir``
(:func:`peerbox.policy.expand_legacy`), so :attr:`Link.grants`,
:attr:`Chain.grants` and attenuation all work on one meaning. New tokens,
delegated ones included, are version 2.

A delegated token embeds its parent, so one token carries its whole chain.
:func:`verify_chain` accepts a chain only when the root is issued by ``sub``
(or by a key ``sub``'s policy lets delegate), every link is signed by its
``iss`` and each child's ``iss`` is its parent's ``aud``, every link only
narrows its parent (grants, validity window), every link names the same
``sub``, the leaf's ``aud`` is the caller, ``now`` lies in every link's window
and no link is revoked. Any failure is a :class:`CapabilityError` with a
``kind`` (see :data:`KINDS`).

Grants, their patterns and attenuation belong to :mod:`peerbox.policy`, the
engine that enforces them: a token's grants are parsed with
:func:`peerbox.policy.parse_capability_grant` (``exec`` alone, or
``ACTION:PATTERN`` with ACTION one of
:data:`peerbox.policy.CAPABILITY_ACTIONS`), and "only narrows its parent" is
:func:`peerbox.policy.grants_within`, decided exactly on the same compiled
globs that later allow or refuse each request (the root ``""``, ``?`` and a
trailing ``/**`` matching the directory itself included), within one work
budget per chain. This module only encodes, signs, verifies and chains.

Revocation is by token id (SHA-256 of the token's bytes); revoking a link
kills every token delegated from it. :class:`RevocationList` persists ids.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _cose
from .._atomic import write_atomic
from .._errors import Error
from ._identity import InvalidPublicKey, KeyPair, did_from_public_key, validate_public_key
from ..policy import (
    CAPABILITY_ACTIONS, Grant, PolicyError, WorkBudget, compile_grants, expand_legacy, grants_within,
    parse_capability_grant,
)

__all__ = ["CapabilityError", "Grant", "Link", "Chain", "RevocationList", "grant", "delegate",
           "verify_chain", "decode_chain", "token_id", "TYP", "VERSION", "ACTIONS", "KINDS", "NONCE_SIZE",
           "MAX_TOKEN_SIZE", "REVOCATION_FILE"]

TYP = "peerbox/cap"
#: The version of the tokens made here.
VERSION = 2
#: The versions accepted (1: ``fs.write`` also grants ``fs.append`` and ``fs.mkdir``).
VERSIONS = (1, 2)
#: Actions a grant may name (:data:`peerbox.policy.CAPABILITY_ACTIONS`). Only ``exec`` has no resource.
ACTIONS = CAPABILITY_ACTIONS
#: Every ``CapabilityError.kind``.
KINDS = ("bad_token", "wrong_signer", "wrong_audience", "wrong_subject", "not_issued_by_subject",
         "widened", "longer_expiry", "expired", "not_yet_valid", "revoked", "too_deep")
NONCE_SIZE = 16
#: Largest whole token (chain included) accepted, in bytes.
MAX_TOKEN_SIZE = 64 << 10
#: The revocation list's file name in a peer directory.
REVOCATION_FILE = "revoked.json"
_MAX_GRANTS = 64
_FIELDS = frozenset({"v", "typ", "iss", "aud", "sub", "grants", "nbf", "exp", "nonce", "prf"})


class CapabilityError(Error):
    """A capability token was refused (or could not be made). ``kind`` is one of :data:`KINDS`;
    ``message`` is the one reason, a sentence naming the token ("the capability expired at
    2026-03-01T12:00:00Z (now ...)", "link 1 of the capability chain widens its parent: ..."),
    and ``str()`` is the message; ``link`` is the index of the offending link (root = 0, as
    ``peerbox cap inspect`` numbers them) when one is to blame."""

    exit_code = 2

    def __init__(self, kind: str, message: str, *, link: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.link = link


def _token(link: int, links: int) -> str:
    """How a message names link ``link`` of a chain of ``links``: "the capability" when it is the
    only one, else "link N of the capability chain" (root = 0)."""
    return "the capability" if links == 1 else f"link {link} of the capability chain"


def _when(t: int) -> str:
    """Unix seconds as ISO 8601 UTC (``2026-03-01T12:00:00Z``); the number when it is out of range."""
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    except (OverflowError, OSError, ValueError):
        return str(t)


# ------------------------------------------------------------------- grants


def _grant_of(text: object, who: str = "the capability") -> Grant:
    """One grant of a token (:func:`peerbox.policy.parse_capability_grant`), or ``bad_token``;
    ``who`` names the token in the message."""
    try:
        return parse_capability_grant(text)
    except PolicyError as exc:
        raise CapabilityError("bad_token", f"{who} has a bad grant: {exc.problem}") from exc


# ---------------------------------------------------------------- the tokens


def token_id(token: bytes) -> bytes:
    """A token's id: the SHA-256 of its bytes (what revocation lists hold)."""
    return hashlib.sha256(token).digest()


@dataclass(frozen=True, slots=True)
class Link:
    """One decoded, signature-checked token of a chain (its own bytes, without re-checking).

    ``grants`` are in today's meaning (a version 1 token's ``fs.write`` expanded, see
    :func:`peerbox.policy.expand_legacy`); ``version`` is the token's ``v``."""

    token: bytes
    id: bytes
    iss: bytes
    aud: bytes
    sub: bytes
    grants: tuple[Grant, ...]
    nbf: int
    exp: int
    nonce: bytes
    parent: bytes | None
    version: int = VERSION


def _key(payload: dict[str, Any], name: str, who: str) -> bytes:
    value = payload.get(name)
    if type(value) is not bytes:
        raise CapabilityError("bad_token",
                              f"{who} is not a valid token: '{name}' must be a 32-byte public key")
    try:
        return validate_public_key(value)
    except InvalidPublicKey as exc:
        raise CapabilityError("bad_token", f"{who} is not a valid token: '{name}': {exc}") from exc


def _decode_link(token: bytes, who: str) -> Link:
    """Decode one token strictly and check its signature by its ``iss``; ``who`` names it in messages
    ("the capability", "ancestor 1 of the capability")."""
    def bad(problem: str) -> CapabilityError:
        return CapabilityError("bad_token", f"{who} is not a valid token: {problem}")

    try:
        s1 = _cose.decode1(token, max_size=MAX_TOKEN_SIZE, max_depth=4)
    except _cose.EnvelopeError as exc:
        raise bad(f"{exc.kind}: {exc.message}") from exc
    p = s1.payload  # a dict with str keys (decode1 promises it)
    if p.get("typ") != TYP:
        raise bad(f"typ is {p.get('typ')!r}, not {TYP!r}")
    if type(p.get("v")) is not int or p["v"] not in VERSIONS:
        raise bad(f"unsupported version {p.get('v')!r}")
    if extra := set(p) - _FIELDS:
        raise bad(f"unknown fields {sorted(map(str, extra))}")
    iss, aud, sub = _key(p, "iss", who), _key(p, "aud", who), _key(p, "sub", who)
    nbf, exp, nonce, prf, raw = p.get("nbf"), p.get("exp"), p.get("nonce"), p.get("prf"), p.get("grants")
    if type(nbf) is not int or type(exp) is not int or not 0 <= nbf <= exp < 1 << 63:
        raise bad("'nbf' and 'exp' must be integers, 0 <= nbf <= exp")
    if type(nonce) is not bytes or len(nonce) != NONCE_SIZE:
        raise bad(f"'nonce' must be {NONCE_SIZE} bytes")
    if prf is not None and type(prf) is not bytes:
        raise bad("'prf' must be the parent token's bytes")
    if type(raw) is not list or not 0 < len(raw) <= _MAX_GRANTS:
        raise bad(f"'grants' must be an array of 1-{_MAX_GRANTS} strings")
    grants = tuple(_grant_of(g, who) for g in raw)
    if p["v"] == 1:
        grants = expand_legacy(grants)
    if s1.kid is not None and s1.kid != iss:
        raise CapabilityError("wrong_signer", f"{who} has a bad signature: its kid header is not its issuer")
    if not s1.verify(iss):
        raise CapabilityError("wrong_signer", f"{who} has a bad signature: it is not its issuer's")
    return Link(token=bytes(token), id=token_id(token), iss=iss, aud=aud, sub=sub, grants=grants,
                nbf=nbf, exp=exp, nonce=nonce, parent=prf, version=p["v"])


def decode_chain(token: bytes, *, max_depth: int = 8) -> tuple[Link, ...]:
    """Decode a token and every ancestor embedded in it; root first.

    Checks each link's structure and signature (``bad_token``,
    ``wrong_signer``) and the depth (``too_deep`` beyond ``max_depth`` links),
    nothing else: use :func:`verify_chain` to decide whether to honour it.
    """
    if not isinstance(token, (bytes, bytearray, memoryview)):
        raise CapabilityError("bad_token", f"the capability is not a valid token: it is "
                              f"{type(token).__name__}, not bytes")
    leaf_first: list[Link] = []
    current: bytes | None = bytes(token)
    while current is not None:
        if len(leaf_first) >= max_depth:
            raise CapabilityError("too_deep",
                                  f"the capability chain is too deep: more than {max_depth} links")
        who = "the capability" if not leaf_first else f"ancestor {len(leaf_first)} of the capability"
        leaf_first.append(_decode_link(current, who))
        current = leaf_first[-1].parent
    return tuple(reversed(leaf_first))


# ------------------------------------------------------------------ issuing


def _parse_grants(grants: Iterable[str]) -> tuple[Grant, ...]:
    if isinstance(grants, str):
        raise CapabilityError("bad_token", "the grants must be a list of strings, not one string")
    parsed = tuple(_grant_of(g) for g in grants)
    if not 0 < len(parsed) <= _MAX_GRANTS:
        raise CapabilityError("bad_token", f"a capability holds 1-{_MAX_GRANTS} grants")
    return parsed


def _sign(key: KeyPair, *, aud: bytes, sub: bytes, grants: tuple[Grant, ...], nbf: int, exp: int,
          prf: bytes | None) -> bytes:
    _key({"audience": aud, "subject": sub}, "audience", "the new capability")
    _key({"audience": aud, "subject": sub}, "subject", "the new capability")
    payload: dict[str, Any] = {
        "v": VERSION, "typ": TYP, "iss": key.public_key, "aud": bytes(aud), "sub": bytes(sub),
        "grants": [str(g) for g in grants], "nbf": nbf, "exp": exp, "nonce": secrets.token_bytes(NONCE_SIZE),
    }
    if prf is not None:
        payload["prf"] = prf
    token = _cose.sign1(payload, key)
    if len(token) > MAX_TOKEN_SIZE:
        raise CapabilityError("too_deep", "the capability chain is too deep: the token would be "
                              f"{len(token)} bytes (at most {MAX_TOKEN_SIZE})")
    return token


def grant(issuer: KeyPair, *, audience: bytes, subject: bytes, grants: list[str], now: int,
          ttl: int) -> bytes:
    """A root capability: ``issuer`` lets ``audience`` do ``grants`` on ``subject``'s resources
    from ``now`` for ``ttl`` seconds. Raises :class:`CapabilityError` (``bad_token``) for a bad
    grant, key or ttl. The token verifies only if ``issuer`` is ``subject`` or may delegate."""
    if type(now) is not int or type(ttl) is not int or ttl <= 0 or now < 0:
        raise CapabilityError("bad_token", "now must be an int >= 0 and ttl an int > 0")
    return _sign(issuer, aud=audience, sub=subject, grants=_parse_grants(grants), nbf=now,
                 exp=now + ttl, prf=None)


def delegate(parent: bytes, holder: KeyPair, *, audience: bytes, grants: list[str], now: int,
             ttl: int | None = None) -> bytes:
    """Delegate ``parent`` (held by ``holder``, its audience) to ``audience``, narrowed to ``grants``.

    The new token expires at ``now + ttl``, or with its parent when ``ttl`` is
    ``None``. Refuses locally (:class:`CapabilityError`) what would never
    verify: a parent that is not well formed or not addressed to ``holder``
    (``wrong_audience``), grants it does not cover (``widened``), a ttl past
    its expiry (``longer_expiry``), an expired parent or one too deep.
    """
    if type(now) is not int or (ttl is not None and (type(ttl) is not int or ttl <= 0)):
        raise CapabilityError("bad_token", "now must be an int and ttl an int > 0 or None")
    links = decode_chain(parent, max_depth=64)
    top = links[-1]
    if top.aud != holder.public_key:
        raise CapabilityError("wrong_audience", f"the parent is addressed to {did_from_public_key(top.aud)}, "
                              f"not to {holder.did}")
    if now > top.exp:
        raise CapabilityError("expired", f"the parent capability expired at {_when(top.exp)}")
    parsed = _parse_grants(grants)
    wider = grants_within(parsed, top.grants)
    if wider is not None:
        raise CapabilityError("widened", f"it would widen its parent: {wider} is not within the parent's "
                              f"grants {[str(g) for g in top.grants]}")
    exp = top.exp if ttl is None else now + ttl
    if exp > top.exp:
        raise CapabilityError("longer_expiry", f"it would expire at {_when(exp)}, after its parent "
                              f"({_when(top.exp)})")
    return _sign(holder, aud=audience, sub=top.sub, grants=parsed, nbf=max(now, top.nbf), exp=exp,
                 prf=bytes(parent))


# ---------------------------------------------------------------- verifying


@dataclass(frozen=True, slots=True)
class Chain:
    """A verified chain: ``links`` root first; ``grants`` what the leaf grants (as strings);
    ``subject`` whose resources, ``caller`` who may use them, until ``exp``."""

    links: tuple[Link, ...]
    subject: bytes
    caller: bytes
    grants: tuple[str, ...]
    exp: int

    def allows(self, action: str, resource: str | None = None) -> bool:
        """Whether a leaf grant names ``action`` on ``resource`` (``None`` for ``exec``), matched
        exactly as the policy enforces grants (:class:`peerbox.policy.GrantSet`).

        Only what the capability says: the target's deny rules still apply.
        """
        return compile_grants(self.links[-1].grants).match(action, resource) is not None


def verify_chain(token: bytes, *, caller: bytes, subject: bytes, now: int,
                 revoked: Callable[[bytes], bool] | RevocationList,
                 may_delegate: Callable[[bytes], bool] = lambda iss: False,
                 max_depth: int = 8) -> Chain:
    """Verify a capability chain presented by ``caller`` for ``subject``'s resources at ``now``.

    ``revoked(token_id)`` says whether an id is revoked; ``may_delegate(iss)`` whether ``subject``'s
    policy lets ``iss`` issue roots. Raises :class:`CapabilityError` for the first broken rule, in
    this order: structure and signatures (``bad_token``, ``wrong_signer``, ``too_deep``), then per
    link from the root ``wrong_subject``, ``not_issued_by_subject``, ``wrong_signer`` (iss is not
    the parent's aud), ``widened``, ``longer_expiry`` (ends after, or starts before, the parent),
    ``not_yet_valid``, ``expired``, ``revoked``; last ``wrong_audience`` (leaf aud is not caller).
    """
    links, budget = decode_chain(token, max_depth=max_depth), WorkBudget()  # one budget for the chain
    n = len(links)
    for i, link in enumerate(links):
        who = _token(i, n)
        if link.sub != subject:
            raise CapabilityError("wrong_subject", f"{who} covers the resources of another peer "
                                  f"({did_from_public_key(link.sub)})", link=i)
        if i == 0:
            if link.iss != subject and not may_delegate(link.iss):
                raise CapabilityError("not_issued_by_subject", f"{who} has an unknown issuer: "
                                      f"{did_from_public_key(link.iss)} may not issue capabilities for the "
                                      "target", link=i)
        else:
            up = links[i - 1]
            if link.iss != up.aud:
                raise CapabilityError("wrong_signer", f"{who} is signed by {did_from_public_key(link.iss)}, "
                                      f"but its parent was given to {did_from_public_key(up.aud)}", link=i)
            wider = grants_within(link.grants, up.grants, budget=budget)
            if wider is not None:
                raise CapabilityError("widened", f"{who} widens its parent: {wider} is not within the "
                                      f"parent's grants {[str(g) for g in up.grants]}", link=i)
            if link.exp > up.exp or link.nbf < up.nbf:
                raise CapabilityError("longer_expiry", f"{who} outlives its parent: valid "
                                      f"{_when(link.nbf)} to {_when(link.exp)}, the parent {_when(up.nbf)} "
                                      f"to {_when(up.exp)}", link=i)
        if now < link.nbf:
            raise CapabilityError("not_yet_valid", f"{who} is not valid yet: from {_when(link.nbf)} "
                                  f"(now {_when(now)})", link=i)
        if now > link.exp:
            raise CapabilityError("expired", f"{who} expired at {_when(link.exp)} (now {_when(now)})", link=i)
        if revoked(link.id):
            raise CapabilityError("revoked", f"{who} is revoked (token id {link.id.hex()})", link=i)
    if links[-1].aud != caller:
        raise CapabilityError("wrong_audience", f"{_token(n - 1, n)} is addressed to "
                              f"{did_from_public_key(links[-1].aud)}, not to the caller "
                              f"{did_from_public_key(caller)}", link=n - 1)
    return Chain(links=links, subject=subject, caller=caller,
                 grants=tuple(str(g) for g in links[-1].grants), exp=links[-1].exp)


# --------------------------------------------------------------- revocation


class RevocationList:
    """A persisted set of revoked token ids: ``{"version": 1, "revoked": [hex, ...]}`` in ``path``.

    Writes are atomic (temporary file, fsync, rename) and serialised by an
    ``flock`` on ``path.lock``, so several processes may revoke at once;
    reads pick up another process's revocations (the file is re-read when
    its mtime or size changes). Usually ``<root>/peers/NAME/revoked.json``.
    A file that does not parse is an error, never "nothing is revoked".
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._ids: frozenset[bytes] = frozenset()
        self._stamp: tuple[int, int, int] | None = None

    def _load(self) -> frozenset[bytes]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._ids, self._stamp = frozenset(), None
            return self._ids
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return self._ids
        try:
            data = json.loads(self.path.read_bytes())
            ids = frozenset(bytes.fromhex(h) for h in data["revoked"])
            if data.get("version") != 1 or any(len(i) != 32 for i in ids):
                raise ValueError("unexpected content")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # no host path: this reaches remote callers (the list is named within the peer root)
            shown = f"{self.path.parent.name}/{self.path.name}"
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise CapabilityError("bad_token", f"the revocation list {shown} is unreadable: {why}") from exc
        self._ids, self._stamp = ids, stamp
        return ids

    def is_revoked(self, token_id: bytes) -> bool:
        """Whether the token with this id (:func:`token_id`) is revoked. Also callable as ``rl(id)``."""
        return bytes(token_id) in self._load()

    __call__ = is_revoked

    def revoke(self, token: bytes) -> bytes:
        """Revoke a token (by its bytes); returns its id. Idempotent."""
        return self.revoke_id(token_id(token))

    def revoke_id(self, tid: bytes) -> bytes:
        """Revoke a token by its 32-byte id; returns it."""
        if len(tid) != 32:
            raise CapabilityError("bad_token", "a token id is 32 bytes")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = os.open(str(self.path) + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._stamp = None
            ids = self._load() | {bytes(tid)}
            text = json.dumps({"version": 1, "revoked": sorted(i.hex() for i in ids)}, indent=1)
            write_atomic(self.path, (text + "\n").encode("utf-8"))
            self._ids, self._stamp = ids, None
        finally:
            os.close(lock)  # releases the flock
        return bytes(tid)
