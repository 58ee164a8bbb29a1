"""The records of the shared directory bucket (``peerbox-directory``) and the key-value calls on them.

Two kinds of keys live in the bucket (a peer name has no ``.``, so they cannot be confused):

- ``NAME`` → ``{"did", "url"}``: the *name record*. Written by ``peerbox
  directory add --state`` it is an operator's **static** entry: used as
  written, no expiry (unless ``add --ttl`` gave one). Written by a worker's
  ``serve --publish`` it also carries ``"live": TTL`` (the publishers' TTL in
  seconds) and no URL: it claims the name for a did, and the workers' own
  records say where the peer is reached. Its per-key TTL is
  :func:`claim_ttl` (a multiple of the TTL), rewritten by every heartbeat.
- ``NAME.<worker id>`` → ``{"did", "url", "worker"}``: one **worker record**
  per publishing process (``worker id``: 32 random hex digits of that
  process; ``worker``: its ``--name``, for people). Its per-key TTL is the
  publishers' TTL: rewritten by the worker's heartbeat, gone (removed by the
  NATS server itself, on the server's clock) when the worker stops
  refreshing it. A clean stop marks it ``"stopping": true`` (no longer
  live), removes the name when no other live record of the did is left, and
  then removes it: of several workers stopping at once, the last to mark
  its record sees every other mark, so exactly the last one out removes the
  name.

:class:`RecordStore` makes the key-value calls on an open
:class:`~peerbox.net._jetstream.JetStreamState`; every method raises
:class:`~peerbox.net._jetstream.SharedStateError` when JetStream does not
answer. Values are returned as stored (a dict); validating them is
:mod:`peerbox.net._kvdirectory`'s.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._jetstream import DIRECTORY_BUCKET, JetStreamState, SharedStateError

if TYPE_CHECKING:
    from nats.js.kv import KeyValue

__all__ = ["Record", "RecordStore", "claim_ttl", "is_worker_key", "DEFAULT_PUBLISH_TTL", "MIN_PUBLISH_TTL"]

#: ``serve --publish-ttl`` by default (seconds): a worker record not refreshed within it is gone.
DEFAULT_PUBLISH_TTL = 30
#: The shortest ``--publish-ttl`` (the server's per-key TTL counts whole seconds; the heartbeat
#: writes three times per TTL).
MIN_PUBLISH_TTL = 2
#: A published name record outlives its last worker record by this many TTLs (at least
#: :data:`_CLAIM_MIN` s): long enough for clients to be told "no live worker" rather than
#: "unknown peer", then the server removes it.
_CLAIM_FACTOR = 20
#: JetStream's error code for a per-message TTL on a stream that does not allow them.
_NO_MSG_TTL = 10166
_CLAIM_MIN = 600


def claim_ttl(ttl: float) -> int:
    """The per-key TTL of a published name record, for publishers' TTL ``ttl``."""
    return max(_CLAIM_MIN, math.ceil(ttl * _CLAIM_FACTOR))


def is_worker_key(key: str) -> bool:
    """``NAME.<worker id>`` rather than a name record."""
    return "." in key


@dataclass(frozen=True, slots=True)
class Record:
    """One key of the bucket: its value (as stored, ``{}`` if it is not a JSON object) and revision."""

    key: str
    doc: dict[str, Any]
    revision: int

    @property
    def did(self) -> str:
        return str(self.doc.get("did", ""))

    @property
    def url(self) -> str:
        return str(self.doc.get("url") or "").rstrip("/")

    @property
    def stopping(self) -> bool:
        """A worker record marked by a worker that is stopping cleanly (not live any more)."""
        return self.doc.get("stopping") is True

    @property
    def live_ttl(self) -> float | None:
        """A published name record: the publishers' TTL; None for a static one."""
        ttl = self.doc.get("live")
        return float(ttl) if isinstance(ttl, (int, float)) and not isinstance(ttl, bool) else None


def _doc(value: bytes | None) -> dict[str, Any]:
    try:
        doc = json.loads(value or b"{}")
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _raw(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True).encode()


def _wrong_last(exc: BaseException) -> bool:
    import nats.js.errors as jse

    return isinstance(exc, jse.KeyWrongLastSequenceError)


class RecordStore:
    """Key-value calls on the directory bucket (see the module docstring)."""

    def __init__(self, state: JetStreamState) -> None:
        self.state = state

    def _kv(self) -> KeyValue:
        return self.state.bucket(DIRECTORY_BUCKET)

    def get(self, key: str) -> Record | None:
        """The record at ``key``, or None."""
        kv = self._kv()

        async def get() -> Record | None:
            import nats.js.errors as jse

            try:
                found = await kv.get(key)
            except jse.KeyNotFoundError:  # KeyDeletedError too
                return None
            return Record(key, _doc(found.value), int(found.revision or 0))

        return self.state.call(get, "directory lookup")

    def scan(self, pattern: str = ">") -> list[Record]:
        """Every record whose key matches the subject ``pattern`` (``bob.*``: bob's worker records;
        ``>``: all), by key. One ordered consumer, filtered by the server."""
        kv = self._kv()

        async def scan() -> list[Record]:
            watcher = await kv.watch(pattern, ignore_deletes=True)
            found: dict[str, Record] = {}
            try:
                async for entry in watcher:
                    if entry is None:  # the records there were are all in
                        break
                    if entry.operation is None:
                        found[entry.key] = Record(entry.key, _doc(entry.value), int(entry.revision or 0))
                    else:
                        found.pop(entry.key, None)
                    if entry.delta == 0:
                        break
            finally:
                await watcher.stop()  # type: ignore[no-untyped-call]
            return [found[k] for k in sorted(found)]

        return self.state.call(scan, "directory listing")

    def write(self, key: str, doc: dict[str, Any], last: int | None, ttl: float | None = None) -> bool:
        """Compare-and-set: create ``key`` (``last`` None: only if it is not there) or replace the
        record at revision ``last``; with ``ttl`` the server removes it ``ttl`` s (whole seconds,
        rounded up) after this write unless it is written again. ``False`` if another write came
        first (nothing written)."""
        kv = self._kv()
        raw = _raw(doc)
        msg_ttl = None if ttl is None else float(max(1, math.ceil(ttl)))

        async def write() -> bool:
            try:
                if last is None:
                    await kv.create(key, raw, msg_ttl=msg_ttl)
                else:
                    # nats-py's public update() takes no msg_ttl (2.16); _update is what it and
                    # create() call, with the same compare-and-set header.
                    await kv._update(key, raw, last=last, msg_ttl=msg_ttl)
            except Exception as exc:
                if _wrong_last(exc):
                    return False
                if getattr(exc, "err_code", None) == _NO_MSG_TTL:
                    raise SharedStateError(
                        f"JetStream {self.state.shown}: stream KV_{DIRECTORY_BUCKET} does not allow per-key "
                        "TTLs (needs nats-server 2.11+ and allow_msg_ttl: nats stream edit "
                        f"KV_{DIRECTORY_BUCKET} --allow-msg-ttl)") from exc
                raise
            return True

        return self.state.call(write, "directory write")

    def delete(self, key: str, last: int | None = None) -> bool:
        """Remove ``key`` (with ``last``: only if it is still at that revision). ``False`` if it was
        not there or changed."""
        kv = self._kv()

        async def delete() -> bool:
            import nats.js.errors as jse

            try:
                await kv.get(key)
            except jse.KeyNotFoundError:
                return False
            try:
                await kv.delete(key, last=last)
            except Exception as exc:
                if _wrong_last(exc) or getattr(exc, "err_code", None) in (10071, 10164):
                    return False
                raise
            return True

        return self.state.call(delete, "directory removal")

    def purge(self, key: str, ttl: float) -> None:
        """Remove ``key`` and leave no lasting trace (its purge marker expires after ``ttl`` s): how a
        worker record goes on a clean stop (one per process start, so tombstones would pile up)."""
        kv = self._kv()

        async def purge() -> None:
            await kv.purge(key, msg_ttl=float(max(1, math.ceil(ttl))))

        self.state.call(purge, "directory removal")
