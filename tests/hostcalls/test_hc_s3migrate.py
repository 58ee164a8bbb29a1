"""Schema migrations and backups of records on S3 (real SeaweedFS): the SQLite planner's plan,
additive changes applied (an index backfilled before the schema names it), destructive changes
refused with nothing changed, and JSON-lines export/import between two peers' prefixes."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from peerbox.hostcalls import (ADDITIVE, DESTRUCTIVE, HostCallError, LocalS3, S3Records, S3Schemas, Schema,
                               StorageSite, check_schema, open_storage, s3_export_lines, s3_import_lines)
from peerbox.hostcalls._s3 import S3Backend
from peerbox.hostcalls._s3records import RECORDS_DIR
from peerbox.hostcalls._s3store import ObjectStore

ALICE = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
CAROL = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
Open = Callable[[str], S3Backend]

pytestmark = pytest.mark.slow


def parse(text: str) -> Schema:
    return check_schema(tomllib.loads(text), text)


@pytest.fixture
def backend(local_s3: LocalS3, s3_table: Callable[..., dict[str, object]], tmp_path: Path) -> Open:
    """``backend(name)``: the s3 backend of a peer ``name`` on its own prefix of the test."""
    def make(name: str) -> S3Backend:
        b = open_storage(s3_table(name), StorageSite(tmp_path / "unused", name), None, local_s3.environ())
        assert isinstance(b, S3Backend)
        return b
    return make


def _raw(local_s3: LocalS3, s3_table: Callable[..., dict[str, object]], name: str) -> tuple[ObjectStore, str]:
    table = s3_table(name)
    store = ObjectStore(bucket=str(table["bucket"]), endpoint=local_s3.endpoint, region="us-east-1",
                        access_key=local_s3.access_key, secret_key=local_s3.secret_key)
    return store, f"{table['prefix']}/{RECORDS_DIR}/"


def _fill(records: S3Records) -> None:
    """6 messages (keys 1-5 and 7), 3 contacts (a and c aged 30)."""
    for i in range(7):
        records.insert("inbox", {"from": ALICE if i % 2 else CAROL, "text": f"t{i}", "sent": i,
                                 "status": ["new", "seen", "spam"][i % 3], "blob": bytes([i]) * i})
    records.delete("inbox", 6)
    for h, d in (("a", ALICE), ("c", CAROL), ("z", "did:key:z6MkfWhBken4agWvcLFtqCiT2RQDsQBk3ebDdDTSDg1N4Mrr")):
        records.insert("contacts", {"handle": h, "did": d, "age": 30 if h != "z" else None})


def _all(records: S3Records, coll: str) -> list[object]:
    items = records.query(coll, {"limit": 1000})["items"]
    assert isinstance(items, list)
    return items


def test_additive_apply_backfills_indexes_and_uniques(backend: Open, schema_toml: str, schema: Schema,
                                                      local_s3: LocalS3,
                                                      s3_table: Callable[..., dict[str, object]]) -> None:
    b = backend("alice")
    old = b.records(schema, schema_toml)
    _fill(old)
    before = _all(old, "inbox")
    new = (schema_toml.replace('indexes = [["from", "sent"], "status"]', 'indexes = [["from", "sent"], "text"]')
           .replace('age = "int?"', 'age = "int?"\nnote = "string?"') + '\n[collections.archive]\ntype = "Message"\n')
    new = new.replace('"text"]', '"text"]\nunique = ["text"]')  # the stored texts are distinct
    plan = b.schemas().plan(parse(new))
    got = {(c.collection, c.what, c.field): (c.cls, c.affected) for c in plan.changes}
    assert got[("archive", "add_collection", None)] == (ADDITIVE, 0)
    assert got[("inbox", "add_index", "text")] == (ADDITIVE, 0)
    assert got[("inbox", "remove_index", "status")] == (ADDITIVE, 0)
    assert got[("contacts", "add_field", "note")] == (ADDITIVE, 0)
    assert got[("inbox", "add_unique", "text")] == (ADDITIVE, 0)
    with pytest.raises(HostCallError, match="run `peerbox schema apply`"):
        b.records(parse(new), new)  # not applied yet: a store under the new schema does not open
    steps: list[str] = []
    b.schemas().apply(parse(new), new, step=steps.append)
    assert steps[0].startswith("backfilled inbox.i_text") and "recorded" in steps
    applied = b.schemas().applied()
    assert applied is not None and applied[1] == new
    records = b.records(parse(new), new)
    assert _all(records, "inbox") == before  # nothing lost
    assert [r["_key"] for r in records.query("inbox", {"where": {"text": "t3"}})["items"]] == [4]  # type: ignore
    store, base = _raw(local_s3, s3_table, "alice")
    names = [m.key[len(base):] for m in store.walk(base, "t")]
    assert sum(1 for n in names if n.startswith("inbox/i/i_text/")) == 6  # an entry per old record
    assert not any(n.startswith("inbox/i/i_status/") for n in names)  # the dropped index's entries
    assert records.insert("contacts", {"handle": "n", "did": "did:key:z6MkN", "note": "x"}) == "n"
    with pytest.raises(HostCallError) as info:  # the new unique constraint holds for old records
        records.insert("inbox", {"from": ALICE, "text": "t3", "sent": 1})
    assert info.value.kind == "conflict"
    assert records.insert("inbox", {"from": ALICE, "text": "t9", "sent": 1}) == 9  # 8: the refused one's


def test_destructive_and_duplicate_uniques_are_refused_changing_nothing(
        backend: Open, schema_toml: str, schema: Schema, local_s3: LocalS3,
        s3_table: Callable[..., dict[str, object]]) -> None:
    b = backend("alice")
    _fill(b.records(schema, schema_toml))
    store, base = _raw(local_s3, s3_table, "alice")

    def snapshot() -> dict[str, str | None]:
        return {m.key: m.etag for m in store.walk(base, "t")}
    before = snapshot()
    narrowed = schema_toml.replace("max_len = 200", "max_len = 1").replace('flag = "bool?"', "")
    plan = b.schemas().plan(parse(narrowed))
    assert {(c.what, c.field): c.affected for c in plan.destructive} == {("narrow_field", "text"): 6,
                                                                        ("remove_field", "flag"): 0}
    for allow in (False, True):
        with pytest.raises(HostCallError, match="no transaction across objects") as info:
            b.schemas().apply(parse(narrowed), narrowed, allow_destructive=allow)
        assert info.value.kind == "unsupported"
    dup = schema_toml.replace('unique = ["did"]', 'unique = ["did", "age"]')  # a and c share age 30
    plan = b.schemas().plan(parse(dup))
    assert [(c.what, c.cls, c.affected) for c in plan.changes] == [("add_unique", DESTRUCTIVE, 2)]
    with pytest.raises(HostCallError, match="no transaction across objects"):
        b.schemas().apply(parse(dup), dup)
    assert snapshot() == before
    assert isinstance(b.schemas(), S3Schemas)


def test_export_import_round_trip_between_two_s3_peers(backend: Open, schema_toml: str, schema: Schema) -> None:
    alice, bob = backend("alice").records(schema, schema_toml), backend("bob").records(schema, schema_toml)
    _fill(alice)
    dumps = {c: list(s3_export_lines(alice, c)) for c in ("inbox", "contacts")}
    assert len(dumps["inbox"]) == 6 and dumps["inbox"][0].startswith('{"_key": 1,')
    assert s3_import_lines(bob, "inbox", dumps["inbox"]) == 6
    assert s3_import_lines(bob, "contacts", dumps["contacts"]) == 3
    assert _all(bob, "inbox") == _all(alice, "inbox") and _all(bob, "contacts") == _all(alice, "contacts")
    assert bob.insert("inbox", {"from": ALICE, "text": "n", "sent": 9}) == 8  # imported keys not handed out
    with pytest.raises(HostCallError, match="line 2: 'did'") as info:  # validated first: nothing written
        s3_import_lines(bob, "contacts", ['{"handle": "q", "did": "%s"}' % ALICE, '{"handle": "r", "did": 5}'])
    assert info.value.kind == "schema_violation" and bob.get("contacts", "q") is None
    with pytest.raises(HostCallError) as info:  # "x" inserted, then "a" is taken: "x" deleted again
        s3_import_lines(bob, "contacts", ['{"handle": "x", "did": "did:key:z6MkX"}', dumps["contacts"][0]])
    assert info.value.kind == "conflict" and bob.get("contacts", "x") is None
    assert bob.count("contacts") == 3


def test_of_two_appliers_one_wins(backend: Open, schema_toml: str, schema: Schema) -> None:
    b = backend("alice")
    _fill(b.records(schema, schema_toml))
    first = schema_toml.replace('"status"]', '"status", "text"]')
    second = schema_toml + '\n[collections.archive]\ntype = "Message"\n'

    def meanwhile(step: str) -> None:  # after the first one's backfill, before it replaces the schema
        if step.startswith("backfilled"):
            b.schemas().apply(parse(second), second)
    with pytest.raises(HostCallError, match="another schema apply changed the applied schema") as info:
        b.schemas().apply(parse(first), first, step=meanwhile)
    assert info.value.kind == "conflict"
    applied = b.schemas().applied()
    assert applied is not None and applied[1] == second
