"""Backups of a collection as JSON lines: ``peerbox db export`` and ``peerbox db import``.

One record a line, as a JSON object with the record's fields (and ``_key``
for an auto-keyed collection, so a round trip keeps keys). Values are typed
JSON: strings, dids, ints and timestamps (ints), floats, bools as
themselves; ``bytes`` as standard base64 text; lists, maps and nested
records as arrays and objects, converted by the same rules. Import reads
every line, converts it by the collection's type and validates it, then
inserts all of them in one transaction: one bad line (named by its number)
or one key already taken and nothing is imported.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ._dbquery import column
from ._errors import HostCallError
from ._records import Records
from ._schema import Collection, Schema, TypeRef
from ._validate import validate_record

__all__ = ["export_lines", "import_lines", "to_json", "from_json"]


def to_json(schema: Schema, t: TypeRef, v: object) -> object:
    """A stored value of type ``t`` as JSON data (bytes as base64)."""
    if v is None:
        return None
    if t.kind == "bytes":
        assert isinstance(v, bytes)
        return base64.b64encode(v).decode("ascii")
    if t.kind == "list":
        assert t.item is not None and isinstance(v, list)
        return [to_json(schema, t.item, x) for x in v]
    if t.kind == "map":
        assert t.item is not None and isinstance(v, dict)
        return {k: to_json(schema, t.item, x) for k, x in v.items()}
    if t.kind == "record":
        rt = schema.type(str(t.name))
        assert rt is not None and isinstance(v, dict)
        return {f.name: to_json(schema, f.type, v[f.name]) for f in rt.fields if f.name in v}
    return v


def from_json(schema: Schema, t: TypeRef, v: object, path: str) -> object:
    """JSON data as a value of type ``t`` (base64 text to bytes); validation comes after."""
    if v is None:
        return None
    if t.kind == "bytes":
        if not isinstance(v, str):
            raise HostCallError("schema_violation", f"{path}: type: expected base64 text for bytes")
        try:
            return base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise HostCallError("schema_violation", f"{path}: type: not valid base64") from exc
    if t.kind == "list" and isinstance(v, list):
        assert t.item is not None
        return [from_json(schema, t.item, x, f"{path}[{i}]") for i, x in enumerate(v)]
    if t.kind == "map" and isinstance(v, dict):
        assert t.item is not None
        return {k: from_json(schema, t.item, x, f"{path}.{k}") for k, x in v.items()}
    if t.kind == "record" and isinstance(v, dict):
        rt = schema.type(str(t.name))
        assert rt is not None
        out = {}
        for k, x in v.items():
            f = rt.field(k)
            out[k] = from_json(schema, f.type, x, f"{path}.{k}") if f is not None else x
        return out
    return v


def export_lines(records: Records, coll: str) -> Iterator[str]:
    """Every record of ``coll`` in key order, one JSON line each (no newline)."""
    t = records.table(coll)
    root = TypeRef("record", name=t.coll.type)
    with records._tx(write=False) as db:
        rows = db.execute(f"SELECT {t.select} FROM {t.name} ORDER BY {column(t.key)}").fetchall()
    for row in rows:
        rec = t.from_row(row)
        doc = to_json(records.schema, root, {k: v for k, v in rec.items() if k != "_key"})
        assert isinstance(doc, dict)
        if "_key" in rec:
            doc = {"_key": rec["_key"], **doc}
        yield json.dumps(doc, ensure_ascii=False, sort_keys=False)


def parse_lines(schema: Schema, coll: Collection, size: Callable[[dict[str, Any]], object],
                lines: Iterable[str]) -> list[tuple[int | None, dict[str, Any]]]:
    """Every non-blank line of an export, converted and validated against ``coll``'s type (and
    ``size``, the store's record-size check): (the ``_key`` given for an auto-keyed collection or
    None, the record). Raises :class:`HostCallError` naming the line (``line N: ...``): the
    first bad line stops the import before anything is written."""
    root = TypeRef("record", name=coll.type)
    out: list[tuple[int | None, dict[str, Any]]] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError as exc:
            raise HostCallError("schema_violation", f"line {n}: not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise HostCallError("schema_violation", f"line {n}: not a JSON object")
        key = doc.pop("_key", None) if coll.auto_key else None
        if key is not None and (type(key) is not int or key < 1):
            raise HostCallError("schema_violation", f"line {n}: _key: expected a positive int")
        try:
            rec = validate_record(schema, coll, from_json(schema, root, doc, ""))
            size(rec)
        except HostCallError as exc:
            raise HostCallError(exc.kind, f"line {n}: {exc.message}") from exc
        out.append((key, rec))
    return out


def import_lines(records: Records, coll: str, lines: Iterable[str]) -> int:
    """Insert the records of ``lines`` (JSON lines) into ``coll``, all or none; how many.

    Raises :class:`HostCallError` ``schema_violation`` (``line N: ...``) for a line that is
    not a JSON object of the collection's type, ``conflict`` for a key or unique value
    already taken (nothing is imported in either case)."""
    t = records.table(coll)
    rows = [([key] if t.coll.auto_key else []) + t.to_row(rec)
            for key, rec in parse_lines(records.schema, t.coll, records._size, lines)]
    names = (["_key"] if t.coll.auto_key else []) + t.fields
    marks = ", ".join("?" * len(names))
    sql = f"INSERT INTO {t.name} ({', '.join(column(c) for c in names)}) VALUES ({marks})"
    with records._tx() as db:
        for row in rows:
            db.execute(sql, row)
    return len(rows)
