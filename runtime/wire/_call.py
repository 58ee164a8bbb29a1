"""Signed calls of a published function: the ``peerbox/call`` envelope (sans-IO).

A caller asks a target peer to run one function the target's own module
publishes (``export fn``), with the *owner's* rights. It is a COSE_Sign1 signed
by the caller, posted to ``POST /v1/call``, whose payload is::

    {"v": 1, "typ": "peerbox/call",
     "caller": bstr(32), "target": bstr(32), "nonce": bstr(16..32), "iat": int, "exp": int,
     "module": tstr,                      ; a bare module name as `import` takes it ("inbox")
     "function": tstr,                    ; [A-Za-z_][A-Za-z0-9_]{0,127}
     ? "params": {* tstr => any} / [* any],  ; the arguments by name or by position; absent: none
     ? "caps": [* bstr],
     ? "limits": {? "fuel": uint, ? "timeout": number, ? "memory": uint}}

It is checked exactly like a ``peerbox/exec`` request
(:mod:`peerbox.wire._envelope`): size, outer COSE and the signature over the
raw bytes first (:func:`~peerbox.wire._envelope.preauthenticate`), then the
strict payload, ``typ`` (``wrong_type``: an exec envelope is never a call, nor
a call an exec), ``v``, the fields (``bad_field``), the caller key and
``kid``, and with :func:`verify_call_request` the target, the time window and
last the nonce, from the same store as exec so one nonce serves one request of
any type. The reply is the unchanged ``peerbox/reply``.

The field holding the arguments is named ``params`` on purpose: in canonical
CBOR it sorts after ``caller``, so the bounded skip-scan that finds the signer
of a ``kid``-less envelope never walks the arguments (``args`` would sort
before it, and a large argument array would make the envelope unopenable).

The module-name check repeats :func:`peerbox.run.split_module_name`'s pattern
for a bare name, because ``wire`` may not import ``run``; a test keeps the two
in agreement. Whether the module exists and publishes the function, and
whether the arguments fit its parameters, is the target's business
(:mod:`peerbox.peer._api`), not the envelope's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

from ._cose import EnvelopeError, Sign1, decode1, sign1
from ._envelope import (bad_field, check_delivery, check_public_key, check_signer,
                        check_typ_version, parse_addressing, parse_limits, preauthenticate, request_digest,
                        payload_head, require_field)
from ._identity import KeyPair
from ._nonces import ReplayGuard

__all__ = ["CallRequest", "TYP_CALL", "MAX_CALL_REQUEST", "MAX_MODULE_NAME", "make_call_request",
           "open_call_request", "verify_call_request", "open_signed"]

TYP_CALL = "peerbox/call"
#: The largest call envelope (arguments, capabilities and all): the worker's HTTP body limit for it
#: (8 MiB, as an exec request's: arguments of a few MiB must pass).
MAX_CALL_REQUEST = 8 << 20
#: The longest module name (as :func:`peerbox.run.split_module_name` allows).
MAX_MODULE_NAME = 200
_MODULE = re.compile(r"[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*")
_FUNCTION = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_FIELDS = frozenset({"v", "typ", "caller", "target", "nonce", "iat", "exp", "module", "function", "params",
                     "caps", "limits"})



class _Signed(Protocol):
    """A parsed request: it names the key that must have signed it."""

    @property
    def caller(self) -> bytes: ...


_R = TypeVar("_R", bound=_Signed)


@dataclass(frozen=True)
class CallRequest:
    """A checked call of ``module::function`` with ``params``. ``data`` is the envelope as received.

    ``params`` is a dict (arguments by name), a list (by position) or None
    (the field was absent: no arguments).
    """

    caller: bytes
    target: bytes
    nonce: bytes
    iat: int
    exp: int
    module: str
    function: str
    params: dict[str, Any] | list[Any] | None = None
    caps: tuple[bytes, ...] = ()
    limits: dict[str, int | float] = field(default_factory=dict)
    data: bytes = field(default=b"", repr=False)

    @property
    def resource(self) -> str:
        """What the policy action ``call`` is decided on: ``"MODULE::FUNCTION"``."""
        return f"{self.module}::{self.function}"

    @property
    def digest(self) -> bytes:
        """SHA-256 of :attr:`data` (the ``req`` of the reply)."""
        return request_digest(self.data)


def _parse(payload: dict[str, Any]) -> CallRequest:
    check_typ_version(payload, TYP_CALL, _FIELDS)
    caller, target, nonce, iat, exp, caps = parse_addressing(payload)
    module = require_field(payload, "module")
    if type(module) is not str or len(module) > MAX_MODULE_NAME or _MODULE.fullmatch(module) is None:
        raise bad_field(f"'module' must be a bare module name ('/'-separated [A-Za-z0-9_-] parts, at most "
                        f"{MAX_MODULE_NAME} characters, no layer prefix), got {module!r:.80}")
    function = require_field(payload, "function")
    if type(function) is not str or _FUNCTION.fullmatch(function) is None:
        raise bad_field(f"'function' must be a function name ([A-Za-z_][A-Za-z0-9_]*, at most 128 "
                        f"characters), got {function!r:.80}")
    params = payload.get("params")
    if params is not None:
        if isinstance(params, dict):
            if not all(type(k) is str for k in params):
                raise bad_field("'params' as a map must have text keys (the parameters' names)")
        elif not isinstance(params, list):
            raise bad_field("'params' must be a map (arguments by name) or an array (by position)")
    elif "params" in payload:
        raise bad_field("'params' must be a map (arguments by name) or an array (by position), not null")
    limits = parse_limits(payload.get("limits", {}))
    return CallRequest(caller=caller, target=target, nonce=nonce, iat=iat, exp=exp, module=module,
                       function=function, params=params, caps=caps, limits=limits)


def open_signed(data: bytes, parse: Callable[[dict[str, Any]], _R], *, max_size: int, max_depth: int,
                preauthenticated: bytes | None) -> tuple[_R, Sign1]:
    """The context-free opening every request type shares, in the order of
    :func:`peerbox.wire._envelope.open_request`: type and size, the signature
    over the raw bytes (skipped when ``preauthenticated`` is the key a
    :func:`preauthenticate` of these bytes returned), the strict decoding, then
    ``parse`` of the payload. The caller of this checks the signer the parsed
    request names. Raises :class:`EnvelopeError`.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise EnvelopeError("malformed", f"expected bytes, not {type(data).__name__}")
    if len(data) > max_size:
        raise EnvelopeError("too_large", f"{len(data)} bytes, at most {max_size}")
    signer = preauthenticated if preauthenticated is not None else preauthenticate(data, max_size=max_size)
    msg = decode1(data, max_size=max_size, max_depth=max_depth)
    parsed = parse(msg.payload)
    check_signer(msg, parsed.caller, "caller", verified=signer)
    return parsed, msg


def make_call_request(
    key: KeyPair,
    *,
    target: bytes,
    module: str,
    function: str,
    params: Mapping[str, Any] | Sequence[Any] | None = None,
    caps: Iterable[bytes] = (),
    limits: Mapping[str, int | float] | None = None,
    now: int,
    ttl: int = 300,
    nonce: bytes | None = None,
) -> bytes:
    """A call from ``key`` of ``target``'s ``module::function``.

    ``params`` are the arguments by name (a mapping) or by position (a list
    or tuple); None leaves the field out (no arguments). Empty ``caps`` and
    ``limits=None`` are left out too. Valid ``ttl`` seconds from ``now``;
    ``nonce`` defaults to 16 fresh random bytes. Raises
    :class:`EnvelopeError` (``bad_field``/``bad_key``) for anything
    :func:`open_call_request` would refuse, so a peer never signs a call
    nobody accepts.
    """
    payload = payload_head(key, TYP_CALL, target=target, now=now, ttl=ttl, nonce=nonce)
    payload.update(module=module, function=function)
    if params is not None:
        if isinstance(params, Mapping):
            payload["params"] = dict(params)
        elif isinstance(params, (list, tuple)):
            payload["params"] = list(params)
        else:
            raise bad_field("'params' must be a map (arguments by name) or a list (by position)")
    cap_list = [bytes(c) for c in caps]
    if cap_list:
        payload["caps"] = cap_list
    if limits is not None:
        payload["limits"] = dict(limits)
    _parse(payload)
    check_public_key(target, "target")
    return sign1(payload, key)


def open_call_request(data: bytes, *, max_size: int = MAX_CALL_REQUEST, max_depth: int = 16,
                      preauthenticated: bytes | None = None) -> CallRequest:
    """Decode a call and check everything that needs no context: structure, fields, signature.

    As :func:`peerbox.wire._envelope.open_request` for exec: ``preauthenticated``
    is the key a :func:`preauthenticate` of these same bytes returned (the
    worker's check thread does that first). Does **not** check the target,
    time or nonce: for tools, never for deciding to run anything. Raises
    :class:`EnvelopeError`.
    """
    req, _msg = open_signed(data, _parse, max_size=max_size, max_depth=max_depth,
                            preauthenticated=preauthenticated)
    return replace(req, data=bytes(data))


def verify_call_request(
    data: bytes,
    *,
    target: bytes,
    now: int,
    nonces: ReplayGuard | None,
    max_size: int = MAX_CALL_REQUEST,
    max_skew: int = 60,
    max_window: int = 3600,
    max_depth: int = 16,
) -> CallRequest:
    """:func:`open_call_request`, then target, time and (last, so a refused call keeps its nonce)
    the nonce, as :func:`peerbox.wire._envelope.verify_request`. ``nonces=None`` skips the
    replay check (tests and tools only). Raises :class:`EnvelopeError` (and
    :class:`~peerbox.wire._nonces.NonceStoreError` when the nonce database fails).
    """
    req = open_call_request(data, max_size=max_size, max_depth=max_depth)
    check_delivery(caller=req.caller, target=req.target, nonce=req.nonce, iat=req.iat, exp=req.exp,
                   expected_target=target, now=now, nonces=nonces, max_skew=max_skew, max_window=max_window)
    return req
