"""The signed version history of a peer's logic modules: an audit trail anyone can check.

Every version of a module a peer's owner (or a capability holder) installs
is recorded, append-only, in ``<peer dir>/logic-history/``::

    log/<module>.jsonl          one JSON object per version, oldest first (appended to)
    sources/<sha256>.rhai       every version's source, by its SHA-256
    head.json                   each module's latest version and entry digest, sealed

Each line of a log is a :class:`~peerbox.peer._versions.Version` (what it
records and its three signatures -- the installer's statement, the grant,
the host's seal naming the previous entry -- are described in
:mod:`peerbox.peer._versions`); the sealed head catches versions cut off
the end and logs deleted whole.

:meth:`History.verify` checks all of it, and that each live file in
``logic/`` is the source of its module's latest version. Nothing here
compiles or decides rights; :mod:`peerbox.peer._logic` does that before
recording.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .._atomic import write_atomic
from .._errors import UsageError
from ..wire import (EnvelopeError, InvalidDid, KeyPair, cbor_dumps, did_from_public_key, public_key_from_did,
                    verify_signature)
from ._versions import FIELDS, MAX_VERSION, SHA_HEX, Version, b64, open_statement, sha256_hex, unb64

__all__ = ["History", "Mark", "HistoryError", "HistoryMismatch", "HISTORY_DIR", "safe_dir"]

#: The history's directory name inside a peer directory.
HISTORY_DIR = "logic-history"
#: The longest log line read back from the end (a 64 KiB capability token, base64, and the rest).
_MAX_LINE = 256 << 10


class HistoryError(UsageError):
    """A version history cannot be read or written (``module`` names which one)."""

    def __init__(self, message: str, *, module: str | None = None) -> None:
        super().__init__(message)
        self.module = module


class HistoryMismatch(HistoryError):
    """The history or the live module does not check out (edited by hand): an install is refused
    until its owner has looked (``peerbox logic verify``). Exit code 8, as ``verify``'s."""

    exit_code = 8


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
        self._held = threading.local()  # this thread's depth of :meth:`lock` (exclusive)

    def _log(self, module: str) -> Path:
        return self.dir / "log" / f"{module}.jsonl"

    def _source_path(self, sha: str) -> Path:
        return self.dir / "sources" / f"{sha}.rhai"

    @property
    def head_path(self) -> Path:
        return self.dir / "head.json"

    @contextlib.contextmanager
    def lock(self, *, shared: bool = False) -> Iterator[None]:
        """Hold the history's lock (across processes and threads): exclusive to install, shared to
        verify. A thread holding it exclusively may take it again (nested: nothing more is locked)."""
        held = getattr(self._held, "depth", 0)
        if held:
            self._held.depth = held + 1
            try:
                yield
            finally:
                self._held.depth = held
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            self._held.depth = 0 if shared else 1
            try:
                yield
            finally:
                self._held.depth = 0
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
            raise HistoryError(f"the source of version {sha[:12]} is missing: {exc}") from exc

    # -- the sealed head ----------------------------------------------------------------

    def _head_bytes(self) -> bytes | None:
        try:
            return self.head_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise HistoryError(f"{self.head_path}: cannot read: {exc}") from exc

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
            seal = unb64(doc["seal"], "'seal'")
            if not isinstance(modules, dict) or set(doc) != {"modules", "seal"}:
                raise ValueError("expected {modules, seal}")
            out = {}
            for name, entry in modules.items():
                version, digest = entry["version"], entry["digest"]
                if type(version) is not int or not 1 <= version <= MAX_VERSION or \
                        not isinstance(digest, str) or not SHA_HEX.fullmatch(digest):
                    raise ValueError(f"bad entry for {name!r}")
                out[str(name)] = (version, digest)
        except (ValueError, KeyError, TypeError) as exc:
            raise HistoryError(f"{self.head_path} is not a valid head: {exc}") from exc
        if not verify_signature(self.peer_key, cbor_dumps(modules), seal):
            raise HistoryError(f"{self.head_path}: the peer's seal does not match (edited by hand?)")
        return out

    def _write_head(self, modules: dict[str, tuple[int, str]], sealer: KeyPair) -> None:
        doc = {name: {"version": v, "digest": d} for name, (v, d) in sorted(modules.items())}
        data = json.dumps({"modules": doc, "seal": b64(sealer.sign(cbor_dumps(doc)))}, sort_keys=True)
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
        entry = Version(**{**{f: getattr(unsealed, f) for f in FIELDS}, "seal": sealer.sign(
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
            raise HistoryError(f"{log}: cannot read: {exc}", module=module) from exc
        if not tail:
            return None
        if not tail.endswith(b"\n"):
            raise HistoryError(f"{log} ends with an incomplete entry (run `peerbox logic verify`)",
                               module=module)
        try:
            return Version.parse(json.loads(tail[:-1].rsplit(b"\n", 1)[-1]))
        except ValueError as exc:
            raise HistoryError(f"{log}: the last entry is not valid: {exc}", module=module) from exc

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
            problems.extend(at + p for p in self.check_statement(v, module, check_cap))
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

    def check_statement(self, v: Version, module: str,
                        check_cap: Callable[[Version, bytes], str | None]) -> list[str]:
        """What is wrong with ``v``'s installer statement for ``module`` ([] when it checks out):
        its signature, that it names this peer, the module and source, and why an installer other
        than the peer was allowed (``check_cap``, or a policy rule)."""
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
