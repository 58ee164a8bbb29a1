"""The signed version history of a peer's logic modules: an audit trail anyone can check.

Every version of a module a peer's owner (or a capability holder) installs
is recorded, append-only, in ``<peer dir>/logic-history/``::

    log/<module>.jsonl          one JSON object per version, oldest first
    sources/<sha256>.rhai       every version's source, by its SHA-256

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
  reordered or edited without :meth:`History.verify` noticing.

:meth:`History.verify` checks all of it, and that each live file in
``logic/`` is the source of its module's latest version. Nothing here
compiles or decides rights; :mod:`peerbox._logic` does that before
recording.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._atomic import write_atomic
from ._cbor_strict import dumps as cbor_dumps
from ._cose import EnvelopeError, decode1, sign1
from ._errors import UsageError
from ._identity import (PUBLIC_KEY_SIZE, InvalidDid, InvalidPublicKey, KeyPair, did_from_public_key,
                        public_key_from_did, verify)

__all__ = ["History", "Version", "Statement", "make_statement", "open_statement", "HistoryError",
           "STATEMENT_TYP", "HISTORY_DIR", "sha256_hex"]

STATEMENT_TYP = "peerbox/logic-version"
#: The history's directory name inside a peer directory.
HISTORY_DIR = "logic-history"
_MAX_STATEMENT = 4096
_SHA_HEX = re.compile(r"[0-9a-f]{64}")
_FIELDS = ("version", "module", "sha256", "size", "time", "action", "restores", "by", "statement", "cap",
           "rule", "prev", "seal")


class HistoryError(UsageError):
    """A version history cannot be read or written (``module`` names which one)."""

    def __init__(self, message: str, *, module: str | None = None) -> None:
        super().__init__(message)
        self.module = module


def sha256_hex(source: str) -> str:
    """The hex SHA-256 of a module's source (UTF-8): what versions and statements name."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError(f"{what} is not base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not valid base64") from None


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

    Raises :class:`~peerbox._cose.EnvelopeError` (``malformed``,
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
        raise EnvelopeError("bad_key", f"by: {exc}") from None
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
                               "statement": _b64(self.statement), "prev": self.prev}
        if self.restores is not None:
            doc["restores"] = self.restores
        if self.cap is not None:
            doc["cap"] = _b64(self.cap)
        if self.rule is not None:
            doc["rule"] = self.rule
        if sealed:
            doc["seal"] = _b64(self.seal)
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
        unknown = set(doc) - set(_FIELDS)
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}")
        for name, typ in (("version", int), ("size", int), ("time", int), ("module", str), ("sha256", str),
                          ("action", str), ("by", str), ("prev", str)):
            if type(doc.get(name)) is not typ:
                raise ValueError(f"{name!r} is missing or not {'an integer' if typ is int else 'text'}")
        if doc.get("rule") is not None and type(doc["rule"]) is not str:
            raise ValueError("'rule' is not text")
        restores = doc.get("restores")
        if restores is not None and type(restores) is not int:
            raise ValueError("'restores' is not an integer")
        action = doc["action"]
        if action not in ("set", "rollback", "remove") or (action == "rollback") != (restores is not None):
            raise ValueError("'action' is 'set', 'remove', or 'rollback' with 'restores'")
        prev = doc["prev"]
        if not _SHA_HEX.fullmatch(doc["sha256"]) or not (prev == "" or _SHA_HEX.fullmatch(prev)):
            raise ValueError("'sha256' and 'prev' are lowercase hex SHA-256 digests")
        return cls(version=doc["version"], module=doc["module"], sha256=doc["sha256"], size=doc["size"],
                   time=doc["time"], action=doc["action"], restores=restores, by=doc["by"],
                   statement=_unb64(doc.get("statement"), "'statement'"),
                   cap=None if doc.get("cap") is None else _unb64(doc["cap"], "'cap'"), rule=doc.get("rule"),
                   prev=doc["prev"], seal=_unb64(doc.get("seal"), "'seal'"))


# ------------------------------------------------------------------ the store


def safe_dir(base: Path, relative: str) -> Path:
    """``base/relative``'s parent created as real directories (a symlink on the way is refused).

    ``relative`` is a module name already validated (``a/b``: no ``..``).
    Raises :class:`HistoryError` naming the symlink or non-directory in the way.
    """
    d = base
    for part in ["", *relative.split("/")[:-1]]:
        d = d / part if part else d
        if d.is_symlink() or (d.exists() and not d.is_dir()):
            raise HistoryError(f"{d} is a symlink or not a directory: refusing to write through it")
        d.mkdir(mode=0o755, exist_ok=True)
    return d


class History:
    """The version history under ``directory`` of the peer whose public key is ``peer_key``."""

    def __init__(self, directory: Path, peer_key: bytes) -> None:
        self.dir = directory
        self.peer_key = peer_key

    def _log(self, module: str) -> Path:
        return self.dir / "log" / f"{module}.jsonl"

    def _source_path(self, sha: str) -> Path:
        return self.dir / "sources" / f"{sha}.rhai"

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the history's exclusive lock (across processes) while installing."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def modules(self) -> list[str]:
        """The modules that have a history, sorted."""
        base = self.dir / "log"
        if not base.is_dir():
            return []
        return sorted(p.relative_to(base).as_posix()[: -len(".jsonl")] for p in base.rglob("*.jsonl"))

    def entries(self, module: str) -> list[Version]:
        """Every version of ``module``, oldest first ([] if none was recorded).

        Raises :class:`HistoryError` naming the line of an entry that does not parse.
        """
        versions, problems = self._read(module)
        if problems:
            raise HistoryError(problems[0], module=module)
        return versions

    def _read(self, module: str) -> tuple[list[Version], list[str]]:
        path = self._log(module)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return [], []
        except (OSError, UnicodeDecodeError) as exc:
            return [], [f"{path}: cannot read: {exc}"]
        out: list[Version] = []
        for i, line in enumerate(lines, 1):
            try:
                out.append(Version.parse(json.loads(line)))
            except ValueError as exc:  # json.JSONDecodeError is a ValueError
                return out, [f"{path}:{i}: not a valid history entry: {exc}"]
        return out, []

    def source(self, sha: str) -> str:
        """The source recorded under ``sha``. Raises :class:`HistoryError` if it is gone."""
        try:
            return self._source_path(sha).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise HistoryError(f"the source of version {sha[:12]} is missing: {exc}") from None

    def record(self, module: str, source: str, *, statement: bytes, cap: bytes | None, rule: str | None,
               action: str, restores: int | None, sealer: KeyPair, now: int) -> Version:
        """Append a version of ``module`` (call under :meth:`lock`); returns it.

        Stores the source first, then the sealed entry, each atomically, so a
        crash leaves at worst an unreferenced source file.
        """
        versions = self.entries(module)
        sha = sha256_hex(source)
        src = self._source_path(sha)
        if not src.exists():
            src.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(src, source.encode("utf-8"))
        by = open_statement(statement).by
        unsealed = Version(version=len(versions) + 1, module=module, sha256=sha, size=len(source.encode()),
                           time=now, action=action, restores=restores, by=did_from_public_key(by),
                           statement=statement, cap=cap, rule=rule,
                           prev=versions[-1].digest() if versions else "",
                           seal=b"")
        entry = Version(**{**{f: getattr(unsealed, f) for f in _FIELDS}, "seal": sealer.sign(
            unsealed.signed_bytes())})
        log = self._log(module)
        safe_dir(self.dir / "log", f"{module}.jsonl")
        old = log.read_bytes() if log.exists() else b""
        write_atomic(log, old + json.dumps(entry.record(), sort_keys=True).encode() + b"\n")
        return entry

    def verify(self, module: str, live: str | None,
               check_cap: Callable[[Version, bytes], str | None]) -> list[str]:
        """Every problem with ``module``'s history ([] when it checks out).

        ``live`` is the module's current source in ``logic/`` (None: no
        file); ``check_cap(version, by_key)`` says what is wrong with a
        version's capability, or None.
        """
        versions, problems = self._read(module)
        where = f"{module}: "
        prev, prev_sealed = "", True
        for v in versions:
            at = f"{where}version {v.version}: "
            if v.module != module:
                problems.append(f"{at}names module {v.module!r}")
            if v.prev != prev and prev_sealed:  # after a broken seal, the break is already reported
                problems.append(f"{at}does not follow the version before it (an entry was removed, "
                                "reordered or edited)")
            prev = v.digest()
            prev_sealed = verify(self.peer_key, v.signed_bytes(), v.seal)
            if not prev_sealed:
                problems.append(f"{at}the peer's seal does not match the entry (edited by hand?)")
            problems.extend(at + p for p in self._check_statement(v, module, check_cap))
            try:
                text = self.source(v.sha256)
            except HistoryError:
                problems.append(f"{at}its source {v.sha256[:12]} is missing")
            else:
                if sha256_hex(text) != v.sha256:
                    problems.append(f"{at}its stored source does not hash to {v.sha256[:12]}")
        if [v.version for v in versions] != list(range(1, len(versions) + 1)):
            problems.append(f"{where}versions are not numbered 1, 2, 3, ...")
        removed = bool(versions) and versions[-1].action == "remove"
        if versions and live is None and not removed:
            problems.append(f"{where}logic file is missing, yet version {versions[-1].version} is recorded")
        elif removed and live is not None:
            problems.append(f"{where}the live file exists, yet version {versions[-1].version} removed it "
                            "(changed outside peerbox)")
        elif versions and live is not None and sha256_hex(live) != versions[-1].sha256:
            problems.append(f"{where}the live file differs from version {versions[-1].version} "
                            "(changed outside peerbox)")
        elif not versions and live is not None:
            problems.append(f"{where}the live file has no recorded history (installed by hand)")
        return problems

    def _check_statement(self, v: Version, module: str,
                         check_cap: Callable[[Version, bytes], str | None]) -> list[str]:
        try:
            st = open_statement(v.statement)
        except EnvelopeError as exc:
            return [f"the installer's statement does not verify: {exc}"]
        out = []
        try:
            by = public_key_from_did(v.by)
        except InvalidDid:
            return [f"'by' is not a did:key: {v.by[:80]!r}"]
        if st.by != by:
            out.append("the statement is signed by another key than 'by'")
        if st.peer != self.peer_key:
            out.append("the statement names another peer")
        if st.module != module or st.sha256 != v.sha256:
            out.append("the statement is for another module or source")
        if st.remove != (v.action == "remove"):
            out.append("the statement and the entry disagree on whether the module was removed")
        if st.by != self.peer_key:
            if v.cap is None and v.rule is None:
                out.append("installed by another key than the peer's, without a capability or policy rule")
            elif v.cap is not None:
                problem = check_cap(v, st.by)
                if problem is not None:
                    out.append(f"its capability does not grant it: {problem}")
        return out
