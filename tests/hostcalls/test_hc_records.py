"""Records: validation at the boundary, round trips, typed columns, conflicts, row scopes, history."""

from __future__ import annotations

import sqlite3
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peerbox.hostcalls import Field, HostCallError, Records, RecordStore, Schema, TypeRef, check_schema
from peerbox.hostcalls._records import MAX_RECORD_BYTES

ALICE = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
CAROL = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"

#: The tests that hold for both record stores run on each (s3: SeaweedFS, a prefix per test).
BOTH = pytest.mark.parametrize("records", ["sqlite", pytest.param("s3", marks=pytest.mark.slow)], indirect=True)
ON_S3 = pytest.mark.parametrize("records", [pytest.param("s3", marks=pytest.mark.slow)], indirect=True)


def msg(**over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"from": ALICE, "text": "hello", "sent": 5}
    rec.update(over)
    return {k: v for k, v in rec.items() if v is not ...}


def refused(records: RecordStore, coll: str, rec: object) -> str:
    with pytest.raises(HostCallError) as info:
        records.insert(coll, rec)
    assert info.value.kind == "schema_violation", info.value
    return info.value.message


# -- validation: every type and rule ---------------------------------------------------------

@BOTH
@pytest.mark.parametrize(("over", "message"), [
    ({"from": "alice"}, "'from': type: expected a did (did:key:z...)"),
    ({"from": 3}, "'from': type: expected did, got int"),
    ({"text": b"x"}, "'text': type: expected string, got blob"),
    ({"text": "x" * 201}, "'text': max_len 200: it has 201 characters"),
    ({"sent": "now"}, "'sent': type: expected timestamp, got string"),
    ({"sent": -1}, "'sent': min 0: -1 is smaller"),
    ({"sent": True}, "'sent': type: expected timestamp, got bool"),
    ({"sent": 2**63}, "'sent': type: outside the 64-bit integer range"),
    ({"score": "high"}, "'score': type: expected float, got string"),
    ({"score": 1.5}, "'score': max 1.0: 1.5 is larger"),
    ({"score": -2}, "'score': min -1.0: -2.0 is smaller"),
    ({"score": float("inf")}, "'score': type: expected a finite float, got inf"),
    ({"score": float("nan")}, "'score': type: expected a finite float, got nan"),
    ({"flag": 1}, "'flag': type: expected bool, got int"),
    ({"level": 11}, "'level': max 10: 11 is larger"),
    ({"level": 1.0}, "'level': type: expected int, got float"),
    ({"status": "gone"}, "'status': one_of: 'gone' is not one of 'new', 'seen', 'spam'"),
    ({"tags": "a"}, "'tags': type: expected list<string>?, got string"),
    ({"tags": ["a", 2]}, "'tags[1]': type: expected string, got int"),
    ({"tags": list("abcdef")}, "'tags': max_len 5: it has 6 items"),
    ({"meta": {"a": "x"}}, "'meta.a': type: expected int, got string"),
    ({"meta": [1]}, "'meta': type: expected map<int>?, got array"),
    ({"author": {"name": ""}}, "'author.name': min_len 1: it has 0 characters"),
    ({"author": {}}, "'author.name': required: type Author needs it (string)"),
    ({"author": {"name": "a", "pubkey": "k"}}, "'author.pubkey': type: expected a blob, got string"),
    ({"author": {"name": "a", "nick": "b"}}, "'author.nick': unknown_field: type Author has no field 'nick'"),
    ({"author": "bob"}, "'author': type: expected a Author record (a map), got string"),
    ({"blob": b"x" * 17}, "'blob': max_len 16: it has 17 bytes"),
    ({"text": ...}, "'text': required: type Message needs it (string)"),
    ({"text": None}, "'text': required: expected string, got ()"),
    ({"Text": "x"}, "'Text': unknown_field: type Message has no field 'Text' (did you mean 'text'?)"),
    ({"_key": 3}, "'_key': reserved: set by the collection, not by a record"),
])
def test_violations_name_the_field_path_and_the_rule(records: RecordStore, over: dict[str, Any],
                                                     message: str) -> None:
    assert refused(records, "inbox", msg(**over)) == message
    assert records.count("inbox") == 0


@BOTH
def test_not_a_map(records: RecordStore) -> None:
    assert refused(records, "inbox", [1]) == "'Message': type: expected a Message record (a map), got array"


@BOTH
def test_values_come_back_typed(records: RecordStore) -> None:
    rec = msg(score=1, flag=False, level=0, status="new", tags=[], meta={"n": -3}, author={"name": "Ann"},
              blob=bytearray(b"\x00\xff"), sent=1_700_000_000_000)
    key = records.insert("inbox", rec)
    assert key == 1
    got = records.get("inbox", key)
    assert got == {"_key": 1, "from": ALICE, "text": "hello", "sent": 1_700_000_000_000, "score": 1.0,
                   "flag": False, "level": 0, "status": "new", "tags": [], "meta": {"n": -3},
                   "author": {"name": "Ann"}, "blob": b"\x00\xff"}
    assert type(got["score"]) is float and type(got["flag"]) is bool and type(got["blob"]) is bytes
    assert records.insert("inbox", msg(tags=None, author=None)) == 2  # () in an optional field: absent
    assert records.get("inbox", 2) == {"_key": 2, **msg()}
    assert records.get("inbox", 99) is None


def test_typed_columns_and_declared_indexes(records: Records, tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "records.sqlite")
    cols = {r[1]: (r[2], r[3], r[5]) for r in db.execute('PRAGMA table_info("r_inbox")')}
    assert cols["_key"] == ("INTEGER", 0, 1) and cols["f_from"] == ("TEXT", 1, 0)
    assert cols["f_sent"] == ("INTEGER", 1, 0) and cols["f_score"] == ("REAL", 0, 0)
    assert cols["f_blob"] == ("BLOB", 0, 0) and cols["f_tags"] == ("BLOB", 0, 0)
    contacts = {r[1]: (r[2], r[5]) for r in db.execute('PRAGMA table_info("r_contacts")')}
    assert contacts["f_handle"] == ("TEXT", 1)  # the key field is the primary key
    indexes = {r[1]: r[2] for r in db.execute("PRAGMA index_list('r_inbox')")}
    assert indexes["i_inbox__from__sent"] == 0 and indexes["i_inbox__status"] == 0
    uniques = {r[1]: r[2] for r in db.execute("PRAGMA index_list('r_contacts')")}
    assert uniques["u_contacts__did"] == 1
    db.close()


# -- the property: what validates round-trips, what does not is refused at its path ----------

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _values(schema: Schema, t: TypeRef, f: Field | None) -> st.SearchStrategy[Any]:
    """Any value of type ``t`` that keeps ``f``'s rules."""
    k = t.kind
    lo = f.min if f is not None else None
    hi = f.max if f is not None else None
    max_len = f.max_len if f is not None and f.max_len is not None else 6
    if f is not None and f.one_of is not None:
        return st.sampled_from(f.one_of)
    if k == "did":
        return st.text(_B58, min_size=1, max_size=48).map(lambda x: "did:key:z" + x)
    if k == "string":
        return st.text(min_size=f.min_len or 0 if f is not None else 0, max_size=max_len)
    if k in ("int", "timestamp"):
        return st.integers(-(2**63) if lo is None else int(lo), 2**63 - 1 if hi is None else int(hi))
    if k == "float":
        return st.floats(lo, hi, allow_nan=False, allow_infinity=False)
    if k == "bool":
        return st.booleans()
    if k == "bytes":
        return st.binary(max_size=max_len)
    if k == "list":
        assert t.item is not None
        return st.lists(_values(schema, t.item, None), max_size=min(max_len, 4))
    if k == "map":
        assert t.item is not None
        return st.dictionaries(st.text(max_size=4), _values(schema, t.item, None), max_size=3)
    return _records(schema, str(t.name))


def _records(schema: Schema, type_name: str) -> st.SearchStrategy[dict[str, Any]]:
    """Any record of ``type_name`` that validates (optional fields present or absent)."""
    rt = schema.type(type_name)
    assert rt is not None
    required = {f.name: _values(schema, f.type, f) for f in rt.fields if f.required}
    optional = {f.name: _values(schema, f.type, f) for f in rt.fields if not f.required}
    return st.fixed_dictionaries(required, optional=optional)


def _fixtures(n: int) -> settings:
    return settings(max_examples=n, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_fixtures(150)
@given(data=st.data())
def test_any_valid_record_round_trips_unchanged(records: Records, schema: Schema, data: st.DataObject) -> None:
    _round_trip(records, schema, data)


@ON_S3
@_fixtures(15)
@given(data=st.data())
def test_any_valid_record_round_trips_unchanged_on_s3(records: RecordStore, schema: Schema,
                                                      data: st.DataObject) -> None:
    _round_trip(records, schema, data)


def _round_trip(records: RecordStore, schema: Schema, data: st.DataObject) -> None:
    rec = data.draw(_records(schema, "Message"))
    key = records.insert("inbox", rec)
    assert records.get("inbox", key) == {"_key": key, **rec}
    contact = data.draw(_records(schema, "Contact"))
    taken = records.get("contacts", contact["handle"]) or records.count("contacts", {"did": contact["did"]})
    if not taken:
        assert records.insert("contacts", contact) == contact["handle"]
        assert records.get("contacts", contact["handle"]) == contact


#: A value of the wrong type for each kind of field (the rule named is ``type``).
_WRONG = {"did": 7, "string": 7, "int": "7", "timestamp": 7.5, "float": "x", "bool": 1, "bytes": "x",
          "list": {"a": 1}, "map": [1], "record": 7}


@_fixtures(100)
@given(data=st.data())
def test_any_violation_is_refused_at_its_field_path(records: Records, schema: Schema,
                                                     data: st.DataObject) -> None:
    _violation(records, schema, data)


@ON_S3
@_fixtures(10)
@given(data=st.data())
def test_any_violation_is_refused_at_its_field_path_on_s3(records: RecordStore, schema: Schema,
                                                          data: st.DataObject) -> None:
    _violation(records, schema, data)


def _violation(records: RecordStore, schema: Schema, data: st.DataObject) -> None:
    rec = data.draw(_records(schema, "Message"))
    rt = schema.type("Message")
    assert rt is not None
    field = data.draw(st.sampled_from(rt.fields))
    bad = dict(rec)
    bad[field.name] = _WRONG[field.type.kind]
    message = refused(records, "inbox", bad)
    assert message.startswith(f"'{field.name}': type: "), message
    if field.required:
        del bad[field.name]
        assert refused(records, "inbox", bad) == f"'{field.name}': required: type Message needs it ({field.type})"
    assert records.count("inbox") == 0


# -- keys, conflicts, update, delete ---------------------------------------------------------

@BOTH
def test_keys_and_unique_constraints(records: RecordStore) -> None:
    ann = {"handle": "ann", "did": ALICE}
    assert records.insert("contacts", ann) == "ann"
    for dup, what in (({"handle": "ann", "did": CAROL}, "handle"), ({"handle": "bea", "did": ALICE}, "did")):
        with pytest.raises(HostCallError) as info:
            records.insert("contacts", dup)
        assert (info.value.kind, info.value.message) == ("conflict",
                                                         f"a record with the same {what} already exists")
    assert records.count("contacts") == 1
    with pytest.raises(HostCallError, match="'handle' is a string, got int"):
        records.get("contacts", 3)


@BOTH
def test_an_update_moves_a_unique_value(records: RecordStore) -> None:
    records.insert("contacts", {"handle": "ann", "did": ALICE})
    assert records.update("contacts", "ann", {"did": CAROL, "age": 3}) == {"handle": "ann", "did": CAROL, "age": 3}
    assert records.insert("contacts", {"handle": "bea", "did": ALICE}) == "bea"  # released by the update
    for key, change in (("cid", None), ("bea", {"did": CAROL})):
        with pytest.raises(HostCallError) as info:
            if change is None:
                records.insert("contacts", {"handle": key, "did": CAROL})
            else:
                records.update("contacts", key, change)
        assert (info.value.kind, info.value.message) == ("conflict", "a record with the same did already exists")
    assert records.get("contacts", "bea") == {"handle": "bea", "did": ALICE}
    assert records.delete("contacts", "ann") is True
    assert records.update("contacts", "bea", {"did": CAROL}) == {"handle": "bea", "did": CAROL}  # released
    assert records.count("contacts", {"did": CAROL}) == 1 and records.count("contacts", {"did": ALICE}) == 0


@BOTH
def test_update_and_delete(records: RecordStore) -> None:
    key = records.insert("inbox", msg(status="new", tags=["x"]))
    assert isinstance(key, int)
    assert records.update("inbox", key, {"status": "seen", "tags": None}) == {"_key": key, **msg(status="seen")}
    assert records.get("inbox", key) == {"_key": key, **msg(status="seen")}
    with pytest.raises(HostCallError) as info:
        records.update("inbox", key, {"status": "gone"})
    assert info.value.kind == "schema_violation" and info.value.message.startswith("'status': one_of")
    with pytest.raises(HostCallError) as info:
        records.update("inbox", key, {"text": None})
    assert info.value.message == "'text': required: expected string, got ()"
    with pytest.raises(HostCallError) as info:
        records.update("inbox", 99, {"status": "seen"})
    assert (info.value.kind, info.value.message) == ("not_found", "no record with key 99 in 'inbox'")
    records.insert("contacts", {"handle": "ann", "did": ALICE})
    with pytest.raises(HostCallError, match="'handle': key: the key of a record cannot change"):
        records.update("contacts", "ann", {"handle": "bea"})
    assert records.delete("inbox", key) is True and records.delete("inbox", key) is False
    assert records.insert("inbox", msg()) == key + 1  # auto keys are never reused


@BOTH
def test_unknown_collection_and_record_size(records: RecordStore) -> None:
    with pytest.raises(HostCallError) as info:
        records.insert("outbox", msg())
    assert (info.value.kind, info.value.message) == ("not_found", "no collection 'outbox'")
    big = msg(author={"name": "a", "pubkey": b"x" * MAX_RECORD_BYTES})
    with pytest.raises(HostCallError) as info:
        records.insert("inbox", big)
    assert info.value.kind == "invalid_argument"
    assert "more than the 65536-byte limit on one record" in info.value.message


# -- row scopes (what a policy's row filter becomes) -----------------------------------------

@BOTH
def test_row_scope_limits_reads_and_writes(records: RecordStore) -> None:
    mine = ({"from": ALICE},)
    a = records.insert("inbox", msg())
    c = records.insert("inbox", msg(**{"from": CAROL}))
    assert records.get("inbox", c, mine) is None and records.get("inbox", a, mine) is not None
    assert records.count("inbox", None, mine) == 1 and records.count("inbox") == 2
    page = records.query("inbox", {}, mine)
    assert [r["_key"] for r in page["items"]] == [a]  # type: ignore[attr-defined]
    with pytest.raises(HostCallError) as info:
        records.insert("inbox", msg(**{"from": CAROL}), mine)
    assert info.value.kind == "denied"
    assert info.value.message == (f"db.write of 'inbox' denied: the policy lets this caller write only records "
                                  f"with from = '{ALICE}'")
    with pytest.raises(HostCallError) as info:
        records.update("inbox", a, {"from": CAROL}, mine)  # moving a record out of scope
    assert info.value.kind == "denied"
    with pytest.raises(HostCallError) as info:
        records.update("inbox", c, {"text": "x"}, mine)  # another's record: not there for this caller
    assert info.value.kind == "not_found"
    assert records.delete("inbox", c, mine) is False and records.count("inbox") == 2
    either = ({"from": ALICE}, {"from": CAROL})
    assert records.count("inbox", None, either) == 2
    with pytest.raises(HostCallError, match="row filter names 'owner'"):
        records.count("inbox", None, ({"owner": ALICE},))


# -- the schema history hook ----------------------------------------------------------------

def test_schema_history_and_changed_collections(records: Records, schema_toml: str, tmp_path: Path) -> None:
    [(version, digest, _)] = records.history()
    assert (version, digest) == (1, records.schema.digest)
    records.close()
    added = schema_toml + '\n[collections.archive]\ntype = "Message"\nindexes = ["sent"]\n'
    for changed in (added, schema_toml.replace('flag = "bool?"', 'flag = "int?"'),
                    schema_toml.replace('pubkey = "bytes?"', 'pubkey = "bytes"'),
                    schema_toml.replace('key = "handle"', 'key = "did"')):
        with pytest.raises(HostCallError) as info:
            Records(tmp_path / "records.sqlite", check_schema(tomllib.loads(changed), changed))
        assert info.value.kind == "unsupported" and "peerbox schema apply" in info.value.message


def test_messages_are_bounded_and_name_no_host_path(records: Records, schema: Schema, tmp_path: Path) -> None:
    huge = "k" * 1_000_000
    message = refused(records, "inbox", msg(**{huge: 1}))
    assert len(message) < 400 and message.startswith("'kkkk")
    with pytest.raises(HostCallError) as info:
        records.query("inbox", {"where": {huge: 1}})
    assert len(info.value.message) < 400
    with pytest.raises(HostCallError) as info:
        Records(tmp_path / "missing" / "records.sqlite", schema)
    assert info.value.kind == "io_error" and str(tmp_path) not in info.value.message
