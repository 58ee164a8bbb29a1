"""Schema migrations of a records file: the plan (classes, exact counts), refusals that change
nothing, destructive applies that rebuild tables, crash safety, and JSON-lines export/import."""

from __future__ import annotations

import hashlib

import signal
import sqlite3
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path


import pytest

from peerbox.hostcalls import (ADDITIVE, DESTRUCTIVE, HostCallError, Records, Schema, apply_migration,
                               applied_schema, check_schema, export_lines, import_lines, plan_migration)

ALICE = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
CAROL = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"


def parse(text: str) -> Schema:
    return check_schema(tomllib.loads(text), text)


def all_records(path: Path, schema: Schema) -> dict[str, list[dict[str, object]]]:
    store = Records(path, schema)
    out: dict[str, list[dict[str, object]]] = {}
    try:
        for c in schema.collections:
            items = store.query(c.name, {"limit": 1000})["items"]
            assert isinstance(items, list)
            out[c.name] = items
        return out
    finally:
        store.close()


@pytest.fixture
def filled(records: Records, tmp_path: Path) -> Path:
    """The shared schema's records file with 6 messages (i = 0-4 and 6 at keys i + 1: 6 was deleted)
    and 3 contacts (a and c aged 30, z of no age)."""
    for i in range(7):
        records.insert("inbox", {"from": ALICE if i % 2 else CAROL, "text": "x" * (i * 10), "sent": i,
                                 "flag": i % 3 == 0, "tags": ["t"] * (i % 4), "blob": bytes([i]) * i,
                                 "status": ["new", "seen", "spam"][i % 3], "author": {"name": f"n{i}"}})
    records.delete("inbox", 6)
    for h, d in (("a", ALICE), ("c", CAROL), ("z", "did:key:z6MkfWhBken4agWvcLFtqCiT2RQDsQBk3ebDdDTSDg1N4Mrr")):
        records.insert("contacts", {"handle": h, "did": d, "age": 30 if h != "z" else None})
    records.close()
    return tmp_path / "records.sqlite"


def changes(path: Path, text: str) -> dict[tuple[str, str, str | None], tuple[str, int]]:
    plan = plan_migration(path, parse(text))
    return {(c.collection, c.what, c.field): (c.cls, c.affected) for c in plan.changes}


def test_additive_changes_apply_at_once(filled: Path, schema_toml: str, schema: Schema) -> None:
    before = all_records(filled, schema)
    new = (schema_toml.replace('flag = "bool?"', 'flag = "bool?"\nnote = "string?"')
           .replace("max_len = 200", "max_len = 300").replace('one_of = ["new", "seen", "spam"]',
                                                              'one_of = ["new", "seen", "spam", "old"]')
           .replace('sent = { type = "timestamp", min = 0 }', 'sent = "timestamp"')
           .replace('handle = { type = "string", max_len = 30 }\ndid = "did"',
                    'handle = { type = "string", max_len = 30 }\ndid = "did?"')
           .replace('indexes = [["from", "sent"], "status"]', 'indexes = [["from", "sent"], "status", "text"]')
           + '\n[collections.archive]\ntype = "Message"\n')
    got = changes(filled, new)
    assert got == {("archive", "add_collection", None): (ADDITIVE, 0), ("inbox", "add_field", "note"): (ADDITIVE, 0),
                   ("inbox", "widen_field", "text"): (ADDITIVE, 0), ("inbox", "widen_field", "status"): (ADDITIVE, 0),
                   ("inbox", "widen_field", "sent"): (ADDITIVE, 0), ("contacts", "widen_field", "did"): (ADDITIVE, 0),
                   ("inbox", "add_index", "text"): (ADDITIVE, 0)}
    plan = apply_migration(filled, parse(new), new, allow_destructive=False)
    assert not plan.destructive
    after = all_records(filled, parse(new))
    assert after["inbox"] == before["inbox"] and after["contacts"] == before["contacts"] and after["archive"] == []
    assert applied_schema(filled) is not None and applied_schema(filled)[1] == new  # type: ignore[index]
    store = Records(filled, parse(new))
    assert store.insert("inbox", {"from": ALICE, "text": "n", "sent": -1, "note": "hi"}) == 8  # keys never reused
    assert any("i_inbox__text" in d for d in store.explain("inbox", {"where": {"text": "n"}}))
    store.close()


def test_dry_run_counts_are_exact(filled: Path, schema_toml: str) -> None:
    new = (schema_toml.replace("max_len = 200", "max_len = 25")            # texts of 30, 40, 60 chars
           .replace('flag = "bool?"', "")                                 # 6 records have a flag
           .replace('level = { type = "int?", min = 0, max = 10 }', 'level = { type = "int?", min = 0, max = 10 }'
                    '\nrank = "int"')                                     # required, no default: all 6
           .replace('status = { type = "string?", one_of = ["new", "seen", "spam"] }',
                    'status = { type = "string", one_of = ["new", "seen"] }')  # spam: i = 2
           .replace('tags = { type = "list<string>?", max_len = 5 }', 'tags = { type = "list<string>?", max_len = 2 }')
           .replace('age = "int?"', 'age = "int"')                        # contact z has none
           .replace('unique = ["did"]', 'unique = ["did", "age"]'))       # a and c share age 30
    got = changes(filled, new)
    assert got[("inbox", "narrow_field", "text")] == (DESTRUCTIVE, 3)
    assert got[("inbox", "remove_field", "flag")] == (DESTRUCTIVE, 6)
    assert got[("inbox", "add_required_field", "rank")] == (DESTRUCTIVE, 6)
    assert got[("inbox", "narrow_field", "status")] == (DESTRUCTIVE, 1)
    assert got[("inbox", "narrow_field", "tags")] == (DESTRUCTIVE, 1)  # i = 3 has 3 tags
    assert got[("contacts", "narrow_field", "age")] == (DESTRUCTIVE, 1)
    assert got[("contacts", "add_unique", "age")] == (DESTRUCTIVE, 2)
    gone = schema_toml.split("[collections.contacts]")[0].replace('key = "auto"', 'key = "from"')
    got = changes(filled, gone)
    assert got[("contacts", "remove_collection", None)] == (DESTRUCTIVE, 3)
    assert got[("inbox", "change_key", None)] == (DESTRUCTIVE, 6)
    typed = schema_toml.replace('level = { type = "int?", min = 0, max = 10 }', 'level = "string?"')
    assert changes(filled, typed) == {("inbox", "change_field_type", "level"): (DESTRUCTIVE, 0)}


def test_a_refused_migration_changes_nothing(filled: Path, schema_toml: str, schema: Schema) -> None:
    def digest() -> str:
        return hashlib.sha256(filled.read_bytes()).hexdigest()
    before, records = digest(), all_records(filled, schema)
    before = digest()
    narrowed = schema_toml.replace("max_len = 200", "max_len = 25")
    plan_migration(filled, parse(narrowed))
    with pytest.raises(HostCallError) as info:
        apply_migration(filled, parse(narrowed), narrowed, allow_destructive=False)
    assert info.value.kind == "unsupported" and "--allow-destructive" in info.value.message
    with pytest.raises(HostCallError) as info:  # allowed, yet 3 records do not fit: nothing is dropped
        apply_migration(filled, parse(narrowed), narrowed, allow_destructive=True)
    assert info.value.kind == "schema_violation" and "'text': max_len 25" in info.value.message
    dup = schema_toml.replace('key = "auto"', 'key = "from"')  # three messages each from alice and carol
    with pytest.raises(HostCallError):
        apply_migration(filled, parse(dup), dup, allow_destructive=True)
    assert digest() == before
    assert all_records(filled, schema) == records


def test_destructive_apply_rebuilds_and_keeps_the_rest(filled: Path, schema_toml: str, schema: Schema) -> None:
    before = all_records(filled, schema)
    new = schema_toml.replace('flag = "bool?"', "").replace('status = { type = "string?", one_of = ["new", '
                                                            '"seen", "spam"] }', 'status = "string"')
    plan = apply_migration(filled, parse(new), new, allow_destructive=True)
    assert {(c.what, c.field) for c in plan.destructive} == {("remove_field", "flag"), ("narrow_field", "status")}
    after = all_records(filled, parse(new))
    assert after["inbox"] == [{k: v for k, v in r.items() if k != "flag"} for r in before["inbox"]]
    assert after["contacts"] == before["contacts"]
    store = Records(filled, parse(new))
    assert store.insert("inbox", {"from": ALICE, "text": "", "sent": 1, "status": "x"}) == 8
    with pytest.raises(HostCallError):  # the rebuilt table kept the indexes and constraints
        store.insert("contacts", {"handle": "b", "did": ALICE})
    assert any("i_inbox__status" in step for step in store.explain("inbox", {"where": {"status": "x"}}))
    store.close()


_CRASH = """
import os, signal, sys, tomllib
from peerbox.hostcalls import apply_migration, check_schema
text = open(sys.argv[2]).read()
def step(name):
    if name.startswith(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)
apply_migration(sys.argv[1], check_schema(tomllib.loads(text), text), text, allow_destructive=True, step=step)
"""


@pytest.mark.parametrize("at", ["copied inbox", "rebuilt inbox", "applied", "recorded"])
def test_a_crash_mid_apply_loses_nothing(filled: Path, schema_toml: str, schema: Schema, tmp_path: Path,
                                         at: str) -> None:
    before = all_records(filled, schema)
    new = schema_toml.replace('flag = "bool?"', "")
    (tmp_path / "new.toml").write_text(new)
    proc = subprocess.run([sys.executable, "-c", _CRASH, str(filled), str(tmp_path / "new.toml"), at],
                          capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert all_records(filled, schema) == before  # still under the old schema, every record there
    apply_migration(filled, parse(new), new, allow_destructive=True)  # and the apply can be run again
    assert len(all_records(filled, parse(new))["inbox"]) == 6


def test_export_import_round_trip(filled: Path, schema: Schema, tmp_path: Path) -> None:
    store = Records(filled, schema)
    dumps = {c: list(export_lines(store, c)) for c in ("inbox", "contacts")}
    before = {c: store.query(c, {"limit": 100})["items"] for c in dumps}
    store.close()
    assert '"blob": "AgI="' in dumps["inbox"][2] and '"_key": 3' in dumps["inbox"][2]
    fresh = Records(tmp_path / "fresh.sqlite", schema)
    assert [import_lines(fresh, c, lines) for c, lines in dumps.items()] == [6, 3]
    assert {c: fresh.query(c, {"limit": 100})["items"] for c in dumps} == before
    assert {c: list(export_lines(fresh, c)) for c in dumps} == dumps
    fresh.close()


def test_import_is_all_or_nothing_and_names_the_line(schema: Schema, tmp_path: Path) -> None:
    store = Records(tmp_path / "r.sqlite", schema)
    good = '{"from": "%s", "text": "a", "sent": 1}' % ALICE
    cases: list[tuple[list[str], str, Callable[[str], bool]]] = [
        ([good, good, '{"from": "%s", "text": 5, "sent": 1}' % ALICE], "schema_violation",
         lambda m: m.startswith("line 3: 'text': type")),
        ([good, "not json"], "schema_violation", lambda m: m.startswith("line 2: not JSON")),
        ([good, '{"from": "%s", "text": "", "sent": 1, "blob": "***"}' % ALICE], "schema_violation",
         lambda m: "line 2" in m and "base64" in m),
        (['{"_key": 4, "from": "%s", "text": "", "sent": 1}' % ALICE] * 2, "conflict", lambda m: True),
    ]
    for lines, kind, check in cases:
        with pytest.raises(HostCallError) as info:
            import_lines(store, "inbox", lines)
        assert info.value.kind == kind and check(info.value.message), info.value.message
        assert store.count("inbox") == 0
    store.close()


def test_open_refuses_another_schema_until_applied(filled: Path, schema_toml: str) -> None:
    added = schema_toml + '\n[collections.archive]\ntype = "Message"\n'
    with pytest.raises(HostCallError) as info:
        Records(filled, parse(added))
    assert info.value.kind == "unsupported" and "peerbox schema apply" in info.value.message
    apply_migration(filled, parse(added), added, allow_destructive=False)
    Records(filled, parse(added)).close()




def test_a_file_from_before_migrations_plans_from_its_last_schema(filled: Path, schema_toml: str) -> None:
    db = sqlite3.connect(filled)
    db.execute("DELETE FROM _peerbox_applied")  # as records.sqlite files were written before migrations
    db.commit()
    db.close()
    new = schema_toml.replace('flag = "bool?"', "")
    assert changes(filled, new) == {("inbox", "remove_field", "flag"): (DESTRUCTIVE, 6)}
    apply_migration(filled, parse(new), new, allow_destructive=True)
    assert len(all_records(filled, parse(new))["inbox"]) == 6


def test_a_new_required_field_with_a_default_is_additive_and_backfilled(filled: Path, schema_toml: str,
                                                                          schema: Schema) -> None:
    before = all_records(filled, schema)
    new = (schema_toml.replace('flag = "bool?"', 'flag = "bool?"\nlang = { type = "string", default = "en" }')
           .replace('age = "int?"', 'age = { type = "int", default = 0 }'))  # z had no age
    assert changes(filled, new) == {("inbox", "add_field", "lang"): (ADDITIVE, 6),  # every record
                                    ("contacts", "require_field", "age"): (ADDITIVE, 1)}
    plan = apply_migration(filled, parse(new), new, allow_destructive=False)
    assert not plan.destructive
    after = all_records(filled, parse(new))
    assert after["inbox"] == [dict(r, lang="en") for r in before["inbox"]]
    assert after["contacts"] == [dict(r, age=r.get("age", 0)) for r in before["contacts"]]
    store = Records(filled, parse(new))
    assert store.count("inbox", {"lang": "en"}) == 6  # stored in the column, not filled in on reading
    store.close()
    # changing a default touches no stored record; an absent optional value stays absent
    changed = new.replace('default = "en"', 'default = "fr"').replace("max = 10 }", "max = 10, default = 5 }")
    assert changes(filled, changed) == {("inbox", "change_default", "lang"): (ADDITIVE, 0),  # no record has a
                                        ("inbox", "change_default", "level"): (ADDITIVE, 0)}  # level: still none
    apply_migration(filled, parse(changed), changed, allow_destructive=False)
    assert all_records(filled, parse(changed)) == after
    store = Records(filled, parse(changed))
    assert store.get("inbox", store.insert("inbox", {"from": ALICE, "text": "n", "sent": 9})) == {
        "_key": 8, "from": ALICE, "text": "n", "sent": 9, "lang": "fr", "level": 5}
    store.close()
