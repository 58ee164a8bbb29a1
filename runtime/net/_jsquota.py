"""Storage quotas shared by the workers of a deployment, on JetStream key-value (``peerbox-quota``).

:class:`JetStreamAccounts` is the :class:`~peerbox.hostcalls._accounts.SharedAccounts`
a worker with ``peerbox serve --state nats://...`` gives its peers' contexts:

- :class:`JetStreamLedger`, the per-caller ledger (a
  :class:`~peerbox.hostcalls._accounts.LedgerStore`), keeps the SQLite
  ledger's semantics (:mod:`peerbox.hostcalls._ledger`) with one record per
  caller and one per path:

  ======================================  =====================================================
  key                                     value (CBOR)
  ======================================  =====================================================
  ``<peer>.u.<sha256(caller)[:32]>``      ``[caller, bytes, entries]``: usage and reservations
  ``<peer>.s.<sha256(path)[:32]>``        ``{caller: [bytes, entry]}``: who holds what of a path
  ======================================  =====================================================

  A reservation is a compare-and-set on the caller's usage record that
  checks the cap and adds in one step (so concurrent reservations from any
  number of workers never pass the cap together); the settle is a
  compare-and-set on the path's record (release every share, give the
  reserving caller its share), then one on each caller whose usage that
  changed (the differences are folded in: a settle only ever lowers a usage
  below what was reserved, so the cap is never passed between the two
  steps). As with SQLite, what can drift is the attribution of one path
  after two concurrent changes of it or a worker dying between its change
  and its settle (the usage then stays over-counted until an owner's
  ``reset``): never in the direction of a cap being passed.
- :class:`JetStreamTally`, the peer-wide tally of an S3 backend:
  ``<peer>.t.<sha256(scope)[:32]>`` → ``[bytes, files]``, created by the first
  worker from its listing (a create: of two workers counting at once, the
  first count stands), then reserved before each change and adjusted after.

``<peer>`` is 16 hex digits of SHA-256 of the peer's did. Whatever JetStream
cannot do (no server, too much contention: :data:`~peerbox.net._jslimits.MAX_TRIES`
lost compare-and-sets in a row) is ``HostCallError("io_error", ...)``: the
change is refused, never made uncounted (fail closed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from ..hostcalls import HostCallError, LedgerStore, Reservation, Tally, Usage, refuse_over_cap
from ..wire import cbor_dumps, cbor_loads
from ._jetstream import JetStreamState, SharedStateError
from ._jslimits import QUOTA_BUCKET, cas

if TYPE_CHECKING:
    from nats.js.kv import KeyValue

__all__ = ["JetStreamAccounts", "JetStreamLedger", "JetStreamTally"]

_T = TypeVar("_T")


def _token(text: str, n: int = 32) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _ints(value: bytes | None, n: int) -> list[int]:
    """The last ``n`` integers of a CBOR list record (zeros for a missing or unreadable one)."""
    if value:
        try:
            decoded = cbor_loads(value)
        except Exception:  # noqa: BLE001 (a record this version did not write: counted as empty)
            decoded = None
        if isinstance(decoded, list) and len(decoded) >= n and all(isinstance(x, int) for x in decoded[-n:]):
            return [int(x) for x in decoded[-n:]]
    return [0] * n


class _Store:
    """Runs the compare-and-sets of one peer's records on the worker's connection."""

    def __init__(self, state: JetStreamState, peer_did: str) -> None:
        self.state = state
        self.prefix = _token(peer_did, 16)

    def run(self, make: Callable[[KeyValue], Awaitable[_T]], what: str) -> _T:
        """``make(kv)`` on the connection's loop; JetStream trouble is ``io_error`` (fail closed), a
        :class:`HostCallError` raised inside (``quota_exceeded``) passes through."""
        try:
            kv = self.state.bucket(QUOTA_BUCKET)

            async def go() -> _T:
                return await make(kv)

            return self.state.call(go, what)
        except SharedStateError as exc:
            raise HostCallError("io_error", f"the shared quota store failed: {exc}") from exc


@dataclass(frozen=True, slots=True)
class _Reserved:
    caller: str
    bytes: int
    entries: int


class JetStreamLedger:
    """The per-caller ledger of one peer on JetStream (see the module docstring)."""

    def __init__(self, state: JetStreamState, peer_did: str) -> None:
        self._store = _Store(state, peer_did)

    def _ukey(self, caller: str) -> str:
        return f"{self._store.prefix}.u.{_token(caller)}"

    def _skey(self, path: str) -> str:
        return f"{self._store.prefix}.s.{_token(path)}"

    # -- what owners ask ---------------------------------------------------------------

    def usage(self, caller: str) -> tuple[int, int]:
        key = self._ukey(caller)

        async def read(kv: KeyValue) -> tuple[int, int]:
            value = await _get(kv, key)
            b, e = _ints(value, 2)
            return b, e

        return self._store.run(read, "quota usage")

    def usages(self) -> dict[str, tuple[int, int]]:
        prefix = f"{self._store.prefix}.u."

        async def read(kv: KeyValue) -> dict[str, tuple[int, int]]:
            out: dict[str, tuple[int, int]] = {}
            for key in await _keys(kv, prefix + ">"):
                value = await _get(kv, key)
                if not value:
                    continue
                decoded = cbor_loads(value)
                b, e = _ints(value, 2)
                if isinstance(decoded, list) and decoded and isinstance(decoded[0], str) and (b or e):
                    out[decoded[0]] = (b, e)
            return out

        return self._store.run(read, "quota usages")

    def reset(self, caller: str | None = None) -> None:
        prefix = self._store.prefix

        async def forget(kv: KeyValue) -> None:
            if caller is None:
                for key in await _keys(kv, f"{prefix}.>"):
                    if ".t." not in key:  # the storage's own tally is not a caller's
                        await kv.delete(key)
                return
            await kv.delete(self._ukey(caller))
            for key in await _keys(kv, f"{prefix}.s.>"):
                await cas(kv, key, lambda v: (None, _drop(v, caller)))

        self._store.run(forget, "quota reset")

    def close(self) -> None:
        """Nothing to release (the connection is the worker's)."""

    # -- the steps of a change ---------------------------------------------------------

    def reserve(self, caller: str, max_bytes: int | None, max_files: int | None, path: str, verb: str, *,
                add_bytes: int, add_entries: int, replace: bool, storage_name: str) -> Reservation:
        ukey, skey = self._ukey(caller), self._skey(path)

        async def go(kv: KeyValue) -> Reservation:
            b, e = add_bytes, add_entries
            if replace:
                held = _shares(await _get(kv, skey)).get(caller)
                if held is not None:
                    b = max(0, b - held[0])
                    e = 0 if held[1] else e

            def change(value: bytes | None) -> tuple[None, bytes | None]:
                used = _ints(value, 2)
                refuse_over_cap(max_bytes, max_files, path, verb, used=(used[0], used[1]), add=(b, e),
                                storage_name=storage_name)
                if not (b or e):
                    return None, None
                return None, cbor_dumps([caller, used[0] + b, used[1] + e])

            await cas(kv, ukey, change)
            return _Reserved(caller, b, e)

        return self._store.run(go, "quota reservation")

    def unreserve(self, r: Reservation) -> None:
        if r.bytes or r.entries:
            self._store.run(lambda kv: self._add(kv, {r.caller: (-r.bytes, -r.entries)}), "quota release")

    def settle(self, path: str, r: Reservation | None, *, release: bool, share: tuple[int, int] | None,
               grow: bool = False) -> None:
        skey = self._skey(path)

        async def go(kv: KeyValue) -> None:
            def change(value: bytes | None) -> tuple[dict[str, tuple[int, int]], bytes | None]:
                shares = _shares(value)
                deltas: dict[str, tuple[int, int]] = {}
                if release:
                    for who, (n, entry) in shares.items():
                        _plus(deltas, who, -n, -entry)
                    shares = {}
                if r is not None:
                    if share is not None:
                        n, entry = share
                        held = shares.get(r.caller)
                        if grow and held is not None:
                            added_entry = 1 if entry and not held[1] else 0
                            shares[r.caller] = (held[0] + n, max(held[1], entry))
                        else:
                            added_entry = entry
                            shares[r.caller] = (n, entry)
                        _plus(deltas, r.caller, n - r.bytes, added_entry - r.entries)
                    else:
                        _plus(deltas, r.caller, -r.bytes, -r.entries)
                if not shares and not _shares(value):
                    return deltas, None  # nobody held the path, nobody does: nothing to write
                return deltas, _encode_shares(shares)

            deltas = await cas(kv, skey, change)
            await self._add(kv, deltas)

        self._store.run(go, "quota settle")

    def settle_dirs(self, created: list[str], r: Reservation) -> None:
        async def go(kv: KeyValue) -> None:
            deltas: dict[str, tuple[int, int]] = {}
            for d in created:
                def change(value: bytes | None) -> tuple[dict[str, tuple[int, int]], bytes | None]:
                    released: dict[str, tuple[int, int]] = {}
                    for who, (n, entry) in _shares(value).items():
                        _plus(released, who, -n, -entry)
                    return released, _encode_shares({r.caller: (0, 1)})

                for who, (n, entry) in (await cas(kv, self._skey(d), change)).items():
                    _plus(deltas, who, n, entry)
            _plus(deltas, r.caller, 0, len(created) - r.entries)
            await self._add(kv, deltas)

        self._store.run(go, "quota settle")

    async def _add(self, kv: KeyValue, deltas: dict[str, tuple[int, int]]) -> None:
        """Fold ``deltas`` (caller → (bytes, entries)) into the callers' usage records (no cap check:
        these only give back or correct)."""
        for who, (b, e) in deltas.items():
            if not (b or e):
                continue

            def change(value: bytes | None, who: str = who, b: int = b, e: int = e) -> tuple[None, bytes]:
                used = _ints(value, 2)
                return None, cbor_dumps([who, used[0] + b, used[1] + e])

            await cas(kv, self._ukey(who), change)


class JetStreamTally:
    """The peer-wide ``(bytes, files)`` of one storage location on JetStream (see the module
    docstring); a :class:`~peerbox.hostcalls._accounts.Tally`."""

    def __init__(self, state: JetStreamState, peer_did: str, scope: str) -> None:
        self._store = _Store(state, peer_did)
        self.key = f"{self._store.prefix}.t.{_token(scope)}"

    def start(self, count: Callable[[], Usage]) -> None:
        key = self.key

        async def exists(kv: KeyValue) -> bool:
            return await _get(kv, key) is not None

        if self._store.run(exists, "quota tally"):
            return
        counted = count()  # a listing: outside the loop (it is the storage's, not NATS's)

        async def create(kv: KeyValue) -> None:
            await cas(kv, key, lambda v: (None, None if v is not None else
                                          cbor_dumps([counted.bytes, counted.files])))

        self._store.run(create, "quota tally")

    def current(self) -> Usage:
        key = self.key

        async def read(kv: KeyValue) -> Usage:
            b, f = _ints(await _get(kv, key), 2)
            return Usage(b, f)

        return self._store.run(read, "quota tally")

    def reserve(self, check: Callable[[Usage], None], add_bytes: int, add_entries: int) -> None:
        self._change(check, add_bytes, add_entries)

    def adjust(self, add_bytes: int, add_entries: int) -> None:
        if add_bytes or add_entries:
            self._change(None, add_bytes, add_entries)

    def _change(self, check: Callable[[Usage], None] | None, add_bytes: int, add_entries: int) -> None:
        key = self.key

        def change(value: bytes | None) -> tuple[None, bytes]:
            b, f = _ints(value, 2)
            if check is not None:
                check(Usage(b, f))  # quota_exceeded: nothing written
            return None, cbor_dumps([b + add_bytes, f + add_entries])

        self._store.run(lambda kv: cas(kv, key, change), "quota tally")


class JetStreamAccounts:
    """The quota stores of one worker's peers on its shared state (a
    :class:`~peerbox.hostcalls._accounts.SharedAccounts`)."""

    def __init__(self, state: JetStreamState) -> None:
        self.state = state

    def ledger(self, peer_did: str) -> LedgerStore:
        return JetStreamLedger(self.state, peer_did)

    def tally(self, peer_did: str, scope: str) -> Tally:
        return JetStreamTally(self.state, peer_did, scope)


# -- records -------------------------------------------------------------------------------


async def _get(kv: KeyValue, key: str) -> bytes | None:
    import nats.js.errors as jse

    try:
        entry = await kv.get(key)
    except jse.KeyNotFoundError:
        return None
    return entry.value or None


async def _keys(kv: KeyValue, pattern: str) -> list[str]:
    """The keys matching the subject ``pattern`` (a watch of their latest values, then stopped)."""
    watcher = await kv.watch(pattern, ignore_deletes=True, meta_only=True)
    keys: list[str] = []
    try:
        async for entry in watcher:
            if entry is None:  # caught up
                break
            keys.append(entry.key)
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
    return keys


def _shares(value: bytes | None) -> dict[str, tuple[int, int]]:
    """A path record: caller → (bytes, entry)."""
    if not value:
        return {}
    try:
        decoded = cbor_loads(value)
    except Exception:  # noqa: BLE001 (unreadable: nobody holds it)
        return {}
    if not isinstance(decoded, dict):
        return {}
    return {str(k): (int(v[0]), int(v[1])) for k, v in decoded.items()
            if isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) for x in v)}


def _encode_shares(shares: dict[str, tuple[int, int]]) -> bytes:
    return cbor_dumps({k: [n, entry] for k, (n, entry) in shares.items()})


def _drop(value: bytes | None, caller: str) -> bytes | None:
    shares = _shares(value)
    if caller not in shares:
        return None
    del shares[caller]
    return _encode_shares(shares)


def _plus(deltas: dict[str, tuple[int, int]], who: str, b: int, e: int) -> None:
    ob, oe = deltas.get(who, (0, 0))
    deltas[who] = (ob + b, oe + e)
