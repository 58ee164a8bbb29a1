"""Signed requests between peers (sans-IO), and the field checks every envelope type shares.

A *request* asks a target peer to run a script. It is a COSE_Sign1
(:mod:`peerbox.wire._cose`) signed by the caller whose payload is::

    {"v": 1, "typ": "peerbox/exec",
     "caller": bstr(32), "target": bstr(32),      ; Ed25519 public keys
     "nonce": bstr(16..32), "iat": int, "exp": int, ; Unix seconds
     "script": tstr,
     ? "params": {* tstr => any},
     ? "caps": [* bstr],                           ; capability tokens (COSE_Sign1)
     ? "limits": {? "fuel": uint, ? "timeout": number, ? "memory": uint}}

A *reply* (:mod:`peerbox.wire._reply`) answers it, signed by the target.

:func:`verify_request` checks, in this order, each failure with its own
:class:`~peerbox.wire._cose.EnvelopeError` kind: size (``too_large``), the outer
COSE structure and the strict payload decoding (``malformed``,
``not_canonical``, ``bad_tag``, ``too_deep``, ``bad_signature`` for a
signature of the wrong size), ``typ`` (``wrong_type``: a reply or a capability
is never a request), ``v`` (``bad_version``), every field and its type
(``bad_field``; ``type(x) is int``, so a bool is not an int; unknown fields
are refused), the caller key (``bad_key``: all-zero or small order) and
``kid`` equal to it (``bad_key``), the signature by ``caller`` over the bytes
as received (``bad_signature``), ``target`` (``wrong_target``), time
(``expired``, ``not_yet_valid``, ``window_too_long``) and last the nonce
(``replay``), so that only a request that passed everything else uses up its
nonce. Nothing here runs a script or touches the network.

Nothing expensive happens before the signature: :func:`open_request` (and so
:func:`verify_request`) first calls :func:`preauthenticate`, which checks the
size, the outer COSE structure and the signature over the raw bytes in a
bounded number of steps (:func:`~peerbox.wire._cose.scan1`; the signer is ``kid``,
else the payload's ``caller`` found by a bounded skip-scan), and only then
decodes the payload strictly. An envelope that is malformed *and* badly signed
is therefore reported as ``bad_signature`` (or the outer-structure kind), not
by its payload's fault: nobody learns how we parse what they could not sign.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass, field, replace
from typing import Any
from collections.abc import Iterable, Mapping

from ._cose import EnvelopeError, Sign1, decode1, find_bstr_field, scan1, sign1
from ._identity import PUBLIC_KEY_SIZE, InvalidPublicKey, KeyPair, validate_public_key
from ._nonces import ReplayGuard
from ._slice import field_bytes

__all__ = [
    "Request",
    "make_request",
    "verify_request",
    "open_request",
    "preauthenticate",
    "request_target",
    "request_digest",
    "check_delivery",
    "int_field",
    "parse_limits",
    "VERSION",
    "TYP_REQUEST",
    "NONCE_MIN",
    "NONCE_MAX",
    "MAX_CAPS",
    "MAX_EXEC_REQUEST",
    "LIMIT_KEYS",
]

VERSION = 1
TYP_REQUEST = "peerbox/exec"
NONCE_MIN = 16
NONCE_MAX = 32
#: At most this many capability tokens in one request.
MAX_CAPS = 16
#: The largest exec request (script, params, capabilities and all): 8 MiB, the worker's HTTP body
#: limit, so a 5 MiB param and a 1 MiB script fit (issue 17: params of 2-5 MiB must pass).
MAX_EXEC_REQUEST = 8 << 20
LIMIT_KEYS = ("fuel", "timeout", "memory")
_MAX_TIME = 2**63 - 1
_REQUEST_FIELDS = frozenset(
    {"v", "typ", "caller", "target", "nonce", "iat", "exp", "script", "params", "caps", "limits"}
)


def request_digest(request_bytes: bytes) -> bytes:
    """SHA-256 of a request's bytes: what a reply's ``req`` names."""
    return hashlib.sha256(bytes(request_bytes)).digest()


@dataclass(frozen=True)
class Request:
    """A verified request. ``data`` is the envelope exactly as received."""

    caller: bytes
    target: bytes
    nonce: bytes
    iat: int
    exp: int
    script: str
    params: dict[str, Any] = field(default_factory=dict)
    caps: tuple[bytes, ...] = ()
    limits: dict[str, int | float] = field(default_factory=dict)
    data: bytes = field(default=b"", repr=False)
    #: ``params`` as their bytes in the signed payload (:func:`open_request`; ``None``: no params,
    #: or not opened from bytes): what the worker hands the script, see ``peerbox.run.CborParams``.
    params_cbor: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def digest(self) -> bytes:
        """SHA-256 of :attr:`data` (the ``req`` of the reply)."""
        return request_digest(self.data)


# ------------------------------------------------------------------ field checks


def bad_field(message: str) -> EnvelopeError:
    """The :class:`EnvelopeError` (kind ``bad_field``) of a payload field that is missing or wrong."""
    return EnvelopeError("bad_field", message)


def require_field(payload: Mapping[str, Any], name: str) -> Any:
    """``payload[name]``; raises :class:`EnvelopeError` (``bad_field``) when it is missing."""
    if name not in payload:
        raise bad_field(f"missing field {name!r}")
    return payload[name]


def int_field(value: object, name: str, lo: int = 0, hi: int = _MAX_TIME) -> int:
    """``value`` as the integer field ``name`` in ``[lo, hi]`` (a bool is not one); raises ``bad_field``."""
    if type(value) is not int:
        raise bad_field(f"{name!r} must be an integer, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise bad_field(f"{name!r} out of range ({lo}..{hi})")
    return value


def check_public_key(value: object, name: str) -> bytes:
    """``value`` as the public key in field ``name``; raises :class:`EnvelopeError` (``bad_field``
    for anything but 32 bytes, ``bad_key`` for bytes that are not a valid Ed25519 point)."""
    if type(value) is not bytes or len(value) != PUBLIC_KEY_SIZE:
        raise bad_field(f"{name!r} must be a {PUBLIC_KEY_SIZE}-byte public key")
    try:
        return validate_public_key(value)
    except InvalidPublicKey as exc:
        raise EnvelopeError("bad_key", f"{name}: {exc}") from exc


def check_typ_version(payload: Mapping[str, Any], typ: str, allowed: frozenset[str]) -> None:
    """A payload of type ``typ``, version :data:`VERSION`, with no field outside ``allowed``; raises
    :class:`EnvelopeError` (``wrong_type``, ``bad_version``, ``bad_field``)."""
    got = payload.get("typ")
    if got != typ:
        raise EnvelopeError("wrong_type", f"expected typ {typ!r}, got {got!r:.60}")
    if payload.get("v") != VERSION or type(payload.get("v")) is not int:
        raise EnvelopeError("bad_version", f"unknown version {payload.get('v')!r:.40} (expected {VERSION})")
    unknown = set(payload) - allowed
    if unknown:
        raise bad_field(f"unknown fields {sorted(unknown)!r:.200}")


def parse_limits(value: object) -> dict[str, int | float]:
    """A request's ``limits`` map checked: only ``fuel``/``memory`` (non-negative ints) and ``timeout``
    (a positive finite number of seconds). Raises :class:`EnvelopeError` (``bad_field``) otherwise."""
    if not isinstance(value, dict):
        raise bad_field("'limits' must be a map")
    out: dict[str, int | float] = {}
    for k, v in value.items():
        if k not in LIMIT_KEYS:
            raise bad_field(f"unknown limit {k!r:.40} (expected one of {', '.join(LIMIT_KEYS)})")
        if k == "timeout":
            if type(v) not in (int, float) or not math.isfinite(v) or v <= 0:
                raise bad_field("limits.timeout must be a positive number of seconds")
            out[k] = v
        else:
            out[k] = int_field(v, f"limits.{k}")
    return out


_limits = parse_limits  # the name this module used before exec and call shared it


def parse_addressing(payload: Mapping[str, Any]) -> tuple[bytes, bytes, bytes, int, int, tuple[bytes, ...]]:
    """The fields every request type shares: caller, target, nonce, iat, exp and caps, checked.

    Raises :class:`EnvelopeError` (``bad_field``) for a missing or malformed one.
    """
    caller = require_field(payload, "caller")
    target = require_field(payload, "target")
    for name, val in (("caller", caller), ("target", target)):
        if type(val) is not bytes or len(val) != PUBLIC_KEY_SIZE:
            raise bad_field(f"{name!r} must be a {PUBLIC_KEY_SIZE}-byte public key")
    nonce = require_field(payload, "nonce")
    if type(nonce) is not bytes or not NONCE_MIN <= len(nonce) <= NONCE_MAX:
        raise bad_field(f"'nonce' must be {NONCE_MIN} to {NONCE_MAX} bytes")
    iat = int_field(require_field(payload, "iat"), "iat")
    exp = int_field(require_field(payload, "exp"), "exp")
    if exp <= iat:
        raise bad_field("'exp' must be after 'iat'")
    caps = payload.get("caps", [])
    if not isinstance(caps, list) or not all(type(c) is bytes for c in caps):
        raise bad_field("'caps' must be an array of byte strings (capability tokens)")
    if len(caps) > MAX_CAPS:
        raise bad_field(f"at most {MAX_CAPS} capability tokens")
    return caller, target, nonce, iat, exp, tuple(caps)


def _parse_request(payload: dict[str, Any]) -> Request:
    check_typ_version(payload, TYP_REQUEST, _REQUEST_FIELDS)
    caller, target, nonce, iat, exp, caps = parse_addressing(payload)
    script = require_field(payload, "script")
    if type(script) is not str:
        raise bad_field("'script' must be text")
    params = payload.get("params", {})
    if not isinstance(params, dict) or not all(type(k) is str for k in params):
        raise bad_field("'params' must be a map with text keys")
    limits = _limits(payload.get("limits", {}))
    return Request(caller=caller, target=target, nonce=nonce, iat=iat, exp=exp, script=script,
                   params=params, caps=caps, limits=limits)


def check_delivery(*, caller: bytes, target: bytes, nonce: bytes, iat: int, exp: int, expected_target: bytes,
                   now: int, nonces: ReplayGuard | None, max_skew: int = 60, max_window: int = 3600) -> None:
    """The context half of verifying any request: ``wrong_target``, ``expired``,
    ``not_yet_valid``, ``window_too_long``, then (last, so only a request that
    passed everything else uses up its nonce) ``replay``. Raises :class:`EnvelopeError`."""
    if target != expected_target:
        raise EnvelopeError("wrong_target", "the request is addressed to another peer")
    if now >= exp:
        raise EnvelopeError("expired", f"expired {now - exp} s ago")
    if iat > now + max_skew:
        raise EnvelopeError("not_yet_valid", f"issued {iat - now} s in the future (skew {max_skew} s)")
    if exp - iat > max_window:
        raise EnvelopeError("window_too_long", f"valid {exp - iat} s, at most {max_window}")
    if nonces is not None and nonces.seen_or_add(caller, nonce, exp, now):
        raise EnvelopeError("replay", "this nonce was already used by this caller")


def check_signer(msg: Sign1, signer: bytes, role: str, *, verified: bytes | None = None) -> None:
    """``signer`` (the ``role`` field) must have signed ``msg``; ``verified`` is a key
    :func:`preauthenticate` already checked the signature of over these very bytes."""
    signer = check_public_key(signer, role)
    if msg.kid is not None and msg.kid != signer:
        raise EnvelopeError("bad_key", f"kid in the header is not the {role} key")
    if signer != verified and not msg.verify(signer):
        raise EnvelopeError("bad_signature", f"signature is not the {role}'s over these bytes")


#: A request's payload has at most this many data items before its ``caller`` value
#: (``v``, ``exp``, ``iat``, ``typ``, ``op``, ``caps`` with 16 tokens, ``nonce``: 30).
_MAX_ITEMS_BEFORE_SIGNER = 64


def preauthenticate(data: bytes, *, max_size: int = 1 << 20, signer_field: str = "caller") -> bytes:
    """Check the signature of a request before decoding it; return the key that signed it.

    In a bounded number of Python steps whatever the input (the Ed25519
    verification itself is C: SHA-512 over the payload, PyNaCl releases the
    GIL): the size, the outer COSE_Sign1 structure by
    :func:`~peerbox.wire._cose.scan1`, the signer key (``kid`` if present, else
    the payload's ``signer_field``, found by
    :func:`~peerbox.wire._cose.find_bstr_field` within
    ``_MAX_ITEMS_BEFORE_SIGNER`` data items, a bound no valid request
    reaches), then the signature over the Sig_structure made of the raw
    slices. Serves exec and logic requests alike (their payloads both name
    the signer ``caller``). The strict decoding and every field check come
    after it (:func:`open_request`): a key this accepts is only the key that
    signed these bytes, not yet a valid request.

    Raises :class:`EnvelopeError`: the kinds of ``scan1``, ``bad_field`` (no
    ``kid`` and no usable ``caller``, or too many items before it),
    ``bad_key`` (a caller key that can verify nothing, or a signature that
    fails under a ``kid`` other than the ``caller``), ``bad_signature``.
    """
    raw = scan1(data, max_size=max_size)
    key = raw.kid
    if key is None:
        found = find_bstr_field(raw.payload, signer_field, max_items=_MAX_ITEMS_BEFORE_SIGNER)
        if found is None:
            raise bad_field(f"missing field {signer_field!r} (and no kid in the header)")
        key = check_public_key(found, signer_field)
    if not raw.verify(key):
        if raw.kid is not None:  # signed by someone else than the kid says: is the kid even the caller's?
            try:
                named = find_bstr_field(raw.payload, signer_field, max_items=_MAX_ITEMS_BEFORE_SIGNER)
            except EnvelopeError:
                named = None
            if named is not None and named != raw.kid:
                raise EnvelopeError("bad_key", f"kid in the header is not the {signer_field} key")
        raise EnvelopeError("bad_signature", f"signature is not the {signer_field}'s over these bytes")
    return key


def request_target(data: bytes, *, max_size: int = MAX_EXEC_REQUEST) -> bytes:
    """The ``target`` key a request envelope (exec, call, logic, revoke) names, read without verifying it.

    For a carrier that addresses peers by did (NATS: ``peerbox.<did>.exec``)
    when the caller's URL names only the server: the envelope is the
    caller's own. A skip-scan of the payload's first keys
    (:func:`~peerbox.wire._cose.find_bstr_field`); a payload with many items
    before ``target`` (large ``params``) is decoded strictly instead. Raises
    :class:`EnvelopeError` (not a COSE_Sign1, no usable ``target``).
    """
    raw = scan1(data, max_size=max_size)
    try:
        found = find_bstr_field(raw.payload, "target", max_items=_MAX_ITEMS_BEFORE_SIGNER)
    except EnvelopeError:  # too many items before it (or malformed: the decoding says which)
        found = decode1(data, max_size=max_size).payload.get("target")
    if found is None:
        raise bad_field("missing field 'target'")
    return check_public_key(found, "target")


# ------------------------------------------------------------------ requests


def payload_head(key: KeyPair, typ: str, *, target: bytes, now: int, ttl: int,
                 nonce: bytes | None) -> dict[str, Any]:
    """The fields every signed request starts with: version, type, caller, target, nonce, iat, exp.

    ``nonce`` defaults to 16 fresh random bytes. Raises :class:`EnvelopeError`
    (``bad_field``) for a ``ttl`` that is not a positive int or a ``now`` that is
    not an int (what a receiver would refuse, so nobody signs it).
    """
    if type(ttl) is not int or ttl <= 0:
        raise bad_field("ttl must be a positive integer number of seconds")
    if type(now) is not int:
        raise bad_field("now must be an integer (Unix seconds)")
    return {"v": VERSION, "typ": typ, "caller": key.public_key, "target": bytes(target),
            "nonce": secrets.token_bytes(NONCE_MIN) if nonce is None else bytes(nonce),
            "iat": now, "exp": now + ttl}


def make_request(
    key: KeyPair,
    *,
    target: bytes,
    script: str,
    params: Mapping[str, Any] | None = None,
    caps: Iterable[bytes] = (),
    limits: Mapping[str, int | float] | None = None,
    now: int,
    ttl: int = 300,
    nonce: bytes | None = None,
) -> bytes:
    """A request from ``key`` to ``target`` to run ``script``, valid ``ttl`` seconds from ``now``.

    ``nonce`` defaults to 16 fresh random bytes. Empty ``params``/``caps`` and
    ``limits=None`` are left out of the payload. Raises
    :class:`EnvelopeError` (``bad_field``/``bad_key``) for arguments
    :func:`verify_request` would refuse, so a peer never signs a request
    nobody accepts.
    """
    payload = payload_head(key, TYP_REQUEST, target=target, now=now, ttl=ttl, nonce=nonce)
    payload["script"] = script
    if params:
        payload["params"] = dict(params)
    cap_list = [bytes(c) for c in caps]
    if cap_list:
        payload["caps"] = cap_list
    if limits is not None:
        payload["limits"] = dict(limits)
    _parse_request(payload)
    check_public_key(target, "target")
    return sign1(payload, key)


def open_request(data: bytes, *, max_size: int = MAX_EXEC_REQUEST, max_depth: int = 16,
                 preauthenticated: bytes | None = None) -> Request:
    """Decode a request and check everything that needs no context: structure, fields, signature.

    The first half of :func:`verify_request`: :func:`preauthenticate` (size,
    outer COSE, signature over the raw bytes), then the strict payload,
    ``typ``, ``v``, fields, caller key, ``kid`` equal to it and the
    signature by ``caller``. ``preauthenticated`` is the key a
    :func:`preauthenticate` of these same bytes returned (the worker calls
    it first, off the event loop for large bodies): the raw check is then
    not repeated, and the signature is not checked twice when that key is
    the caller. It does **not** check the target, the time or the nonce, so
    it is for tools (``peerbox envelope inspect``), never for deciding to
    run a script. Raises :class:`EnvelopeError`.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise EnvelopeError("malformed", f"expected bytes, not {type(data).__name__}")
    if len(data) > max_size:
        raise EnvelopeError("too_large", f"{len(data)} bytes, at most {max_size}")
    signer = preauthenticated if preauthenticated is not None else preauthenticate(data, max_size=max_size)
    msg = decode1(data, max_size=max_size, max_depth=max_depth)
    req = _parse_request(msg.payload)
    check_signer(msg, req.caller, "caller", verified=signer)
    return replace(req, data=bytes(data), params_cbor=field_bytes(msg.payload_bytes, msg.payload, "params"))


def verify_request(
    data: bytes,
    *,
    target: bytes,
    now: int,
    nonces: ReplayGuard | None,
    max_size: int = MAX_EXEC_REQUEST,
    max_skew: int = 60,
    max_window: int = 3600,
    max_depth: int = 16,
) -> Request:
    """Check a request in the order of the module docstring and return it.

    ``target`` is our own public key; ``now`` the current Unix time.
    ``nonces=None`` skips the replay check (for tests and tools only: a
    server must pass its :class:`~peerbox.wire._nonces.ReplayGuard`). The request
    is valid while ``iat - max_skew <= now < exp``. Raises
    :class:`EnvelopeError` (and :class:`~peerbox.wire._nonces.NonceStoreError` if
    the nonce database fails); never another exception for any input bytes.
    """
    req = open_request(data, max_size=max_size, max_depth=max_depth)
    check_delivery(caller=req.caller, target=req.target, nonce=req.nonce, iat=req.iat, exp=req.exp,
                   expected_target=target, now=now, nonces=nonces, max_skew=max_skew, max_window=max_window)
    return req
