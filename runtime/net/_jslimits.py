"""Rate limits and storage quotas shared by every worker of a deployment, on JetStream key-value.

A worker with ``peerbox serve --state nats://...`` hands its peers' handlers
these instead of the SQLite files under its own root, so a caller's
``calls_per_minute`` and ``max_bytes`` hold across all the workers together:

==================  =======================================================  ==========================
bucket              key → value                                              expiry
==================  =======================================================  ==========================
``peerbox-rates``   ``<target>.<sha256(caller did)[:32]>`` → CBOR map        a minute after the last
                    rule key → ``tat`` (the GCRA theoretical arrival time)   ``tat`` (per-message TTL)
``peerbox-quota``   ``<target>.u.<sha256(caller)[:32]>`` → CBOR
                    ``[bytes, entries]`` (a caller's usage and reservations)  never
                    ``<target>.s.<sha256(path)[:32]>`` → CBOR map caller →
                    ``[bytes, entry]`` (who holds what of one path)           never
                    ``<target>.peer`` → CBOR ``[bytes, files]`` (the S3
                    backend's peer-wide tally)                                never
==================  =======================================================  ==========================

Every change is a read, then a compare-and-set on the key's revision
(``update(..., last=revision)``, or ``create`` for a missing key); a
conflict (another worker wrote in between) reads again and retries, at most
:data:`MAX_TRIES` times with a short random pause, then fails. Whatever the
stores cannot do (JetStream unreachable, too much contention) **fails
closed**: a rate check raises :class:`~peerbox.trust.RateStoreError` (the
request is refused ``unavailable``, never run), a quota reservation raises
``HostCallError("io_error", ...)`` (the write is refused). A denied rate
check writes nothing, so only admitted requests contend.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from ..policy import RateLimit
from ..trust import RateDenial, RateStoreError, gcra
from ..wire import cbor_dumps, cbor_loads
from ._jetstream import JetStreamState, SharedStateError, target_token

if TYPE_CHECKING:
    from nats.js.kv import KeyValue

__all__ = ["JetStreamRates", "RATE_BUCKET", "QUOTA_BUCKET", "MAX_TRIES", "LIMIT_BUCKETS", "cas"]

RATE_BUCKET = "peerbox-rates"
QUOTA_BUCKET = "peerbox-quota"
#: The buckets these stores need (for :class:`~peerbox.net._jetstream.JetStreamState`'s ``buckets``).
LIMIT_BUCKETS: tuple[tuple[str, float | None], ...] = ((RATE_BUCKET, None), (QUOTA_BUCKET, None))
#: How many compare-and-set attempts one change makes before it fails.
MAX_TRIES = 64
#: How long a rate record outlives its latest ``tat`` (after it, the bucket is full anyway).
_RATE_SLACK = 60.0

_T = TypeVar("_T")


def caller_token(caller: str) -> str:
    """A bounded key token for a caller did (or a path): 32 hex digits of its SHA-256."""
    return hashlib.sha256(caller.encode()).hexdigest()[:32]


async def cas(kv: KeyValue, key: str, change: Callable[[bytes | None], tuple[_T, bytes | None]],
              *, ttl: Callable[[], float | None] = lambda: None) -> _T:
    """Apply ``change`` to the value at ``key`` by compare-and-set: ``change(current or None)``
    returns ``(result, new value)``, or ``(result, None)`` to write nothing. Retried on a conflict
    (at most :data:`MAX_TRIES` reads and writes); ``ttl()`` is the new message's TTL (None: none).
    Returns the result of the attempt that was written (or wrote nothing). Raises
    :class:`~peerbox.net._jetstream.SharedStateError` when every attempt lost, and nats-py's
    errors."""
    import nats.js.errors as jse

    for attempt in range(MAX_TRIES):
        try:
            entry = await kv.get(key)
            current, revision = entry.value, entry.revision
        except jse.KeyNotFoundError:
            current, revision = None, None
        result, new = change(current)
        if new is None:
            return result
        try:
            if revision is None:
                await kv.create(key, new, msg_ttl=ttl())
            else:
                # nats-py's public update takes no per-message TTL; its create goes through _update too
                await kv._update(key, new, last=revision, msg_ttl=ttl())
            return result
        except jse.KeyWrongLastSequenceError:
            # another worker wrote first: read again, after a short random pause growing with the tries
            await asyncio.sleep(random.uniform(0, 0.0005 * min(attempt + 1, 20)))
    raise SharedStateError(f"JetStream {key}: {MAX_TRIES} conflicting writes in a row (too many "
                           "concurrent updates)")


class JetStreamRates:
    """The rate buckets of one peer (``target``: its public key) in :data:`RATE_BUCKET`: a
    :class:`~peerbox.trust.RateStore` (see the module docstring).

    One record per caller holds every rule's ``tat``, so a request limited by
    several rules takes from all or none in one compare-and-set. Costs one
    read for a request over its rate, one read and one write for one under it
    (more under contention). Raises :class:`~peerbox.trust.RateStoreError`
    when JetStream cannot be used or the compare-and-set keeps losing.
    ``close`` does nothing (the connection is the worker's).
    """

    def __init__(self, state: JetStreamState, target: bytes) -> None:
        self.state = state
        self.prefix = target_token(target)

    def key(self, caller_did: str) -> str:
        """The bucket key of ``caller_did``'s record at this peer."""
        return f"{self.prefix}.{caller_token(caller_did)}"

    def take(self, caller_did: str, limits: Sequence[RateLimit], now: float) -> RateDenial | None:
        """As :meth:`peerbox.trust.RateLimiter.take`, across every worker sharing the bucket."""
        if not limits:
            return None
        key = self.key(caller_did)
        latest = [now]

        def change(current: bytes | None) -> tuple[RateDenial | None, bytes | None]:
            tats = _decode_tats(current)
            denial, new = gcra(tats, limits, now)
            if denial is not None:
                return denial, None
            tats.update(new)
            tats = {k: t for k, t in tats.items() if t > now - _RATE_SLACK}  # full again: forget
            latest[0] = max(tats.values(), default=now)
            return None, cbor_dumps(tats)

        def ttl() -> float:
            return float(max(1, math.ceil(latest[0] - now + _RATE_SLACK)))

        return self._run(lambda kv: cas(kv, key, change, ttl=ttl))

    def _run(self, make: Callable[[KeyValue], Awaitable[_T]]) -> _T:
        try:
            kv = self.state.bucket(RATE_BUCKET)

            async def go() -> _T:
                return await make(kv)

            return self.state.call(go, "rate limit")
        except SharedStateError as exc:
            raise RateStoreError(f"shared rate limits: {exc}") from exc

    def close(self) -> None:
        """Nothing to release (the connection is the worker's)."""


def _decode_tats(value: bytes | None) -> dict[str, float]:
    """A rate record (rule key → tat); an unreadable one counts as empty (every bucket full)."""
    if not value:
        return {}
    try:
        decoded = cbor_loads(value)
    except Exception:  # noqa: BLE001 (a record this version did not write)
        return {}
    if not isinstance(decoded, dict):
        return {}
    return {str(k): float(v) for k, v in decoded.items() if isinstance(v, (int, float))}
