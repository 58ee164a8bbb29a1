"""A peer's schema: the model of ``schema.toml`` and its checker.

``peers/NAME/schema.toml`` declares record types and the collections that
hold them::

    version = 1                      # optional: the schema's own version (for migrations)

    [types.Message]
    from = "did"                     # did, string, int, float, bool, bytes, timestamp,
    text = { type = "string", max_len = 4096 }   #  list<T>, map<T>, T? or another type
    sent = "timestamp"

    [collections.inbox]
    type = "Message"
    key = "auto"                     # or a field of the type (required string, did or int)
    indexes = [["from", "sent"]]     # each an array of fields (or one field name)
    unique = []

:func:`~._schemacheck.check_schema` turns the parsed TOML (and its text, for line numbers:
tomllib reports none, so lines come from scanning the text for the table
headers and keys, as the policy loader does) into a frozen :class:`Schema`,
collecting every problem into one :class:`SchemaError` (``file:line:
problem`` each). It is pure and budgeted: at most :data:`MAX_TYPES` types,
:data:`MAX_FIELDS` fields a type, :data:`MAX_COLLECTIONS` collections, type
expressions nested at most :data:`MAX_TYPE_DEPTH` deep (type references
included), no cycles between types. Reading the file (size cap, bounded TOML)
is the caller's (:func:`peerbox.peer.load_schema`).

The model is plain frozen data with no peerbox imports but this package's
errors, so whoever is handed it (the record store here, the CLI, later the
compiler, which receives it as a parameter as it receives the host-call
table) reads the same thing. :attr:`Schema.digest` identifies a schema's
content (the hook the migration history will key on).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from peerbox._errors import Error

__all__ = [
    "SCALARS", "MAX_SCHEMA_BYTES", "MAX_TYPES", "MAX_FIELDS", "MAX_COLLECTIONS", "MAX_TYPE_DEPTH",
    "TypeRef", "Field", "RecordType", "Collection", "Schema", "SchemaError", "SchemaProblem",
    "parse_type", "refs_of", "depth_of", "RESERVED_FIELDS", "MAX_INDEXES", "MAX_INDEX_FIELDS", "MAX_ONE_OF",
]

#: The scalar field types (stored in a typed column each, usable in filters and indexes).
SCALARS: tuple[str, ...] = ("did", "string", "int", "float", "bool", "bytes", "timestamp")
#: schema.toml files larger than this are refused (by the loader).
MAX_SCHEMA_BYTES = 256 * 1024
MAX_TYPES = 64
MAX_FIELDS = 64
MAX_COLLECTIONS = 64
MAX_INDEXES = 16
MAX_INDEX_FIELDS = 8
MAX_ONE_OF = 256
#: How deep type expressions may nest, references to other types included (``list<map<int>>`` is 3).
MAX_TYPE_DEPTH = 8
_MAX_EXPR = 200

#: Field names a filter uses as its own words.
RESERVED_FIELDS = frozenset({"and", "or", "not"})


@dataclass(frozen=True, slots=True)
class TypeRef:
    """A field's type: ``kind`` (a scalar of :data:`SCALARS`, ``list``, ``map`` or ``record``),
    ``item`` (the element type of a list or map), ``name`` (a record type's name) and
    ``optional`` (``T?``: may be absent or ``()``)."""

    kind: str
    item: TypeRef | None = None
    name: str | None = None
    optional: bool = False

    def __str__(self) -> str:
        if self.kind in ("list", "map"):
            text = f"{self.kind}<{self.item}>"
        elif self.kind == "record":
            text = str(self.name)
        else:
            text = self.kind
        return text + "?" if self.optional else text

    @property
    def scalar(self) -> bool:
        """True for the types stored in a column of their own (filterable, indexable)."""
        return self.kind in SCALARS


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a record type and its rules: ``max_len``/``min_len`` (characters of a string,
    bytes of a blob, items of a list or map), ``min``/``max`` (numbers, timestamps), ``one_of``
    (the allowed values of a string, did or int), ``default`` (a TOML literal stored when an
    inserted record lacks the field; ``None``: no default)."""

    name: str
    type: TypeRef
    max_len: int | None = None
    min_len: int | None = None
    min: int | float | None = None
    max: int | float | None = None
    one_of: tuple[str | int, ...] | None = None
    description: str | None = None
    line: int | None = field(default=None, compare=False)
    default: object = field(default=None, hash=False)

    @property
    def required(self) -> bool:
        return not self.type.optional

    @property
    def has_default(self) -> bool:
        return self.default is not None


@dataclass(frozen=True, slots=True)
class RecordType:
    """A record type: its ``fields`` in file order."""

    name: str
    fields: tuple[Field, ...]
    line: int | None = field(default=None, compare=False)

    def field(self, name: str) -> Field | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None


@dataclass(frozen=True, slots=True)
class Collection:
    """A collection of records of ``type``: ``key`` is ``"auto"`` (an integer the store assigns,
    returned as the record's ``_key``) or one of the type's fields; ``indexes`` and ``unique``
    are tuples of field-name tuples."""

    name: str
    type: str
    key: str = "auto"
    indexes: tuple[tuple[str, ...], ...] = ()
    unique: tuple[tuple[str, ...], ...] = ()
    description: str | None = None
    line: int | None = field(default=None, compare=False)

    @property
    def auto_key(self) -> bool:
        return self.key == "auto"


@dataclass(frozen=True, slots=True)
class Schema:
    """A checked schema: ``types`` and ``collections`` in file order, its ``version`` (the
    file's ``version``, default 1) and the ``file`` it came from."""

    file: str
    version: int
    types: tuple[RecordType, ...]
    collections: tuple[Collection, ...]

    def type(self, name: str) -> RecordType | None:
        for t in self.types:
            if t.name == name:
                return t
        return None

    def collection(self, name: str) -> Collection | None:
        for c in self.collections:
            if c.name == name:
                return c
        return None

    def record_type(self, coll: Collection) -> RecordType:
        t = self.type(coll.type)
        assert t is not None  # checked
        return t

    def canonical(self) -> dict[str, Any]:
        """The schema as plain JSON-able data (no lines, no file): what :attr:`digest` hashes."""
        def fld(f: Field) -> dict[str, Any]:
            out: dict[str, Any] = {"type": str(f.type)}
            for k in ("max_len", "min_len", "min", "max", "one_of", "default"):
                v = getattr(f, k)
                if v is not None:
                    out[k] = list(v) if k == "one_of" else v
            return out
        return {
            "version": self.version,
            "types": {t.name: {f.name: fld(f) for f in t.fields} for t in self.types},
            "collections": {c.name: {"type": c.type, "key": c.key, "indexes": [list(i) for i in c.indexes],
                                     "unique": [list(u) for u in c.unique]} for c in self.collections},
        }

    def signature(self, coll: Collection) -> dict[str, Any]:
        """What a collection's stored records depend on: its key and its record type with every
        type it refers to (canonical form). Indexes are not part of it."""
        types = self.canonical()["types"]
        seen: dict[str, Any] = {}
        todo = [coll.type]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen[name] = types[name]
            rt = self.type(name)
            assert rt is not None
            for f in rt.fields:
                todo.extend(refs_of(f.type))
        return {"key": coll.key, "type": coll.type, "types": seen}

    @property
    def digest(self) -> str:
        """sha256 (hex) of :meth:`canonical` as sorted compact JSON."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SchemaProblem:
    file: str
    line: int | None
    problem: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.problem}" if self.line else f"{self.file}: {self.problem}"


class SchemaError(Error):
    """A ``schema.toml`` that does not check: ``problems`` (each ``file:line: problem``), the
    first also as ``file``, ``line``, ``problem``. Exit code 2, like any bad config file."""

    exit_code = 2

    def __init__(self, problems: list[SchemaProblem] | tuple[SchemaProblem, ...]) -> None:
        if not problems:
            raise ValueError("SchemaError needs at least one problem")
        self.problems = tuple(problems)
        self.file = self.problems[0].file
        self.line = self.problems[0].line
        self.problem = self.problems[0].problem
        super().__init__("\n".join(str(p) for p in self.problems))

    @classmethod
    def one(cls, file: str, line: int | None, problem: str) -> SchemaError:
        return cls([SchemaProblem(file, line, problem)])


# -- type expressions ---------------------------------------------------------------------

_TOKENS = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*|[<>?])")


def parse_type(text: str) -> TypeRef:
    """``"list<string>?"`` -> a :class:`TypeRef` (record names unresolved). Raises ``ValueError``
    saying what is wrong."""
    if len(text) > _MAX_EXPR:
        raise ValueError(f"type expression longer than {_MAX_EXPR} characters")
    toks: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKENS.match(text, pos)
        if m is None:
            raise ValueError(f"unexpected {text[pos:].strip()[:1]!r} in type {text!r}")
        toks.append(m.group(1))
        pos = m.end()
    ref, rest = _parse_tokens(toks, 0, text)
    if rest != len(toks):
        raise ValueError(f"unexpected {toks[rest]!r} in type {text!r}")
    return ref


def _parse_tokens(toks: list[str], i: int, text: str, depth: int = 0) -> tuple[TypeRef, int]:
    if depth > MAX_TYPE_DEPTH:
        raise ValueError(f"type {text!r} nests deeper than {MAX_TYPE_DEPTH} levels")
    if i >= len(toks) or not (toks[i][0].isalpha() or toks[i][0] == "_"):
        raise ValueError(f"type {text!r} is incomplete" if i >= len(toks) else
                         f"unexpected {toks[i]!r} in type {text!r}")
    word = toks[i]
    i += 1
    if word in ("list", "map"):
        if i >= len(toks) or toks[i] != "<":
            raise ValueError(f"{word} needs an element type: {word}<T>")
        item, i = _parse_tokens(toks, i + 1, text, depth + 1)
        if i >= len(toks) or toks[i] != ">":
            raise ValueError(f"missing '>' in type {text!r}")
        ref = TypeRef(word, item=item)
        i += 1
    elif word in SCALARS:
        ref = TypeRef(word)
    else:
        ref = TypeRef("record", name=word)
    if i < len(toks) and toks[i] == "?":
        ref = TypeRef(ref.kind, ref.item, ref.name, True)
        i += 1
    return ref, i


def refs_of(t: TypeRef) -> Iterator[str]:
    while t.item is not None:
        t = t.item
    if t.kind == "record" and t.name is not None:
        yield t.name


def depth_of(t: TypeRef) -> int:
    n = 1
    while t.item is not None:
        t, n = t.item, n + 1
    return n
