"""The filter language of ``db::query`` and ``db::count``, compiled to SQL; ordering and cursors.

A filter (``where``) is a map from field names to conditions, all of which
must hold::

    #{from: caller.id}                         // equality (a value that is not a map)
    #{sent: #{ge: 100, lt: 200}}               // ranges: gt, ge, lt, le; ne
    #{status: #{in: ["new", "seen"]}}          // one of (at most 100 values)
    #{text: #{prefix: "re: "}}                 // strings that start with it
    #{reply_to: ()}                            // an optional field that is absent (#{ne: ()}: present)
    #{or: [#{from: a}, #{from: b}], not: #{status: "spam"}}   // and, or, not: nest up to 4 deep

Fields are the record type's scalar fields (did, string, int, float, bool,
bytes, timestamp) and, in an auto-keyed collection, ``_key``. Each value
must have the field's type (an int is accepted for a float). Every condition
is a plain comparison on the field's own column, so SQLite uses a declared
index whose leading columns the filter fixes; a prefix is a range
(``col >= p AND col < p'``), which an index serves too. A filter no index
serves is answered by a scan: slower, the same rows.

``order_by`` is a field name, ``"-field"`` for descending, or an array of up
to 4 of them; only required scalar fields (and the key) can order, so every
row has a value to page by. The key breaks ties, which makes the order total
and the ``after`` cursor (the last row's ordering values and key) stable: a
page never repeats or skips a row because rows were inserted or deleted
since the previous page.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cbor2

from ._errors import HostCallError, show
from ._schema import Collection, Schema, TypeRef
from ._validate import type_name

__all__ = ["Columns", "Order", "compile_where", "parse_order", "encode_cursor", "decode_cursor",
           "MAX_FILTER_DEPTH", "MAX_FILTER_TERMS", "MAX_IN", "column"]

MAX_FILTER_DEPTH = 4
MAX_FILTER_TERMS = 64
MAX_IN = 100
MAX_ORDER_FIELDS = 4
_MAX_CURSOR = 4096
_RANGE = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "ne": "<>"}
_OPS = ("eq", "ne", "gt", "ge", "lt", "le", "in", "prefix")
_WORDS = ("and", "or", "not")


def column(name: str) -> str:
    """The quoted SQL column of field ``name`` (``_key``: the auto key)."""
    return '"_key"' if name == "_key" else f'"f_{name}"'


def _invalid(msg: str) -> HostCallError:
    return HostCallError("invalid_argument", msg)


class Columns:
    """The filterable columns of one collection: field name -> type; ``key``: the key's field."""

    __slots__ = ("coll", "types", "key")

    def __init__(self, schema: Schema, coll: Collection) -> None:
        self.coll = coll
        rt = schema.record_type(coll)
        self.types: dict[str, TypeRef] = {f.name: f.type for f in rt.fields if f.type.scalar}
        if coll.auto_key:
            self.types["_key"] = TypeRef("int")
        self.key = coll.key if not coll.auto_key else "_key"

    def type_of(self, what: str, name: object) -> TypeRef:
        t = self.types.get(name) if isinstance(name, str) else None
        if t is None:
            shown = show(name) if isinstance(name, str) else type_name(name)
            raise _invalid(f"{what}: {shown} is not a scalar field of collection {self.coll.name!r}")
        return t

    def check(self, what: str, name: str, t: TypeRef, v: object) -> object:
        """``v`` as a parameter for a column of type ``t`` (None stays None)."""
        if v is None:
            return None
        k = t.kind
        ok = (isinstance(v, str) if k in ("string", "did") else
              type(v) is int if k in ("int", "timestamp") else
              type(v) in (int, float) and math.isfinite(v) if k == "float" else  # type: ignore[arg-type]
              type(v) is bool if k == "bool" else isinstance(v, (bytes, bytearray)))
        if not ok:
            raise _invalid(f"{what}: {name!r} is a {k}, got {type_name(v)}")
        return bytes(v) if isinstance(v, bytearray) else v


def _prefix_bound(p: str) -> str | None:
    """The least string greater than every string starting with ``p`` (None: no bound)."""
    chars = list(p)
    while chars:
        c = ord(chars[-1])
        if c < 0x10FFFF:
            c += 1
            if 0xD800 <= c <= 0xDFFF:
                c = 0xE000
            chars[-1] = chr(c)
            return "".join(chars)
        chars.pop()
    return None


class _Compiler:
    def __init__(self, cols: Columns) -> None:
        self.cols = cols
        self.params: list[object] = []
        self.terms = 0

    def where(self, w: object, depth: int) -> str:
        if depth > MAX_FILTER_DEPTH:
            raise _invalid(f"where: nested deeper than {MAX_FILTER_DEPTH} levels")
        if not isinstance(w, dict):
            raise _invalid(f"where: expected a map of conditions, got {type_name(w)}")
        parts: list[str] = []
        for name, cond in w.items():
            if name in ("and", "or"):
                if not isinstance(cond, (list, tuple)) or not cond:
                    raise _invalid(f"where: {name} takes a non-empty array of filters")
                subs = [self.where(x, depth + 1) for x in cond]
                parts.append("(" + f" {name.upper()} ".join(subs) + ")")
            elif name == "not":
                parts.append(f"NOT ({self.where(cond, depth + 1)})")
            else:
                parts.extend(self.field(name, cond))
        return " AND ".join(parts) if parts else "1"

    def _count(self) -> None:
        self.terms += 1
        if self.terms > MAX_FILTER_TERMS:
            raise _invalid(f"where: more than {MAX_FILTER_TERMS} conditions")

    def field(self, name: object, cond: object) -> list[str]:
        t = self.cols.type_of("where", name)
        assert isinstance(name, str)
        col = column(name)
        if not isinstance(cond, dict):
            cond = {"eq": cond}
        if not cond:
            raise _invalid(f"where: {name!r}: an empty condition")
        out: list[str] = []
        for op, v in cond.items():
            self._count()
            if op not in _OPS:
                raise _invalid(f"where: {name!r}: unknown operator {show(str(op))} "
                               f"(one of {', '.join(_OPS)})")
            if op in ("eq", "ne") and v is None:
                out.append(f"{col} IS {'NOT ' if op == 'ne' else ''}NULL")
            elif op == "in":
                if not isinstance(v, (list, tuple)) or len(v) > MAX_IN:
                    raise _invalid(f"where: {name!r}: in takes an array of at most {MAX_IN} values")
                if not v:
                    out.append("0")
                    continue
                self.params.extend(self.cols.check("where", name, t, x) for x in v)
                out.append(f"{col} IN ({', '.join('?' * len(v))})")
            elif op == "prefix":
                if t.kind not in ("string", "did") or not isinstance(v, str):
                    raise _invalid(f"where: {name!r}: prefix takes a string, on a string or did field")
                if v:
                    out.append(f"{col} >= ?")
                    self.params.append(v)
                    hi = _prefix_bound(v)
                    if hi is not None:
                        out.append(f"{col} < ?")
                        self.params.append(hi)
            else:
                if v is None:
                    raise _invalid(f"where: {name!r}: {op} needs a value, not ()")
                self.params.append(self.cols.check("where", name, t, v))
                out.append(f"{col} {'=' if op == 'eq' else _RANGE[op]} ?")
        return out


def compile_where(cols: Columns, where: object) -> tuple[str, list[object]]:
    """SQL for filter ``where`` (None: every row) and its parameters. Raises ``invalid_argument``."""
    if where is None:
        return "1", []
    c = _Compiler(cols)
    return c.where(where, 1), c.params


@dataclass(frozen=True, slots=True)
class Order:
    """An ordering: (field, descending) pairs, the key last."""

    fields: tuple[tuple[str, bool], ...]

    @property
    def text(self) -> str:
        return ",".join(("-" if d else "") + f for f, d in self.fields)

    def sql(self) -> str:
        return ", ".join(f"{column(f)} {'DESC' if d else 'ASC'}" for f, d in self.fields)


def parse_order(cols: Columns, raw: object, required: Mapping[str, bool]) -> Order:
    """``order_by`` (None: by key) as an :class:`Order`; ``required``: field -> not optional."""
    items: Sequence[object]
    if raw is None:
        items = []
    elif isinstance(raw, str):
        items = [raw]
    elif isinstance(raw, (list, tuple)) and len(raw) <= MAX_ORDER_FIELDS:
        items = raw
    else:
        raise _invalid(f"order_by: a field name, \"-field\" or an array of at most {MAX_ORDER_FIELDS}")
    out: list[tuple[str, bool]] = []
    for item in items:
        if not isinstance(item, str):
            raise _invalid(f"order_by: expected a field name, got {type_name(item)}")
        desc = item.startswith("-")
        name = item[1:] if desc else item
        cols.type_of("order_by", name)
        if not required.get(name, name == "_key"):
            raise _invalid(f"order_by: {name!r} is optional; only required fields can order (every row "
                           "needs a value to page by)")
        if any(f == name for f, _ in out):
            raise _invalid(f"order_by: {name!r} twice")
        out.append((name, desc))
    if not any(f == cols.key for f, _ in out):
        out.append((cols.key, False))
    return Order(tuple(out))


def after_sql(order: Order, values: Sequence[object]) -> tuple[str, list[object]]:
    """The keyset condition "comes after ``values``" for ``order`` (one OR branch per field)."""
    branches: list[str] = []
    params: list[object] = []
    for i, (name, desc) in enumerate(order.fields):
        eqs = [f"{column(f)} = ?" for f, _ in order.fields[:i]]
        params.extend(values[:i])
        eqs.append(f"{column(name)} {'<' if desc else '>'} ?")
        params.append(values[i])
        branches.append("(" + " AND ".join(eqs) + ")")
    return "(" + " OR ".join(branches) + ")", params


def encode_cursor(coll: str, order: Order, values: Sequence[object]) -> str:
    """An opaque cursor: the collection, the ordering and the last row's values."""
    raw = cbor2.dumps([coll, order.text, list(values)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cols: Columns, order: Order, cursor: object) -> list[object]:
    """The values a cursor holds, checked against ``order``. Raises ``invalid_argument``."""
    if not isinstance(cursor, str) or len(cursor) > _MAX_CURSOR:
        raise _invalid("after: not a cursor (pass the 'next' of a previous page)")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data: Any = cbor2.loads(raw)
    except (binascii.Error, ValueError, cbor2.CBORDecodeError) as exc:
        raise _invalid("after: not a cursor (pass the 'next' of a previous page)") from exc
    if (not isinstance(data, list) or len(data) != 3 or data[0] != cols.coll.name
            or not isinstance(data[2], list) or len(data[2]) != len(order.fields)):
        raise _invalid("after: a cursor of another collection or query")
    if data[1] != order.text:
        raise _invalid(f"after: the cursor was made for order_by {data[1]!r}, not {order.text!r}")
    out = []
    for (name, _), v in zip(order.fields, data[2], strict=True):
        if v is None:
            raise _invalid("after: a damaged cursor")
        out.append(cols.check("after", name, cols.types[name], v))
    return out
