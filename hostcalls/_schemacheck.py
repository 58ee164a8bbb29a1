"""The checker of ``schema.toml``: parsed TOML and its text in, a frozen :class:`~._schema.Schema` out.

:func:`check_schema` collects every problem into one :class:`~._schema.SchemaError`, each
with the line it is on (found by scanning the text for table headers and ``key =`` lines,
as the policy loader does: tomllib reports no positions). Budgeted: see the limits in
:mod:`peerbox.hostcalls._schema`. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from ._errors import HostCallError
from ._schema import (
    MAX_COLLECTIONS, MAX_FIELDS, MAX_INDEX_FIELDS, MAX_INDEXES, MAX_ONE_OF, MAX_TYPE_DEPTH, MAX_TYPES,
    RESERVED_FIELDS, SCALARS, Collection, Field, RecordType, Schema, SchemaError, SchemaProblem, depth_of,
    parse_type, refs_of,
)
from ._validate import _V

__all__ = ["check_schema"]

_MAX_PROBLEMS = 50
_NO_TYPES = Schema(file="", version=1, types=(), collections=())
_TYPE_NAME = re.compile(r"[A-Z][A-Za-z0-9_]{0,62}")
_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}")
_COLL_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
_FIELD_KEYS = ("type", "max_len", "min_len", "min", "max", "one_of", "default", "description")
_COLL_KEYS = ("type", "key", "indexes", "unique", "description")
_TOP_KEYS = ("version", "types", "collections")
_LEN_KINDS = frozenset({"string", "bytes", "list", "map"})
_NUM_KINDS = frozenset({"int", "float", "timestamp"})
_ONE_OF_KINDS = frozenset({"string", "did", "int"})

def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


class _Lines:
    """Best-effort line numbers: table headers and ``key =`` lines, found by scanning the text."""

    def __init__(self, text: str) -> None:
        self.text = text
        starts = [(m.start(), m.group(1)) for m in
                  re.finditer(r"^[ \t]*\[([^\[\]\n]*)\]", text, re.MULTILINE)]
        #: (names of a table header) -> (its position, where the next header starts); one pass
        self.headers: dict[tuple[str, ...], tuple[int, int]] = {}
        for n, (pos, inner) in enumerate(starts):
            names = tuple(p.strip().strip('"').strip("'") for p in inner.split("."))
            end = starts[n + 1][0] if n + 1 < len(starts) else len(text)
            self.headers.setdefault(names, (pos, end))

    def header(self, *parts: str) -> tuple[int | None, int, int]:
        """(line, start, end) of the table ``[a.b]`` (end: the next header), or (None, 0, len)."""
        found = self.headers.get(parts)
        if found is None:
            return None, 0, len(self.text)
        return _line_of(self.text, found[0]), found[0], found[1]

    def key(self, key: str, start: int, end: int) -> int | None:
        rx = re.compile(rf"^[ \t]*(?:\"{re.escape(key)}\"|'{re.escape(key)}'|{re.escape(key)})[ \t]*[=.]",
                        re.MULTILINE)
        m = rx.search(self.text, start, end)
        return _line_of(self.text, m.start()) if m else None


class _Checker:
    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.lines = _Lines(text)
        self.problems: list[SchemaProblem] = []

    def add(self, line: int | None, problem: str) -> None:
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(SchemaProblem(self.file, line, problem))

    @property
    def full(self) -> bool:
        """No more problems are kept: loops over keys stop (finding lines costs a scan each)."""
        return len(self.problems) >= _MAX_PROBLEMS


def check_schema(data: Mapping[str, Any], text: str, file: str = "schema.toml") -> Schema:
    """Check the parsed TOML ``data`` of a schema file (``text`` is its source, for line numbers).

    Raises :class:`SchemaError` listing every problem: unknown keys, bad names, unknown types,
    cycles, nesting deeper than :data:`MAX_TYPE_DEPTH`, rules that do not fit their field's
    type, collections naming a missing type or field, a key that is optional or not a string,
    did or int, indexes on fields that are not scalar, too many of anything.
    """
    ck = _Checker(file, text)
    for key in data:
        if ck.full:
            break
        if key not in _TOP_KEYS:
            ck.add(ck.lines.key(key, 0, len(text)), f"unknown top-level key {key!r} (expected: "
                   f"{', '.join(_TOP_KEYS)})")
    version = data.get("version", 1)
    if type(version) is not int or version < 1:
        ck.add(ck.lines.key("version", 0, len(text)), f"'version' must be an integer >= 1, got {version!r}")
        version = 1
    raw_types = data.get("types", {})
    raw_colls = data.get("collections", {})
    types: list[RecordType] = []
    if not isinstance(raw_types, dict):
        ck.add(ck.lines.key("types", 0, len(text)), "'types' must be tables: [types.NAME]")
    elif len(raw_types) > MAX_TYPES:
        ck.add(None, f"more than {MAX_TYPES} types")
    else:
        for name, raw in raw_types.items():
            t = _record_type(name, raw, ck)
            if t is not None:
                types.append(t)
    by_name = {t.name: t for t in types}
    if isinstance(raw_types, dict) and len(raw_types) <= MAX_TYPES:
        _check_refs(types, by_name, set(raw_types), ck)
    colls: list[Collection] = []
    if not isinstance(raw_colls, dict):
        ck.add(ck.lines.key("collections", 0, len(text)), "'collections' must be tables: [collections.NAME]")
    elif len(raw_colls) > MAX_COLLECTIONS:
        ck.add(None, f"more than {MAX_COLLECTIONS} collections")
    else:
        for name, raw in raw_colls.items():
            c = _collection(name, raw, by_name, set(raw_types) if isinstance(raw_types, dict) else set(), ck)
            if c is not None:
                colls.append(c)
    if ck.problems:
        raise SchemaError(ck.problems)
    return Schema(file=file, version=version, types=tuple(types), collections=tuple(colls))


def _record_type(name: str, raw: object, ck: _Checker) -> RecordType | None:
    line, start, end = ck.lines.header("types", name)
    label = f"type {name!r}"
    if not _TYPE_NAME.fullmatch(name):
        ck.add(line, f"{label}: a type name starts with a capital letter, then letters, digits or '_' "
               "(at most 63)")
        return None
    if name in SCALARS or name in ("list", "map"):
        ck.add(line, f"{label}: the name of a built-in type")
        return None
    if not isinstance(raw, dict):
        ck.add(line, f"{label}: must be a table of FIELD = TYPE")
        return None
    if len(raw) > MAX_FIELDS:
        ck.add(line, f"{label}: more than {MAX_FIELDS} fields")
        return None
    if not raw:
        ck.add(line, f"{label}: has no fields")
    fields: list[Field] = []
    folded: dict[str, str] = {}
    for fname, spec in raw.items():
        fline = ck.lines.key(fname, start, end) or line
        if not _FIELD_NAME.fullmatch(fname) or fname in RESERVED_FIELDS:
            why = "is reserved (a filter word)" if fname in RESERVED_FIELDS else \
                "must start with a letter, then letters, digits or '_' (at most 63)"
            ck.add(fline, f"{label}: field {fname!r} {why}")
            continue
        other = folded.setdefault(fname.lower(), fname)
        if other != fname:
            ck.add(fline, f"{label}: fields {other!r} and {fname!r} differ only in case")
            continue
        f = _field(f"{name}.{fname}", fname, spec, fline, ck)
        if f is not None:
            fields.append(f)
    return RecordType(name, tuple(fields), line)


def _field(label: str, name: str, spec: object, line: int | None, ck: _Checker) -> Field | None:
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, dict):
        ck.add(line, f"field {label}: must be a type (\"string\") or a table ({{ type = \"string\", "
               "max_len = 100 }})")
        return None
    ok = True
    for key in spec:
        if key not in _FIELD_KEYS:
            ck.add(line, f"field {label}: unknown key {key!r} (expected: {', '.join(_FIELD_KEYS)})")
            ok = False
    texpr = spec.get("type")
    if not isinstance(texpr, str):
        ck.add(line, f"field {label}: 'type' is missing or not a string")
        return None
    try:
        t = parse_type(texpr)
    except ValueError as exc:
        ck.add(line, f"field {label}: {exc}")
        return None
    base = t.kind
    values: dict[str, Any] = {}
    for key in ("max_len", "min_len"):
        if key in spec:
            v = spec[key]
            if base not in _LEN_KINDS:
                ck.add(line, f"field {label}: {key} applies to string, bytes, list and map, not {t}")
                ok = False
            elif type(v) is not int or v < 0:
                ck.add(line, f"field {label}: {key} must be an integer >= 0, got {v!r}")
                ok = False
            else:
                values[key] = v
    for key in ("min", "max"):
        if key in spec:
            v = spec[key]
            if base not in _NUM_KINDS:
                ck.add(line, f"field {label}: {key} applies to int, float and timestamp, not {t}")
                ok = False
            elif type(v) not in (int, float) or (base != "float" and type(v) is not int) or v != v:
                ck.add(line, f"field {label}: {key} must be a{'' if base == 'float' else 'n integer'} "
                       f"number{'' if base == 'float' else ''}, got {v!r}")
                ok = False
            else:
                values[key] = v
    for lo, hi in (("min_len", "max_len"), ("min", "max")):
        if lo in values and hi in values and values[lo] > values[hi]:
            ck.add(line, f"field {label}: {lo} {values[lo]} is greater than {hi} {values[hi]}")
            ok = False
    one_of = None
    if "one_of" in spec:
        v = spec["one_of"]
        want = int if base == "int" else str
        if base not in _ONE_OF_KINDS:
            ck.add(line, f"field {label}: one_of applies to string, did and int, not {t}")
            ok = False
        elif (not isinstance(v, list) or not v or len(v) > MAX_ONE_OF
              or not all(type(x) is want for x in v)):
            ck.add(line, f"field {label}: one_of must be a non-empty array of at most {MAX_ONE_OF} "
                   f"{want.__name__} values")
            ok = False
        else:
            one_of = tuple(v)
    desc = spec.get("description")
    if desc is not None and not isinstance(desc, str):
        ck.add(line, f"field {label}: description must be a string")
        ok = False
    if not ok:
        return None
    f = Field(name, t, values.get("max_len"), values.get("min_len"), values.get("min"), values.get("max"),
              one_of, desc, line)
    if "default" in spec:
        default = _default(label, f, spec["default"], line, ck)
        if default is None:
            return None
        f = dataclasses.replace(f, default=default)
    return f


def _default(label: str, f: Field, value: object, line: int | None, ck: _Checker) -> object:
    """``value`` as ``f``'s default, normalised (an int for a float field becomes a float); None
    (a problem added) when it is not one: a did (a default would put records in someone's name),
    bytes (TOML has no byte strings), a type that is or holds a record type (not supported), or a
    value its own type and rules refuse."""
    t = f.type
    inner = t
    while inner.item is not None:
        inner = inner.item
    if inner.kind in ("did", "bytes"):
        why = "a did field takes no default (it would put records in a fixed identity's name)" \
            if inner.kind == "did" else "a bytes field takes no default (TOML has no byte strings)"
        ck.add(line, f"field {label}: {why}")
        return None
    if inner.kind == "record":
        ck.add(line, f"field {label}: a field of a record type ({t}) takes no default (not supported yet)")
        return None
    try:
        out = _V(_NO_TYPES).value(f.name, t, value, f)
    except HostCallError as exc:
        ck.add(line, f"field {label}: default {value!r} does not fit the field: {exc.message}")
        return None
    return out


def _check_refs(types: list[RecordType], by_name: dict[str, RecordType], declared: set[str],
                ck: _Checker) -> None:
    """Unknown type names, cycles and the nesting depth, types expanded."""
    for t in types:
        for f in t.fields:
            for ref in refs_of(f.type):
                if ref not in declared:
                    near = [n for n in declared if n.lower() == ref.lower()]
                    hint = f" (did you mean {near[0]!r}?)" if near else \
                        f" (a scalar is one of {', '.join(SCALARS)})" if ref.lower() in SCALARS else ""
                    ck.add(f.line, f"field {t.name}.{f.name}: unknown type {ref!r}{hint}")
    depth: dict[str, int] = {}
    state: dict[str, int] = {}  # 1: on the path, 2: done
    for t in types:
        if t.name in state:
            continue
        # iterative DFS: (type, index of next field)
        stack: list[tuple[RecordType, int]] = [(t, 0)]
        state[t.name] = 1
        while stack:
            cur, i = stack[-1]
            if i < len(cur.fields):
                stack[-1] = (cur, i + 1)
                f = cur.fields[i]
                for ref in refs_of(f.type):
                    nxt = by_name.get(ref)
                    if nxt is None:
                        continue
                    if state.get(ref) == 1:
                        path = [s[0].name for s in stack]
                        cycle = path[path.index(ref):] + [ref]
                        ck.add(f.line, f"field {cur.name}.{f.name}: types refer to each other in a cycle: "
                               f"{' -> '.join(cycle)} (records are finite: break it with a key field)")
                    elif ref not in state:
                        state[ref] = 1
                        stack.append((nxt, 0))
                continue
            stack.pop()
            state[cur.name] = 2
            d = 1
            for f in cur.fields:
                inner = max((depth.get(r, 1) for r in refs_of(f.type)), default=0)
                d = max(d, depth_of(f.type) + inner)
            depth[cur.name] = d
            if d > MAX_TYPE_DEPTH:
                ck.add(cur.line, f"type {cur.name!r}: nests {d} levels deep, more than {MAX_TYPE_DEPTH} "
                       "(types it refers to included)")
                depth[cur.name] = 1  # report once


def _field_lists(label: str, key: str, raw: object, t: RecordType | None, line: int | None,
                 ck: _Checker) -> tuple[tuple[str, ...], ...] | None:
    if not isinstance(raw, list) or len(raw) > MAX_INDEXES:
        ck.add(line, f"{label}: {key} must be an array (at most {MAX_INDEXES}) of field names or arrays "
               "of field names")
        return None
    out: list[tuple[str, ...]] = []
    ok = True
    for item in raw:
        names = [item] if isinstance(item, str) else item
        if (not isinstance(names, list) or not names or len(names) > MAX_INDEX_FIELDS
                or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names)):
            ck.add(line, f"{label}: {key}: {item!r} is not a field name or an array of 1 to "
                   f"{MAX_INDEX_FIELDS} distinct field names")
            ok = False
            continue
        for n in names:
            f = t.field(n) if t is not None else None
            if t is not None and f is None:
                ck.add(line, f"{label}: {key}: type {t.name!r} has no field {n!r}")
                ok = False
            elif f is not None and not f.type.scalar:
                ck.add(line, f"{label}: {key}: field {n!r} is a {f.type}; only scalar fields "
                       f"({', '.join(SCALARS)}) can be indexed")
                ok = False
        out.append(tuple(names))
    return tuple(out) if ok else None


def _collection(name: str, raw: object, by_name: dict[str, RecordType], declared: set[str],
                ck: _Checker) -> Collection | None:
    line, start, end = ck.lines.header("collections", name)
    label = f"collection {name!r}"
    if not _COLL_NAME.fullmatch(name):
        ck.add(line, f"{label}: a collection name is lower-case letters, digits and '_', starting with a "
               "letter (at most 63)")
        return None
    if not isinstance(raw, dict):
        ck.add(line, f"{label}: must be a table with type, key, indexes, unique")
        return None
    ok = True
    for key in raw:
        if ck.full:
            break
        if key not in _COLL_KEYS:
            ck.add(ck.lines.key(key, start, end) or line, f"{label}: unknown key {key!r} (expected: "
                   f"{', '.join(_COLL_KEYS)})")
            ok = False
    tname = raw.get("type")
    t = by_name.get(tname) if isinstance(tname, str) else None
    if not isinstance(tname, str):
        ck.add(line, f"{label}: 'type' (a record type's name) is missing")
        return None
    if tname not in declared:
        ck.add(ck.lines.key("type", start, end) or line, f"{label}: unknown type {tname!r}")
        return None
    key = raw.get("key", "auto")
    kline = ck.lines.key("key", start, end) or line
    if not isinstance(key, str):
        ck.add(kline, f"{label}: key must be \"auto\" or a field name")
        ok = False
    elif key != "auto" and t is not None:
        f = t.field(key)
        if f is None:
            ck.add(kline, f"{label}: key: type {tname!r} has no field {key!r}")
            ok = False
        elif f.type.optional or f.type.kind not in ("string", "did", "int"):
            ck.add(kline, f"{label}: key: field {key!r} is a {f.type}; a key field is a required string, "
                   "did or int")
            ok = False
        elif f.has_default:
            ck.add(kline, f"{label}: key: field {key!r} has a default; a key field takes none (every "
                   "record without one would collide)")
            ok = False
    idx = _field_lists(label, "indexes", raw.get("indexes", []), t,
                       ck.lines.key("indexes", start, end) or line, ck)
    uniq = _field_lists(label, "unique", raw.get("unique", []), t,
                        ck.lines.key("unique", start, end) or line, ck)
    desc = raw.get("description")
    if desc is not None and not isinstance(desc, str):
        ck.add(line, f"{label}: description must be a string")
        ok = False
    if not ok or idx is None or uniq is None or t is None:
        return None
    return Collection(name, tname, str(key), idx, uniq, desc, line)
