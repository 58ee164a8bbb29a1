"""db:: calls checked at compile time against a schema handed to the compiler as plain data.

Every case compiles a script with the host-call table and a schema (the canonical form peerbox's
schema model produces) and looks at the diagnostics: where each is (line:col) and what it says.
Whatever the checker cannot follow stays a run-time check, so those scripts compile.
"""

from __future__ import annotations

from typing import Any

import pytest

from peerbox.hostcalls import HOST_CALLS
from peerbox.peer import parse_schema_text
from peerbox.wasm_guests import lang

from ...conftest import SCHEMA_TOML


def _t(text: str) -> dict[str, str]:
    return {"type": text}


SCHEMA: dict[str, Any] = {
    "version": 1,
    "types": {
        "Author": {"name": _t("string"), "pubkey": _t("bytes?")},
        "Message": {"from": _t("did"), "text": _t("string"), "sent": _t("timestamp"), "score": _t("float?"),
                    "flag": _t("bool?"), "tags": _t("list<string>?"), "meta": _t("map<int>?"),
                    "author": _t("Author?"), "replies": _t("list<Author>?")},
        "Contact": {"handle": _t("string"), "age": _t("int?")},
    },
    "collections": {"inbox": {"type": "Message", "key": "auto"}, "contacts": {"type": "Contact", "key": "handle"}},
}


def errors(src: str, schema: dict[str, Any] | None = SCHEMA) -> list[str]:
    """``line:col: message`` of every diagnostic compiling ``src`` for ``schema`` ([] if it compiles)."""
    try:
        lang.compile_to_wat(src, "s.rhai", host_calls=HOST_CALLS, schema=schema)
    except lang.CompileError as exc:
        return [f"{d.line}:{d.col}: {d.message}" for d in exc.diagnostics]
    return []


OK = 'from: caller.id, text: "hi", sent: 1'


@pytest.mark.parametrize(("src", "want"), [
    # the example: the misspelt field, at its key, with the field meant
    ('db::insert("inbox", #{form: caller.id, text: params.t, sent: 1});',
     ["1:23: type Message has no field 'form'; did you mean 'from'?"]),
    ('db::insert("inbox", #{Text: "x", from: caller.id, sent: 1});',
     ["1:23: type Message has no field 'Text'; did you mean 'text'?"]),
    (f'db::insert("inbox", #{{{OK}, colour: 1}});', ["1:61: type Message has no field 'colour'"]),
    # literals of the wrong type: the field, what it expects, what it got, at the value
    ('db::insert("inbox", #{from: caller.id, text: 5, sent: 1});',
     ["1:46: field 'text' of type Message expects string, got int"]),
    ('db::insert("inbox", #{from: caller.id, text: "x", sent: "today"});',
     ["1:57: field 'sent' of type Message expects timestamp, got string"]),
    (f'db::insert("inbox", #{{{OK}, flag: 1, score: true}});',
     ["1:67: field 'flag' of type Message expects bool?, got int",
      "1:77: field 'score' of type Message expects float?, got bool"]),
    (f'db::insert("inbox", #{{{OK}, tags: ["a", 2], meta: #{{a: 1, b: "x"}}}});',
     ["1:73: field 'tags[1]' of type Message expects string, got int",
      "1:94: field 'meta.b' of type Message expects int, got string"]),
    (f'db::insert("inbox", #{{{OK}, author: #{{nme: "x"}}}});',
     ["1:71: type Author has no field 'nme'; did you mean 'name'?"]),
    (f'db::insert("inbox", #{{{OK}, author: #{{}}}});',
     ["1:69: record of type Author is missing required field 'author.name' (string)"]),
    (f'db::insert("inbox", #{{{OK}, replies: [#{{name: 1}}]}});',
     ["1:79: field 'replies[0].name' of type Author expects string, got int"]),
    (f'db::insert("inbox", #{{{OK}, author: "Bob"}});',
     ["1:69: field 'author' of type Message expects Author?, got string"]),
    ('db::insert("inbox", #{from: (), text: "x", sent: 1});',
     ["1:29: field 'from' of type Message is required (did), got ()"]),
    (f'db::insert("inbox", #{{{OK}, pubkey: "k"}});', ["1:61: type Message has no field 'pubkey'"]),
    # a required field left out of an insert: at the record
    ('db::insert("inbox", #{from: caller.id});',
     ["1:21: record of type Message is missing required fields 'text' (string), 'sent' (timestamp)"]),
    (f'db::insert("inbox", #{{{OK}, _key: 3}});',
     ["1:61: field '_key' is set by collection 'inbox', not by a record"]),
    # an update's changes: partial, but no unknown field and no wrong literal
    ('db::update("inbox", 1, #{text: "y"});', []),
    ('db::update("inbox", 1, #{txt: "y", sent: 1.5});',
     ["1:26: type Message has no field 'txt'; did you mean 'text'?",
      "1:42: field 'sent' of type Message expects timestamp, got float"]),
    # collection names
    ('db::count("inbx")', ["1:11: db::count: unknown collection 'inbx'; did you mean 'inbox'? "
                           "(declared: inbox, contacts)"]),
    ('db::get("zzz", 1)', ["1:9: db::get: unknown collection 'zzz' (declared: inbox, contacts)"]),
    # field reads on values straight from db::get / db::query
    ('let m = db::get("inbox", 1);\nm.form', ["2:3: type Message has no field 'form'; did you mean 'from'?"]),
    ('let m = db::get("inbox", 1);\nm["txt"]', ["2:3: type Message has no field 'txt'; did you mean 'text'?"]),
    ('let m = db::get("inbox", 1);\n[m._key, m.text, m.author.name]', []),
    ('let c = db::get("contacts", "h");\nc._key', ["2:3: type Contact has no field '_key'"]),
    ('let m = db::get("inbox", 1);\nm.author.nam', ["2:10: type Author has no field 'nam'; did you mean 'name'?"]),
    ('for r in db::query("inbox", #{}).items {\n  print(r.sent + r.snt);\n}',
     ["2:20: type Message has no field 'snt'; did you mean 'sent'?"]),
    ('let page = db::query("inbox", #{});\nfor r in page.items { r.frm; }\npage.nxt',
     ["2:25: type Message has no field 'frm'; did you mean 'from'?",
      "3:6: db::query returns #{items, next}, which has no field 'nxt'; did you mean 'next'?"]),
    ('let page = db::query("inbox", #{});\nlet first = page.items[0];\nfirst.txt',
     ["3:7: type Message has no field 'txt'; did you mean 'text'?"]),
    ('let m = db::get("inbox", 1);\nfn f(m) { m.form }\nf(m)', []),  # a parameter: dynamic
])
def test_diagnostics_name_the_field_and_sit_at_it(src: str, want: list[str]) -> None:
    assert errors(src) == want


@pytest.mark.parametrize("src", [
    'let r = #{form: 1}; db::insert("inbox", r)',  # not a literal at the call
    'let c = "inboxx"; db::count(c)',  # not a constant name
    'db::insert("inbox", #{from: caller.id, text: params.t, sent: params.n, author: params.a})',
    'let m = db::get("inbox", 1); m = #{form: 1}; m.form',  # reassigned: anything may be in it
    'let m = db::get("inbox", 1); m.extra = 1; m.extra',  # changed in place
    'let m = db::get("inbox", 1); { let m = #{form: 1}; m.form }',  # a shadowing variable
    'let m = db::get("inbox", 1); let f = |x| x.form; f.call(m)',
    'for r in db::query("inbox", #{}) { r }',  # the result map itself: left to run time
    'let m = db::get("inbox", 1); m.text.len()',
])
def test_what_the_checker_cannot_follow_stays_a_run_time_check(src: str) -> None:
    assert errors(src) == []


def test_without_a_schema_nothing_of_the_kind_is_checked() -> None:
    src = 'db::insert("nowhere", #{form: 1}); let m = db::get("x", 1); m.anything'
    assert errors(src, None) == []
    plain = lang.compile_to_wat(src, "s.rhai", host_calls=HOST_CALLS)
    assert lang.compile_to_wat(src, "s.rhai", host_calls=HOST_CALLS, schema=None).wat == plain.wat


def test_a_checked_script_compiles_to_the_same_module_as_without_the_schema() -> None:
    src = f'let k = db::insert("inbox", #{{{OK}}}); let m = db::get("inbox", k); m.text'
    with_schema = lang.compile_to_wat(src, "s.rhai", host_calls=HOST_CALLS, schema=SCHEMA)
    assert with_schema.wat == lang.compile_to_wat(src, "s.rhai", host_calls=HOST_CALLS).wat


def test_imported_modules_are_checked_where_they_are_written() -> None:
    def resolver(name: str, importer: str) -> lang.ModuleSource | None:
        src = 'fn add(t) { db::insert("inbox", #{from: caller.id, txt: t, sent: 0}) }'
        return lang.ModuleSource("notes.rhai", src) if name == "notes" else None

    with pytest.raises(lang.CompileError) as info:
        lang.check('import "notes" as n; n::add("x")', "s.rhai", resolver, host_calls=HOST_CALLS, schema=SCHEMA)
    assert [(d.file, d.line, d.col) for d in info.value.diagnostics] == [("notes.rhai", 1, 52)]
    assert "did you mean 'text'?" in info.value.message


def test_peerbox_schema_model_is_what_the_compiler_reads() -> None:
    schema = parse_schema_text(SCHEMA_TOML).canonical()
    assert errors('db::insert("inbox", #{from: caller.id, text: "x", sent: 1, status: 3})', schema) == [
        "1:68: field 'status' of type Message expects string?, got int"]
    assert errors('db::insert("contacts", #{handle: "h", did: caller.id})', schema) == []


def test_malformed_schema_data_is_the_hosts_bug() -> None:
    with pytest.raises(ValueError, match="canonical"):
        lang.check("1", schema={"types": {}})
    with pytest.raises(ValueError, match="unknown type"):
        lang.check("1", schema={"types": {}, "collections": {"c": {"type": "Nope"}}})
    with pytest.raises(ValueError, match="malformed type"):
        lang.check("1", schema={"types": {"A": {"x": {"type": "list<int"}}}, "collections": {}})


def test_an_insert_may_leave_out_a_field_with_a_default() -> None:
    schema = parse_schema_text(SCHEMA_TOML.replace('text = { type = "string", max_len = 200 }',
                                                   'text = { type = "string", max_len = 200, default = "" }')).canonical()
    assert errors('db::insert("inbox", #{from: caller.id, sent: 1})', schema) == []
    assert errors('db::insert("inbox", #{from: caller.id})', schema) == [
        "1:21: record of type Message is missing required field 'sent' (timestamp)"]
