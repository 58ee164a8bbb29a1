"""What a logic history records: the installer's signed statement and the sealed version entry.

A version records the SHA-256 and size of its source, the time, what made
it (``set``, ``remove`` -- the empty source, the live file deleted -- or
``rollback`` with the version it ``restores``), who installed
it (``by``, a did:key) and three signatures:

* ``statement``: a COSE_Sign1 by the installer over ``{typ
  "peerbox/logic-version", by, peer, module, sha256, iat}``: the installer's
  own word that this source is what they installed on this peer. A remote
  installer signs it on their machine (``peerbox logic push``), so the host
  cannot forge it for a key it does not hold.
* ``cap``: the capability token that granted ``logic.write`` to a caller who
  is not the peer itself, or ``rule``: the policy rule that allowed it
  (both absent for the owner).
* ``seal``: the hosting peer's Ed25519 signature over the entry, which also
  names the previous entry's hash (``prev``), so a version cannot be removed,
  reordered or edited without the history noticing.

This module is the format only (make, parse, check one statement or entry);
where entries are stored, chained and verified is
:mod:`peerbox.peer._history`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from ..wire import PUBLIC_KEY_SIZE, EnvelopeError, InvalidPublicKey, KeyPair, cbor_dumps, decode1, sign1

__all__ = ["Version", "Statement", "make_statement", "open_statement", "sha256_hex", "b64", "unb64",
           "STATEMENT_TYP", "ACTIONS", "FIELDS", "SHA_HEX", "MAX_VERSION"]

STATEMENT_TYP = "peerbox/logic-version"
_MAX_STATEMENT = 4096
#: A lowercase hex SHA-256 digest, as entries and the head name sources and entries.
SHA_HEX = re.compile(r"[0-9a-f]{64}")
#: The highest version number an entry may have.
MAX_VERSION = 2**31 - 1
_MAX_TIME = 253402300799  # 9999-12-31T23:59:59Z: what a datetime can show
_MAX_SIZE = 2**40
#: What made a version: ``force`` is a ``set`` over a live file that did not match the history
#: (``peerbox logic set --force``), recorded as such so the overwrite shows.
ACTIONS = ("set", "force", "rollback", "remove")
#: The fields of an entry, in the order they are listed (the seal last).
FIELDS = ("version", "module", "sha256", "size", "time", "action", "restores", "by", "statement", "cap",
          "rule", "prev", "seal")


def sha256_hex(source: str) -> str:
    """The hex SHA-256 of a module's source (UTF-8): what versions and statements name."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def b64(data: bytes) -> str:
    """``data`` as standard base64 text (how signatures and tokens are stored in JSON)."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: object, what: str) -> bytes:
    """The bytes of base64 ``text``. Raises ``ValueError`` naming ``what`` if it is not base64 text."""
    if not isinstance(text, str):
        raise ValueError(f"{what} is not base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{what} is not valid base64") from exc


# ------------------------------------------------------------------ statements


@dataclass(frozen=True, slots=True, kw_only=True)
class Statement:
    """An installer's signed word: ``by`` installed source ``sha256`` as ``module`` of ``peer``
    (or, ``remove``, removed the module: ``sha256`` is then that of the empty source)."""

    by: bytes
    peer: bytes
    module: str
    sha256: str
    iat: int
    data: bytes
    remove: bool = False


def make_statement(key: KeyPair, *, peer: bytes, module: str, source: str, now: int,
                   remove: bool = False) -> bytes:
    """The statement ``key`` signs to install ``source`` as ``module`` on ``peer`` at ``now``
    (``remove=True``, with ``source=""``: to remove the module)."""
    payload = {"v": 1, "typ": STATEMENT_TYP, "by": key.public_key, "peer": bytes(peer), "module": module,
               "sha256": bytes.fromhex(sha256_hex(source)), "iat": int(now)}
    if remove:
        payload["remove"] = True
    return sign1(payload, key)


def open_statement(data: bytes) -> Statement:
    """Decode a statement and check its signature by the ``by`` it names.

    Raises :class:`~peerbox.wire._cose.EnvelopeError` (``malformed``,
    ``wrong_type``, ``bad_field``, ``bad_key``, ``bad_signature``, ...).
    """
    msg = decode1(data, max_size=_MAX_STATEMENT)
    p = msg.payload
    if p.get("typ") != STATEMENT_TYP:
        raise EnvelopeError("wrong_type", f"expected typ {STATEMENT_TYP!r}, got {p.get('typ')!r:.60}")
    if set(p) - {"remove"} != {"v", "typ", "by", "peer", "module", "sha256", "iat"} or p["v"] != 1 \
            or p.get("remove", True) is not True:
        raise EnvelopeError("bad_field", "a statement has exactly v 1, typ, by, peer, module, sha256, iat "
                                         "(and remove: true to remove)")
    by, peer, sha, module, iat = p["by"], p["peer"], p["sha256"], p["module"], p["iat"]
    if not (type(by) is bytes and type(peer) is bytes and len(by) == len(peer) == PUBLIC_KEY_SIZE):
        raise EnvelopeError("bad_field", "'by' and 'peer' must be 32-byte public keys")
    if type(sha) is not bytes or len(sha) != 32 or type(module) is not str or type(iat) is not int:
        raise EnvelopeError("bad_field", "'sha256' is 32 bytes, 'module' text, 'iat' an integer")
    if msg.kid is not None and msg.kid != by:
        raise EnvelopeError("bad_key", "kid in the header is not the installer's key")
    try:
        ok = msg.verify(by)
    except InvalidPublicKey as exc:
        raise EnvelopeError("bad_key", f"by: {exc}") from exc
    if not ok:
        raise EnvelopeError("bad_signature", "the statement is not signed by the key it names")
    return Statement(by=by, peer=peer, module=module, sha256=sha.hex(), iat=iat, data=bytes(data),
                     remove="remove" in p)


# ------------------------------------------------------------------ versions


@dataclass(frozen=True, slots=True, kw_only=True)
class Version:
    """One recorded version of a module (see the module docstring for each field)."""

    version: int
    module: str
    sha256: str
    size: int
    time: int
    action: str
    restores: int | None
    by: str
    statement: bytes = field(repr=False)
    cap: bytes | None = field(repr=False)
    rule: str | None
    prev: str
    seal: bytes = field(repr=False)

    def record(self, *, sealed: bool = True) -> dict[str, Any]:
        """The entry as stored (JSON types); ``sealed=False`` leaves out the seal (what it signs)."""
        doc: dict[str, Any] = {"version": self.version, "module": self.module, "sha256": self.sha256,
                               "size": self.size, "time": self.time, "action": self.action, "by": self.by,
                               "statement": b64(self.statement), "prev": self.prev}
        if self.restores is not None:
            doc["restores"] = self.restores
        if self.cap is not None:
            doc["cap"] = b64(self.cap)
        if self.rule is not None:
            doc["rule"] = self.rule
        if sealed:
            doc["seal"] = b64(self.seal)
        return doc

    def signed_bytes(self) -> bytes:
        """What the seal signs: the entry without its seal, in deterministic CBOR."""
        return cbor_dumps(self.record(sealed=False))

    def digest(self) -> str:
        """The hex SHA-256 the next entry's ``prev`` names (the whole entry, seal included)."""
        return hashlib.sha256(cbor_dumps(self.record())).hexdigest()

    @classmethod
    def parse(cls, doc: object) -> Version:
        """An entry from its JSON form. Raises ``ValueError`` saying which field is wrong."""
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        unknown = set(doc) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}")
        for name, typ in (("version", int), ("size", int), ("time", int), ("module", str), ("sha256", str),
                          ("action", str), ("by", str), ("prev", str)):
            if type(doc.get(name)) is not typ:
                raise ValueError(f"{name!r} is missing or not {'an integer' if typ is int else 'text'}")
        if doc.get("rule") is not None and type(doc["rule"]) is not str:
            raise ValueError("'rule' is not text")
        for name, hi in (("version", MAX_VERSION), ("size", _MAX_SIZE), ("time", _MAX_TIME)):
            if not (1 if name == "version" else 0) <= doc[name] <= hi:
                raise ValueError(f"{name!r} is out of range")
        restores = doc.get("restores")
        if restores is not None and (type(restores) is not int or not 1 <= restores <= MAX_VERSION):
            raise ValueError("'restores' is not a version number")
        action = doc["action"]
        if action not in ACTIONS or (action == "rollback") != (restores is not None):
            raise ValueError("'action' is 'set', 'force', 'remove', or 'rollback' with 'restores'")
        prev = doc["prev"]
        if not SHA_HEX.fullmatch(doc["sha256"]) or not (prev == "" or SHA_HEX.fullmatch(prev)):
            raise ValueError("'sha256' and 'prev' are lowercase hex SHA-256 digests")
        return cls(version=doc["version"], module=doc["module"], sha256=doc["sha256"], size=doc["size"],
                   time=doc["time"], action=doc["action"], restores=restores, by=doc["by"],
                   statement=unb64(doc.get("statement"), "'statement'"),
                   cap=None if doc.get("cap") is None else unb64(doc["cap"], "'cap'"), rule=doc.get("rule"),
                   prev=doc["prev"], seal=unb64(doc.get("seal"), "'seal'"))
