"""Field defaults: the checker refuses a default that does not fit (with its line), an insert
that leaves a defaulted field out stores the default on both record stores, an update leaves it
alone, and JSON Schema carries it."""

from __future__ import annotations

import tomllib

import pytest

from peerbox.hostcalls import HostCallError, RecordStore, SchemaError, check_schema, json_schema

ALICE = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"

#: Appended to the shared test schema: a type whose fields have defaults, and its collection.
NOTES = """
[types.Note]
title = "string"
body = { type = "string", default = "", max_len = 100 }
rank = { type = "int", default = 3, min = 0 }
weight = { type = "float", default = 1 }
done = { type = "bool", default = false }
labels = { type = "list<string>", default = ["inbox"] }
state = { type = "string?", one_of = ["open", "shut"], default = "open" }

[collections.notes]
type = "Note"
"""

BOTH = pytest.mark.parametrize("records", ["sqlite", pytest.param("s3", marks=pytest.mark.slow)], indirect=True)


@pytest.fixture
def schema_toml(schema_toml: str) -> str:
    """The shared test schema with ``notes`` (Note records, every field but ``title`` defaulted)."""
    return schema_toml + NOTES


def problems(text: str) -> list[str]:
    with pytest.raises(SchemaError) as info:
        check_schema(tomllib.loads(text), text, "schema.toml")
    return [str(p) for p in info.value.problems]


@BOTH
def test_an_insert_without_a_defaulted_field_stores_the_default(records: RecordStore) -> None:
    key = records.insert("notes", {"title": "t"})
    want = {"_key": key, "title": "t", "body": "", "rank": 3, "weight": 1.0, "done": False,
            "labels": ["inbox"], "state": "open"}
    assert records.get("notes", key) == want
    # a value given wins; () in an optional defaulted field leaves it absent
    k2 = records.insert("notes", {"title": "u", "rank": 7, "labels": [], "state": None})
    got = records.get("notes", k2)
    assert isinstance(got, dict) and got["rank"] == 7 and got["labels"] == [] and "state" not in got
    # stored, not filled in on reading: queries filter on it
    items = records.query("notes", {"where": {"rank": 3}})["items"]
    assert isinstance(items, list) and [r["title"] for r in items] == ["t"]
    # the default does not bend the rules: a value given is still checked
    with pytest.raises(HostCallError, match="'rank': min 0"):
        records.insert("notes", {"title": "v", "rank": -1})


@BOTH
def test_an_update_leaves_a_defaulted_field_alone(records: RecordStore) -> None:
    key = records.insert("notes", {"title": "t", "body": "kept", "rank": 9})
    got = records.update("notes", key, {"title": "t2"})
    assert isinstance(got, dict) and (got["body"], got["rank"], got["title"]) == ("kept", 9, "t2")
    got = records.update("notes", key, {"state": None})  # clearing an optional field: not the default
    assert isinstance(got, dict) and "state" not in got
    assert records.get("notes", key) == got


@pytest.mark.parametrize(("spec", "problem"), [
    ('{ type = "string", default = 3 }', "default 3 does not fit the field: 'f': type: expected string, got int"),
    ('{ type = "int", min = 1, default = 0 }', "default 0 does not fit the field: 'f': min 1: 0 is smaller"),
    ('{ type = "string", max_len = 2, default = "abc" }', "'f': max_len 2: it has 3 characters"),
    ('{ type = "string", one_of = ["a"], default = "b" }', "'f': one_of: 'b' is not one of 'a'"),
    ('{ type = "list<int>", default = [1, "x"] }', "'f[1]': type: expected int, got string"),
    ('{ type = "timestamp", default = 1979-05-27T07:32:00Z }', "'f': type: expected timestamp, got datetime"),
    ('{ type = "did", default = "did:key:z6Mk" }', "a did field takes no default"),
    ('{ type = "bytes", default = "" }', "a bytes field takes no default (TOML has no byte strings)"),
    ('{ type = "Other", default = { a = 1 } }', "a field of a record type (Other) takes no default"),
    ('{ type = "list<Other>", default = [] }', "a field of a record type (list<Other>) takes no default"),
])
def test_a_default_that_does_not_fit_is_a_checker_error_at_its_line(spec: str, problem: str) -> None:
    text = f'[types.Other]\na = "int"\n\n[types.T]\nk = "string"\nf = {spec}\n\n[collections.c]\ntype = "T"\n'
    got = problems(text)
    assert len(got) == 1 and got[0].startswith("schema.toml:6: field T.f: ") and problem in got[0], got


def test_a_key_field_takes_no_default() -> None:
    text = '[types.T]\nk = { type = "string", default = "x" }\n\n[collections.c]\ntype = "T"\nkey = "k"\n'
    assert problems(text) == ["schema.toml:6: collection 'c': key: field 'k' has a default; a key field takes "
                              "none (every record without one would collide)"]


def test_json_schema_carries_the_default(schema_toml: str) -> None:
    doc = json_schema(check_schema(tomllib.loads(schema_toml), schema_toml))
    note = doc["$defs"]["Note"]
    assert note["required"] == ["title"]  # a record written may leave a defaulted field out
    assert note["properties"]["body"] == {"type": "string", "maxLength": 100, "default": ""}
    assert note["properties"]["weight"]["default"] == 1.0
    assert note["properties"]["labels"]["default"] == ["inbox"]
    assert note["properties"]["state"] == {"anyOf": [{"type": "string", "enum": ["open", "shut"]}, {"type": "null"}],
                                           "default": "open"}
