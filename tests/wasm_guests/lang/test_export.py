"""``export fn``: a module publishes a function (with optional parameter types) for remote calls.

What a module's owner sees: :func:`interface` lists the published functions
with their parameters, declared types and line; every misuse of ``export`` or
of a type annotation is a compile error that says what to write instead; and an
``export fn`` otherwise compiles and runs exactly like a ``fn``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from peerbox.wasm_guests.lang import PARAM_TYPES, CompileError, Export, check, interface
from peerbox.wasm_guests.lang._lexer import KEYWORDS, RESERVED

INBOX = """// peers/bob/logic/inbox.rhai
import "builtin:inbox" as base;

export fn deliver(msg: string) {          // published
    if msg.len() > 1000 { throw "message too long" }
    base::deliver(msg)
}
export fn stats() { #{ count: base::count() } }
fn helper(x) { x }                         // public to importers, not published
private fn secret() { 42 }                 // neither
"""


def error_of(source: str) -> str:
    """The compile error ``source`` gives (it must give one), as its text."""
    with pytest.raises(CompileError) as info:
        interface(source, "m.rhai")
    return str(info.value)


def test_export_fn_is_listed_with_params_and_types() -> None:
    face = interface(INBOX, "peer:inbox")
    assert face.exports == (Export("deliver", ("msg",), ("string",), 4), Export("stats", (), (), 8))
    assert [name for name, _ in face.functions] == ["deliver", "stats", "helper"]


def test_untyped_and_typed_params_mix() -> None:
    face = interface("export fn f(a, b: i64, c: map, d) { a }")
    assert face.exports == (Export("f", ("a", "b", "c", "d"), (None, "i64", "map", None), 1),)


@pytest.mark.parametrize("typ", PARAM_TYPES)
def test_every_type_name_type_of_gives_is_accepted(typ: str) -> None:
    assert interface(f"export fn f(x: {typ}) {{ x }}").exports[0].types == (typ,)


def test_export_fn_compiles_and_runs_like_fn(compile_and_run: Any, tmp_path: Path) -> None:
    (tmp_path / "greet.rhai").write_text('export fn hello(who: string, n: i64) { `hi ${who} ${n}` }\n'
                                         'fn plain(x) { x * 2 }\n')
    result = compile_and_run('import "greet" as g;\n[g::hello("carol", 2), g::plain(21)]',
                             search_path=[tmp_path])
    assert result.value == ["hi carol 2", 42]


def test_annotations_are_not_checked_inside_the_guest(compile_and_run: Any, tmp_path: Path) -> None:
    # the host checks a published function's arguments; an importer's call is plain Rhai
    (tmp_path / "m.rhai").write_text("export fn twice(x: i64) { x + x }\n")
    assert compile_and_run('import "m" as m;\nm::twice("ab")', search_path=[tmp_path]).value == "abab"


@pytest.mark.parametrize("source", ["export private fn f() {}", "private export fn f() {}"])
def test_export_and_private_are_exclusive(source: str) -> None:
    assert "m.rhai:1:1: error: a function is either private or exported" in error_of(source)


@pytest.mark.parametrize("source", ["fn f(x: string) { x }", "private fn f(x: string) { x }",
                                    "let c = |x: string| x;\nc"])
def test_types_only_on_export_fn(source: str) -> None:
    assert ("parameter types are only checked on `export fn` (a published function's arguments); "
            "remove ': string'") in error_of(source)


def test_unknown_type_names_the_allowed_ones() -> None:
    message = error_of("export fn f(x: int) { x }")
    assert ("m.rhai:1:16: error: unknown parameter type 'int' (use one of bool, i64, f64, string, array, "
            "map, blob: the names type_of gives; or a record type of the peer's schema, such as Message)"
            ) in message


def test_a_missing_type_is_a_syntax_error() -> None:
    assert "expected a parameter type after ':'" in error_of("export fn f(x: ) { x }")


def test_exported_twice_is_an_error() -> None:
    message = error_of("export fn f(x) { x }\nexport fn f(x, y) { x }")
    assert ("m.rhai:2:1: error: function 'f' is exported twice: a published function has one signature"
            in message)


def test_an_exported_and_a_plain_overload_are_fine() -> None:
    face = interface("export fn f(x) { x }\nfn f(x, y) { x }")
    assert [e.name for e in face.exports] == ["f"]


@pytest.mark.parametrize("source", ["export let x = 1;", "export const X = 1;", "export x;"])
def test_export_let_is_an_error_with_a_hint(source: str) -> None:
    message = error_of(source)
    assert ("'export' publishes a function: write 'export fn NAME(...)' "
            "(top-level constants are visible to importers without it)") in message
    assert message.count("error:") == 1  # recovery carries on without a cascade


def test_export_inside_a_block_is_an_error() -> None:
    message = error_of("fn g() {\n  export fn f() { 1 }\n  2\n}")
    assert "m.rhai:2:3: error: functions can only be defined at the top level" in message


def test_export_is_no_longer_a_reserved_name_error_but_still_not_a_name() -> None:
    assert "export" in KEYWORDS and "export" not in RESERVED
    message = error_of("let export = 1;")
    assert "expected a variable name after 'let', found 'export'" in message
    assert "reserved" not in message


def test_check_reports_export_errors_too() -> None:
    with pytest.raises(CompileError, match="exported twice"):
        check("export fn f() { 1 }\nexport fn f() { 2 }\n1")


# -- record types of the peer's schema as parameter types ---------------------------------------

def test_a_record_type_name_is_accepted_and_carried_with_its_position() -> None:
    source = "// inbox\nexport fn deliver(msg: Message, n: i64,\n                  note: Note?) { msg }\n"
    (e,) = interface(source, "peer:inbox").exports
    assert e == Export("deliver", ("msg", "n", "note"), ("Message", "i64", "Note?"), 2)
    assert e.type_at == ((2, 24), (2, 36), (3, 25))  # where the publisher's errors point


def test_optional_builtin_types_are_accepted() -> None:
    assert interface("export fn f(a: string?, b) { a }").exports[0].types == ("string?", None)


@pytest.mark.parametrize("name", ["message", "Int_", "_Message"])
def test_only_capitalised_names_can_be_record_types(name: str) -> None:
    source = f"export fn f(x: {name}) {{ x }}"
    if name[0].isupper():
        assert interface(source).exports[0].types == (name,)
    else:
        assert f"unknown parameter type '{name}'" in error_of(source) or "expected a parameter type" in \
            error_of(source)


def test_record_types_only_on_export_fn_too() -> None:
    assert ("parameter types are only checked on `export fn` (a published function's arguments); "
            "remove ': Message?'") in error_of("fn f(m: Message?) { m }")


def test_an_export_fn_with_a_record_type_compiles_and_runs(compile_and_run: Any, tmp_path: Path) -> None:
    (tmp_path / "m.rhai").write_text("export fn text_of(msg: Message) { msg.text }\n")
    assert compile_and_run('import "m" as m;\nm::text_of(#{text: "hi"})', search_path=[tmp_path]).value == "hi"
