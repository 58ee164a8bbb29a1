"""A peer's records on S3: one object per record, index objects, unique markers.

The same interface and semantics as the SQLite store
(:class:`~peerbox.hostcalls._records.Records`: validation, keys, conflicts,
row scopes, the filter language, ``order_by``, ``limit`` and ``after``
cursors, error kinds and messages) for a peer whose storage is the s3
backend. Layout under the peer's prefix ``P`` (the directory carries the
reserved prefix of :mod:`._paths`, so ``fs::`` never names or lists it)::

    P.peerbox-tmp-records/schema                   the applied schema (JSON: digest, canonical, text)
    P.peerbox-tmp-records/<coll>/r/<key code>      a record: CBOR [key, record]
    P.peerbox-tmp-records/<coll>/n                 the auto-key counter (the last key handed out)
    P.peerbox-tmp-records/<coll>/i/<index>/<values code>-<key code>       an index entry (empty)
    P.peerbox-tmp-records/<coll>/u/<unique>/<values code>                 a unique marker: its key code

Codes are :mod:`._recstore`'s order-preserving hex, so S3's key order is
SQLite's value order: records list in key order, and an index's entries in
the order of its fields' values (each unique constraint has index entries
too). The **record object is the truth**; index entries are hints:

* writes go unique markers, then index entries, then the record, then
  (update, delete) the old entries and markers are removed. A crash leaves
  at most entries and markers too many, never a record its entries miss;
* a query lists candidates (a key range of the record listing or of an
  index whose first field the filter bounds with eq, in, a range or a
  prefix; else every record), GETs each record, and re-checks every fetched
  record against the filter, the row scope and the cursor, ordering and
  limiting with the SQLite store's own SQL (an in-memory table): the same
  answers by construction. An entry whose record is gone or no longer
  holds its values is skipped, and deleted once older than ``stale_after``;
* a unique marker is created with ``If-None-Match: *``. One that exists is
  a conflict unless it is **stale**: it names a record that does not exist
  or does not hold the marker's values, and it is older than
  ``stale_after`` seconds (so a write in progress, which takes its markers
  before it writes its record, is never taken for a crash). A stale marker
  is reclaimed with a PUT ``If-Match`` its ETag (one winner). After its
  record is written, a writer re-reads its markers and undoes the write if
  one was reclaimed meanwhile (a writer stalled longer than ``stale_after``);
* auto keys: the counter object is advanced by a conditional PUT
  (``If-Match`` its ETag), retried with jittered backoff, so workers on
  one prefix never hand out one key twice; keys are never reused.

Costs: a write is 3 to 6 requests plus 2 per index; ``get`` one GET; a query
one listing plus one GET per candidate record (an unindexed filter: every
record of the collection). Reads take no lock; two stores on one prefix
(two workers) are safe by the conditional PUTs alone.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cbor2

from ._dbquery import column, compile_where
from ._errors import HostCallError, show
from ._recstore import RowScope, encode, encode_value, text_prefix
from ._paths import TEMP_PREFIX
from ._records import MAX_QUERY_LIMIT, MAX_RECORD_BYTES, Records, _Table, plan_query, result_page
from ._schema import Schema
from ._validate import type_name, validate_record

if TYPE_CHECKING:
    from ._s3store import ObjectStore

__all__ = ["S3Records", "RECORDS_DIR", "STALE_AFTER"]

#: The directory of a peer's records under its prefix.
RECORDS_DIR = TEMP_PREFIX + "records"
#: A marker or index entry without its record is taken for a crash's leftover after this long.
STALE_AFTER = 60.0
_ATTEMPTS = 16
_FETCHERS = 8  # GETs a query runs at a time (obstore releases the GIL)
_BACKOFF_BASE = 0.004
_BACKOFF_CAP = 0.25
_HIGH = "~"  # sorts after every character of a name (hex digits, "-" and "#")
_SEP = "-"  # between an index entry's values and its record's name
_WHERE = "records"  # the "path" an io_error names
# An object name's last segment stays under 255 bytes (SeaweedFS refuses longer ones):
_VALUES_CUT = 150  # characters of an index entry's values code, then "-" and its record's name
_KEY_CUT = 60  # characters of a record's name before "#" and 32 of its code's SHA-256


def _cut(code: str, limit: int) -> str:
    """``code`` cut to ``limit`` characters (an object name's segment is short). Cutting keeps the
    order weakly (a <= b gives cut(a) <= cut(b)), so a cut index entry is still found by a range
    of cut bounds; the fetched record is re-checked anyway."""
    return code[:limit]


def _pause(attempt: int) -> None:
    if attempt:
        time.sleep(random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** attempt)))


@dataclass(frozen=True, slots=True)
class _Index:
    name: str
    fields: tuple[str, ...]
    kinds: tuple[str, ...]
    unique: bool


class _Coll:
    """One collection's objects: keys, index entries, markers."""

    def __init__(self, base: str, t: _Table) -> None:
        self.t = t
        self.base = f"{base}{t.coll.name}/"
        self.key_kind = t.cols.types[t.key].kind
        self.indexes: list[_Index] = []
        for kind, lists in (("i", t.coll.indexes), ("u", t.coll.unique)):
            for fields in lists:
                kinds = tuple(t.cols.types[f].kind for f in fields)
                self.indexes.append(_Index(f"{kind}_{'__'.join(fields)}", tuple(fields), kinds, kind == "u"))

    def code(self, key: object) -> str:
        """The key's name: its code, or a long one's first :data:`_KEY_CUT` characters, ``#`` and
        the whole code's SHA-256 (exact, and still in key order up to the cut)."""
        code = encode_value(self.key_kind, key)
        if len(code) <= _KEY_CUT:
            return code
        return code[:_KEY_CUT] + "#" + hashlib.sha256(code.encode()).hexdigest()[:32]

    def record(self, code: str) -> str:
        return f"{self.base}r/{code}"

    def values(self, ix: _Index, rec: Mapping[str, object]) -> str:
        return encode(ix.kinds, [rec.get(f) for f in ix.fields])

    def entry(self, ix: _Index, rec: Mapping[str, object], code: str) -> str:
        return f"{self.base}i/{ix.name}/{_cut(self.values(ix, rec), _VALUES_CUT)}{_SEP}{code}"

    def marker(self, ix: _Index, rec: Mapping[str, object]) -> str:
        """Exact, not ordered: the SHA-256 of the values' code."""
        return f"{self.base}u/{ix.name}/{hashlib.sha256(self.values(ix, rec).encode()).hexdigest()}"

    def holds(self, ix: _Index, rec: Mapping[str, object]) -> bool:
        """Whether the unique constraint applies (SQLite: NULLs never collide)."""
        return all(rec.get(f) is not None for f in ix.fields)


class S3Records:
    """The records of one peer under ``prefix`` (``""`` or ending in ``/``) of ``store``'s bucket,
    under ``schema``. Thread-safe; several processes may share a prefix. Raises as
    :class:`~peerbox.hostcalls.Records` does (``io_error`` when S3 fails, naming no endpoint)."""

    def __init__(self, store: ObjectStore, prefix: str, schema: Schema, *, text: str | None = None,
                 max_record_bytes: int = MAX_RECORD_BYTES, max_limit: int = MAX_QUERY_LIMIT,
                 stale_after: float = STALE_AFTER) -> None:
        self.schema = schema
        self.max_record_bytes = max_record_bytes
        self.max_limit = max_limit
        self.stale_after = stale_after
        self._store = store
        self._base = f"{prefix}{RECORDS_DIR}/"
        self._colls = {c.name: _Coll(self._base, _Table(schema, c)) for c in schema.collections}
        self._lock = threading.Lock()  # the in-memory table the re-check runs in, the pool
        self._pool: ThreadPoolExecutor | None = None  # the GETs of a query (made on first use)
        self._mem = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        for c in self._colls.values():
            for stmt in c.t.ddl(table=c.t.name):
                self._mem.execute(stmt)
        self._set_up(text)

    def _set_up(self, text: str | None) -> None:
        key = self._base + "schema"
        canonical = json.dumps(self.schema.canonical(), sort_keys=True)
        doc = json.dumps({"digest": self.schema.digest, "version": self.schema.version,
                          "canonical": canonical, "text": text}).encode()
        for _ in range(2):
            blob = self._store.get(key, _WHERE, 1 << 20)
            if blob is None:
                if self._store.put(key, _WHERE, doc, create=True):
                    return
                continue
            applied = json.loads(blob.data or b"{}")
            if applied.get("digest") == self.schema.digest:
                return
            raise HostCallError("unsupported", (
                f"the schema (version {self.schema.version}, digest {self.schema.digest[:12]}) is not the "
                f"one applied to the records (version {applied.get('version')}, digest "
                f"{str(applied.get('digest'))[:12]}): run `peerbox schema apply` for this peer"))

    def applied(self) -> tuple[str, str | None] | None:
        """The applied schema's digest and TOML text (None: no records yet)."""
        blob = self._store.get(self._base + "schema", _WHERE, 1 << 20)
        if blob is None:
            return None
        doc = json.loads(blob.data or b"{}")
        return str(doc["digest"]), doc.get("text")

    def close(self) -> None:
        with self._lock:
            self._mem.close()
            if self._pool is not None:
                self._pool.shutdown()
                self._pool = None

    def _coll(self, coll: object) -> _Coll:
        c = self._colls.get(coll) if isinstance(coll, str) else None
        if c is None:
            raise HostCallError("not_found", f"no collection {coll!r}" if isinstance(coll, str) else
                                f"a collection is named by a string, not {type_name(coll)}")
        return c

    def _size(self, rec: Mapping[str, object]) -> int:
        n = len(cbor2.dumps(rec))
        if n > self.max_record_bytes:
            raise HostCallError("invalid_argument", f"the record is {n} bytes encoded, more than the "
                                f"{self.max_record_bytes}-byte limit on one record")
        return n

    # -- objects ----------------------------------------------------------------------------

    def _load(self, c: _Coll, code: str) -> tuple[object, dict[str, object], str | None] | None:
        """The key, the record (without ``_key``) and the ETag of the object under ``code``."""
        blob = self._store.get(c.record(code), _WHERE, self.max_record_bytes * 2)
        if blob is None or blob.data is None:
            return None
        key, rec = cbor2.loads(blob.data)
        return key, rec, blob.meta.etag

    def _typed(self, c: _Coll, key: object, rec: Mapping[str, object]) -> dict[str, object]:
        """``rec`` as the SQLite store returns it (``_key`` first in an auto-keyed collection)."""
        return c.t.from_row(tuple([key] if c.t.coll.auto_key else []) + tuple(c.t.to_row(rec)))

    def _raise_key(self, c: _Coll, at_least: int) -> None:
        """Advance the auto-key counter to ``at_least`` if it is lower (records imported with keys)."""
        counter = c.base + "n"
        for attempt in range(_ATTEMPTS):
            _pause(attempt)
            blob = self._store.get(counter, _WHERE, 64)
            last = 0 if blob is None or blob.data is None else int(blob.data)
            etag = None if blob is None else blob.meta.etag
            if last >= at_least or self._store.put(counter, _WHERE, str(at_least).encode(), if_match=etag,
                                                   create=blob is None):
                return
        raise HostCallError("io_error", "records: the key counter kept changing; try again")

    def _next_key(self, c: _Coll) -> int:
        counter = c.base + "n"
        for attempt in range(_ATTEMPTS):
            _pause(attempt)
            blob = self._store.get(counter, _WHERE, 64)
            last = 0 if blob is None or blob.data is None else int(blob.data)
            data = str(last + 1).encode()
            if self._store.put(counter, _WHERE, data, if_match=None if blob is None else blob.meta.etag,
                               create=blob is None):
                return last + 1
        raise HostCallError("io_error", "records: the key counter kept changing under concurrent inserts; "
                            "try again")

    def _stale(self, c: _Coll, ix: _Index, values: str, owner: str, modified: int) -> bool:
        if time.time() - modified < self.stale_after:
            return False
        got = self._load(c, owner)
        return got is None or c.values(ix, got[1]) != values

    def _take(self, c: _Coll, ix: _Index, rec: Mapping[str, object], code: str, *, mine_ok: bool) -> bool:
        """Create the marker of ``rec``'s values naming ``code``; False: taken by a live record (or
        by ``code`` itself unless ``mine_ok``)."""
        key, values = c.marker(ix, rec), c.values(ix, rec)
        for attempt in range(_ATTEMPTS):
            _pause(attempt)
            if self._store.put(key, _WHERE, code.encode(), create=True):
                return True
            blob = self._store.get(key, _WHERE, 4096)
            if blob is None or blob.data is None:
                continue  # released meanwhile: try again
            owner = blob.data.decode()
            if owner == code and mine_ok:
                return True
            if not self._stale(c, ix, values, owner, blob.meta.modified):
                return False
            if self._store.put(key, _WHERE, code.encode(), if_match=blob.meta.etag):
                return True  # reclaimed a crash's leftover
        return False

    def _release(self, c: _Coll, ix: _Index, rec: Mapping[str, object], code: str) -> None:
        key = c.marker(ix, rec)
        blob = self._store.get(key, _WHERE, 4096)
        if blob is not None and blob.data is not None and blob.data.decode() == code:
            self._store.delete(key, _WHERE)

    def _owns(self, c: _Coll, ix: _Index, rec: Mapping[str, object], code: str) -> bool:
        blob = self._store.get(c.marker(ix, rec), _WHERE, 4096)
        return blob is not None and blob.data is not None and blob.data.decode() == code

    @staticmethod
    def _conflict(fields: Sequence[str]) -> HostCallError:
        return HostCallError("conflict", f"a record with the same {', '.join(fields)} already exists")

    def _claim(self, c: _Coll, new: Mapping[str, object], old: Mapping[str, object] | None,
               code: str) -> list[_Index]:
        """Take the markers ``new`` needs that ``old`` does not hold; the ones taken. Raises
        ``conflict`` (having released what it took)."""
        taken: list[_Index] = []
        for ix in c.indexes:
            if not ix.unique or not c.holds(ix, new):
                continue
            if old is not None and c.holds(ix, old) and c.values(ix, old) == c.values(ix, new):
                continue
            if not self._take(c, ix, new, code, mine_ok=old is not None):
                for done in taken:
                    self._release(c, done, new, code)
                raise self._conflict(ix.fields)
            taken.append(ix)
        return taken

    def _entries(self, c: _Coll, rec: Mapping[str, object], code: str) -> set[str]:
        return {c.entry(ix, rec, code) for ix in c.indexes}

    # -- the operations ---------------------------------------------------------------------

    def insert(self, coll: object, record: object, scope: RowScope = None,
               charge: Callable[[int], None] | None = None) -> object:
        """Validate and store ``record``; its key (the auto key, or the key field's value)."""
        c = self._coll(coll)
        t = c.t
        rec = validate_record(self.schema, t.coll, record)
        Records._check_scope(t, rec, scope)
        n = self._size(rec)
        if charge is not None:
            charge(n)
        key: object = self._next_key(c) if t.coll.auto_key else rec[t.key]
        self._insert_at(c, key, rec)
        return key

    def _insert_at(self, c: _Coll, key: object, rec: dict[str, object]) -> None:
        """Store the validated ``rec`` under ``key``. Raises ``conflict`` (the key or a unique
        value is taken; nothing left behind)."""
        t = c.t
        code = c.code(key)
        taken = self._claim(c, rec, None, code)
        entries = self._entries(c, rec, code)
        for e in entries:
            self._store.put(e, _WHERE, b"")
        if not self._store.put(c.record(code), _WHERE, cbor2.dumps([key, rec]), create=True):
            existing = self._load(c, code)
            keep = set() if existing is None else self._entries(c, existing[1], code)
            for e in entries - keep:
                self._store.delete(e, _WHERE)
            for ix in taken:
                if existing is None or c.values(ix, existing[1]) != c.values(ix, rec):
                    self._release(c, ix, rec, code)
            raise self._conflict([t.key])
        self._verify(c, rec, code, taken, lambda: self._store.delete(c.record(code), _WHERE))

    def _verify(self, c: _Coll, rec: Mapping[str, object], code: str, taken: list[_Index],
                undo: Callable[[], object]) -> None:
        """After the record is written: still the owner of every marker taken? Else ``undo`` the
        write (a writer stalled longer than ``stale_after``, whose marker was reclaimed)."""
        for ix in taken:
            if not self._owns(c, ix, rec, code):
                undo()
                raise self._conflict(ix.fields)

    def get(self, coll: object, key: object, scope: RowScope = None) -> dict[str, object] | None:
        """The record with ``key`` (None when there is none in scope)."""
        c = self._coll(coll)
        kp = c.t.key_param(key)
        Records._scope_sql(c.t, scope)
        got = self._load(c, c.code(kp))
        if got is None or not Records._in_scope(got[1], scope):
            return None
        return self._typed(c, got[0], got[1])

    def update(self, coll: object, key: object, changes: object, scope: RowScope = None,
               charge: Callable[[int], None] | None = None) -> dict[str, object]:
        """Apply ``changes`` to the record with ``key``; the record as it now is."""
        c = self._coll(coll)
        t = c.t
        kp = t.key_param(key)
        delta = validate_record(self.schema, t.coll, changes, partial=True)
        if t.key in delta and delta[t.key] != kp:
            raise HostCallError("schema_violation", f"{t.key!r}: key: the key of a record cannot change")
        Records._scope_sql(t, scope)
        code = c.code(kp)
        charged = False
        for attempt in range(_ATTEMPTS):
            _pause(attempt)
            got = self._load(c, code)
            if got is None or not Records._in_scope(got[1], scope):
                shown = show(key) if isinstance(key, str) else repr(key)
                raise HostCallError("not_found", f"no record with key {shown} in {t.coll.name!r}")
            _, old, etag = got
            new = dict(old)
            for k, v in delta.items():
                if v is None:
                    new.pop(k, None)
                else:
                    new[k] = v
            Records._check_scope(t, new, scope)
            n = self._size(new)
            if charge is not None and not charged:
                charge(n)
                charged = True
            taken = self._claim(c, new, old, code)
            added = self._entries(c, new, code) - self._entries(c, old, code)
            for e in added:
                self._store.put(e, _WHERE, b"")
            if not self._store.put(c.record(code), _WHERE, cbor2.dumps([kp, new]), if_match=etag):
                for ix in taken:
                    self._release(c, ix, new, code)
                continue  # changed meanwhile: read it again
            self._verify(c, new, code, taken, functools.partial(
                self._store.put, c.record(code), _WHERE, cbor2.dumps([kp, old])))
            for e in self._entries(c, old, code) - self._entries(c, new, code):
                self._store.delete(e, _WHERE)
            for ix in c.indexes:
                if ix.unique and c.holds(ix, old) and c.values(ix, old) != c.values(ix, new):
                    self._release(c, ix, old, code)
            return self._typed(c, kp, new)
        raise HostCallError("io_error", "records: the record kept changing under concurrent updates; "
                            "try again")

    def delete(self, coll: object, key: object, scope: RowScope = None) -> bool:
        """Delete the record with ``key``; whether there was one (in scope)."""
        c = self._coll(coll)
        kp = c.t.key_param(key)
        Records._scope_sql(c.t, scope)
        code = c.code(kp)
        got = self._load(c, code)
        if got is None or not Records._in_scope(got[1], scope):
            return False
        self._store.delete(c.record(code), _WHERE)
        for e in self._entries(c, got[1], code):
            self._store.delete(e, _WHERE)
        for ix in c.indexes:
            if ix.unique and c.holds(ix, got[1]):
                self._release(c, ix, got[1], code)
        return True

    # -- queries ----------------------------------------------------------------------------

    def _ranges(self, c: _Coll, where: object) -> tuple[str, list[tuple[str, str]], _Index | None]:
        """Where to list candidates: a directory, key ranges (start after, stop before) in it,
        and the index listed (None: the records themselves)."""
        conds = where if isinstance(where, dict) else {}
        sources: list[tuple[str, _Index | None, str]] = [(c.base + "r/", None, c.t.key)]
        sources += [(f"{c.base}i/{ix.name}/", ix, ix.fields[0]) for ix in c.indexes]
        for base, ix, field in sources:
            cond = conds.get(field)
            if cond is None:
                continue
            kind = c.t.cols.types[field].kind
            if not isinstance(cond, dict):
                cond = {"eq": cond}
            lo, hi = "00" + _HIGH, _HIGH  # non-null values
            ranges: list[tuple[str, str]] | None = None
            cut = _VALUES_CUT if ix is not None else _KEY_CUT
            for op, v in cond.items():
                if v is None:
                    continue
                if op == "in" and isinstance(v, (list, tuple)):
                    codes = sorted({_cut(encode_value(kind, x), cut) for x in v})
                    ranges = [(x, x + _HIGH) for x in codes]
                    continue
                if op == "prefix":
                    if not isinstance(v, str):
                        continue
                    code = _cut(text_prefix(v), cut)
                    lo, hi = max(lo, code), min(hi, code + _HIGH)
                    continue
                if op not in ("eq", "gt", "ge", "lt", "le"):
                    continue
                full = encode_value(kind, v)
                code = _cut(full, cut)
                exact = code == full
                if op in ("eq", "ge", "gt"):
                    lo = max(lo, code + _HIGH if op == "gt" and exact else code)
                if op in ("eq", "le", "lt"):
                    hi = min(hi, code if op == "lt" and exact else code + _HIGH)
            if ranges is None:
                ranges = [(lo, hi)]
            ranges = [(max(a, lo), min(b, hi)) for a, b in ranges]
            return base, [(a, b) for a, b in ranges if a < b], ix
        return c.base + "r/", [("", _HIGH)], None

    def _candidates(self, c: _Coll, where: object) -> Iterator[tuple[str, int, _Index | None, str]]:
        """(key code, listed object's modified time, index, listed object) of every candidate."""
        base, ranges, ix = self._ranges(c, where)
        for lo, hi in ranges:
            # S3 lists the keys after a key (start-after): after lo less its last character
            for m in self._store.walk(base, _WHERE, after=base + lo[:-1] if len(lo) > 1 else None):
                name = m.key[len(base):]
                if name >= hi:
                    break
                if name < lo:
                    continue
                yield (name if ix is None else name.rpartition(_SEP)[2]), m.modified, ix, m.key

    def _matching(self, c: _Coll, where: object) -> list[tuple[object, dict[str, object]]]:
        """Every record a filter might select, (key, record), each fetched once (up to
        :data:`_FETCHERS` GETs at a time); entries whose record is gone or holds other values are
        skipped (and deleted once stale)."""
        listed: dict[str, tuple[int, _Index | None, str]] = {}
        for code, modified, ix, name in self._candidates(c, where):
            listed.setdefault(code, (modified, ix, name))
        codes = list(listed)
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(_FETCHERS, thread_name_prefix="peerbox-s3records")
            pool = self._pool
        out: list[tuple[object, dict[str, object]]] = []
        for code, got in zip(codes, pool.map(functools.partial(self._load, c), codes), strict=True):
            modified, ix, name = listed[code]
            if ix is not None and (got is None or c.entry(ix, got[1], code) != name):
                if time.time() - modified >= self.stale_after:
                    self._store.delete(name, _WHERE)  # a crash's or an old value's leftover
                continue
            if got is not None:
                out.append((got[0], got[1]))
        return out

    def _select(self, c: _Coll, rows: list[tuple[object, dict[str, object]]],
                statement: str, params: list[object]) -> list[tuple[Any, ...]]:
        """Run ``statement`` (a SELECT on the collection's table) over ``rows`` alone."""
        t = c.t
        names = (["_key"] if t.coll.auto_key else []) + t.fields
        cols = ", ".join(column(n) for n in names)
        with self._lock, closing(self._mem.cursor()) as cur:
            cur.execute("BEGIN")
            try:
                cur.executemany(f"INSERT INTO {t.name} ({cols}) VALUES ({', '.join('?' * len(names))})",
                                [([k] if t.coll.auto_key else []) + t.to_row(r) for k, r in rows])
                return cur.execute(statement, params).fetchall()
            finally:
                cur.execute("ROLLBACK")

    def query(self, coll: object, spec: object, scope: RowScope = None) -> dict[str, object]:
        """``#{items: [...], next: cursor or ()}``, as :meth:`Records.query`."""
        c = self._coll(coll)
        t = c.t
        sql, params, order, limit = plan_query(t, spec, scope, self.max_limit)
        assert isinstance(spec, dict)
        rows = self._select(c, self._matching(c, spec.get("where")), f"SELECT {t.select} FROM {t.name} "
                            f"WHERE {sql} ORDER BY {order.sql()} LIMIT {limit + 1}", params)
        return result_page(t, order, rows, limit)

    def count(self, coll: object, where: object = None, scope: RowScope = None) -> int:
        """How many records (in scope) match ``where`` (None: all)."""
        c = self._coll(coll)
        sql, params = compile_where(c.t.cols, where)
        ssql, sparams = Records._scope_sql(c.t, scope)
        rows = self._select(c, self._matching(c, where),
                            f"SELECT count(*) FROM {c.t.name} WHERE {sql} AND {ssql}", params + sparams)
        return int(rows[0][0])
