"""A peer's records: SQLite tables generated from its schema (``db::`` host calls).

One database file per peer (``peers/NAME/records.sqlite``, beside the
storage, never reachable by ``fs::``), whatever the peer's storage backend
(fs or sqlite; the s3 backend has no records yet). Each collection is one
``STRICT`` table ``r_<collection>``: a typed column per scalar field
(``f_<field>``: did and string TEXT, int and timestamp INTEGER, float REAL,
bool INTEGER 0/1, bytes BLOB; NOT NULL unless the field is optional), one
CBOR BLOB column per list, map or record field, the key (``_key INTEGER
PRIMARY KEY AUTOINCREMENT`` for ``key = "auto"``, so keys are never reused;
else the key field's column is the primary key), and the declared indexes
and unique constraints as SQL indexes. Writes are one ``BEGIN IMMEDIATE``
transaction each, so several processes may share the file (WAL).

The schema the records are stored under is the *applied* one
(``_peerbox_applied``: its digest, canonical JSON and TOML text). A new file
applies the schema it is first opened with; afterwards opening it under any
other schema is refused with ``unsupported`` telling the operator to run
``peerbox schema apply`` (:mod:`._migrate` compares, counts and rebuilds).
Every schema applied is also listed in ``_peerbox_schema`` (version, digest,
canonical JSON, time) and each collection's signature (its key and record
type, referenced types included) in ``_peerbox_collections``.

Row scopes: a policy rule with a row filter (``where = { from = "$caller" }``)
reaches a call as a tuple of field -> value maps (resolved by the policy);
a record is in scope when it matches any one of them. Reads see only records
in scope; writes must leave the record in scope; a filter naming a field the
collection lacks refuses everything (``denied``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import cbor2

from peerbox._sqlite import open_wal

from ._dbquery import (Columns, Order, after_sql, column, compile_where, decode_cursor, encode_cursor,
                       parse_order)
from ._errors import HostCallError, db_reason, os_reason, show
from ._recstore import RowScope
from ._schema import Collection, Schema
from ._validate import type_name, validate_record

__all__ = ["Records", "RowScope", "plan_query", "RECORDS_FILE", "MAX_RECORD_BYTES", "MAX_QUERY_LIMIT",
           "DEFAULT_QUERY_LIMIT", "approx_size"]

#: The file of a peer's records, in its directory.
RECORDS_FILE = "records.sqlite"
#: The largest record (CBOR-encoded) a collection accepts.
MAX_RECORD_BYTES = 64 * 1024
#: The most records one ``db::query`` returns (its ``limit`` may not exceed it).
MAX_QUERY_LIMIT = 1000
DEFAULT_QUERY_LIMIT = 100


_SQL_TYPES = {"did": "TEXT", "string": "TEXT", "int": "INTEGER", "timestamp": "INTEGER", "float": "REAL",
              "bool": "INTEGER", "bytes": "BLOB"}
_HISTORY = """CREATE TABLE IF NOT EXISTS _peerbox_schema (
    digest TEXT PRIMARY KEY, version INTEGER NOT NULL, applied_at INTEGER NOT NULL, schema TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS _peerbox_collections (name TEXT PRIMARY KEY, signature TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS _peerbox_applied (
    id INTEGER PRIMARY KEY CHECK (id = 1), digest TEXT NOT NULL, canonical TEXT NOT NULL, text TEXT
);"""
_QUERY_KEYS = ("where", "order_by", "limit", "after")


def _q(name: str) -> str:
    return f'"{name}"'


def approx_size(value: object) -> int:
    """Roughly the bytes of ``value`` (what a read is charged): text and blobs by length, 8 a number."""
    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, dict):
        return sum(len(str(k)) + approx_size(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return sum(approx_size(v) for v in value)
    return 8


class _Table:
    """One collection's table: its columns and how records map to rows."""

    def __init__(self, schema: Schema, coll: Collection) -> None:
        self.coll = coll
        self.rt = schema.record_type(coll)
        self.cols = Columns(schema, coll)
        self.name = _q(f"r_{coll.name}")
        self.fields = [f.name for f in self.rt.fields]
        self.scalar = {f.name: f.type.kind for f in self.rt.fields if f.type.scalar}
        self.required = {f.name: f.required for f in self.rt.fields}
        self.key = self.cols.key
        names = (["_key"] if coll.auto_key else []) + self.fields
        self.select = ", ".join(column(n) for n in names)
        self.names = names

    def ddl(self, table: str | None = None) -> list[str]:
        """The table's and its indexes' DDL (``table``: create the table under that name instead;
        its indexes are then left out, a migration makes them after renaming it)."""
        cols = []
        if self.coll.auto_key:
            cols.append('"_key" INTEGER PRIMARY KEY AUTOINCREMENT')
        for f in self.rt.fields:
            sql = _SQL_TYPES.get(f.type.kind, "BLOB")
            decl = f"{column(f.name)} {sql}{'' if f.type.optional else ' NOT NULL'}"
            if f.name == self.coll.key:
                decl += " PRIMARY KEY"
            cols.append(decl)
        out = [f"CREATE TABLE IF NOT EXISTS {table or self.name} ({', '.join(cols)}) STRICT"]
        if table is not None:
            return out
        out += self.index_ddl()
        return out

    def index_ddl(self) -> list[str]:
        out = []
        for kind, lists in (("i", self.coll.indexes), ("u", self.coll.unique)):
            for fields in lists:
                iname = _q(f"{kind}_{self.coll.name}__{'__'.join(fields)}")
                unique = "UNIQUE " if kind == "u" else ""
                out.append(f"CREATE {unique}INDEX IF NOT EXISTS {iname} ON {self.name} "
                           f"({', '.join(column(f) for f in fields)})")
        return out

    def to_row(self, rec: Mapping[str, object]) -> list[object]:
        out: list[object] = []
        for name in self.fields:
            v = rec.get(name)
            if v is not None and name not in self.scalar:
                v = cbor2.dumps(v)
            out.append(v)
        return out

    def from_row(self, row: tuple[Any, ...]) -> dict[str, object]:
        rec: dict[str, object] = {}
        for name, v in zip(self.names, row, strict=True):
            if v is None:
                continue
            kind = self.scalar.get(name)
            if name == "_key":
                rec[name] = v
            elif kind is None:
                rec[name] = cbor2.loads(v)
            elif kind == "bool":
                rec[name] = bool(v)
            else:
                rec[name] = v
        return rec

    def key_param(self, key: object) -> object:
        return self.cols.check("key", self.key, self.cols.types[self.key], key) if key is not None else None


def result_page(t: _Table, order: Order, rows: Sequence[tuple[Any, ...]], limit: int) -> dict[str, object]:
    """A query's answer from up to ``limit + 1`` ``rows`` in ``order``: ``#{items, next}``, ``next``
    the cursor after the last item when there were more rows than ``limit`` (else None)."""
    items = [t.from_row(r) for r in rows[:limit]]
    nxt = None
    if len(rows) > limit:
        last = items[-1]
        nxt = encode_cursor(t.coll.name, order, [last[f] for f, _ in order.fields])
    return {"items": items, "next": nxt}


def plan_query(t: _Table, spec: object, scope: RowScope,
               max_limit: int) -> tuple[str, list[object], Order, int]:
    """The WHERE clause (filter, row scope, cursor), its parameters, the order and the limit of
    ``db::query(coll, spec)`` on ``t``. Raises ``invalid_argument`` or ``denied``."""
    if not isinstance(spec, dict):
        raise HostCallError("invalid_argument", f"db::query: expected a map #{{where, order_by, limit, "
                            f"after}}, got {type_name(spec)}")
    for k in spec:
        if k not in _QUERY_KEYS:
            raise HostCallError("invalid_argument", f"db::query: unknown key {k!r} (expected "
                                f"{', '.join(_QUERY_KEYS)})")
    where, params = compile_where(t.cols, spec.get("where"))
    order = parse_order(t.cols, spec.get("order_by"), t.required)
    limit = spec.get("limit", DEFAULT_QUERY_LIMIT)
    if type(limit) is not int or not 1 <= limit <= max_limit:
        raise HostCallError("invalid_argument",
                            f"db::query: limit must be an int from 1 to {max_limit}")
    ssql, sparams = Records._scope_sql(t, scope)
    sql = f"{where} AND {ssql}"
    params += sparams
    if spec.get("after") is not None:
        asql, aparams = after_sql(order, decode_cursor(t.cols, order, spec["after"]))
        sql += f" AND {asql}"
        params += aparams
    return sql, params, order, limit


class Records:
    """The records of one peer: ``path`` (the SQLite file, created 0600 if missing) under ``schema``.

    Each change is durable when its call returns (``synchronous`` ``FULL``, as the sqlite
    storage backend; ``OFF`` is for bulk loading a copy, never for a live peer).
    Thread-safe (one connection, one lock). Every method raises :class:`HostCallError`:
    ``not_found`` (no such collection), ``schema_violation``, ``invalid_argument``, ``conflict``
    (a key or unique constraint taken), ``denied`` (outside the row scope), ``io_error``
    (SQLite failed; the reason never names a host path), ``unsupported`` (a table stored under
    another schema)."""

    def __init__(self, path: str | os.PathLike[str], schema: Schema, *,
                 max_record_bytes: int = MAX_RECORD_BYTES, max_limit: int = MAX_QUERY_LIMIT,
                 synchronous: str = "FULL", text: str | None = None) -> None:
        self.schema = schema
        self.max_record_bytes = max_record_bytes
        self.max_limit = max_limit
        self._tables = {c.name: _Table(schema, c) for c in schema.collections}
        self._lock = threading.Lock()
        fpath = os.fspath(path)
        try:
            if not os.path.exists(fpath):  # created 0600 (its -wal and -shm take its mode)
                os.close(os.open(fpath, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600))
            self._db = open_wal(fpath, _HISTORY, synchronous=synchronous)
        except OSError as exc:
            raise HostCallError("io_error", f"the records database does not open: {os_reason(exc)}") from exc
        except sqlite3.Error as exc:
            raise HostCallError("io_error", f"the records database does not open: {db_reason(exc)}") from exc
        try:
            self._set_up(text)
        except BaseException:
            self._db.close()
            raise

    def _set_up(self, text: str | None) -> None:
        with self._tx():
            row = self._db.execute("SELECT digest, canonical FROM _peerbox_applied").fetchone()
            if row is not None:
                if row[0] != self.schema.digest:
                    old = json.loads(row[1])
                    raise HostCallError("unsupported", (
                        f"the schema (version {self.schema.version}, digest {self.schema.digest[:12]}) is "
                        f"not the one applied to the records (version {old.get('version')}, digest "
                        f"{row[0][:12]}): "
                        "run `peerbox schema apply` for this peer (--dry-run shows what would change)"))
                return
            for t in self._tables.values():
                sig = json.dumps(self.schema.signature(t.coll), sort_keys=True)
                row = self._db.execute("SELECT signature FROM _peerbox_collections WHERE name = ?",
                                       (t.coll.name,)).fetchone()
                if row is not None and row[0] != sig:
                    raise HostCallError("unsupported", (
                        f"collection {t.coll.name!r} holds records of an earlier schema; changing a "
                        "stored collection's record type or key needs a migration (`peerbox schema apply`)"))
                self._db.execute("INSERT OR IGNORE INTO _peerbox_collections VALUES (?, ?)",
                                 (t.coll.name, sig))
                for stmt in t.ddl():
                    self._db.execute(stmt)
            canonical = json.dumps(self.schema.canonical(), sort_keys=True)
            self._db.execute("INSERT OR IGNORE INTO _peerbox_schema VALUES (?, ?, ?, ?)",
                             (self.schema.digest, self.schema.version, int(time.time()), canonical))
            self._db.execute("INSERT INTO _peerbox_applied VALUES (1, ?, ?, ?)",
                             (self.schema.digest, canonical, text))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def history(self) -> list[tuple[int, str, int]]:
        """Every schema this file was opened with: (version, digest, applied_at), oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT version, digest, applied_at FROM _peerbox_schema "
                                    "ORDER BY applied_at, rowid").fetchall()
        return [(int(r[0]), str(r[1]), int(r[2])) for r in rows]

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.IntegrityError as exc:
                raise self._conflict(exc) from exc
            except sqlite3.Error as exc:
                raise HostCallError("io_error", f"the records database failed: {db_reason(exc)}") from exc

    @staticmethod
    def _conflict(exc: sqlite3.IntegrityError) -> HostCallError:
        text = str(exc)
        if "UNIQUE" in text or "PRIMARY KEY" in text:
            cols = [c.split(".", 1)[-1] for c in text.partition(":")[2].split(",")]
            names = [c.strip()[2:] if c.strip().startswith("f_") else c.strip() for c in cols]
            return HostCallError("conflict", f"a record with the same {', '.join(names)} already exists")
        return HostCallError("schema_violation", f"the record breaks a constraint: {db_reason(exc)}")

    def table(self, coll: object) -> _Table:
        t = self._tables.get(coll) if isinstance(coll, str) else None
        if t is None:
            raise HostCallError("not_found", f"no collection {coll!r}" if isinstance(coll, str) else
                                f"a collection is named by a string, not {type_name(coll)}")
        return t

    # -- row scopes ---------------------------------------------------------------------

    @staticmethod
    def _scope_sql(t: _Table, scope: RowScope) -> tuple[str, list[object]]:
        if scope is None:
            return "1", []
        branches: list[str] = []
        params: list[object] = []
        for flt in scope:
            conds = []
            for name, v in flt.items():
                if name not in t.cols.types:
                    raise HostCallError("denied", f"the policy's row filter names {name!r}, which collection "
                                        f"{t.coll.name!r} has no scalar field for")
                conds.append(f"{column(name)} = ?")
                params.append(v)
            branches.append("(" + (" AND ".join(conds) or "1") + ")")
        return ("(" + " OR ".join(branches) + ")" if branches else "0"), params

    @staticmethod
    def _in_scope(rec: Mapping[str, object], scope: RowScope) -> bool:
        return scope is None or any(all(rec.get(k) == v for k, v in flt.items()) for flt in scope)

    @staticmethod
    def _check_scope(t: _Table, rec: Mapping[str, object], scope: RowScope) -> None:
        Records._scope_sql(t, scope)  # fields the collection lacks: denied
        if not Records._in_scope(rec, scope):
            assert scope is not None
            allowed = " or ".join(" and ".join(f"{k} = {v!r}" for k, v in flt.items()) for flt in scope)
            raise HostCallError("denied", f"db.write of {t.coll.name!r} denied: the policy lets this caller "
                                f"write only records with {allowed}")

    def _size(self, rec: Mapping[str, object]) -> int:
        n = len(cbor2.dumps(rec))
        if n > self.max_record_bytes:
            raise HostCallError("invalid_argument", f"the record is {n} bytes encoded, more than the "
                                f"{self.max_record_bytes}-byte limit on one record")
        return n

    # -- the operations ---------------------------------------------------------------------

    def insert(self, coll: object, record: object, scope: RowScope = None,
               charge: Callable[[int], None] | None = None) -> object:
        """Validate and store ``record``; its key (the auto key, or the key field's value)."""
        t = self.table(coll)
        rec = validate_record(self.schema, t.coll, record)
        self._check_scope(t, rec, scope)
        n = self._size(rec)
        if charge is not None:
            charge(n)
        cols = ", ".join(column(f) for f in t.fields)
        with self._tx() as db:
            cur = db.execute(f"INSERT INTO {t.name} ({cols}) VALUES ({', '.join('?' * len(t.fields))})",
                             t.to_row(rec))
            return cur.lastrowid if t.coll.auto_key else rec[t.key]

    def _fetch(self, db: sqlite3.Connection, t: _Table, key: object,
               scope: RowScope) -> dict[str, object] | None:
        where, params = self._scope_sql(t, scope)
        row = db.execute(f"SELECT {t.select} FROM {t.name} WHERE {column(t.key)} = ? AND {where}",
                         [t.key_param(key), *params]).fetchone()
        return None if row is None else t.from_row(row)

    def get(self, coll: object, key: object, scope: RowScope = None) -> dict[str, object] | None:
        """The record with ``key`` (None when there is none in scope)."""
        t = self.table(coll)
        kp = t.key_param(key)
        with self._tx(write=False) as db:
            return self._fetch(db, t, kp, scope)

    def update(self, coll: object, key: object, changes: object, scope: RowScope = None,
               charge: Callable[[int], None] | None = None) -> dict[str, object]:
        """Apply ``changes`` (a partial record; ``()`` clears an optional field) to the record with
        ``key``; the record as it now is. ``not_found`` when there is none in scope."""
        t = self.table(coll)
        kp = t.key_param(key)
        delta = validate_record(self.schema, t.coll, changes, partial=True)
        if t.key in delta and delta[t.key] != kp:
            raise HostCallError("schema_violation", f"{t.key!r}: key: the key of a record cannot change")
        with self._tx() as db:
            old = self._fetch(db, t, kp, scope)
            if old is None:
                shown = show(key) if isinstance(key, str) else repr(key)
                raise HostCallError("not_found", f"no record with key {shown} in {t.coll.name!r}")
            new = {k: v for k, v in old.items() if k != "_key"}
            for k, v in delta.items():
                if v is None:
                    new.pop(k, None)
                else:
                    new[k] = v
            self._check_scope(t, new, scope)
            n = self._size(new)
            if charge is not None:
                charge(n)
            if delta:
                sets = ", ".join(f"{column(k)} = ?" for k in delta)
                row = dict(zip(t.fields, t.to_row(new), strict=True))
                db.execute(f"UPDATE {t.name} SET {sets} WHERE {column(t.key)} = ?",
                           [*(row[k] for k in delta), kp])
            if t.coll.auto_key:
                return {"_key": kp, **new}
            return new

    def delete(self, coll: object, key: object, scope: RowScope = None) -> bool:
        """Delete the record with ``key``; whether there was one (in scope)."""
        t = self.table(coll)
        kp = t.key_param(key)
        where, params = self._scope_sql(t, scope)
        with self._tx() as db:
            cur = db.execute(f"DELETE FROM {t.name} WHERE {column(t.key)} = ? AND {where}", [kp, *params])
            return cur.rowcount > 0

    def _plan(self, t: _Table, spec: object, scope: RowScope) -> tuple[str, list[object], Order, int]:
        return plan_query(t, spec, scope, self.max_limit)

    def query(self, coll: object, spec: object, scope: RowScope = None) -> dict[str, object]:
        """``#{items: [...], next: cursor or ()}``: up to ``limit`` records matching ``where`` in
        ``order_by`` order, after the cursor ``after``."""
        t = self.table(coll)
        sql, params, order, limit = self._plan(t, spec, scope)
        with self._tx(write=False) as db:
            rows = db.execute(f"SELECT {t.select} FROM {t.name} WHERE {sql} ORDER BY {order.sql()} "
                              f"LIMIT {limit + 1}", params).fetchall()
        return result_page(t, order, rows, limit)

    def count(self, coll: object, where: object = None, scope: RowScope = None) -> int:
        """How many records (in scope) match ``where`` (None: all)."""
        t = self.table(coll)
        sql, params = compile_where(t.cols, where)
        ssql, sparams = self._scope_sql(t, scope)
        with self._tx(write=False) as db:
            row = db.execute(f"SELECT count(*) FROM {t.name} WHERE {sql} AND {ssql}",
                             params + sparams).fetchone()
        return int(row[0])

    def explain(self, coll: str, spec: Mapping[str, object]) -> list[str]:
        """SQLite's query plan for ``db::query(coll, spec)`` (the detail column of each step)."""
        t = self.table(coll)
        sql, params, order, limit = self._plan(t, dict(spec), None)
        with self._lock:
            rows = self._db.execute(f"EXPLAIN QUERY PLAN SELECT {t.select} FROM {t.name} WHERE {sql} "
                                    f"ORDER BY {order.sql()} LIMIT {limit + 1}", params).fetchall()
        return [str(r[-1]) for r in rows]
