"""Open logic: the three module layers (``LogicLayers``) and the owner's tools (``PeerLogic``).

Layers, highest first: the peer's own ``<root>/peers/NAME/logic/``, the
worker's shared ``<root>/logic/`` and peerbox's built-in library. These tests
run scripts in a peer's context and check what the owner or a caller would
see: values, files written, compile errors naming modules, and that a
refused install leaves every file as it was.
"""

# ruff: noqa: E501  (scripts and expected messages read best on one line)

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import peerbox
from peerbox.peer._context import PeerContext
from peerbox.peer._logic import LogicError, LogicLayers, LogicRefused, PeerLogic
from peerbox.peer._peers import Peer, PeerStore
from peerbox.wasm_guests import builtin_library_path
from peerbox.wasm_guests.lang import CompileError

NOW = 1_700_000_000


@pytest.fixture
def store(tmp_path: Path) -> PeerStore:
    return PeerStore(tmp_path / "root")


@pytest.fixture
def bob(store: PeerStore) -> Peer:
    return store.init("bob")


@pytest.fixture
def ctx(bob: Peer) -> Iterator[PeerContext]:
    with PeerContext(bob) as c:
        yield c


@pytest.fixture
def logic(bob: Peer) -> PeerLogic:
    return PeerLogic(bob, clock=lambda: NOW)


@pytest.fixture
def sb(tmp_path: Path) -> Iterator[peerbox.Sandbox]:
    sandbox = peerbox.Sandbox(cache_dir=tmp_path / "cache")
    yield sandbox
    sandbox.close()


def shared_dir(store: PeerStore) -> Path:
    d = store.root / "logic"
    d.mkdir(parents=True, exist_ok=True)
    return d


def put(directory: Path, name: str, source: str) -> Path:
    path = directory / f"{name}.rhai"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source, encoding="utf-8")
    return path


def run(ctx: PeerContext, source: str) -> object:
    return ctx.run(ctx.compile(source, "script.rhai")).value


def snapshot(peer: Peer) -> dict[str, bytes]:
    """Every file under the peer's logic/ and logic-history/ (bytes), to compare before and after."""
    out: dict[str, bytes] = {}
    for base in (peer.paths.logic, peer.paths.dir / "logic-history"):
        if base.is_dir():
            for p in sorted(base.rglob("*")):
                if p.is_file() and p.name != ".lock":
                    out[str(p.relative_to(peer.paths.dir))] = p.read_bytes()
    return out


# ------------------------------------------------------------------ resolution


def test_unqualified_import_finds_the_highest_layer(ctx: PeerContext, bob: Peer, store: PeerStore) -> None:
    put(shared_dir(store), "greet", 'fn who() { "shared" }')
    put(shared_dir(store), "notes", 'fn count() { "shared notes" }')
    put(bob.paths.logic, "greet", 'fn who() { "peer" }')
    # peer beats shared, shared beats builtin, builtin is reached when nothing else has the name
    assert run(ctx, 'import "greet" as g; g::who()') == "peer"
    assert run(ctx, 'import "notes" as n; n::count()') == "shared notes"
    assert run(ctx, 'import "kv" as kv; kv::set("a", "1"); kv::get("a")') == "1"


def test_qualified_imports_pin_one_layer(ctx: PeerContext, bob: Peer, store: PeerStore) -> None:
    put(shared_dir(store), "notes", 'fn count() { "shared" }')
    put(bob.paths.logic, "notes", 'fn count() { "peer" }')
    assert run(ctx, 'import "peer:notes" as n; n::count()') == "peer"
    assert run(ctx, 'import "shared:notes" as n; n::count()') == "shared"
    assert run(ctx, 'import "builtin:notes" as n; n::count()') == 0


def test_qualified_import_of_a_layer_without_the_module_is_not_found(ctx: PeerContext) -> None:
    for name in ("peer:notes", "shared:notes", "builtin:nothing"):
        with pytest.raises(CompileError, match=f"module '{name}' not found"):
            ctx.compile(f'import "{name}" as n; 1')


def test_peer_override_applies_to_a_shared_module_importing_the_bare_name(ctx: PeerContext, bob: Peer, store: PeerStore) -> None:
    put(shared_dir(store), "report", 'import "notes" as n;\nfn total() { n::count() }')
    assert run(ctx, 'import "report" as r; r::total()') == 0  # builtin notes: no notes yet
    put(bob.paths.logic, "notes", "fn count() { 99 }")
    assert run(ctx, 'import "report" as r; r::total()') == 99


def test_peer_override_applies_to_a_builtin_module_importing_the_bare_name(tmp_path: Path, bob: Peer, sb: peerbox.Sandbox) -> None:
    builtin = tmp_path / "lib"
    put(builtin, "base", "fn value() { 1 }")
    put(builtin, "uses", 'import "base" as b;\nfn get() { b::value() * 10 }')
    layers = LogicLayers(peer=bob.paths.logic, shared=tmp_path / "none", builtin=builtin)
    assert peerbox.compile('import "uses" as u; u::get()', "s.rhai", resolver=layers, sandbox=sb).run().value == 10
    put(bob.paths.logic, "base", "fn value() { 7 }")
    assert peerbox.compile('import "uses" as u; u::get()', "s.rhai", resolver=layers, sandbox=sb).run().value == 70


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a//b", "x.rhai", "unknown:x", "shared:../x", "peer:/etc/passwd", "a/../b", "", "x" * 300, "shared:" + "y" * 201])
def test_hostile_names_resolve_to_nothing(name: str, bob: Peer, ctx: PeerContext, store: PeerStore) -> None:
    # make sure something real is reachable by a naive path join
    put(shared_dir(store), "x", 'fn f() { "leaked" }')
    (store.root / "x.rhai").write_text('fn f() { "leaked" }')
    assert LogicLayers.of(bob)(name, "<script>") is None
    with pytest.raises(CompileError, match="module '.*' not found"):
        ctx.compile(f'import "{name}" as m; m::f()')


@pytest.mark.parametrize("name", [None, 3, b"notes", ["notes"]])
def test_non_string_names_resolve_to_nothing(name: object, bob: Peer) -> None:
    assert LogicLayers.of(bob)(name, "<script>") is None  # type: ignore[arg-type]


def test_extend_peer_inbox_wraps_the_builtin_deliver(ctx: PeerContext, bob: Peer) -> None:
    put(bob.paths.logic, "inbox", 'import "builtin:inbox" as base;\nfn deliver(text) { base::deliver(text.to_upper()) }\nfn count() { base::count() }')
    assert run(ctx, 'import "inbox" as i; i::deliver("hello"); i::deliver("again")') == "inbox/2.txt"
    assert ctx.storage.read_bytes("inbox/1.txt") == b"from bob: HELLO"
    assert ctx.storage.read_bytes("inbox/2.txt") == b"from bob: AGAIN"
    assert run(ctx, 'import "inbox" as i; i::count()') == 2


def test_compose_peer_imports_shared_which_imports_builtin(ctx: PeerContext, bob: Peer, store: PeerStore) -> None:
    put(shared_dir(store), "journal", 'import "builtin:kv" as kv;\nfn log(k, v) { kv::set(k, `[${v}]`); kv::keys() }')
    put(bob.paths.logic, "diary", 'import "shared:journal" as j;\nfn write(day, text) { j::log(day, text.to_lower()) }')
    assert run(ctx, 'import "diary" as d; d::write("mon", "RAIN"); d::write("tue", "Sun")') == ["mon", "tue"]
    assert ctx.storage.read_bytes("kv/mon") == b"[rain]"
    assert ctx.storage.read_bytes("kv/tue") == b"[sun]"


def test_import_cycle_across_layers_names_the_chain(ctx: PeerContext, bob: Peer, store: PeerStore) -> None:
    put(bob.paths.logic, "a", 'import "shared:b" as b;\nfn f() { b::g() }')
    put(shared_dir(store), "b", 'import "a" as a;\nfn g() { a::f() }')
    with pytest.raises(CompileError) as exc:
        ctx.compile('import "a" as a; a::f()')
    assert "import cycle" in str(exc.value)
    assert "peer:a -> shared:b -> peer:a" in str(exc.value)


# ------------------------------------------------------------------ compile cache


def test_cache_recompiles_exactly_the_dependents_of_a_changed_module(bob: Peer, logic: PeerLogic, sb: peerbox.Sandbox) -> None:
    logic.set("b", "fn v() { 1 }")
    logic.set("a", 'import "b" as b;\nfn v() { b::v() + 100 }')
    logic.set("c", "fn v() { 5 }")
    layers = LogicLayers.of(bob)
    p1_src, p2_src = 'import "a" as a; a::v()', 'import "c" as c; c::v()'
    p1 = peerbox.compile(p1_src, "p1.rhai", resolver=layers, sandbox=sb)
    p2 = peerbox.compile(p2_src, "p2.rhai", resolver=layers, sandbox=sb)
    assert (p1.run().value, p2.run().value) == (101, 5)
    # unchanged logic: both come from the cache
    assert peerbox.compile(p1_src, "p1.rhai", resolver=layers, sandbox=sb) is p1
    assert peerbox.compile(p2_src, "p2.rhai", resolver=layers, sandbox=sb) is p2

    logic.set("b", "fn v() { 2 }")
    p1b = peerbox.compile(p1_src, "p1.rhai", resolver=LogicLayers.of(bob), sandbox=sb)
    p2b = peerbox.compile(p2_src, "p2.rhai", resolver=LogicLayers.of(bob), sandbox=sb)
    assert p1b is not p1
    assert p1b.run().value == 102
    assert p2b is p2


def test_cache_recompiles_when_a_peer_override_of_a_builtin_appears(bob: Peer, logic: PeerLogic, sb: peerbox.Sandbox) -> None:
    logic.set("c", "fn v() { 5 }")
    layers = LogicLayers.of(bob)
    notes_src, other_src = 'import "notes" as n; n::count()', 'import "c" as c; c::v()'
    # count() of the builtin needs storage; run it in a context
    with PeerContext(bob) as ctx:
        p = peerbox.compile(notes_src, "n.rhai", resolver=layers, sandbox=sb)
        other = peerbox.compile(other_src, "o.rhai", resolver=layers, sandbox=sb)
        assert ctx.run(p).value == 0
        logic.set("notes", "fn count() { 42 }")
        p2 = peerbox.compile(notes_src, "n.rhai", resolver=layers, sandbox=sb)
        assert p2 is not p
        assert ctx.run(p2).value == 42
        assert peerbox.compile(other_src, "o.rhai", resolver=layers, sandbox=sb) is other


# ------------------------------------------------------------------ list


def test_list_shows_layers_active_and_overrides(bob: Peer, store: PeerStore, logic: PeerLogic) -> None:
    put(shared_dir(store), "notes", "fn count() { 1 }")
    logic.set("notes", 'import "shared:notes" as base;\nfn count() { base::count() + 1 }')
    logic.set("inbox", 'import "builtin:inbox" as base;\nfn deliver(text) { base::deliver(text) }')
    by_file = {m.ref.file: m for m in logic.list()}
    assert set(by_file) == {"peer:notes", "shared:notes", "builtin:notes", "peer:inbox", "builtin:inbox", "builtin:kv"}
    assert by_file["peer:notes"].active and by_file["peer:notes"].overrides == ("shared:notes", "builtin:notes")
    assert not by_file["shared:notes"].active and by_file["shared:notes"].overrides == ()
    assert not by_file["builtin:notes"].active
    assert by_file["peer:inbox"].overrides == ("builtin:inbox",)
    assert by_file["peer:inbox"].imports == ("builtin:inbox",)
    assert by_file["builtin:kv"].active and by_file["builtin:kv"].overrides == ()
    assert by_file["peer:notes"].ref.path == bob.paths.logic / "notes.rhai"
    # the active module of each name comes first
    files = [m.ref.file for m in logic.list()]
    assert files.index("peer:notes") < files.index("shared:notes") < files.index("builtin:notes")


def test_list_shows_public_functions_params_and_constants(logic: PeerLogic) -> None:
    logic.set("util", "const LIMIT = 5;\nfn helper() { 1 }\nprivate fn hidden(x) { x }\nfn two(a, b) { a + b }\n")
    (util,) = [m for m in logic.list() if m.ref.file == "peer:util"]
    assert util.functions == (("helper", ()), ("two", ("a", "b")))
    assert "hidden" not in [name for name, _ in util.functions]
    assert util.constants == ("LIMIT",)
    assert util.error is None
    (kv,) = [m for m in logic.list() if m.ref.file == "builtin:kv"]
    assert ("set", ("key", "value")) in kv.functions
    assert "check" not in [name for name, _ in kv.functions]  # private in the builtin


def test_list_reports_a_module_that_does_not_parse(bob: Peer, logic: PeerLogic) -> None:
    put(bob.paths.logic, "broken", "fn x( {")
    (broken,) = [m for m in logic.list() if m.ref.name == "broken"]
    assert broken.ref.file == "peer:broken"
    assert broken.error is not None and "peer:broken:1:7" in broken.error
    assert broken.functions == ()
    # the others are still listed
    assert any(m.ref.file == "builtin:inbox" for m in logic.list())


# ------------------------------------------------------------------ set


def test_set_writes_the_file_and_records_versions(bob: Peer, logic: PeerLogic) -> None:
    v1 = logic.set("greet", 'fn hi() { "v1" }')
    v2 = logic.set("greet", 'fn hi() { "v2" }')
    assert (v1.version, v2.version) == (1, 2)
    assert (v1.action, v2.action) == ("set", "set")
    assert (bob.paths.logic / "greet.rhai").read_text() == 'fn hi() { "v2" }'
    assert [v.version for v in logic.versions("greet")] == [1, 2]
    assert logic.versions("greet")[1].size == len('fn hi() { "v2" }')
    assert logic.versions("greet")[0].by == bob.did
    with PeerContext(bob) as ctx:
        assert run(ctx, 'import "greet" as g; g::hi()') == "v2"


def test_set_refuses_a_source_that_does_not_compile_and_changes_nothing(bob: Peer, logic: PeerLogic) -> None:
    logic.set("greet", 'fn hi() { "ok" }')
    before = snapshot(bob)
    with pytest.raises(LogicRefused) as exc:
        logic.set("greet", 'fn hi() { "ok" }\nfn broken( {\n')
    assert exc.value.kind == "compile_error"
    assert exc.value.exit_code == 3
    assert "peer:greet:2:" in str(exc.value)
    assert snapshot(bob) == before
    assert [v.version for v in logic.versions("greet")] == [1]


def test_set_refuses_an_unknown_function_call_in_a_new_module(bob: Peer, logic: PeerLogic) -> None:
    before = snapshot(bob)
    with pytest.raises(LogicRefused) as exc:
        logic.set("fresh", 'import "kv" as kv;\nfn f() { kv::nope() }')
    assert exc.value.kind == "compile_error"
    assert "peer:fresh:2:" in str(exc.value)
    assert snapshot(bob) == before
    assert not (bob.paths.logic / "fresh.rhai").exists()
    assert logic.versions("fresh") == []


def test_set_refuses_a_change_that_breaks_a_peer_module_importing_it(bob: Peer, logic: PeerLogic) -> None:
    logic.set("util", "fn helper() { 1 }\nfn other() { 2 }")
    logic.set("other", 'import "util" as u;\nfn f() { u::helper() }')
    before = snapshot(bob)
    with pytest.raises(LogicRefused) as exc:
        logic.set("util", "fn other() { 2 }")
    assert exc.value.kind == "breaks_dependent"
    assert exc.value.dependent == "peer:other"
    assert "peer:other:2:" in str(exc.value) and "helper" in str(exc.value)
    assert snapshot(bob) == before
    with PeerContext(bob) as ctx:  # the old version keeps serving
        assert run(ctx, 'import "other" as o; o::f()') == 1


def test_set_refuses_a_change_that_breaks_a_shared_module_importing_it(bob: Peer, store: PeerStore, logic: PeerLogic) -> None:
    put(shared_dir(store), "report", 'import "notes" as n;\nfn total() { n::count() }')
    before = snapshot(bob)
    with pytest.raises(LogicRefused) as exc:
        logic.set("notes", "fn add(t) { t }")  # hides the builtin count()
    assert exc.value.kind == "breaks_dependent"
    assert exc.value.dependent == "shared:report"
    assert snapshot(bob) == before


def test_a_module_that_was_already_broken_does_not_block_an_install(bob: Peer, logic: PeerLogic) -> None:
    logic.set("util", "fn helper() { 1 }")
    put(bob.paths.logic, "stale", 'import "util" as u;\nfn f() { u::gone() }')  # broken already
    v = logic.set("util", "fn helper() { 2 }")
    assert v.version == 2
    assert (bob.paths.logic / "util.rhai").read_text() == "fn helper() { 2 }"


@pytest.mark.parametrize("name", ["shared:x", "builtin:inbox", "../x", "/etc/passwd", "a//b", "x.rhai", "unknown:x", "", "x" * 300])
def test_set_refuses_names_outside_the_peer_layer(name: str, bob: Peer, logic: PeerLogic) -> None:
    before = snapshot(bob)
    with pytest.raises(LogicError) as exc:
        logic.set(name, "fn f() { 1 }")
    assert exc.value.exit_code == 2
    assert snapshot(bob) == before


def test_set_accepts_peer_prefix_and_nested_names(bob: Peer, logic: PeerLogic) -> None:
    logic.set("app/util", "fn f() { 3 }")
    logic.set("peer:plain", "fn f() { 4 }")
    assert (bob.paths.logic / "app" / "util.rhai").read_text() == "fn f() { 3 }"
    assert (bob.paths.logic / "plain.rhai").read_text() == "fn f() { 4 }"
    assert [v.version for v in logic.versions("app/util")] == [1]
    assert logic.verify() == {"app/util": [], "plain": []}
    with PeerContext(bob) as ctx:
        assert run(ctx, 'import "app/util" as u; import "peer:app/util" as p; u::f() + p::f()') == 6
    assert any(m.ref.file == "peer:app/util" for m in logic.list())


# ------------------------------------------------------------------ rollback, find, wat


def test_rollback_reinstalls_an_old_version_as_a_new_one(bob: Peer, logic: PeerLogic) -> None:
    logic.set("greet", 'fn hi() { "one" }')
    logic.set("greet", 'fn hi() { "two" }')
    v3 = logic.rollback("greet", 1)
    assert (v3.version, v3.action, v3.restores) == (3, "rollback", 1)
    assert (bob.paths.logic / "greet.rhai").read_text() == 'fn hi() { "one" }'
    versions = logic.versions("greet")
    assert [v.version for v in versions] == [1, 2, 3]
    assert versions[2].sha256 == versions[0].sha256
    with PeerContext(bob) as ctx:
        assert run(ctx, 'import "greet" as g; g::hi()') == "one"


def test_rollback_to_an_unknown_version_names_the_recorded_range(bob: Peer, logic: PeerLogic) -> None:
    logic.set("greet", 'fn hi() { "one" }')
    logic.set("greet", 'fn hi() { "two" }')
    before = snapshot(bob)
    with pytest.raises(LogicError, match=r"no version 7 \(recorded: 1\.\.2\)"):
        logic.rollback("greet", 7)
    with pytest.raises(LogicError, match=r"recorded: none"):
        logic.rollback("never", 1)
    assert snapshot(bob) == before


def test_find_and_wat(logic: PeerLogic) -> None:
    logic.set("greet", 'import "builtin:notes" as n;\nfn hi() { n::count() }')
    assert logic.find("greet").file == "peer:greet"
    assert logic.find("builtin:inbox").source == (builtin_library_path() / "inbox.rhai").read_text()
    wat = logic.wat("greet")
    assert wat.startswith("(module")
    assert logic.wat("builtin:kv").startswith("(module")
    with pytest.raises(LogicError, match="has no module 'nothing'"):
        logic.find("nothing")
    with pytest.raises(LogicError, match="is not a module name"):
        logic.wat("../x")


def test_remove_brings_the_lower_layer_back_and_is_recorded(bob: Peer, store: PeerStore, ctx: PeerContext, logic: PeerLogic) -> None:
    put(shared_dir(store), "greet", 'fn hi() { "shared" }')
    logic.set("greet", 'fn hi() { "peer" }')
    assert run(ctx, 'import "greet" as g; g::hi()') == "peer"
    v = logic.remove("greet")
    assert (v.version, v.action, v.size) == (2, "remove", 0)
    assert not (bob.paths.logic / "greet.rhai").exists()
    assert run(ctx, 'import "greet" as g; g::hi()') == "shared"
    assert logic.verify() == {"greet": []}
    # the removed version's source stays readable, and rollback brings it back as version 3
    v3 = logic.rollback("greet", 1)
    assert (v3.version, v3.action, v3.restores) == (3, "rollback", 1)
    assert run(ctx, 'import "greet" as g; g::hi()') == "peer"
    with pytest.raises(LogicError, match="is a removal, not a source to restore"):
        logic.rollback("greet", 2)
    assert logic.verify() == {"greet": []}


def test_remove_refuses_to_break_a_module_importing_it(bob: Peer, logic: PeerLogic) -> None:
    logic.set("greet", 'fn hi() { 1 }')
    logic.set("user", 'import "greet" as g;\nfn x() { g::hi() }')
    before = snapshot(bob)
    with pytest.raises(LogicRefused) as info:
        logic.remove("greet")
    assert info.value.kind == "breaks_dependent" and info.value.dependent == "peer:user"
    assert "removing peer:greet would break peer:user" in str(info.value)
    assert "module 'greet' not found" in str(info.value)
    assert snapshot(bob) == before


def test_remove_of_a_module_the_peer_does_not_have_is_a_usage_error(logic: PeerLogic) -> None:
    with pytest.raises(LogicError, match="no module of its own named 'inbox'"):
        logic.remove("inbox")  # only the built-in one exists
    with pytest.raises(LogicError):
        logic.remove("builtin:inbox")


def test_verify_reports_a_removed_module_that_reappears_by_hand(bob: Peer, logic: PeerLogic) -> None:
    logic.set("greet", 'fn hi() { 1 }')
    logic.remove("greet")
    (bob.paths.logic / "greet.rhai").write_text('fn hi() { 2 }')
    problems = logic.verify()["greet"]
    assert any("version 2 removed it" in p for p in problems), problems
