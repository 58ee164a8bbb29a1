"""schema.toml: the checker (every problem with its line), the model, type expressions, JSON Schema."""

from __future__ import annotations

import tomllib

import pytest

from peerbox.hostcalls import Schema, SchemaError, TypeRef, check_schema, json_schema, parse_type
from peerbox.hostcalls._schema import MAX_TYPE_DEPTH


def check(text: str) -> Schema:
    return check_schema(tomllib.loads(text), text, "schema.toml")


def problems(text: str) -> list[str]:
    with pytest.raises(SchemaError) as info:
        check(text)
    assert info.value.exit_code == 2
    return [str(p) for p in info.value.problems]


def test_the_shared_schema_checks(schema: Schema, schema_toml: str) -> None:
    assert [t.name for t in schema.types] == ["Author", "Message", "Contact"]
    assert [c.name for c in schema.collections] == ["inbox", "contacts"]
    inbox = schema.collection("inbox")
    assert inbox is not None and inbox.auto_key and inbox.indexes == (("from", "sent"), ("status",))
    contacts = schema.collection("contacts")
    assert contacts is not None and contacts.key == "handle" and contacts.unique == (("did",),)
    msg = schema.type("Message")
    assert msg is not None
    text = msg.field("text")
    assert text is not None and text.max_len == 200 and text.required
    score = msg.field("score")
    assert score is not None and str(score.type) == "float?" and (score.min, score.max) == (-1.0, 1.0)
    author = msg.field("author")
    assert author is not None and author.type == TypeRef("record", name="Author", optional=True)
    assert len(schema.digest) == 64
    assert check("# the same content, written with a comment\n" + schema_toml).digest == schema.digest
    assert check(schema_toml.replace("max_len = 200", "max_len = 201")).digest != schema.digest


@pytest.mark.parametrize(("text", "ref"), [
    ("int", TypeRef("int")),
    ("string?", TypeRef("string", optional=True)),
    ("list<string>", TypeRef("list", item=TypeRef("string"))),
    ("list < int? > ?", TypeRef("list", item=TypeRef("int", optional=True), optional=True)),
    ("map<list<Author>>", TypeRef("map", item=TypeRef("list", item=TypeRef("record", name="Author")))),
])
def test_type_expressions(text: str, ref: TypeRef) -> None:
    assert parse_type(text) == ref
    assert parse_type(str(ref)) == ref


@pytest.mark.parametrize(("text", "problem"), [
    ("list", "needs an element type"),
    ("list<int", "missing '>'"),
    ("int??", "unexpected '?'"),
    ("map<>", "unexpected '>'"),
    ("in t", "unexpected 't'"),
    ("string!", "unexpected '!'"),
    ("list<" * 20 + "int" + ">" * 20, "nests deeper than"),
    ("x" * 300, "longer than"),
])
def test_bad_type_expressions(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_type(text)


BAD = """\
version = 1
colour = "red"

[types.Message]
from = "did"
txt = { type = "strin" }
sent = { type = "timestamp", max_len = 3 }
n = { type = "int", min = 5, max = 1 }
s = { type = "string", one_of = [1, 2] }
f = { type = "float", frobnicate = true }

[types.lower]
x = "int"

[types.Loop]
next = "Loop?"

[collections.inbox]
type = "Message"
key = "nope"
indexes = [["from", "missing"]]

[collections.Bad-Name]
type = "Message"

[collections.other]
type = "Mesage"
"""


def test_every_problem_is_reported_with_its_line() -> None:
    assert problems(BAD) == [
        "schema.toml:2: unknown top-level key 'colour' (expected: version, types, collections)",
        "schema.toml:7: field Message.sent: max_len applies to string, bytes, list and map, not timestamp",
        "schema.toml:8: field Message.n: min 5 is greater than max 1",
        "schema.toml:9: field Message.s: one_of must be a non-empty array of at most 256 int values"
        .replace("int values", "str values"),
        "schema.toml:10: field Message.f: unknown key 'frobnicate' (expected: type, max_len, min_len, min, max, "
        "one_of, default, description)",
        "schema.toml:12: type 'lower': a type name starts with a capital letter, then letters, digits or '_' "
        "(at most 63)",
        "schema.toml:6: field Message.txt: unknown type 'strin'",
        "schema.toml:16: field Loop.next: types refer to each other in a cycle: Loop -> Loop (records are "
        "finite: break it with a key field)",
        "schema.toml:20: collection 'inbox': key: type 'Message' has no field 'nope'",
        "schema.toml:21: collection 'inbox': indexes: type 'Message' has no field 'missing'",
        "schema.toml:23: collection 'Bad-Name': a collection name is lower-case letters, digits and '_', "
        "starting with a letter (at most 63)",
        "schema.toml:27: collection 'other': unknown type 'Mesage'",
    ]


@pytest.mark.parametrize(("text", "problem"), [
    ('[types.A]\nb = "B"\n[types.B]\na = "list<A>"\n',
     "schema.toml:4: field B.a: types refer to each other in a cycle: A -> B -> A"),
    ('[types.A]\nx = "Strng"\n[types.Strng2]\ny = "int"\n', "schema.toml:2: field A.x: unknown type 'Strng'"),
    ('[types.A]\nx = "String"\n', "unknown type 'String' (a scalar is one of did, string"),
    ('[types.A]\nx = "author"\n[types.Author]\nn = "int"\n', "unknown type 'author' (did you mean 'Author'?)"),
    ('[types.A]\nName = "int"\nname = "int"\n', "schema.toml:3: type 'A': fields 'Name' and 'name' differ only "
     "in case"),
    ('[types.A]\nor = "int"\n', "schema.toml:2: type 'A': field 'or' is reserved (a filter word)"),
    ('[types.A]\n_key = "int"\n', "field '_key' must start with a letter"),
    ('[types.string]\nx = "int"\n', "type 'string': a type name starts with a capital"),
    ('[types.A]\n', "schema.toml:1: type 'A': has no fields"),
    ('[types.A]\nx = 3\n', "schema.toml:2: field A.x: must be a type"),
    ('[types.A]\nx = { max_len = 3 }\n', "field A.x: 'type' is missing"),
    ('[types.A]\nx = { type = "int", min = 1.5 }\n', "field A.x: min must be an integer number, got 1.5"),
    ('[types.A]\nx = { type = "string", max_len = -1 }\n', "max_len must be an integer >= 0"),
    ('[types.A]\nx = { type = "bool", one_of = [true] }\n', "one_of applies to string, did and int, not bool"),
    ('[types.A]\nx = "int"\n[collections.c]\ntype = "A"\nkey = "y"\n', "schema.toml:5: collection 'c': key: "
     "type 'A' has no field 'y'"),
    ('[types.A]\nx = "float"\n[collections.c]\ntype = "A"\nkey = "x"\n', "key: field 'x' is a float; a key field "
     "is a required string, did or int"),
    ('[types.A]\nx = "int?"\n[collections.c]\ntype = "A"\nkey = "x"\n', "key: field 'x' is a int?"),
    ('[types.A]\nx = "list<int>"\n[collections.c]\ntype = "A"\nindexes = ["x"]\n', "schema.toml:5: collection "
     "'c': indexes: field 'x' is a list<int>; only scalar fields"),
    ('[types.A]\nx = "int"\n[collections.c]\ntype = "A"\nunique = [["x", "x"]]\n', "unique: ['x', 'x'] is not a "
     "field name or an array of 1 to 8 distinct field names"),
    ('[types.A]\nx = "int"\n[collections.c]\nkey = "auto"\n', "collection 'c': 'type' (a record type's name) is "
     "missing"),
    ('version = 0\n', "schema.toml:1: 'version' must be an integer >= 1, got 0"),
    ('types = 3\n', "schema.toml:1: 'types' must be tables"),
])
def test_problems(text: str, problem: str) -> None:
    found = problems(text)
    assert any(problem in p for p in found), found


def test_depth_is_capped_with_references_counted() -> None:
    chain = "\n".join(f'[types.T{i}]\nnext = "list<T{i + 1}>"' for i in range(MAX_TYPE_DEPTH))
    text = chain + f'\n[types.T{MAX_TYPE_DEPTH}]\nx = "int"\n'
    found = problems(text)
    assert any("nests" in p and f"more than {MAX_TYPE_DEPTH}" in p for p in found), found
    ok = "\n".join(f'[types.T{i}]\nnext = "T{i + 1}"' for i in range(MAX_TYPE_DEPTH - 2))
    check(ok + f'\n[types.T{MAX_TYPE_DEPTH - 2}]\nx = "int"\n')


def test_sizes_are_capped() -> None:
    many = "".join(f"[types.T{i}]\nx = \"int\"\n" for i in range(65))
    assert problems(many) == ["schema.toml: more than 64 types"]
    wide = "[types.A]\n" + "".join(f"f{i} = \"int\"\n" for i in range(65))
    assert problems(wide) == ["schema.toml:1: type 'A': more than 64 fields"]


def test_json_schema(schema: Schema) -> None:
    doc = json_schema(schema, title="t")
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema" and doc["title"] == "t"
    msg = doc["$defs"]["Message"]
    assert msg["required"] == ["from", "text", "sent"] and msg["additionalProperties"] is False
    props = msg["properties"]
    assert props["from"]["type"] == "string" and props["from"]["pattern"].startswith("^did:key:z")
    assert props["text"] == {"type": "string", "maxLength": 200}
    assert props["sent"]["type"] == "integer" and props["sent"]["minimum"] == 0
    assert props["score"] == {"anyOf": [{"type": "number", "minimum": -1.0, "maximum": 1.0}, {"type": "null"}]}
    assert props["status"]["anyOf"][0] == {"type": "string", "enum": ["new", "seen", "spam"]}
    assert props["tags"]["anyOf"][0] == {"type": "array", "items": {"type": "string"}, "maxItems": 5}
    assert props["meta"]["anyOf"][0]["additionalProperties"]["type"] == "integer"
    assert props["author"]["anyOf"][0] == {"$ref": "#/$defs/Author"}
    assert props["blob"]["anyOf"][0] == {"type": "string", "contentEncoding": "base64", "x-maxBytes": 16}
    assert doc["properties"]["inbox"] == {"type": "array", "items": {"$ref": "#/$defs/Message"}}
    assert doc["x-peerbox-collections"]["contacts"] == {"type": "Contact", "key": "handle", "indexes": [],
                                                         "unique": [["did"]]}


def test_a_file_of_many_keys_is_checked_in_bounded_work() -> None:
    """Finding lines scans the text: it stops with the problems kept (50), and headers are indexed once."""
    many = "".join(f"k{i} = 1\n" for i in range(20_000)) + "".join(f"[t{i}]\n" for i in range(20_000))
    found = problems(many)
    assert len(found) == 50 and found[0] == "schema.toml:1: unknown top-level key 'k0' (expected: version, types, "\
        "collections)"
