"""Signed replies (sans-IO): what a target answers a request with.

A *reply* is signed by the target::

    {"v": 1, "typ": "peerbox/reply", "caller": bstr, "target": bstr,
     "req": bstr(32),                  ; SHA-256 of the request's bytes
     "iat": int, "ok": bool,
     "value": any               ; when ok
     "error": {"kind": tstr, "message": tstr, ? "line": uint, ? "file": tstr,
               ? "rule": tstr / null,             ; when not ok; a denial has kind "denied"
               ? "action": tstr, ? "resource": tstr / null,  ; what a denial refused,
               ? "cause": tstr, ? "capability": tstr}        ; and why (peerbox.policy.Denied)
     "log": [* tstr], "usage": {"fuel": uint, "wall_ms": uint, "peak_memory": uint}}

:func:`make_reply` signs one (:func:`make_denial` a policy's refusal),
:func:`open_reply` decodes one strictly, :func:`verify_reply` also checks it
answers the request sent (``req``) and is signed by its target. The field
checks are :mod:`peerbox.wire._envelope`'s, shared with every request type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from collections.abc import Iterable, Mapping

from ..policy import Denied
from ._cose import EnvelopeError, decode1, sign1, sign1_encoded
from ._envelope import (VERSION, bad_field, check_signer, check_typ_version, int_field, request_digest,
                        require_field)
from ._identity import PUBLIC_KEY_SIZE, KeyPair
from ._raw_value import check_value_cbor, payload_with_value

__all__ = ["Reply", "TYP_REPLY", "USAGE_KEYS", "make_reply", "make_denial", "open_reply", "verify_reply"]

TYP_REPLY = "peerbox/reply"
USAGE_KEYS = ("fuel", "wall_ms", "peak_memory")
_REPLY_FIELDS = frozenset(
    {"v", "typ", "caller", "target", "req", "iat", "ok", "value", "error", "log", "usage"}
)
_ERROR_FIELDS = frozenset(
    {"kind", "message", "line", "file", "rule", "action", "resource", "cause", "capability"})


@dataclass(frozen=True)
class Reply:
    """A verified reply: ``ok`` with ``value``, or not ``ok`` with ``error``."""

    caller: bytes
    target: bytes
    req: bytes
    iat: int
    ok: bool
    value: Any = None
    error: dict[str, Any] | None = None
    log: tuple[str, ...] = ()
    usage: dict[str, int] = field(default_factory=dict)
    data: bytes = field(default=b"", repr=False)

    @property
    def denied(self) -> bool:
        """Whether the target refused to run the request (error kind ``denied``)."""
        return not self.ok and self.error is not None and self.error.get("kind") == "denied"


def _error(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad_field("'error' must be a map")
    unknown = set(value) - _ERROR_FIELDS
    if unknown:
        raise bad_field(f"unknown error fields {sorted(map(str, unknown))!r:.200}")
    for name in ("kind", "message"):
        if type(value.get(name)) is not str:
            raise bad_field(f"error.{name} must be text")
    if "line" in value:
        int_field(value["line"], "error.line")
    for name in ("rule", "resource"):
        if name in value and value[name] is not None and type(value[name]) is not str:
            raise bad_field(f"error.{name} must be text or null")
    for name in ("file", "action", "cause", "capability"):
        if name in value and type(value[name]) is not str:
            raise bad_field(f"error.{name} must be text")
    return value


def _parse_reply(payload: dict[str, Any], data: bytes = b"") -> Reply:
    check_typ_version(payload, TYP_REPLY, _REPLY_FIELDS)
    keys = {}
    for name in ("caller", "target"):
        val = require_field(payload, name)
        if type(val) is not bytes or len(val) != PUBLIC_KEY_SIZE:
            raise bad_field(f"{name!r} must be a {PUBLIC_KEY_SIZE}-byte public key")
        keys[name] = val
    req = require_field(payload, "req")
    if type(req) is not bytes or len(req) != 32:
        raise bad_field("'req' must be a 32-byte SHA-256 digest")
    iat = int_field(require_field(payload, "iat"), "iat")
    ok = require_field(payload, "ok")
    if type(ok) is not bool:
        raise bad_field("'ok' must be a bool")
    error = None
    if ok:
        if "error" in payload:
            raise bad_field("a successful reply has no 'error'")
        require_field(payload, "value")
    else:
        if "value" in payload:
            raise bad_field("a failed reply has no 'value'")
        error = _error(require_field(payload, "error"))
    log = require_field(payload, "log")
    if not isinstance(log, list) or not all(type(x) is str for x in log):
        raise bad_field("'log' must be an array of text")
    usage = require_field(payload, "usage")
    if not isinstance(usage, dict) or set(usage) != set(USAGE_KEYS):
        raise bad_field(f"'usage' must be a map of exactly {', '.join(USAGE_KEYS)}")
    for k in USAGE_KEYS:
        int_field(usage[k], f"usage.{k}")
    return Reply(caller=keys["caller"], target=keys["target"], req=req, iat=iat, ok=ok,
                 value=payload.get("value"), error=error, log=tuple(log), usage=usage, data=data)


def make_reply(
    key: KeyPair,
    *,
    request_bytes: bytes,
    caller: bytes,
    now: int,
    ok: bool,
    value: Any = None,
    error: Mapping[str, Any] | None = None,
    log: Iterable[str] = (),
    usage: Mapping[str, int],
    check: bool = True,
    value_cbor: bytes | None = None,
) -> bytes:
    """The reply of ``key`` (the target) to the request ``request_bytes`` from ``caller``.

    ``ok=True`` carries ``value``; ``ok=False`` carries ``error``
    (``{"kind", "message", "line"?, "file"?, "rule"?}``). ``usage`` needs
    ``fuel``, ``wall_ms`` and ``peak_memory`` (non-negative ints). Raises
    :class:`EnvelopeError` (``bad_field``) for a reply :func:`verify_reply`
    would refuse, or a value CBOR cannot carry. ``check=False`` skips the
    structural self-check of the payload (about 20 µs): only for a caller
    that built every field itself from values of the right types (the
    worker's successful replies: a verified caller key, its own clock, the
    run's log and usage); a value CBOR cannot carry is still refused.
    ``value_cbor`` (with ``ok=True``, instead of ``value``): the value as
    deterministic CBOR bytes, signed as they are after a check that they are
    one CBOR item (:mod:`peerbox.wire._raw_value`; ``bad_field`` if not).
    """
    payload: dict[str, Any] = {
        "v": VERSION,
        "typ": TYP_REPLY,
        "caller": bytes(caller),
        "target": key.public_key,
        "req": request_digest(request_bytes),
        "iat": now,
        "ok": ok,
        "log": list(log),
        "usage": dict(usage),
    }
    if ok:
        payload["value"] = value
    else:
        if error is None:
            raise bad_field("a failed reply needs an error")
        payload["error"] = dict(error)
    if check:
        _parse_reply(payload)
    if ok and value_cbor is not None:
        check_value_cbor(value_cbor)
        return sign1_encoded(payload_with_value(payload, value_cbor), key)
    return sign1(payload, key)


def make_denial(
    key: KeyPair,
    *,
    request_bytes: bytes,
    caller: bytes,
    now: int,
    denial: Denied,
) -> bytes:
    """A signed refusal: a reply with ``ok: false`` and error kind ``denied``.

    Its error map is :meth:`peerbox.policy.Denied.fields`: the message in
    the one shape of a denial, the deciding ``rule`` (``file:line``) or
    ``None`` when none decided, ``action``, ``resource``, ``cause``. Usage
    is all zero: nothing ran.
    """
    return make_reply(
        key, request_bytes=request_bytes, caller=caller, now=now, ok=False, error=denial.fields(),
        usage={"fuel": 0, "wall_ms": 0, "peak_memory": 0},
    )


def open_reply(data: bytes, *, max_size: int = 1 << 20, max_depth: int = 16) -> Reply:
    """Decode a reply and check its structure, fields and signature by the ``target`` it names.

    The context-free half of :func:`verify_reply`, for tools; it does not
    check whom the reply is from or which request it answers. Raises
    :class:`EnvelopeError`.
    """
    msg = decode1(data, max_size=max_size, max_depth=max_depth)
    reply = _parse_reply(msg.payload, bytes(data))
    check_signer(msg, reply.target, "target")
    return reply


def verify_reply(data: bytes, *, target: bytes, request_bytes: bytes, max_size: int = 1 << 20,
                 max_depth: int = 16) -> Reply:
    """Check a reply to ``request_bytes`` from ``target`` and return it.

    Raises :class:`EnvelopeError`: the decoding kinds of :func:`decode1`,
    ``wrong_type`` (not a reply), ``bad_version``, ``bad_field``,
    ``wrong_target`` (the payload names another target), ``bad_key``,
    ``bad_signature`` (not signed by ``target``), ``wrong_request`` (``req``
    is not the SHA-256 of ``request_bytes``).
    """
    msg = decode1(data, max_size=max_size, max_depth=max_depth)
    reply = _parse_reply(msg.payload, bytes(data))
    if reply.target != target:
        raise EnvelopeError("wrong_target", "the reply names another target")
    check_signer(msg, target, "target")
    if reply.req != request_digest(request_bytes):
        raise EnvelopeError("wrong_request", "the reply answers another request")
    return reply
