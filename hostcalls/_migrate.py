"""Schema migrations of a peer's records: compare, count, and apply in one transaction.

:func:`plan_migration` compares the schema applied to a records file (see
:mod:`._records`) with a new one and lists every :class:`Change`, each with
its class and how many stored records it affects, counted by SQL over the
tables (a field's new rules are checked by a SQL function that decodes the
stored value and runs the record validator, so the count is exact):

* ``additive`` (applied at once): a new collection, a new optional field, a
  new field with a ``default`` (the rebuild stores it in every record: all
  are counted), a field made required with a default (records without a
  value get it), a changed default (no stored record changes), a field made
  optional, a rule widened (``max_len`` raised or dropped,
  ``min`` lowered, a larger ``one_of``), a new or dropped index, a dropped
  unique constraint, a new unique constraint no stored records break.
* ``destructive`` (refused unless ``allow_destructive``): a removed
  collection or field (the records, or that field of them, are lost), a new
  required field without a default, a field made required without one, a narrowed rule or a changed type, a
  changed key, a unique constraint stored records break.

:func:`apply_migration` applies a plan in one ``BEGIN IMMEDIATE``
transaction: changed collections are rebuilt (create ``r_<coll>__new``,
copy every record through the new type's validator, drop the old table,
rename, make the indexes), so a crash or an error at any point leaves the
file as it was. ``allow_destructive`` lets a change lose what it removes; it
never drops a record that does not fit the new type: such a record fails the
whole apply (``schema_violation``, naming the record), nothing changed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cbor2

from peerbox._sqlite import open_wal

from ._dbquery import column
from ._errors import HostCallError, db_reason, os_reason
from ._records import _HISTORY, _Table
from ._schema import SCALARS, Collection, Field, Schema
from ._schemacheck import check_schema
from ._validate import _V, validate_record

__all__ = ["Change", "Plan", "plan_migration", "apply_migration", "applied_schema", "ADDITIVE", "DESTRUCTIVE"]

ADDITIVE = "additive"
DESTRUCTIVE = "destructive"


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between the applied schema and the new one."""

    collection: str
    what: str  # add_collection, remove_collection, add_field, remove_field, widen_field, ...
    field: str | None
    cls: str
    affected: int
    detail: str

    def line(self) -> str:
        where = self.collection + (f".{self.field}" if self.field else "")
        return f"{self.cls:<11} {self.what:<18} {where}: {self.detail} ({self.affected} records affected)"

    def doc(self) -> dict[str, Any]:
        return {"collection": self.collection, "change": self.what, "field": self.field, "class": self.cls,
                "affected": self.affected, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Plan:
    """What applying ``new`` over ``old`` (None: nothing applied yet) changes."""

    old: Schema | None
    new: Schema
    changes: tuple[Change, ...]

    @property
    def destructive(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.cls == DESTRUCTIVE)

    @property
    def same(self) -> bool:
        return self.old is not None and self.old.digest == self.new.digest


def _open(path: str | os.PathLike[str]) -> sqlite3.Connection:
    fpath = os.fspath(path)
    try:
        if not os.path.exists(fpath):
            os.close(os.open(fpath, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600))
        return open_wal(fpath, _HISTORY, synchronous="FULL")
    except OSError as exc:
        raise HostCallError("io_error", f"the records database does not open: {os_reason(exc)}") from exc
    except sqlite3.Error as exc:
        raise HostCallError("io_error", f"the records database does not open: {db_reason(exc)}") from exc


def _applied(db: sqlite3.Connection) -> tuple[Schema, str | None] | None:
    row = db.execute("SELECT canonical, text FROM _peerbox_applied").fetchone()
    if row is None:  # a file from before migrations: the last schema it was opened with
        row = db.execute("SELECT schema, NULL FROM _peerbox_schema ORDER BY applied_at DESC, rowid DESC "
                         "LIMIT 1").fetchone()
    if row is None:
        return None
    return check_schema(json.loads(row[0]), "", "applied schema"), row[1]


def applied_schema(path: str | os.PathLike[str]) -> tuple[Schema, str | None] | None:
    """The schema applied to the records file ``path`` and its TOML text (None: none applied)."""
    if not os.path.exists(path):
        return None
    db = _open(path)
    try:
        return _applied(db)
    finally:
        db.close()


# -- comparing ------------------------------------------------------------------------------


def _narrower(old: Field, new: Field) -> list[str]:
    """How ``new``'s rules refuse values ``old`` allowed (same type, optionality aside)."""
    out = []
    if old.type.optional and not new.type.optional and not new.has_default:
        out.append("made required")
    if new.max_len is not None and (old.max_len is None or new.max_len < old.max_len):
        out.append(f"max_len {old.max_len} -> {new.max_len}")
    if new.min_len is not None and (old.min_len is None or new.min_len > old.min_len):
        out.append(f"min_len {old.min_len} -> {new.min_len}")
    if new.min is not None and (old.min is None or new.min > old.min):
        out.append(f"min {old.min} -> {new.min}")
    if new.max is not None and (old.max is None or new.max < old.max):
        out.append(f"max {old.max} -> {new.max}")
    if new.one_of is not None and (old.one_of is None or not set(old.one_of) <= set(new.one_of)):
        out.append("one_of narrowed")
    return out


def _without_default(schema: Schema, tname: str, fname: str) -> dict[str, Any]:
    spec: dict[str, Any] = schema.canonical()["types"][tname][fname]
    return {k: v for k, v in spec.items() if k != "default"}


def _base(f: Field, schema: Schema) -> Any:
    """A field's type with referenced record types spelled out, optionality dropped."""
    t = f.type
    while t.item is not None:
        t = t.item
    refs = {}
    if t.kind == "record":
        sig = schema.signature(Collection("_", str(t.name)))
        refs = sig["types"]
    return (str(f.type).rstrip("?"), json.dumps(refs, sort_keys=True))


class _Counter:
    """Counts stored records with SQL; ``bad`` counts those whose stored value of a field does not
    validate under the new field (a SQL function decoding the value and running the validator)."""

    def __init__(self, db: sqlite3.Connection, new: Schema) -> None:
        self.db = db
        self.checker = _V(new)
        self.field: Field | None = None
        self.stored = ""
        db.create_function("pb_bad", 1, self._bad)

    def _bad(self, value: object) -> int:
        assert self.field is not None
        v: object = value
        if value is not None and self.stored not in SCALARS:
            v = cbor2.loads(value)  # type: ignore[arg-type]
        elif self.stored == "bool" and value is not None:
            v = bool(value)
        if v is None and self.field.has_default:
            return 0  # the rebuild stores the default
        try:
            self.checker.value(self.field.name, self.field.type, v, self.field)
        except HostCallError:
            return 1
        return 0

    def count(self, table: str, where: str = "1") -> int:
        return int(self.db.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()[0])

    def bad(self, table: str, old: Field, new: Field) -> int:
        self.field, self.stored = new, old.type.kind
        return self.count(table, f"pb_bad({column(old.name)})")

    def duplicates(self, table: str, fields: tuple[str, ...]) -> int:
        cols = ", ".join(column(f) for f in fields)
        present = " AND ".join(f"{column(f)} IS NOT NULL" for f in fields)  # NULLs are never equal
        row = self.db.execute(f"SELECT coalesce(sum(n), 0) FROM (SELECT count(*) AS n FROM {table} "
                              f"WHERE {present} GROUP BY {cols} HAVING n > 1)").fetchone()
        return int(row[0])


def _compare(db: sqlite3.Connection, old: Schema | None, new: Schema) -> list[Change]:
    out: list[Change] = []
    counter = _Counter(db, new)
    old_colls = {c.name: c for c in old.collections} if old else {}
    for c in new.collections:
        if c.name not in old_colls:
            out.append(Change(c.name, "add_collection", None, ADDITIVE, 0, f"a new collection of {c.type}"))
    for name, oc in old_colls.items():
        assert old is not None
        table = _Table(old, oc).name
        nc = new.collection(name)
        if nc is None:
            out.append(Change(name, "remove_collection", None, DESTRUCTIVE, counter.count(table),
                              "the collection and all its records are removed"))
            continue
        if oc.key != nc.key:
            out.append(Change(name, "change_key", None, DESTRUCTIVE, counter.count(table),
                              f"key {oc.key!r} -> {nc.key!r} (every record is rewritten)"))
        ot, nt = old.record_type(oc), new.record_type(nc)
        for f in ot.fields:
            if nt.field(f.name) is None:
                out.append(Change(name, "remove_field", f.name, DESTRUCTIVE,
                                  counter.count(table, f"{column(f.name)} IS NOT NULL"),
                                  f"the field ({f.type}) and its values are removed"))
        for f in nt.fields:
            of = ot.field(f.name)
            if of is None:
                if f.has_default:
                    out.append(Change(name, "add_field", f.name, ADDITIVE, counter.count(table),
                                      f"a new {'optional' if f.type.optional else 'required'} field "
                                      f"({f.type}) with default {f.default!r}: every stored record gets it"))
                elif f.type.optional:
                    out.append(Change(name, "add_field", f.name, ADDITIVE, 0,
                                      f"a new optional field ({f.type})"))
                else:
                    out.append(Change(name, "add_required_field", f.name, DESTRUCTIVE, counter.count(table),
                                      f"a new required field ({f.type}) stored records lack"))
                continue
            assert old is not None
            if old.canonical()["types"][ot.name][f.name] == new.canonical()["types"][nt.name][f.name] \
                    and _base(of, old) == _base(f, new):
                continue
            if _base(of, old) != _base(f, new):
                out.append(Change(name, "change_field_type", f.name, DESTRUCTIVE, counter.bad(table, of, f),
                                  f"type {of.type} -> {f.type}; records whose value does not fit"))
                continue
            narrowed = _narrower(of, f)
            if narrowed:
                out.append(Change(name, "narrow_field", f.name, DESTRUCTIVE, counter.bad(table, of, f),
                                  f"{', '.join(narrowed)}; records whose value breaks it"))
            elif of.type.optional and not f.type.optional:  # made required, with a default
                out.append(Change(name, "require_field", f.name, ADDITIVE,
                                  counter.count(table, f"{column(f.name)} IS NULL"),
                                  f"made required with default {f.default!r}: records without it get it"))
            elif _without_default(old, ot.name, f.name) == _without_default(new, nt.name, f.name):
                out.append(Change(name, "change_default", f.name, ADDITIVE, 0,
                                  f"default {of.default!r} -> {f.default!r} (stored records keep their "
                                  "values)"))
            else:
                out.append(Change(name, "widen_field", f.name, ADDITIVE, 0, f"{of.type} -> {f.type}, rules "
                                  "widened"))
        for what, olds, news in (("index", oc.indexes, nc.indexes), ("unique", oc.unique, nc.unique)):
            for fields in news:
                if fields in olds:
                    continue
                if what == "index":
                    out.append(Change(name, "add_index", ",".join(fields), ADDITIVE, 0, "a new index"))
                    continue
                known = all(ot.field(x) is not None for x in fields) and oc.key == nc.key
                dups = counter.duplicates(table, fields) if known else 0
                cls = DESTRUCTIVE if dups else ADDITIVE
                out.append(Change(name, "add_unique", ",".join(fields), cls, dups,
                                  "a new unique constraint" + (": stored records break it" if dups else "")))
            for fields in olds:
                if fields not in news:
                    out.append(Change(name, f"remove_{what}", ",".join(fields), ADDITIVE, 0,
                                      f"the {what} is dropped (no records change)"))
    return out


def plan_migration(path: str | os.PathLike[str], new: Schema) -> Plan:
    """Compare the schema applied to the records file ``path`` with ``new`` (nothing is changed)."""
    db = _open(path)
    try:
        db.execute("BEGIN")
        try:
            applied = _applied(db)
            old = applied[0] if applied else None
            return Plan(old, new, tuple(_compare(db, old, new)))
        finally:
            db.execute("ROLLBACK")
    except sqlite3.Error as exc:
        raise HostCallError("io_error", f"the records database failed: {db_reason(exc)}") from exc
    finally:
        db.close()


# -- applying -------------------------------------------------------------------------------


def _rebuild(db: sqlite3.Connection, old: Schema, new: Schema, oc: Collection, nc: Collection,
             step: Callable[[str], None]) -> None:
    ot, nt = _Table(old, oc), _Table(new, nc)
    tmp = f'"r_{nc.name}__new"'
    db.execute(f"DROP TABLE IF EXISTS {tmp}")
    for stmt in nt.ddl(tmp):
        db.execute(stmt)
    names = (["_key"] if nc.auto_key and oc.auto_key else []) + nt.fields
    sql = f"INSERT INTO {tmp} ({', '.join(column(n) for n in names)}) VALUES ({', '.join('?' * len(names))})"
    seq = db.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (f"r_{oc.name}",)).fetchone() \
        if oc.auto_key else None
    for row in db.execute(f"SELECT {ot.select} FROM {ot.name}").fetchall():
        rec = ot.from_row(row)
        key = rec.get("_key") if oc.auto_key else rec.get(oc.key)
        data = {k: v for k, v in rec.items() if k != "_key" and nt.rt.field(k) is not None}
        for f in nt.rt.fields:  # an absent optional value stays absent; new fields get their default
            if f.type.optional and f.name not in data and ot.rt.field(f.name) is not None:
                data[f.name] = None
        try:
            valid = validate_record(new, nc, data)
        except HostCallError as exc:
            raise HostCallError("schema_violation", f"record {key!r} of {oc.name!r} does not fit the new "
                                f"schema: {exc.message}; nothing was changed") from exc
        values = nt.to_row(valid)
        db.execute(sql, ([key] if names[0] == "_key" else []) + values)
    step(f"copied {oc.name}")
    db.execute(f"DROP TABLE {ot.name}")
    db.execute(f"ALTER TABLE {tmp} RENAME TO {nt.name}")
    if seq is not None and nc.auto_key:  # keys of deleted records are never reused, after a rebuild too
        names2 = (f"r_{nc.name}", f"r_{nc.name}__new")
        cur = db.execute("SELECT max(seq) FROM sqlite_sequence WHERE name IN (?, ?)", names2).fetchone()[0]
        db.execute("DELETE FROM sqlite_sequence WHERE name IN (?, ?)", names2)
        db.execute("INSERT INTO sqlite_sequence VALUES (?, ?)", (names2[0], max(cur or 0, seq[0])))
    for stmt in nt.index_ddl():
        db.execute(stmt)
    step(f"rebuilt {oc.name}")


def _index_name(kind: str, coll: str, fields: tuple[str, ...]) -> str:
    return f'"{kind}_{coll}__{"__".join(fields)}"'


def apply_migration(path: str | os.PathLike[str], new: Schema, text: str | None, *, allow_destructive: bool,
                    step: Callable[[str], None] | None = None) -> Plan:
    """Apply ``new`` (its TOML ``text`` is kept with it) to the records file ``path``; the plan.

    Raises :class:`HostCallError` ``unsupported`` when the plan has destructive changes and not
    ``allow_destructive``, ``schema_violation`` when a stored record does not fit the new schema
    (or ``conflict``: it breaks a new unique constraint or key), ``io_error``; in every case
    nothing changed. ``step`` is called after each step inside the transaction (for tests of
    crash safety)."""
    notify = step or (lambda _: None)
    db = _open(path)
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            applied = _applied(db)
            old = applied[0] if applied else None
            plan = Plan(old, new, tuple(_compare(db, old, new)))
            if plan.destructive and not allow_destructive:
                raise HostCallError("unsupported", f"{len(plan.destructive)} destructive changes: refused "
                                    "without --allow-destructive; nothing was changed")
            _apply(db, plan, notify)
            canonical = json.dumps(new.canonical(), sort_keys=True)
            db.execute("INSERT OR REPLACE INTO _peerbox_applied VALUES (1, ?, ?, ?)",
                       (new.digest, canonical, text))
            db.execute("INSERT OR IGNORE INTO _peerbox_schema VALUES (?, ?, ?, ?)",
                       (new.digest, new.version, int(time.time()), canonical))
            notify("recorded")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return plan
    except sqlite3.IntegrityError as exc:
        raise HostCallError("conflict", f"stored records break the new schema's key or unique constraint "
                            f"({db_reason(exc)}); nothing was changed") from exc
    except sqlite3.Error as exc:
        raise HostCallError("io_error", f"the records database failed: {db_reason(exc)}") from exc
    finally:
        db.close()


def _apply(db: sqlite3.Connection, plan: Plan, step: Callable[[str], None]) -> None:
    old, new = plan.old, plan.new
    touched = {c.collection for c in plan.changes}
    for c in plan.changes:
        if c.what == "remove_collection":
            assert old is not None
            gone = old.collection(c.collection)
            assert gone is not None
            db.execute(f"DROP TABLE IF EXISTS {_Table(old, gone).name}")
            db.execute("DELETE FROM _peerbox_collections WHERE name = ?", (c.collection,))
    for nc in new.collections:
        if nc.name not in touched and old is not None and old.collection(nc.name) is not None:
            continue
        oc = old.collection(nc.name) if old is not None else None
        nt = _Table(new, nc)
        sig = json.dumps(new.signature(nc), sort_keys=True)
        if oc is None:
            row = db.execute("SELECT signature FROM _peerbox_collections WHERE name = ?",
                             (nc.name,)).fetchone()
            if row is not None and row[0] != sig:  # a table this file's schema list does not explain
                raise HostCallError("unsupported", f"collection {nc.name!r} holds records of another "
                                    "schema than the one recorded; restore that schema.toml and apply it "
                                    "first")
            for stmt in nt.ddl():
                db.execute(stmt)
        elif json.dumps(old.signature(oc), sort_keys=True) != sig:  # type: ignore[union-attr]
            assert old is not None
            _rebuild(db, old, new, oc, nc, step)
        else:
            for kind, olds, news in (("i", oc.indexes, nc.indexes), ("u", oc.unique, nc.unique)):
                for fields in olds:
                    if fields not in news:
                        db.execute(f"DROP INDEX IF EXISTS {_index_name(kind, nc.name, fields)}")
            for stmt in nt.index_ddl():
                db.execute(stmt)
        db.execute("INSERT OR REPLACE INTO _peerbox_collections VALUES (?, ?)", (nc.name, sig))
    step("applied")
