"""The signed version history of a peer's logic modules: an audit trail anyone can check.

Every version of a module a peer's owner (or a capability holder) installs
is recorded, append-only, in ``<peer dir>/logic-history/``::

    log/<module>.jsonl          one JSON object per version, oldest first (appended to)
    sources/<sha256>.rhai       every version's source, by its SHA-256
    head.json                   each module's latest version and entry digest, sealed

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
  reordered or edited without :meth:`History.verify` noticing; the sealed
  head catches versions cut off the end and logs deleted whole.

:meth:`History.verify` checks all of it, and that each live file in
``logic/`` is the source of its module's latest version. Nothing here
compiles or decides rights; :mod:`peerbox.peer._logic` does that before
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

from .._atomic import write_atomic
from .._errors import UsageError
from ..wire import (PUBLIC_KEY_SIZE, EnvelopeError, InvalidDid, InvalidPublicKey, KeyPair, cbor_dumps,
                    decode1, did_from_public_key, public_key_from_did, sign1, verify_signature)

__all__ = ["History", "Version", "Statement", "make_statement", "open_statement", "HistoryError",
           "HistoryMismatch", "STATEMENT_TYP", "HISTORY_DIR", "ACTIONS", "sha256_hex"]

STATEMENT_TYP = "peerbox/logic-version"
#: The history's directory name inside a peer directory.
HISTORY_DIR = "logic-history"
_MAX_STATEMENT = 4096
_SHA_HEX = re.compile(r"[0-9a-f]{64}")
_MAX_VERSION = 2**31 - 1
_MAX_TIME = 253402300799  # 9999-12-31T23:59:59Z: what a datetime can show
_MAX_SIZE = 2**40
#: The longest log line read back from the end (a 64 KiB capability token, base64, and the rest).
_MAX_LINE = 256 << 10
#: What made a version: ``force`` is a ``set`` over a live file that did not match the history
#: (``peerbox logic set --force``), recorded as such so the overwrite shows.
ACTIONS = ("set", "force", "rollback", "remove")
_FIELDS = ("version", "module", "sha256", "size", "time", "action", "restores", "by", "statement", "cap",
           "rule", "prev", "seal")


class HistoryError(UsageError):
    """A version history cannot be read or written (``module`` names which one)."""

    def __init__(self, message: str, *, module: str | None = None) -> None:
        super().__init__(message)
        self.module = module


class HistoryMismatch(HistoryError):
    """The history or the live module does not check out (edited by hand): an install is refused
    until its owner has looked (``peerbox logic verify``). Exit code 8, as ``verify``'s."""

    exit_code = 8


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
        for name, hi in (("version", _MAX_VERSION), ("size", _MAX_SIZE), ("time", _MAX_TIME)):
            if not (1 if name == "version" else 0) <= doc[name] <= hi:
                raise ValueError(f"{name!r} is out of range")
        restores = doc.get("restores")
        if restores is not None and (type(restores) is not int or not 1 <= restores <= _MAX_VERSION):
            raise ValueError("'restores' is not a version number")
        action = doc["action"]
        if action not in ACTIONS or (action == "rollback") != (restores is not None):
            raise ValueError("'action' is 'set', 'force', 'remove', or 'rollback' with 'restores'")
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


@dataclass(frozen=True, slots=True)
class Mark:
    """Where the history stood before an install (to undo it if the live file cannot be written)."""

    module: str
    log_size: int | None
    head: bytes | None


class History:
    """The version history under ``directory`` of the peer whose public key is ``peer_key``.

    Besides one log per module, ``head.json`` holds every module's latest
    version number and entry digest, sealed by the peer: cutting versions off
    the end of a log (which leaves a consistent chain) or deleting a whole log
    shows up as a disagreement with the head. Logs are appended to, so an
    install costs the same however long the history is.
    """

    def __init__(self, directory: Path, peer_key: bytes) -> None:
        self.dir = directory
        self.peer_key = peer_key

    def _log(self, module: str) -> Path:
        return self.dir / "log" / f"{module}.jsonl"

    def _source_path(self, sha: str) -> Path:
        return self.dir / "sources" / f"{sha}.rhai"

    @property
    def head_path(self) -> Path:
        return self.dir / "head.json"

    @contextlib.contextmanager
    def lock(self, *, shared: bool = False) -> Iterator[None]:
        """Hold the history's lock (across processes): exclusive to install, shared to verify."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def modules(self) -> list[str]:
        """The modules that have a log, sorted."""
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
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return [], []
        except (OSError, UnicodeDecodeError) as exc:
            return [], [f"{path}: cannot read: {exc}"]
        lines = text.split("\n")
        torn = lines.pop()  # "" when the file ends with a newline, as every complete write does
        out: list[Version] = []
        for i, line in enumerate(lines, 1):
            try:
                out.append(Version.parse(json.loads(line)))
            except ValueError as exc:  # json.JSONDecodeError is a ValueError
                return out, [f"{path}:{i}: not a valid history entry: {exc}"]
        if torn:
            return out, [f"{path}:{len(lines) + 1}: an incomplete entry (an interrupted write, or an edit)"]
        return out, []

    def source(self, sha: str) -> str:
        """The source recorded under ``sha``. Raises :class:`HistoryError` if it is gone."""
        try:
            return self._source_path(sha).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise HistoryError(f"the source of version {sha[:12]} is missing: {exc}") from None

    # -- the sealed head ----------------------------------------------------------------

    def _head_bytes(self) -> bytes | None:
        try:
            return self.head_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise HistoryError(f"{self.head_path}: cannot read: {exc}") from None

    def head(self) -> dict[str, tuple[int, str]]:
        """``{module: (latest version, its entry digest)}`` from the sealed head ({} if none yet).

        Raises :class:`HistoryError` if the head is malformed or its seal does not verify.
        """
        data = self._head_bytes()
        if data is None:
            return {}
        try:
            doc = json.loads(data)
            modules = doc["modules"]
            seal = _unb64(doc["seal"], "'seal'")
            if not isinstance(modules, dict) or set(doc) != {"modules", "seal"}:
                raise ValueError("expected {modules, seal}")
            out = {}
            for name, entry in modules.items():
                version, digest = entry["version"], entry["digest"]
                if type(version) is not int or not 1 <= version <= _MAX_VERSION or \
                        not isinstance(digest, str) or not _SHA_HEX.fullmatch(digest):
                    raise ValueError(f"bad entry for {name!r}")
                out[str(name)] = (version, digest)
        except (ValueError, KeyError, TypeError) as exc:
            raise HistoryError(f"{self.head_path} is not a valid head: {exc}") from None
        if not verify_signature(self.peer_key, cbor_dumps(modules), seal):
            raise HistoryError(f"{self.head_path}: the peer's seal does not match (edited by hand?)")
        return out

    def _write_head(self, modules: dict[str, tuple[int, str]], sealer: KeyPair) -> None:
        doc = {name: {"version": v, "digest": d} for name, (v, d) in sorted(modules.items())}
        data = json.dumps({"modules": doc, "seal": _b64(sealer.sign(cbor_dumps(doc)))}, sort_keys=True)
        write_atomic(self.head_path, data.encode() + b"\n")

    def reseal(self, sealer: KeyPair) -> dict[str, tuple[int, str]]:
        """Make the head agree with the logs as they are (after the owner has checked them).

        Raises :class:`HistoryError` if a log does not parse.
        """
        with self.lock():
            head = {}
            for module in self.modules():
                versions = self.entries(module)
                if versions:
                    head[module] = (versions[-1].version, versions[-1].digest())
            self._write_head(head, sealer)
            return head

    # -- installing ----------------------------------------------------------------------

    def mark(self, module: str) -> Mark:
        """Where ``module``'s log and the head stand now (call under :meth:`lock`)."""
        log = self._log(module)
        return Mark(module, log.stat().st_size if log.exists() else None, self._head_bytes())

    def undo(self, mark: Mark) -> None:
        """Put the log and the head back where ``mark`` found them (call under :meth:`lock`)."""
        log = self._log(mark.module)
        if mark.log_size is None:
            log.unlink(missing_ok=True)
        else:
            os.truncate(log, mark.log_size)
        if mark.head is None:
            self.head_path.unlink(missing_ok=True)
        else:
            write_atomic(self.head_path, mark.head)

    def record(self, module: str, source: str, *, statement: bytes, cap: bytes | None, rule: str | None,
               action: str, restores: int | None, sealer: KeyPair, now: int) -> Version:
        """Append a version of ``module`` and update the head (call under :meth:`lock`).

        Stores the source first (by hash), then appends the sealed entry
        (fsync), then replaces the head, so a crash leaves at worst an
        unreferenced source or an entry the head does not name yet (which
        ``verify`` reports). Raises :class:`HistoryMismatch` if the head or the
        log's last entry does not check out: fix or :meth:`reseal` first.
        """
        try:
            head = self.head()
            last = self._last(module)
        except HistoryError as exc:
            raise HistoryMismatch(f"{exc} (run `peerbox logic verify`)", module=module) from exc
        if ((last.version, last.digest()) if last else None) != head.get(module):
            raise HistoryMismatch(f"the history of {module!r} does not match the head (run `peerbox logic "
                                  "verify`)", module=module)
        sha = sha256_hex(source)
        src = self._source_path(sha)
        if not src.exists():
            src.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(src, source.encode("utf-8"))
        by = open_statement(statement).by
        unsealed = Version(version=(last.version if last else 0) + 1, module=module, sha256=sha,
                           size=len(source.encode()), time=now, action=action, restores=restores,
                           by=did_from_public_key(by), statement=statement, cap=cap, rule=rule,
                           prev=last.digest() if last else "", seal=b"")
        entry = Version(**{**{f: getattr(unsealed, f) for f in _FIELDS}, "seal": sealer.sign(
            unsealed.signed_bytes())})
        log = self._log(module)
        safe_dir(self.dir / "log", f"{module}.jsonl")
        line = json.dumps(entry.record(), sort_keys=True).encode() + b"\n"
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._write_head({**head, module: (entry.version, entry.digest())}, sealer)
        return entry

    def last(self, module: str) -> Version | None:
        """The latest recorded version of ``module`` (None if none), read from the log's end.

        Raises :class:`HistoryError` if that entry is incomplete or does not parse.
        """
        return self._last(module)

    def live_problem(self, module: str, live: Path) -> str | None:
        """What is wrong with ``live`` (the module's file in ``logic/``) against the latest
        recorded version: changed, deleted or added by hand; None if it matches.

        The same checks as the end of :meth:`verify`, without reading the whole log.
        Raises :class:`HistoryError` if the log's last entry cannot be read.
        """
        last = self._last(module)
        digest: str | None = None
        try:
            if live.is_file():  # as verify sees it: anything else is no live file
                with open(live, "rb") as f:
                    digest = hashlib.file_digest(f, "sha256").hexdigest()
        except FileNotFoundError:
            digest = None
        except OSError as exc:
            return f"{module}: the live file cannot be read: {exc}"
        if last is None:
            return None if digest is None else f"{module}: the live file has no recorded history " \
                "(installed by hand)"
        if last.action == "remove":
            return None if digest is None else f"{module}: the live file exists, yet version " \
                f"{last.version} removed it (changed outside peerbox)"
        if digest is None:
            return f"{module}: logic file is missing, yet version {last.version} is recorded"
        if digest != last.sha256:
            return f"{module}: the live file differs from version {last.version} (changed outside peerbox)"
        return None

    def _last(self, module: str) -> Version | None:
        """The last entry of ``module``'s log, read from its end (an install need not parse it all)."""
        log = self._log(module)
        try:
            with open(log, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - _MAX_LINE))
                tail = f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise HistoryError(f"{log}: cannot read: {exc}", module=module) from None
        if not tail:
            return None
        if not tail.endswith(b"\n"):
            raise HistoryError(f"{log} ends with an incomplete entry (run `peerbox logic verify`)",
                               module=module)
        try:
            return Version.parse(json.loads(tail[:-1].rsplit(b"\n", 1)[-1]))
        except ValueError as exc:
            raise HistoryError(f"{log}: the last entry is not valid: {exc}", module=module) from None

    def verify(self, module: str, live: bytes | None, head: dict[str, tuple[int, str]] | None,
               check_cap: Callable[[Version, bytes], str | None]) -> list[str]:
        """Every problem with ``module``'s history ([] when it checks out).

        ``live`` is the module's current file in ``logic/`` (None: no file);
        ``head`` the verified head (None: it did not verify, reported apart);
        ``check_cap(version, by_key)`` says what is wrong with a version's
        capability, or None. Call under :meth:`lock` (shared).
        """
        versions, problems = self._read(module)
        where = f"{module}: "
        if head is not None:
            named = head.get(module)
            last = (versions[-1].version, versions[-1].digest()) if versions else None
            if named is not None and last != named:
                problems.append(f"{where}the head names version {named[0]}, the log ends "
                                f"{'at version ' + str(last[0]) if last else 'with nothing'} (versions were "
                                "cut off or the log replaced)")
            elif named is None and last is not None:
                problems.append(f"{where}the head does not name this module's history (added by hand?)")
        prev, prev_sealed = "", True
        for v in versions:
            at = f"{where}version {v.version}: "
            if v.module != module:
                problems.append(f"{at}names module {v.module!r}")
            if v.prev != prev and prev_sealed:  # after a broken seal, the break is already reported
                problems.append(f"{at}does not follow the version before it (an entry was removed, "
                                "reordered or edited)")
            prev = v.digest()
            prev_sealed = verify_signature(self.peer_key, v.signed_bytes(), v.seal)
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
        elif versions and live is not None and hashlib.sha256(live).hexdigest() != versions[-1].sha256:
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
