"""The stores on JetStream key-value buckets (:mod:`peerbox.net._jetstream`): nonces, revocations
and the reply cache, each behind the interface its user defines (the directory's records are
:mod:`peerbox.net._kvrecords`).

- :class:`JetStreamNonces` is a :class:`~peerbox.wire.ReplayGuard`: the
  first-seen check is the bucket's atomic *create* (it fails when the key
  exists), acknowledged by JetStream (stored to its file store) before the
  call returns, so, as with the SQLite store, a reply never leaves before its
  nonce is durable, and of two workers given the same envelope exactly one
  gets "unseen". A key whose stored ``exp`` has passed but that is still there
  (the server's TTL sweep has not run yet) is replaced with a compare-and-set
  on its revision: unseen again, as with SQLite.
- :class:`JetStreamRevocations` is a :class:`~peerbox.trust.Revocations`:
  token id → record. Each worker holds the set in memory, filled and kept up
  to date by a watch on the bucket (a revocation by one worker reaches the
  others in one message delivery); until the watch has caught up, a lookup
  asks the bucket. :class:`SharedRevocations` checks it together with the local
  peers' files (``peerbox cap revoke`` writes those).
- :class:`ReplyCache`: the signed answer to a request, keyed by its hash (the
  ``req`` the reply carries), so a retry of the same signed bytes after a lost
  reply gets the same bytes back, from any worker, instead of ``replay``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..trust import Revocations
from ..wire import NonceStoreError, cbor_dumps, cbor_loads
from ._h2server import HttpResponse
from ._jetstream import (NONCE_BUCKET, REPLY_BUCKET, REVOKED_BUCKET, JetStreamState,
                         SharedStateError, target_token)

if TYPE_CHECKING:
    from nats.js.kv import KeyValue

__all__ = ["JetStreamNonces", "JetStreamRevocations", "SharedRevocations", "ReplyCache", "CachedReply"]

log = logging.getLogger("peerbox.state")


def _wrong_last(exc: BaseException) -> bool:
    import nats.js.errors as jse

    return isinstance(exc, jse.KeyWrongLastSequenceError)


class JetStreamNonces:
    """The replay guard of one peer (``target``: its public key) in the shared nonce bucket.

    ``seen_or_add`` costs one key-value create round trip for a new pair (two
    more for a replay: read the stored ``exp``, and replace it if expired).
    Raises :class:`~peerbox.wire.NonceStoreError` when JetStream does not
    answer or refuses (the request is then refused ``unavailable``, never
    run). ``close`` does nothing: the connection is the worker's.
    """

    def __init__(self, state: JetStreamState, target: bytes) -> None:
        self.state = state
        self.prefix = target_token(target)

    def key(self, caller: bytes, nonce: bytes) -> str:
        """The bucket key of ``(caller, nonce)`` at this peer (a caller key is 32 bytes: unambiguous)."""
        return f"{self.prefix}.{hashlib.sha256(caller + nonce).hexdigest()}"

    def seen_or_add(self, caller: bytes, nonce: bytes, exp: int, now: int) -> bool:
        """Record ``(caller, nonce)`` until ``exp``; ``True`` if an unexpired record was there.
        Returns once JetStream acknowledged the write. Raises :class:`NonceStoreError`."""
        kv = self._kv()
        key = self.key(caller, nonce)
        value = str(exp).encode()
        ttl = float(max(1, exp - now + 1))

        async def create() -> bool:
            try:
                await kv.create(key, value, msg_ttl=ttl)
                return False
            except Exception as exc:
                if not _wrong_last(exc):
                    raise
            return await self._judge_existing(kv, key, value, now)

        try:
            return self.state.call(create, "nonce check")
        except SharedStateError as exc:
            raise NonceStoreError(f"shared nonce store: {exc}") from exc

    @staticmethod
    async def _judge_existing(kv: KeyValue, key: str, value: bytes, now: int) -> bool:
        """The key exists: seen, unless its ``exp`` has passed (then replace it, compare-and-set)."""
        import nats.js.errors as jse

        try:
            entry = await kv.get(key)
        except jse.KeyNotFoundError:  # expired or deleted between the two calls: try once more
            try:
                await kv.create(key, value)
                return False
            except jse.KeyWrongLastSequenceError:
                return True
        try:
            stored = int((entry.value or b"0").decode())
        except ValueError:
            stored = 0
        if stored > now:
            return True
        try:
            await kv.update(key, value, last=entry.revision)
        except jse.KeyWrongLastSequenceError:  # another worker replaced it first
            return True
        return False

    def _kv(self) -> KeyValue:
        try:
            return self.state.bucket(NONCE_BUCKET)
        except SharedStateError as exc:
            raise NonceStoreError(f"shared nonce store: {exc}") from exc

    def close(self) -> None:
        """Nothing to release (the connection is the worker's)."""


class JetStreamRevocations:
    """Revoked token ids in the shared bucket, mirrored in memory by a watch (see the module docstring).

    :meth:`start` begins the watch (the worker does once the state is open).
    Raises :class:`SharedStateError` (a :class:`~peerbox.Error`) when a lookup or a
    revocation cannot reach JetStream.
    """

    def __init__(self, state: JetStreamState) -> None:
        self.state = state
        self._ids: set[str] = set()
        self._lock = threading.Lock()
        self._caught_up = threading.Event()

    def start(self) -> None:
        """Start the watch: every record of the bucket, then each new one, into memory."""
        self.state.watch(REVOKED_BUCKET, self._seen, self._caught_up, "revocations", meta_only=True)

    def _seen(self, entry: Any) -> None:
        with self._lock:
            if entry.operation is None:
                self._ids.add(entry.key)
            else:
                self._ids.discard(entry.key)

    @property
    def watching(self) -> bool:
        """The watch has caught up: lookups are answered from memory."""
        return self._caught_up.is_set()

    def is_revoked(self, tid: bytes) -> bool:
        """Whether ``tid`` is revoked (in memory once the watch caught up, else asked of the bucket).
        Raises :class:`SharedStateError`."""
        key = tid.hex()
        with self._lock:
            if key in self._ids:
                return True
        if self._caught_up.is_set():
            return False
        kv = self.state.bucket(REVOKED_BUCKET)

        async def get() -> bool:
            import nats.js.errors as jse

            try:
                await kv.get(key)
                return True
            except jse.KeyNotFoundError:
                return False

        return self.state.call(get, "revocation lookup")

    def revoke_id(self, tid: bytes) -> bool:
        """Record ``tid`` (acknowledged before returning); ``True`` if it was there already. Raises
        :class:`SharedStateError`."""
        key = tid.hex()
        kv = self.state.bucket(REVOKED_BUCKET)

        async def create() -> bool:
            try:
                await kv.create(key, json.dumps({"v": 1}).encode())
                return False
            except Exception as exc:
                if _wrong_last(exc):
                    return True
                raise

        already = self.state.call(create, "revocation")
        with self._lock:
            self._ids.add(key)
        return already


class SharedRevocations:
    """A token is revoked if the shared bucket or a local peer's file says so; a revocation sent to
    a worker is recorded in the shared bucket (every worker sees it)."""

    def __init__(self, shared: JetStreamRevocations, local: Revocations) -> None:
        self.shared = shared
        self.local = local

    def is_revoked(self, tid: bytes) -> bool:
        """Revoked here (the local files) or anywhere (the bucket). Raises what either raises."""
        return self.local.is_revoked(tid) or self.shared.is_revoked(tid)

    def revoke_id(self, tid: bytes) -> bool:
        """Record ``tid`` in the bucket; ``True`` if it was revoked already. Raises what it raises."""
        return self.shared.revoke_id(tid)


@dataclass(frozen=True, slots=True)
class CachedReply:
    """An answer as sent: HTTP status, headers and the signed body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def response(self) -> HttpResponse:
        return HttpResponse(status=self.status, headers=self.headers, body=self.body)


class ReplyCache:
    """Signed answers by request hash in the reply bucket (see the module docstring).

    :meth:`get` and :meth:`put` raise :class:`SharedStateError`. A reply
    larger than the server's ``max_payload`` cannot be kept (:meth:`put`
    raises; the worker logs it and answers anyway).
    """

    def __init__(self, state: JetStreamState) -> None:
        self.state = state
        state.bucket(REPLY_BUCKET)  # raises if the state was opened without replies
        self.hits = 0
        self.stores = 0

    @staticmethod
    def key(target: bytes, digest: bytes) -> str:
        return f"{target_token(target)}.{digest.hex()}"

    def get(self, target: bytes, digest: bytes) -> CachedReply | None:
        """The answer kept for the request with hash ``digest`` to ``target``, if any."""
        kv = self.state.bucket(REPLY_BUCKET)
        key = self.key(target, digest)

        async def get() -> bytes | None:
            import nats.js.errors as jse

            try:
                entry = await kv.get(key)
            except jse.KeyNotFoundError:
                return None
            return entry.value

        raw = self.state.call(get, "reply cache lookup")
        if raw is None:
            return None
        doc = cbor_loads(raw)
        self.hits += 1
        return CachedReply(status=int(doc["s"]), headers=tuple((str(k), str(v)) for k, v in doc["h"]),
                           body=bytes(doc["b"]))

    def put(self, target: bytes, digest: bytes, reply: CachedReply, ttl: float) -> None:
        """Keep ``reply`` for ``ttl`` s (at least 1; the bucket's own bound applies too). The first
        answer kept for a request stays (a second put changes nothing)."""
        kv = self.state.bucket(REPLY_BUCKET)
        key = self.key(target, digest)
        raw = cbor_dumps({"s": reply.status, "h": [list(h) for h in reply.headers], "b": reply.body})

        async def create() -> None:
            try:
                await kv.create(key, raw, msg_ttl=max(1.0, ttl))
            except Exception as exc:
                if not _wrong_last(exc):
                    raise

        self.state.call(create, "reply cache write")
        self.stores += 1
