"""Records against their types: validation at the host-call boundary, and JSON Schema.

:func:`validate_record` checks one value a script hands to ``db::insert`` (or
the changes of ``db::update``) against a :class:`~._schema.RecordType` and
returns the normalised record (``()`` in an optional field dropped, an int
given for a float stored as a float). A refusal is a catchable
:class:`HostCallError` of kind ``schema_violation`` whose message names the
field path and the rule: ``'text': max_len 4096: it has 5000 characters``,
``'tags[2]': type: expected string, got int``, ``'meta.author': required``.

:func:`json_schema` maps a :class:`~._schema.Schema` to JSON Schema (draft
2020-12): one ``$defs`` entry per record type, one property per collection.
"""

from __future__ import annotations

import copy
import math
import re
from typing import Any

from ._errors import HostCallError, show
from ._schema import Collection, Field, RecordType, Schema, TypeRef

__all__ = ["validate_record", "validate_value", "json_schema", "DID_PATTERN", "type_name"]

#: What a ``did`` field accepts: a ``did:key`` in base58btc (the syntax; keys are not decoded).
DID_PATTERN = re.compile(r"did:key:z[1-9A-HJ-NP-Za-km-z]{1,200}")
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


def type_name(value: object) -> str:
    """The script-side name of a value's type, for messages."""
    if value is None:
        return "()"
    for t, name in ((bool, "bool"), (int, "int"), (float, "float"), (str, "string"),
                    ((bytes, bytearray), "blob"), ((list, tuple), "array"), (dict, "map")):
        if isinstance(value, t):
            return name
    return type(value).__name__


def _bad(path: str, rule: str, detail: str) -> HostCallError:
    return HostCallError("schema_violation", f"{show(path)}: {rule}: {detail[:300]}")


class _V:
    __slots__ = ("schema",)

    def __init__(self, schema: Schema) -> None:
        self.schema = schema

    def value(self, path: str, t: TypeRef, v: object, f: Field | None) -> object:
        if v is None:
            if t.optional:
                return None
            raise _bad(path, "required", f"expected {t}, got ()")
        k = t.kind
        if k in ("string", "did"):
            if not isinstance(v, str):
                raise _bad(path, "type", f"expected {k}, got {type_name(v)}")
            if k == "did" and not DID_PATTERN.fullmatch(v):
                raise _bad(path, "type", "expected a did (did:key:z...)")
            out: object = v
        elif k in ("int", "timestamp"):
            if type(v) is not int:
                raise _bad(path, "type", f"expected {k}, got {type_name(v)}")
            if not _INT_MIN <= v <= _INT_MAX:
                raise _bad(path, "type", "outside the 64-bit integer range")
            out = v
        elif k == "float":
            if type(v) is int:
                v = float(v)
            if type(v) is not float:
                raise _bad(path, "type", f"expected float, got {type_name(v)}")
            if not math.isfinite(v):
                raise _bad(path, "type", f"expected a finite float, got {v}")
            out = v
        elif k == "bool":
            if type(v) is not bool:
                raise _bad(path, "type", f"expected bool, got {type_name(v)}")
            out = v
        elif k == "bytes":
            if not isinstance(v, (bytes, bytearray)):
                raise _bad(path, "type", f"expected a blob, got {type_name(v)}")
            out = bytes(v)
        elif k == "list":
            if not isinstance(v, (list, tuple)):
                raise _bad(path, "type", f"expected {t}, got {type_name(v)}")
            assert t.item is not None
            out = [self.value(f"{path}[{i}]", t.item, x, None) for i, x in enumerate(v)]
        elif k == "map":
            if not isinstance(v, dict):
                raise _bad(path, "type", f"expected {t}, got {type_name(v)}")
            assert t.item is not None
            m: dict[str, object] = {}
            for key, x in v.items():
                if not isinstance(key, str):
                    raise _bad(path, "type", f"map keys are strings, got {type_name(key)}")
                m[key] = self.value(f"{path}.{key}", t.item, x, None)
            out = m
        else:
            rt = self.schema.type(str(t.name))
            assert rt is not None
            out = self.record(path + ".", rt, v)
        if f is not None:
            self.rules(path, f, out)
        return out

    def rules(self, path: str, f: Field, v: object) -> None:
        if f.max_len is not None or f.min_len is not None:
            assert isinstance(v, (str, bytes, list, dict))
            n = len(v)
            unit = "characters" if isinstance(v, str) else "bytes" if isinstance(v, bytes) else "items"
            if f.max_len is not None and n > f.max_len:
                raise _bad(path, f"max_len {f.max_len}", f"it has {n} {unit}")
            if f.min_len is not None and n < f.min_len:
                raise _bad(path, f"min_len {f.min_len}", f"it has {n} {unit}")
        if f.min is not None and v < f.min:  # type: ignore[operator]
            raise _bad(path, f"min {f.min}", f"{v} is smaller")
        if f.max is not None and v > f.max:  # type: ignore[operator]
            raise _bad(path, f"max {f.max}", f"{v} is larger")
        if f.one_of is not None and v not in f.one_of:
            shown = ", ".join(repr(x) for x in f.one_of[:8]) + (", ..." if len(f.one_of) > 8 else "")
            raise _bad(path, "one_of", f"{v!r} is not one of {shown}")

    def record(self, prefix: str, rt: RecordType, v: object, *, partial: bool = False,
               reserved: tuple[str, ...] = ()) -> dict[str, object]:
        where = prefix[:-1] or rt.name
        if not isinstance(v, dict):
            raise _bad(where, "type", f"expected a {rt.name} record (a map), got {type_name(v)}")
        out: dict[str, object] = {}
        for key in v:
            if not isinstance(key, str) or rt.field(key) is None:
                if key in reserved:
                    raise _bad(prefix + str(key), "reserved", "set by the collection, not by a record")
                near = [f.name for f in rt.fields if isinstance(key, str) and f.name.lower() == key.lower()]
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise _bad(prefix + str(key), "unknown_field",
                           f"type {rt.name} has no field {show(str(key))}{hint}")
        for f in rt.fields:
            if f.name not in v:
                if f.has_default and not partial:
                    out[f.name] = copy.deepcopy(f.default)  # checked against the field by the checker
                    continue
                if f.required and not partial:
                    raise _bad(prefix + f.name, "required", f"type {rt.name} needs it ({f.type})")
                continue
            x = self.value(prefix + f.name, f.type, v[f.name], f)
            if x is not None or partial:
                out[f.name] = x
        return out


def validate_value(schema: Schema, t: TypeRef, value: object, path: str) -> object:
    """``value`` checked against ``t`` (no field rules); raises ``schema_violation``."""
    return _V(schema).value(path, t, value, None)


def validate_record(schema: Schema, coll: Collection, value: object, *,
                    partial: bool = False) -> dict[str, object]:
    """``value`` checked against ``coll``'s record type: the normalised record.

    ``partial`` (``db::update``'s changes): fields may be missing, and ``()`` in an optional field
    is kept (it clears the field). Raises :class:`HostCallError` ``schema_violation`` naming the
    field path and the rule (``type``, ``required``, ``unknown_field``, ``reserved``,
    ``max_len N``, ``min_len N``, ``min N``, ``max N``, ``one_of``)."""
    rt = schema.record_type(coll)
    reserved = ("_key",) if coll.auto_key else ()
    return _V(schema).record("", rt, value, partial=partial, reserved=reserved)


# -- JSON Schema -------------------------------------------------------------------------

def _json_type(t: TypeRef, f: Field | None) -> dict[str, Any]:
    k = t.kind
    out: dict[str, Any]
    if k == "did":
        out = {"type": "string", "pattern": "^" + DID_PATTERN.pattern + "$"}
    elif k == "string":
        out = {"type": "string"}
    elif k == "int":
        out = {"type": "integer", "minimum": _INT_MIN, "maximum": _INT_MAX}
    elif k == "timestamp":
        out = {"type": "integer", "description": "a timestamp (integer Unix time)"}
    elif k == "float":
        out = {"type": "number"}
    elif k == "bool":
        out = {"type": "boolean"}
    elif k == "bytes":
        out = {"type": "string", "contentEncoding": "base64"}
    elif k == "list":
        assert t.item is not None
        out = {"type": "array", "items": _json_type(t.item, None)}
    elif k == "map":
        assert t.item is not None
        out = {"type": "object", "additionalProperties": _json_type(t.item, None)}
    else:
        out = {"$ref": f"#/$defs/{t.name}"}
    if f is not None:
        lens = {"string": ("minLength", "maxLength"), "list": ("minItems", "maxItems"),
                "map": ("minProperties", "maxProperties"), "bytes": ("x-minBytes", "x-maxBytes")}
        if k in lens:
            lo, hi = lens[k]
            if f.min_len is not None:
                out[lo] = f.min_len
            if f.max_len is not None:
                out[hi] = f.max_len
        if f.min is not None:
            out["minimum"] = f.min
        if f.max is not None:
            out["maximum"] = f.max
        if f.one_of is not None:
            out["enum"] = list(f.one_of)
        if f.description:
            out["description"] = f.description
    if t.optional:
        out = {"anyOf": [out, {"type": "null"}]}
    if f is not None and f.has_default:
        out["default"] = f.default
    return out


def json_schema(schema: Schema, title: str | None = None) -> dict[str, Any]:
    """``schema`` as a JSON Schema (draft 2020-12) document: ``$defs`` holds one object schema per
    record type (``additionalProperties: false``; optional fields not ``required`` and nullable);
    ``properties`` one array per collection (records as written; read back, an auto-keyed
    record also carries its integer ``_key``); ``x-peerbox-collections`` each collection's key,
    indexes and unique constraints."""
    defs: dict[str, Any] = {}
    for rt in schema.types:
        defs[rt.name] = {
            "type": "object",
            "properties": {f.name: _json_type(f.type, f) for f in rt.fields},
            "required": [f.name for f in rt.fields if f.required and not f.has_default],
            "additionalProperties": False,
        }
    props: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    for c in schema.collections:
        props[c.name] = {"type": "array", "items": {"$ref": f"#/$defs/{c.type}"}}
        if c.description:
            props[c.name]["description"] = c.description
        meta[c.name] = {"type": c.type, "key": c.key, "indexes": [list(i) for i in c.indexes],
                        "unique": [list(u) for u in c.unique]}
    out: dict[str, Any] = {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    if title:
        out["title"] = title
    out.update({"type": "object", "$defs": defs, "properties": props, "x-peerbox-collections": meta,
                "x-peerbox-schema-version": schema.version})
    return out
