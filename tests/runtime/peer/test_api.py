"""Published functions: which ``export fn`` a caller may reach, argument binding and the call stub.

A call names ``module::function`` and passes plain values. These tests check
what the owner and the caller would see: only the peer's own layer publishes;
every way of naming something unpublished gives the same answer (None, which
the worker reports as ``no_such_function``); argument errors say exactly what
is wrong without echoing a value; and the stub the worker runs calls the
owner's function with the arguments and nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import peerbox
from peerbox.peer._api import (CALL_FILE, BadArguments, PublishedFn, bind_args, call_source, find_published,
                               published)
from peerbox.peer import PeerLogic, PeerStore
from peerbox.run import LogicLayers

INBOX = """// peers/bob/logic/inbox.rhai
import "builtin:inbox" as base;

export fn deliver(msg: string) {
    if msg.len() > 1000 { throw "message too long" }
    `delivered ${msg} from ${caller.name}`
}
export fn stats() { #{ count: 0 } }
export fn scale(x: f64, times: i64, flag: bool, items: array, opts: map, raw: blob, any) { x * times }
fn helper(x) { x }
private fn secret() { 42 }
"""


@pytest.fixture
def layers(tmp_path: Path) -> LogicLayers:
    peer, shared = tmp_path / "peer", tmp_path / "shared"
    (peer / "mail").mkdir(parents=True)
    shared.mkdir()
    (peer / "inbox.rhai").write_text(INBOX)
    (peer / "mail" / "box.rhai").write_text("export fn put(a, b) { a + b }\n")
    (peer / "broken.rhai").write_text("export fn ok() { 1 }\nfn (\n")
    (shared / "tools.rhai").write_text("export fn shared_fn() { 1 }\n")
    (peer / "reexport.rhai").write_text('import "shared:tools" as t;\n'
                                        'export fn shared_fn() { t::shared_fn() }\n')
    return LogicLayers(peer=peer, shared=shared).with_overlay("builtin", "extra", "export fn b() { 1 }\n")


def fn_of(layers: LogicLayers, resource: str) -> PublishedFn:
    module, _, name = resource.rpartition("::")
    fn = find_published(layers, module, name)
    assert fn is not None, resource
    return fn


def test_find_published_only_in_the_peer_layer(layers: LogicLayers) -> None:
    fn = fn_of(layers, "inbox::deliver")
    assert (fn.module, fn.file, fn.name, fn.params, fn.types, fn.line) == (
        "inbox", "peer:inbox", "deliver", ("msg",), ("string",), 4)
    assert fn.resource == "inbox::deliver" and fn.signature() == "deliver(msg: string)"
    assert fn_of(layers, "mail/box::put").signature() == "put(a, b)"
    # a shared or built-in export publishes nothing, unless the peer's module re-exports it
    assert find_published(layers, "tools", "shared_fn") is None
    assert find_published(layers, "extra", "b") is None
    assert fn_of(layers, "reexport::shared_fn").file == "peer:reexport"


@pytest.mark.parametrize("module, function", [
    ("inbox", "helper"),          # public to importers, not published
    ("inbox", "secret"),          # private
    ("inbox", "nope"),            # missing function
    ("absent", "deliver"),        # missing module
    ("broken", "ok"),             # a module that does not parse
    ("peer:inbox", "deliver"),    # a qualified name: calls name bare modules
    ("builtin:inbox", "deliver"),
    ("../inbox", "deliver"),      # not a module name
    ("", "deliver"),
])
def test_private_missing_unexported_and_broken_modules_are_none(layers: LogicLayers, module: str,
                                                                function: str) -> None:
    assert find_published(layers, module, function) is None


def test_published_lists_every_peer_export_by_module_then_name(layers: LogicLayers) -> None:
    assert [f.resource for f in published(layers)] == [
        "inbox::deliver", "inbox::scale", "inbox::stats", "mail/box::put", "reexport::shared_fn"]


def test_bind_args_by_name_and_by_position(layers: LogicLayers) -> None:
    put = fn_of(layers, "mail/box::put")
    assert bind_args(put, {"b": 2, "a": 1}) == {"a": 1, "b": 2}
    assert list(bind_args(put, {"b": 2, "a": 1})) == ["a", "b"]  # parameter order
    assert bind_args(put, [1, [2]]) == {"a": 1, "b": [2]}
    assert bind_args(put, (None, "x")) == {"a": None, "b": "x"}
    stats = fn_of(layers, "inbox::stats")
    assert bind_args(stats, None) == {} and bind_args(stats, {}) == {} and bind_args(stats, []) == {}
    scale = fn_of(layers, "inbox::scale")
    values = [1.5, 3, True, [1], {"k": 1}, b"\x00", None]
    assert list(bind_args(scale, values).values()) == values


@pytest.mark.parametrize("resource, args, message", [
    ("inbox::deliver", ["a", "b"], "inbox::deliver takes 1 argument (msg), got 2"),
    ("mail/box::put", [1], "mail/box::put takes 2 arguments (a, b), got 1"),
    ("inbox::stats", [1], "inbox::stats takes no arguments, got 1"),
    ("inbox::deliver", {"body": "hi"}, "inbox::deliver has no parameter 'body' (it takes msg)"),
    ("inbox::stats", {"x": 1}, "inbox::stats has no parameter 'x' (it takes none)"),
    ("inbox::deliver", {}, "inbox::deliver: missing argument 'msg'"),
    ("inbox::deliver", None, "inbox::deliver: missing argument 'msg'"),
    ("inbox::deliver", {"msg": 7}, "inbox::deliver: argument 'msg' must be string, got i64"),
    ("inbox::deliver", ["x" * 10], None),
    ("inbox::deliver", [b"secret"], "inbox::deliver: argument 'msg' must be string, got blob"),
    ("inbox::deliver", "hi",
     "inbox::deliver: arguments must be a map by name or an array by position, not string"),
    ("inbox::deliver", {1: "hi"}, "inbox::deliver: argument names must be strings, got i64"),
    ("inbox::deliver", {"b" * 100: 1}, "inbox::deliver has no parameter '" + "b" * 64 + "…' (it takes msg)"),
])
def test_bind_args_errors(layers: LogicLayers, resource: str, args: Any, message: str | None) -> None:
    fn = fn_of(layers, resource)
    if message is None:
        assert bind_args(fn, args) == {"msg": "x" * 10}
        return
    with pytest.raises(BadArguments) as info:
        bind_args(fn, args)
    assert str(info.value) == message
    assert info.value.exit_code == 2 and isinstance(info.value, peerbox.UsageError)


@pytest.mark.parametrize("value, got", [("3", "string"), (None, "()"), ([1], "array"), ({"a": 1}, "map"),
                                        (1.5, "f64")])
def test_every_declared_type_is_checked(layers: LogicLayers, value: Any, got: str) -> None:
    scale = fn_of(layers, "inbox::scale")
    args = [1.0, 2, True, [], {}, b"", None]
    args[1] = value
    with pytest.raises(BadArguments) as info:
        bind_args(scale, args)
    assert str(info.value) == f"inbox::scale: argument 'times' must be i64, got {got}"


def test_f64_accepts_an_int(layers: LogicLayers) -> None:
    bound = bind_args(fn_of(layers, "inbox::scale"), [3, 2, False, [], {}, b"", "anything"])
    assert bound["x"] == 3.0 and type(bound["x"]) is float and type(bound["times"]) is int


def test_bool_is_not_i64(layers: LogicLayers) -> None:
    scale = fn_of(layers, "inbox::scale")
    with pytest.raises(BadArguments, match="argument 'times' must be i64, got bool"):
        bind_args(scale, [1.0, True, False, [], {}, b"", 0])
    with pytest.raises(BadArguments, match="argument 'flag' must be bool, got i64"):
        bind_args(scale, [1.0, 1, 1, [], {}, b"", 0])
    with pytest.raises(BadArguments, match="argument 'x' must be f64, got bool"):
        bind_args(scale, [True, 1, True, [], {}, b"", 0])


def test_an_int_out_of_the_i64_range_is_refused(layers: LogicLayers) -> None:
    with pytest.raises(BadArguments, match="argument 'times' is an integer out of the i64 range"):
        bind_args(fn_of(layers, "inbox::scale"), [1.0, 1 << 63, True, [], {}, b"", 0])


def test_call_source_imports_the_peer_layer_and_passes_params(layers: LogicLayers) -> None:
    fn = fn_of(layers, "inbox::deliver")
    assert call_source(fn) == 'import "peer:inbox" as api;\napi::deliver(params["msg"])\n'
    assert call_source(fn_of(layers, "inbox::stats")) == 'import "peer:inbox" as api;\napi::stats()\n'
    program = peerbox.compile(call_source(fn), CALL_FILE, resolver=layers)
    result = program.run(bind_args(fn, ["hi"]), caller={"id": "did:key:zX", "name": "carol"})
    assert result.value == "delivered hi from carol"
    put = fn_of(layers, "mail/box::put")
    assert peerbox.compile(call_source(put), CALL_FILE, resolver=layers).run(
        bind_args(put, {"a": 40, "b": 2})).value == 42


def test_the_stub_never_reaches_another_layer(tmp_path: Path, layers: LogicLayers) -> None:
    fn = fn_of(layers, "inbox::deliver")
    (tmp_path / "peer" / "inbox.rhai").unlink()  # removed between check and run
    (tmp_path / "shared" / "inbox.rhai").write_text("export fn deliver(msg) { \"shared's\" }\n")
    with pytest.raises(peerbox.CompileError, match="module 'peer:inbox' not found"):
        peerbox.compile(call_source(fn), CALL_FILE, resolver=layers)


def test_interface_cache_sees_a_changed_module(tmp_path: Path, layers: LogicLayers) -> None:
    assert find_published(layers, "inbox", "later") is None
    (tmp_path / "peer" / "inbox.rhai").write_text(INBOX + "export fn later(x: map) { x }\n")
    assert fn_of(layers, "inbox::later").types == ("map",)
    (tmp_path / "peer" / "inbox.rhai").write_text("fn deliver(msg) { msg }\n")
    assert find_published(layers, "inbox", "deliver") is None


def test_logic_list_shows_exports_and_which_layer_publishes(tmp_path: Path) -> None:
    store = PeerStore(tmp_path / "root")
    bob = store.init("bob")
    (bob.paths.logic / "inbox.rhai").write_text(INBOX)
    (store.root / "logic").mkdir()
    (store.root / "logic" / "tools.rhai").write_text("export fn t(x: i64) { x }\n")
    docs = {m.ref.file: m.doc() for m in PeerLogic(bob).list()}
    mine = docs["peer:inbox"]
    assert mine["publishes"] is True
    assert mine["exports"][0] == {"name": "deliver", "params": ["msg"], "types": ["string"], "line": 4,
                                    "signature": "deliver(msg: string)"}
    assert [e["name"] for e in mine["exports"]] == ["deliver", "stats", "scale"]
    shared = docs["shared:tools"]
    assert shared["publishes"] is False and shared["exports"] == [
        {"name": "t", "params": ["x"], "types": ["i64"], "line": 1, "signature": "t(x: i64)"}]
    assert docs["builtin:inbox"]["publishes"] is False
