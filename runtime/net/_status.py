"""``GET /v1/status`` and ``GET /v1/ready``: who may read a worker's status, and the documents served.

Status (sans-IO): what a worker is doing (mode, hosted peers, runs in flight
and queued per peer, uptime, answers and errors by kind, and with
``--workers N`` its processes) is for its operator. :func:`decide_access`
lets a request read it when

* it comes from a loopback address (``127.0.0.0/8``, ``::1``) or over
  isolated mode's private channel (``client == "router"``): whoever can
  connect there runs on the machine already, as with ``nginx``'s
  ``stub_status`` bound to localhost; or
* it carries ``authorization: Peerbox <token>``: a status token
  (:func:`make_status_token`), a COSE_Sign1 of type ``peerbox/status``
  (``v``, ``typ``, ``caller``, ``target``, ``nonce``, ``iat``, ``exp``:
  the head every signed request has, :func:`peerbox.wire.payload_head`),
  signed by the key of a peer this worker hosts, addressed to that same
  peer (``caller == target``), valid now (``iat``/``exp``, at most
  :data:`MAX_TOKEN_WINDOW` s apart). The operator owns the root, so holds
  every hosted peer's key; a caller that merely has some peer's key, even
  one the hosted peer's policy trusts, does not get in.

Anything else is refused (``401`` and a one-line reason). Tokens are not
checked against a nonce store: reading the status changes nothing, and a
token lives at most five minutes (one minute by default); send them over
TLS when the worker is not on loopback.

Readiness: :class:`Readiness` is what ``/v1/ready`` answers (200 ``ready``,
or 503 naming what is not ready and why).
"""

from __future__ import annotations

import base64
import binascii
import enum
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..wire import (EnvelopeError, KeyPair, check_delivery, check_signer, check_typ_version, decode1,
                    parse_addressing, payload_head, preauthenticate, sign1)
from ._http import HttpResponse

__all__ = ["TYP_STATUS", "MAX_TOKEN_WINDOW", "Access", "Verdict", "decide_access", "make_status_token",
           "is_local_client", "Readiness", "STATUS_PATH", "READY_PATH", "AUTH_SCHEME", "authorization_header",
           "errors_of"]

TYP_STATUS = "peerbox/status"
STATUS_PATH = "/v1/status"
READY_PATH = "/v1/ready"
#: The scheme of the ``authorization`` header carrying a status token.
AUTH_SCHEME = "Peerbox"
#: The longest a status token may be valid (``exp - iat``), in seconds.
MAX_TOKEN_WINDOW = 300
_MAX_TOKEN = 1024
_FIELDS = frozenset({"v", "typ", "caller", "target", "nonce", "iat", "exp"})


class Verdict(enum.Enum):
    """How a status request was let in, or that it was not."""

    LOCAL = "local"
    SIGNED = "signed"
    REFUSED = "refused"


@dataclass(frozen=True)
class Access:
    """The decision on a status request: ``verdict``, ``signer`` (the key of a signed one), and
    ``message`` (why it was refused)."""

    verdict: Verdict
    signer: bytes | None = None
    message: str = ""

    @property
    def allowed(self) -> bool:
        """Whether the status may be read."""
        return self.verdict is not Verdict.REFUSED


def is_local_client(client: str) -> bool:
    """Whether ``client`` (``"ADDRESS:PORT"``, ``"[v6]:PORT"`` or ``"router"``) is on this machine:
    a loopback address, or isolated mode's private channel."""
    if client == "router":
        return True
    host = client.rpartition(":")[0].strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_status_token(key: KeyPair, *, now: int, ttl: int = 60, target: bytes | None = None) -> bytes:
    """A status token signed by ``key`` (a hosted peer's), addressed to ``target`` (default: the same
    peer), valid ``ttl`` s from ``now``. Raises :class:`~peerbox.wire.EnvelopeError` (``bad_field``)
    for a ``ttl`` over :data:`MAX_TOKEN_WINDOW` or not positive."""
    if type(ttl) is int and ttl > MAX_TOKEN_WINDOW:
        raise EnvelopeError("bad_field", f"a status token is valid at most {MAX_TOKEN_WINDOW} s")
    payload = payload_head(key, TYP_STATUS, target=key.public_key if target is None else target, now=now,
                           ttl=ttl, nonce=None)
    return sign1(payload, key)


def authorization_header(token: bytes) -> tuple[str, str]:
    """The ``authorization`` header carrying ``token``."""
    return "authorization", f"{AUTH_SCHEME} {base64.urlsafe_b64encode(token).decode().rstrip('=')}"


def decide_access(client: str, authorization: str | None, *, hosts: Callable[[bytes], bool], now: int,
                  trust_local: bool = True) -> Access:
    """Whether a status request from ``client`` with header ``authorization`` may read the status.

    ``hosts``: whether a public key is a peer hosted here; ``now``: Unix time;
    ``trust_local`` False makes a loopback client show a token like anyone
    else (tests, and operators who want it). Never raises.
    """
    if trust_local and is_local_client(client):
        return Access(Verdict.LOCAL)
    if authorization is None:
        return Access(Verdict.REFUSED, message="the status is for the operator: connect from loopback, or "
                      f"send 'authorization: {AUTH_SCHEME} <token>' signed by a hosted peer's key "
                      "(peerbox status --as NAME)")
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != AUTH_SCHEME.lower() or not value.strip():
        return Access(Verdict.REFUSED, message=f"authorization must be '{AUTH_SCHEME} <status token>'")
    value = value.strip()
    try:
        if len(value) > _MAX_TOKEN * 2:
            raise EnvelopeError("too_large", "the status token is too long")
        token = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        signer = _open_token(token, now)
    except (binascii.Error, ValueError) as exc:
        return Access(Verdict.REFUSED, message=f"bad status token: {exc}")
    except EnvelopeError as exc:
        return Access(Verdict.REFUSED, message=f"bad status token: {exc.kind}: {exc.message}")
    if not hosts(signer):
        return Access(Verdict.REFUSED, message="the status token is not signed by a peer hosted here")
    return Access(Verdict.SIGNED, signer=signer)


def _open_token(token: bytes, now: int) -> bytes:
    """The key that signed a valid status ``token``; raises :class:`~peerbox.wire.EnvelopeError`."""
    signer = preauthenticate(token, max_size=_MAX_TOKEN)
    msg = decode1(token, max_size=_MAX_TOKEN, max_depth=4)
    check_typ_version(msg.payload, TYP_STATUS, _FIELDS)
    caller, target, nonce, iat, exp, _caps = parse_addressing(msg.payload)
    check_signer(msg, caller, "caller", verified=signer)
    check_delivery(caller=caller, target=target, nonce=nonce, iat=iat, exp=exp, expected_target=caller,
                   now=now, nonces=None, max_window=MAX_TOKEN_WINDOW)
    return caller


@dataclass
class Readiness:
    """What ``/v1/ready`` says: ready, or what is not (``waiting``: a peer or process → why)."""

    waiting: dict[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        """Every hosted peer can run."""
        return not self.waiting

    def response(self) -> HttpResponse:
        """200 ``ready``, or 503 ``not ready: NAME: why; ...`` (one line, text)."""
        if self.ready:
            return _text(200, "ready")
        why = "; ".join(f"{k}: {v}" for k, v in sorted(self.waiting.items()))
        return _text(503, f"not ready: {why}", ("retry-after", "1"))


def _text(status: int, line: str, *extra: tuple[str, str]) -> HttpResponse:
    return HttpResponse(status=status, headers=(("content-type", "text/plain; charset=utf-8"), *extra),
                        body=line.encode() + b"\n")


def errors_of(requests: Mapping[str, int], rejections: Mapping[str, int],
              denials: Mapping[str, int]) -> dict[str, object]:
    """The status document's ``errors``: every answer that was not ``ok``, by outcome, with the
    rejections by kind and the denials by action."""
    by_outcome = {k: n for k, n in sorted(requests.items()) if k != "ok" and n}
    return {"total": sum(by_outcome.values()), "by_outcome": by_outcome,
            "rejected": dict(sorted(rejections.items())), "denied": dict(sorted(denials.items()))}

