"""Records checked at compile time: ``db::`` calls against the peer's schema.

Run after the resolver when the host hands the compiler a schema
(``compile_to_wat(..., schema=...)``), as it hands over the host-call table.
The schema arrives as plain data, the canonical form peerbox's schema model
produces (``Schema.canonical()``)::

    {"types": {"Message": {"from": {"type": "did"}, "sent": {"type": "timestamp?"}, ...}},
     "collections": {"inbox": {"type": "Message", "key": "auto", ...}}, ...}

so this package needs nothing of ``peerbox.hostcalls``. What it checks, only
where the answer is certain from the source (everything else stays a run-time
check of the ``db::`` host calls):

* a constant collection name of any ``db::`` call must be declared;
* the map literal given to ``db::insert`` (a whole record) or ``db::update``
  (changes) with a constant collection: no unknown field, no literal of the
  wrong type (nested records, lists and maps of literals too), and for an
  insert no missing required field (one with a default may be left out);
* field reads (``m.form``, ``m["form"]``) on a value the checker can follow
  back to a ``db::get``/``db::query``: a variable bound by ``let`` straight to
  the call (or to a field, an item or a ``.items`` of such a value) that is
  never assigned to afterwards, and the variable of a ``for`` loop over such
  a list (``for r in db::query("inbox", q).items``).

Variables are told apart by the resolver's bindings, so shadowing and
closures are handled as the code generator sees them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from . import _ast as A
from ._ast import Span
from ._diagnostics import Diagnostics
from ._hostfns import HostFn
from ._resolver import Resolution

__all__ = ["RecordSchema", "check_records"]

_SCALARS = frozenset({"did", "string", "int", "float", "bool", "bytes", "timestamp"})
_TYPE_TOKEN = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*|[<>?])")
#: db:: calls whose first argument is a collection name.
_DB_CALLS = frozenset({"insert", "get", "update", "delete", "query", "count"})


@dataclass(frozen=True, slots=True)
class FieldType:
    """A field's type as the checker reads it: ``kind`` (a scalar, ``list``, ``map`` or
    ``record``), ``item`` (of a list or map), ``name`` (of a record type), ``optional``."""

    kind: str
    item: FieldType | None = None
    name: str | None = None
    optional: bool = False

    def __str__(self) -> str:
        text = (f"{self.kind}<{self.item}>" if self.item is not None else
                str(self.name) if self.kind == "record" else self.kind)
        return text + "?" if self.optional else text


def _parse_type(text: str) -> FieldType:
    toks = [m.group(1) for m in _TYPE_TOKEN.finditer(text)]
    ref, i = _parse_tokens(toks, 0, text)
    if i != len(toks):
        raise ValueError(f"schema: malformed type {text!r}")
    return ref


def _parse_tokens(toks: list[str], i: int, text: str) -> tuple[FieldType, int]:
    if i >= len(toks) or toks[i] in "<>?":
        raise ValueError(f"schema: malformed type {text!r}")
    word, i = toks[i], i + 1
    if word in ("list", "map"):
        if i >= len(toks) or toks[i] != "<":
            raise ValueError(f"schema: malformed type {text!r}")
        item, i = _parse_tokens(toks, i + 1, text)
        if i >= len(toks) or toks[i] != ">":
            raise ValueError(f"schema: malformed type {text!r}")
        ref, i = FieldType(word, item=item), i + 1
    else:
        ref = FieldType(word) if word in _SCALARS else FieldType("record", name=word)
    if i < len(toks) and toks[i] == "?":
        ref, i = FieldType(ref.kind, ref.item, ref.name, True), i + 1
    return ref, i


class RecordSchema:
    """The record types and collections of one schema, read from its canonical data.

    Raises ``ValueError`` for data that is not a schema's canonical form (the
    host's bug, like a malformed host-call table).
    """

    __slots__ = ("types", "collections", "auto_key", "defaulted")

    def __init__(self, data: Mapping[str, Any]) -> None:
        try:
            types = data["types"]
            colls = data["collections"]
            self.types: dict[str, dict[str, FieldType]] = {
                str(t): {str(f): _parse_type(str(spec["type"])) for f, spec in fields.items()}
                for t, fields in types.items()}
            self.collections: dict[str, str] = {str(c): str(spec["type"]) for c, spec in colls.items()}
            #: (type, field) pairs that declare a default: an insert may leave them out
            self.defaulted: frozenset[tuple[str, str]] = frozenset(
                (str(t), str(f)) for t, fields in types.items() for f, spec in fields.items()
                if "default" in spec)
            self.auto_key: frozenset[str] = frozenset(
                str(c) for c, spec in colls.items() if spec.get("key", "auto") == "auto")
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"schema: not a schema's canonical data ({exc!r})") from exc
        for c, t in self.collections.items():
            if t not in self.types:
                raise ValueError(f"schema: collection {c!r} holds unknown type {t!r}")


# -- what the checker knows of a value --------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Rec:
    """A record of ``type``; ``key`` when it came from an auto-key collection (has ``_key``)."""

    type: str
    key: bool = False


@dataclass(frozen=True, slots=True)
class _Page:
    """What ``db::query`` returns: ``#{items: [records], next: cursor}``."""

    rec: _Rec


@dataclass(frozen=True, slots=True)
class _List:
    item: _Known


@dataclass(frozen=True, slots=True)
class _Map:
    item: _Known


_Known = _Rec | _Page | _List | _Map


def _known(t: FieldType) -> _Known | None:
    if t.kind == "record" and t.name is not None:
        return _Rec(t.name)
    if t.kind in ("list", "map") and t.item is not None:
        inner = _known(t.item)
        if inner is not None:
            return _List(inner) if t.kind == "list" else _Map(inner)
    return None


def _closest(name: str, names: list[str]) -> str | None:
    """The one of ``names`` that ``name`` most likely misspells (same letters in another case
    first), or None."""
    same = [n for n in names if n.lower() == name.lower()]
    near = same or difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return near[0] if near else None


def _suggest(name: str, names: list[str]) -> str:
    """``; did you mean 'x'?`` for the closest of ``names``, or ``""``."""
    near = _closest(name, names)
    return f"; did you mean '{near}'?" if near is not None else ""


def _literal_type(e: A.Expr) -> str | None:
    """The type of a literal expression as messages name it, or None for anything computed."""
    if isinstance(e, A.Unary) and e.op in ("-", "+") and isinstance(e.operand, (A.Int, A.Float)):
        e = e.operand
    return {A.Int: "int", A.Float: "float", A.Str: "string", A.Interp: "string", A.Bool: "bool",
            A.Unit: "()", A.ArrayLit: "array", A.MapLit: "map"}.get(type(e))


_ACCEPTS: dict[str, frozenset[str]] = {
    "did": frozenset({"string"}), "string": frozenset({"string"}), "int": frozenset({"int"}),
    "timestamp": frozenset({"int"}), "float": frozenset({"int", "float"}), "bool": frozenset({"bool"}),
    "bytes": frozenset(), "list": frozenset({"array"}), "map": frozenset({"map"}),
    "record": frozenset({"map"}),
}


class _Checker:
    def __init__(self, res: Resolution, schema: RecordSchema, diags: Diagnostics) -> None:
        self.res = res
        self.schema = schema
        self.diags = diags
        self.assigned: set[int] = set()  # binding ids some assignment changes
        self.known: dict[int, _Known] = {}  # binding id -> what the variable holds

    # -- walking ----------------------------------------------------------------------

    def run(self) -> None:
        roots: list[A.Node] = []
        for mod in self.res.modules:
            roots.append(mod.script.body)
            roots.extend(mod.script.functions)
        for root in roots:
            for node in _walk(root):
                if isinstance(node, A.Assign):
                    target = node.target
                    while isinstance(target, (A.Index, A.Prop)):
                        target = target.obj
                    b = self.res.bindings.get(id(target))
                    if b is not None:
                        self.assigned.add(b.id)
        for root in roots:
            for node in _walk(root):
                self.node(node)

    def node(self, node: A.Node) -> None:
        if isinstance(node, A.Let) and node.value is not None:
            self.bind(node, self.infer(node.value))
        elif isinstance(node, A.For):
            it = self.infer(node.iterable)
            self.bind(node, it.item if isinstance(it, _List) else None)
        elif isinstance(node, A.Call):
            host = self.res.calls.get(id(node))
            if isinstance(host, HostFn) and host.module == "db" and host.name in _DB_CALLS:
                self.db_call(node, host.name)
        elif isinstance(node, A.Prop):
            self.read(node.obj, node.name, _name_span(node))
        elif isinstance(node, A.Index) and isinstance(node.index, A.Str):
            self.read(node.obj, node.index.value, node.index.span)

    def bind(self, node: A.Node, what: _Known | None) -> None:
        b = self.res.bindings.get(id(node))
        if b is not None and what is not None and b.id not in self.assigned:
            self.known[b.id] = what

    # -- values followed from db:: calls ----------------------------------------------

    def infer(self, e: A.Expr) -> _Known | None:
        if isinstance(e, A.Var):
            b = self.res.bindings.get(id(e))
            return self.known.get(b.id) if b is not None else None
        if isinstance(e, A.Call):
            host = self.res.calls.get(id(e))
            if not (isinstance(host, HostFn) and host.module == "db" and e.args
                    and isinstance(e.args[0], A.Str)):
                return None
            coll = e.args[0].value
            t = self.schema.collections.get(coll)
            if t is None:
                return None
            rec = _Rec(t, coll in self.schema.auto_key)
            return rec if host.name == "get" else _Page(rec) if host.name == "query" else None
        if isinstance(e, A.Prop):
            return self.member(self.infer(e.obj), e.name)
        if isinstance(e, A.Index):
            obj = self.infer(e.obj)
            if isinstance(e.index, A.Str):
                return self.member(obj, e.index.value)
            return obj.item if isinstance(obj, (_List, _Map)) else None
        return None

    def member(self, obj: _Known | None, name: str) -> _Known | None:
        if isinstance(obj, _Page):
            return _List(obj.rec) if name == "items" else None
        if isinstance(obj, _Map):
            return obj.item
        if isinstance(obj, _Rec):
            ft = self.schema.types[obj.type].get(name)
            return _known(ft) if ft is not None else None
        return None

    def read(self, obj_expr: A.Expr, name: str, span: Span) -> None:
        obj = self.infer(obj_expr)
        if isinstance(obj, _Page) and name not in ("items", "next"):
            self.diags.error(span, f"db::query returns #{{items, next}}, which has no field '{name}'"
                             f"{_suggest(name, ['items', 'next'])}")
        elif isinstance(obj, _Rec):
            fields = self.schema.types[obj.type]
            if name not in fields and not (obj.key and name == "_key"):
                names = [*fields, *(["_key"] if obj.key else [])]
                self.diags.error(span, f"type {obj.type} has no field '{name}'{_suggest(name, names)}")

    # -- db:: calls -------------------------------------------------------------------

    def db_call(self, call: A.Call, fn: str) -> None:
        if not call.args or not isinstance(call.args[0], A.Str):
            return
        coll = call.args[0].value
        t = self.schema.collections.get(coll)
        if t is None:
            names = list(self.schema.collections)
            declared = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "") if names else "none"
            self.diags.error(call.args[0].span, f"db::{fn}: unknown collection '{coll}'"
                             f"{_suggest(coll, names)} (declared: {declared})")
            return
        if fn == "insert" and len(call.args) == 2 and isinstance(call.args[1], A.MapLit):
            self.record(t, call.args[1], partial=False, key_coll=coll)
        elif fn == "update" and len(call.args) == 3 and isinstance(call.args[2], A.MapLit):
            self.record(t, call.args[2], partial=True, key_coll=coll)

    def record(self, tname: str, lit: A.MapLit, *, partial: bool, key_coll: str | None = None,
               path: str = "") -> None:
        fields = self.schema.types[tname]
        keys = lit.keys if len(lit.keys) == len(lit.entries) else tuple(lit.span for _ in lit.entries)
        present = {name for name, _ in lit.entries}
        for (name, value), kspan in zip(lit.entries, keys, strict=True):
            ft = fields.get(name)
            if ft is None:
                if name == "_key" and key_coll in self.schema.auto_key:
                    self.diags.error(kspan, f"field '_key' is set by collection '{key_coll}', "
                                            "not by a record")
                else:
                    near = _closest(name, list(fields))
                    hint = f"; did you mean '{near}'?" if near is not None else ""
                    self.diags.error(kspan, f"type {tname} has no field '{name}'{hint}")
                    if near is not None:
                        present.add(near)  # reported as misspelt: not missing as well
                continue
            self.value(f"{path}{name}", tname, ft, value)
        if not partial:
            missing = [f"'{path}{n}' ({ft})" for n, ft in fields.items()
                       if not ft.optional and n not in present and (tname, n) not in self.schema.defaulted]
            if missing:
                s = "s" if len(missing) > 1 else ""
                self.diags.error(lit.span, f"record of type {tname} is missing required field{s} "
                                 f"{', '.join(missing)}")

    def value(self, path: str, tname: str, ft: FieldType, e: A.Expr) -> None:
        got = _literal_type(e)
        if got is None:
            return  # computed: checked when the host call runs
        if got == "()":
            if not ft.optional:
                self.diags.error(e.span, f"field '{path}' of type {tname} is required ({ft}), got ()")
            return
        if got not in _ACCEPTS[ft.kind]:
            self.diags.error(e.span, f"field '{path}' of type {tname} expects {ft}, got {got}")
            return
        if isinstance(e, A.ArrayLit) and ft.item is not None:
            for i, item in enumerate(e.items):
                self.value(f"{path}[{i}]", tname, ft.item, item)
        elif isinstance(e, A.MapLit) and ft.kind == "map" and ft.item is not None:
            for key, item in e.entries:
                self.value(f"{path}.{key}", tname, ft.item, item)
        elif isinstance(e, A.MapLit) and ft.kind == "record" and ft.name is not None:
            self.record(ft.name, e, partial=False, path=f"{path}.")


def _name_span(p: A.Prop) -> Span:
    """The span of the name in ``obj.name`` (the last token of the node)."""
    s = p.span
    if s.end_col - len(p.name) >= 1:
        return Span(s.file, s.end_line, s.end_col - len(p.name), s.end_line, s.end_col)
    return s


def _walk(root: A.Node) -> Iterator[A.Node]:
    """Every node under ``root`` in source order (parents before children), iteratively."""
    stack: list[object] = [root]
    while stack:
        x = stack.pop()
        if isinstance(x, A.Node):
            yield x
            kids = [getattr(x, name) for name in x.__slots__ if name not in ("span", "keys")]
            stack.extend(reversed(kids))
        elif isinstance(x, tuple):
            stack.extend(reversed(x))


def check_records(res: Resolution, schema: RecordSchema, diags: Diagnostics) -> None:
    """Report (into ``diags``) every ``db::`` call and field read that cannot be right under ``schema``."""
    _Checker(res, schema, diags).run()
