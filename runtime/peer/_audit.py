"""A peer's audit log: one JSON line per decision on a request, rotated by size, read by its owner.

``<root>/peers/NAME/audit.log`` records what a worker decided about each
authenticated request addressed to the peer (:class:`AuditRecord`: time,
caller, request type, action, resource, decision, deciding rule, outcome,
nonce). It is the runtime's own record, not the peer's data: it is written
with plain file calls (no host call, no quota) and is never readable by a
script.

Writing (:meth:`AuditLog.append`) is one ``write(2)`` of one whole line on a
descriptor opened with ``O_APPEND``, so the lines of several threads and of
several processes (``peerbox serve --workers N``) never interleave. When a
line would take the file over ``max_bytes`` it is rotated first
(``audit.log`` → ``audit.log.1`` → … → ``audit.log.K``, the oldest dropped),
under an exclusive ``flock`` on ``audit.log.lock``; a writer that finds the
file it holds is no longer ``audit.log`` (another process rotated it: the
inode differs) only reopens it. A descriptor still on a rotated file is full,
so its next append checks again: at most the lines racing the rename land
in ``audit.log.1``, whole. Reading (:meth:`AuditLog.records`) takes the same
lock shared, so it never sees a rotation half done, and yields the records
of every file, oldest first.
"""

from __future__ import annotations

import datetime as _dt
import enum
import fcntl
import json
import os
import re
import threading
from collections.abc import Container, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._peers import Peer, PeerError

__all__ = ["AuditLog", "AuditRecord", "AuditError", "Decision", "Rotation", "AUDIT_FILE",
           "DEFAULT_ROTATION", "parse_since", "format_time", "parse_time"]

#: The audit log's file name in a peer's directory.
AUDIT_FILE = "audit.log"
_LOCK_SUFFIX = ".lock"


class AuditError(PeerError):
    """The audit log cannot be written or read (permissions, a full disk). ``path`` names the file."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class Decision(enum.StrEnum):
    """What was decided about a request: it may go on, it was denied, or its caller's rate refused it."""

    ALLOWED = "allowed"
    DENIED = "denied"
    RATE_LIMITED = "rate_limited"


@dataclass(frozen=True, slots=True)
class Rotation:
    """When an audit log rotates: past ``max_bytes`` bytes, keeping ``keep`` old files
    (``audit.log.1`` .. ``audit.log.K``; 0: the old lines are dropped)."""

    max_bytes: int = 10 << 20
    keep: int = 5


DEFAULT_ROTATION = Rotation()


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One decision: ``time`` (Unix seconds), the ``caller``'s did and local ``caller_name`` (None:
    nothing names it here), the request ``type`` (``exec``, ``call``, ``logic``, ``revoke``), the
    ``action`` decided (``exec``, ``call``, ``logic.write``...), the ``resource`` (a script's
    ``sha256:HEX``, ``MODULE::FUNCTION``, a logic module's name; ``""`` for none), the
    ``decision``, the deciding ``rule`` (``policy.toml:12``; None when no rule decided), the
    ``outcome`` (``ok``, ``script_error``, ``limit``, ``denied``, ``rate_limited``), the
    request's ``nonce`` (hex) and, for a run that ended on a host call the policy refused,
    that call's action (``denied_action``)."""

    time: float
    caller: str
    caller_name: str | None
    type: str
    action: str
    resource: str
    decision: Decision
    rule: str | None
    outcome: str
    nonce: str
    denied_action: str | None = None

    def to_line(self) -> bytes:
        """The record as one JSON line (UTF-8, ending in a newline; fields in a stable order)."""
        doc = {"time": format_time(self.time), "caller": self.caller, "caller_name": self.caller_name,
               "type": self.type, "action": self.action, "resource": self.resource,
               "decision": str(self.decision), "rule": self.rule, "outcome": self.outcome,
               "nonce": self.nonce}
        if self.denied_action is not None:
            doc["denied_action"] = self.denied_action
        return (json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n").encode()

    @classmethod
    def from_line(cls, line: bytes) -> AuditRecord | None:
        """The record a line holds, or None if it holds none (a torn or foreign line)."""
        try:
            doc = json.loads(line)
            if not isinstance(doc, dict):
                return None
            return cls(time=parse_time(str(doc["time"])), caller=str(doc["caller"]),
                       caller_name=_opt(doc.get("caller_name")), type=str(doc["type"]),
                       action=str(doc["action"]), resource=str(doc.get("resource", "")),
                       decision=Decision(doc["decision"]), rule=_opt(doc.get("rule")),
                       outcome=str(doc["outcome"]), nonce=str(doc.get("nonce", "")),
                       denied_action=_opt(doc.get("denied_action")))
        except (ValueError, KeyError, TypeError):
            return None

    def as_dict(self) -> dict[str, Any]:
        """The record as the JSON object of its line."""
        doc: dict[str, Any] = json.loads(self.to_line())
        return doc


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


def format_time(t: float) -> str:
    """Unix seconds as ISO 8601 UTC with milliseconds (``2025-01-02T03:04:05.678Z``)."""
    stamp = _dt.datetime.fromtimestamp(t, _dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def parse_time(text: str) -> float:
    """An ISO 8601 time (``Z`` or an offset; no offset: UTC) as Unix seconds. Raises ``ValueError``."""
    stamp = _dt.datetime.fromisoformat(text.strip())
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=_dt.UTC)
    return stamp.timestamp()


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: float) -> float:
    """``--since``: a duration back from ``now`` (``90s``, ``15m``, ``2h``, ``1d``, ``1w``) or an
    ISO 8601 time; the Unix time it means. Raises :class:`~peerbox.UsageError` for anything else."""
    match = _DURATION.match(text.strip())
    if match:
        return now - float(match.group(1)) * _UNIT[match.group(2)]
    try:
        return parse_time(text)
    except ValueError as exc:
        raise PeerError(f"--since expects a duration (30s, 15m, 2h, 1d, 1w) or an ISO 8601 time, "
                        f"got {text!r}") from exc


class AuditLog:
    """The audit log at ``path`` (see the module docstring); thread-safe, several processes may
    append to the same file. ``rotation`` None: never rotated. :meth:`close` releases the descriptor."""

    def __init__(self, path: str | os.PathLike[str], rotation: Rotation | None = DEFAULT_ROTATION) -> None:
        self.path = os.fspath(path)
        self.rotation = rotation
        self._lock = threading.Lock()
        self._fd = -1

    @classmethod
    def of(cls, peer: Peer, rotation: Rotation | None = DEFAULT_ROTATION) -> AuditLog:
        """The audit log of a local ``peer`` (``<peer dir>/audit.log``)."""
        return cls(peer.paths.dir / AUDIT_FILE, rotation)

    # -- writing ---------------------------------------------------------------------------

    def append(self, record: AuditRecord) -> None:
        """Append ``record`` as one line with one write (rotating first if it would not fit).

        Raises :class:`AuditError` when the file cannot be opened, rotated or written."""
        line = record.to_line()
        with self._lock:
            try:
                fd = self._fd if self._fd >= 0 else self._open()
                rot = self.rotation
                if rot is not None and os.fstat(fd).st_size + len(line) > rot.max_bytes:
                    fd = self._rotate(fd, len(line), rot)
                written = os.write(fd, line)
            except OSError as exc:
                raise AuditError(f"cannot write the audit log {self.path}: {exc.strerror or exc}",
                                 path=self.path) from exc
        if written != len(line):  # a full disk: the partial line is skipped by readers
            raise AuditError(f"cannot write the audit log {self.path}: short write", path=self.path)

    def _open(self) -> int:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self._fd

    def _rotate(self, fd: int, incoming: int, rot: Rotation) -> int:
        """Rotate the files unless another process already did (then only reopen); the new fd."""
        lock = os.open(self.path + _LOCK_SUFFIX, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                current: os.stat_result | None = os.stat(self.path)
            except FileNotFoundError:
                current = None
            mine = os.fstat(fd)
            if (current is not None and (current.st_ino, current.st_dev) == (mine.st_ino, mine.st_dev)
                    and current.st_size + incoming > rot.max_bytes and current.st_size > 0):
                for i in range(rot.keep, 1, -1):
                    older = f"{self.path}.{i - 1}"
                    if os.path.exists(older):
                        os.replace(older, f"{self.path}.{i}")
                if rot.keep >= 1:
                    os.replace(self.path, f"{self.path}.1")
                else:
                    os.unlink(self.path)
            os.close(fd)
            self._fd = -1
            return self._open()
        finally:
            os.close(lock)  # releases the flock

    def close(self) -> None:
        """Close the descriptor (a later append reopens it). Idempotent."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    # -- reading ---------------------------------------------------------------------------

    def files(self) -> list[Path]:
        """The log's files that exist, oldest first (``audit.log.K`` .. ``audit.log.1``, ``audit.log``)."""
        base = Path(self.path)
        rotated: list[tuple[int, Path]] = []
        prefix = base.name + "."
        try:
            names = os.listdir(base.parent)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise AuditError(f"cannot list {base.parent}: {exc.strerror or exc}", path=self.path) from exc
        for name in names:
            suffix = name[len(prefix):]
            if name.startswith(prefix) and suffix.isdigit():
                rotated.append((int(suffix), base.parent / name))
        out = [p for _, p in sorted(rotated, reverse=True)]
        if base.name in names:
            out.append(base)
        return out

    def records(self, *, since: float | None = None,
                callers: Container[str] | None = None) -> Iterator[AuditRecord]:
        """Every record, oldest first, across the rotated files; only those at or after ``since``
        (Unix seconds) and, with ``callers``, whose caller did or name is in it. Lines that hold no
        record (torn by a crash) are skipped. Raises :class:`AuditError` when a file cannot be read."""
        for line in self._lines():
            record = AuditRecord.from_line(line)
            if record is None or (since is not None and record.time < since):
                continue
            if callers is not None and record.caller not in callers and (
                    record.caller_name is None or record.caller_name not in callers):
                continue
            yield record

    def _lines(self) -> list[bytes]:
        """Every line of every file, oldest first, read under the shared lock (released before any
        record is yielded: a slow reader never holds up a writer's rotation)."""
        lock = -1
        try:
            lock = os.open(self.path + _LOCK_SUFFIX, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            pass  # never rotated (or not ours to lock): nothing moves under the reader
        lines: list[bytes] = []
        try:
            if lock >= 0:
                fcntl.flock(lock, fcntl.LOCK_SH)
            for path in self.files():
                try:
                    with open(path, "rb") as f:
                        lines += f.readlines()
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise AuditError(f"cannot read the audit log {path}: {exc.strerror or exc}",
                                     path=os.fspath(path)) from exc
        finally:
            if lock >= 0:
                os.close(lock)
        return lines
