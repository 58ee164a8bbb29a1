"""Schema migrations of a peer's records on S3: the same plan, additive changes only.

:class:`S3Schemas` is :mod:`._migrate` for the objects of :mod:`._s3records`.
:meth:`S3Schemas.plan` loads every stored record of the applied schema's
collections into an in-memory SQLite table (the SQLite store's own DDL) and
runs the SQLite planner on it, so each change is classified, and its records
counted, exactly as for ``records.sqlite`` (a scan of the collections).

:meth:`S3Schemas.apply` applies **additive** changes only. S3 has no
transaction across objects: a destructive change (a removed field or
collection, a narrowed rule, a new required field, a changed key) would be
half-applied by a crash, so it is refused (``unsupported``) even with
``allow_destructive``, and nothing changes. The additive changes:

* a new collection, a new optional field, a widened rule: nothing to write
  (records are objects; a stored record is valid under the wider type);
* a new index: its entries are written for every stored record, then the
  applied schema is replaced (so a query scans, as before, until the applied
  schema names the index: a store only opens under the applied schema), then
  the backfill is run once more for records a writer under the old schema
  added meanwhile;
* a new unique constraint: as an index, plus its markers (``If-None-Match``);
  a value two records share is refused (``conflict``), the markers taken undone;
* a dropped index or unique constraint: the schema is replaced first (stop
  using it), then its entries and markers are deleted.

The applied schema object is replaced with a conditional PUT (``If-Match``
its ETag, or ``If-None-Match: *`` when there is none): of two appliers, one
wins and the other gets ``conflict``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from typing import TYPE_CHECKING

import cbor2

from ._dbquery import column
from ._dump import parse_lines, to_json
from ._errors import HostCallError
from ._migrate import Plan, _compare
from ._records import _Table
from ._s3records import RECORDS_DIR, S3Records, _Coll, _Index
from ._schema import Schema, TypeRef
from ._schemacheck import check_schema

if TYPE_CHECKING:
    from ._s3store import ObjectStore

__all__ = ["S3Schemas", "s3_export_lines", "s3_import_lines"]

_WHERE = "records"
_MAX_SCHEMA_DOC = 1 << 20


class S3Schemas:
    """The applied schema of the records under ``prefix`` of ``store``'s bucket, and migrations."""

    def __init__(self, store: ObjectStore, prefix: str) -> None:
        self._store = store
        self._base = f"{prefix}{RECORDS_DIR}/"

    # -- reading ----------------------------------------------------------------------------

    def _doc(self) -> tuple[dict[str, object], str] | None:
        blob = self._store.get(self._base + "schema", _WHERE, _MAX_SCHEMA_DOC)
        if blob is None:
            return None
        return json.loads(blob.data or b"{}"), blob.meta.etag or ""

    def applied(self) -> tuple[Schema, str | None] | None:
        """The applied schema and its TOML text (None: none applied yet)."""
        got = self._doc()
        if got is None:
            return None
        doc = got[0]
        text = doc.get("text")
        return (check_schema(json.loads(str(doc["canonical"])), "", "applied schema"),
                text if isinstance(text, str) else None)

    def _records(self, c: _Coll) -> Iterator[tuple[str, object, dict[str, object]]]:
        """(code, key, record) of every stored record of ``c``, in key order."""
        base = c.base + "r/"
        for m in self._store.walk(base, _WHERE):
            blob = self._store.get(m.key, _WHERE, 1 << 26)
            if blob is None or blob.data is None:
                continue  # deleted meanwhile
            key, rec = cbor2.loads(blob.data)
            yield m.key[len(base):], key, rec

    def _plan(self, old: Schema | None, new: Schema) -> Plan:
        with closing(sqlite3.connect(":memory:")) as db:
            for oc in old.collections if old is not None else ():
                assert old is not None
                t = _Table(old, oc)
                for stmt in t.ddl(table=t.name):  # no unique indexes: the planner counts duplicates
                    db.execute(stmt)
                names = (["_key"] if oc.auto_key else []) + t.fields
                sql = (f"INSERT INTO {t.name} ({', '.join(column(n) for n in names)}) "
                       f"VALUES ({', '.join('?' * len(names))})")
                for _, key, rec in self._records(_Coll(self._base, t)):
                    db.execute(sql, ([key] if oc.auto_key else []) + t.to_row(rec))
            return Plan(old, new, tuple(_compare(db, old, new)))

    def plan(self, new: Schema) -> Plan:
        """Compare the applied schema with ``new``, counting exactly (nothing is changed)."""
        applied = self.applied()
        return self._plan(applied[0] if applied else None, new)

    # -- applying ---------------------------------------------------------------------------

    def apply(self, new: Schema, text: str | None, *, allow_destructive: bool = False,
              step: Callable[[str], None] | None = None) -> Plan:
        """Apply the additive plan from the applied schema to ``new``; the plan. Raises
        ``unsupported`` (a destructive change: never on S3, ``allow_destructive`` or not),
        ``conflict`` (stored records share a new unique value; another applier won) or
        ``io_error``; a refusal leaves the records as they were."""
        notify = step or (lambda _: None)
        got = self._doc()
        etag = got[1] if got is not None else None
        applied = self.applied() if got is not None else None
        old = applied[0] if applied else None
        plan = self._plan(old, new)
        self.refuse(plan, allow_destructive=allow_destructive)
        added: list[tuple[_Coll, _Index]] = []
        dropped: list[tuple[_Coll, _Index]] = []
        if old is not None:
            for nc in new.collections:
                oc = old.collection(nc.name)
                if oc is None:
                    continue
                before = _Coll(self._base, _Table(old, oc))
                after = _Coll(self._base, _Table(new, nc))
                names = {ix.name for ix in before.indexes}
                added += [(after, ix) for ix in after.indexes if ix.name not in names]
                kept = {ix.name for ix in after.indexes}
                dropped += [(before, ix) for ix in before.indexes if ix.name not in kept]
        taken: list[str] = []
        try:
            for c, ix in added:
                self._backfill(c, ix, taken)
                notify(f"backfilled {c.t.coll.name}.{ix.name}")
            self._record(new, text, etag)
        except BaseException:
            for key in taken:  # the markers this apply made: undone (entries are hints: harmless)
                self._store.delete(key, _WHERE)
            raise
        notify("recorded")
        for c, ix in added:  # records written meanwhile by a writer under the old schema
            self._backfill(c, ix, [])
        for c, ix in dropped:
            for kind in ("i", "u"):
                for m in list(self._store.walk(f"{c.base}{kind}/{ix.name}/", _WHERE)):
                    self._store.delete(m.key, _WHERE)
            notify(f"dropped {c.t.coll.name}.{ix.name}")
        return plan

    @staticmethod
    def refuse(plan: Plan, *, allow_destructive: bool = False) -> None:
        """Raise ``unsupported`` if ``plan`` has a destructive change (never applied on S3)."""
        if plan.destructive:
            n = len(plan.destructive)
            raise HostCallError("unsupported", (
                f"{n} destructive change{'s' if n != 1 else ''} on records stored on S3: refused"
                f"{' even with --allow-destructive' if allow_destructive else ''} (S3 has no transaction "
                "across objects, so a crash would leave the records half migrated); nothing was changed"))

    def _backfill(self, c: _Coll, ix: _Index, taken: list[str]) -> None:
        """Write ``ix``'s entry (and marker: unique) of every stored record of ``c``."""
        for code, _, rec in self._records(c):
            self._store.put(c.entry(ix, rec, code), _WHERE, b"")
            if not ix.unique or not c.holds(ix, rec):
                continue
            marker = c.marker(ix, rec)
            if self._store.put(marker, _WHERE, code.encode(), create=True):
                taken.append(marker)
                continue
            blob = self._store.get(marker, _WHERE, 4096)
            if blob is not None and blob.data is not None and blob.data.decode() != code:
                raise HostCallError("conflict", f"stored records of {c.t.coll.name!r} share a value of "
                                    f"{', '.join(ix.fields)}: the new unique constraint does not hold; "
                                    "nothing was changed")

    def _record(self, new: Schema, text: str | None, etag: str | None) -> None:
        canonical = json.dumps(new.canonical(), sort_keys=True)
        doc = json.dumps({"digest": new.digest, "version": new.version, "canonical": canonical,
                          "text": text}).encode()
        key = self._base + "schema"
        ok = (self._store.put(key, _WHERE, doc, if_match=etag) if etag is not None
              else self._store.put(key, _WHERE, doc, create=True))
        if not ok:
            raise HostCallError("conflict", "another schema apply changed the applied schema meanwhile; "
                                "nothing was changed here: run peerbox schema apply again")


# -- backups: db export and db import ---------------------------------------------------------


def s3_export_lines(records: S3Records, coll: str) -> Iterator[str]:
    """Every record of ``coll`` in key order, one JSON line each, as :func:`export_lines`."""
    c = records._coll(coll)
    root = TypeRef("record", name=c.t.coll.type)
    rows = sorted(records._matching(c, None), key=lambda kr: c.code(kr[0]))
    for key, rec in rows:
        typed = records._typed(c, key, rec)
        doc = to_json(records.schema, root, {k: v for k, v in typed.items() if k != "_key"})
        assert isinstance(doc, dict)
        if c.t.coll.auto_key:
            doc = {"_key": key, **doc}
        yield json.dumps(doc, ensure_ascii=False, sort_keys=False)


def s3_import_lines(records: S3Records, coll: str, lines: Iterable[str]) -> int:
    """Insert the records of ``lines`` into ``coll``; how many. Every line is validated first (a
    bad one: ``schema_violation`` naming it, nothing written); then the records are inserted one
    by one, and on a failure (``conflict``: a key or unique value taken; ``io_error``) those
    inserted are deleted again. A crash midway leaves the ones inserted so far."""
    c = records._coll(coll)
    t = c.t
    todo: list[tuple[object, dict[str, object]]] = [
        (key if t.coll.auto_key else rec[t.key], rec)
        for key, rec in parse_lines(records.schema, t.coll, records._size, lines)]
    given = [k for k, _ in todo if isinstance(k, int)] if t.coll.auto_key else []
    if given:
        records._raise_key(c, max(given))  # the counter never hands out an imported key
    done: list[object] = []
    try:
        for key, rec in todo:
            if key is None:
                key = records._next_key(c)
            records._insert_at(c, key, rec)
            done.append(key)
    except BaseException:
        for key in done:
            records.delete(coll, key)
        raise
    return len(done)
