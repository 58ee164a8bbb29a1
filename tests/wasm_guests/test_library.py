"""peerbox's built-in script library (``wasm_guests/lib``): ``inbox``, ``notes``, ``kv``.

Run as a peer (their storage is the peer's), and available to plain
``peerbox.compile`` too, below anything on the search path.
"""

# ruff: noqa: E501

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import peerbox
from peerbox.peer import PeerContext, PeerStore
from peerbox.wasm_guests import builtin_library_path
from peerbox.wasm_guests.lang import interface


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[PeerContext]:
    with PeerContext(PeerStore(tmp_path / "root").init("bob")) as c:
        yield c


def run(ctx: PeerContext, source: str, caller: dict[str, str] | None = None) -> object:
    return ctx.run(ctx.compile(source, "t.rhai"), caller=caller).value


def test_the_library_has_inbox_notes_and_kv_with_their_functions() -> None:
    lib = builtin_library_path()
    faces = {p.stem: interface(p.read_text(), f"builtin:{p.stem}") for p in lib.glob("*.rhai")}
    assert set(faces) == {"inbox", "notes", "kv"}
    assert dict(faces["inbox"].functions) == {"deliver": ("text",), "count": (), "messages": ()}
    assert dict(faces["notes"].functions) == {"add": ("text",), "get": ("n",), "all": (), "count": ()}
    assert dict(faces["kv"].functions) == {"set": ("key", "value"), "get": ("key",), "remove": ("key",), "keys": ()}


def test_inbox_numbers_messages_and_names_the_sender(ctx: PeerContext) -> None:
    alice = {"id": "did:key:z6MkAlice", "name": "alice"}
    stranger = {"id": "did:key:z6MkStranger", "name": ""}
    assert run(ctx, 'import "inbox" as i; i::count()') == 0
    assert run(ctx, 'import "inbox" as i; i::deliver("hi")', alice) == "inbox/1.txt"
    assert run(ctx, 'import "inbox" as i; i::deliver("yo")', stranger) == "inbox/2.txt"
    assert run(ctx, 'import "inbox" as i; [i::count(), i::messages()]') == [
        2, ["from alice: hi", "from did:key:z6MkStranger: yo"]]


def test_notes_add_get_all_and_a_missing_note_throws(ctx: PeerContext) -> None:
    assert run(ctx, 'import "notes" as n; [n::add("a"), n::add("b"), n::get(2), n::all(), n::count()]') == [
        1, 2, "b", ["a", "b"], 2]
    with pytest.raises(peerbox.ScriptError) as info:
        run(ctx, 'import "notes" as n; n::get(3)')
    assert info.value.kind == "throw" and info.value.value == "no note 3"
    assert run(ctx, 'import "notes" as n; let r = ""; try { n::get("x") } catch (e) { r = e } r') == 'no note x'


def test_kv_stores_strings_under_checked_keys(ctx: PeerContext) -> None:
    assert run(ctx, 'import "kv" as kv; kv::set("a", "1"); kv::set("b-2_c", "two"); [kv::get("a"), kv::get("zz"), kv::keys()]') == [
        "1", None, ["a", "b-2_c"]]
    assert run(ctx, 'import "kv" as kv; [kv::remove("a"), kv::remove("a"), kv::keys()]') == [True, False, ["b-2_c"]]
    for bad in ('"../x"', '"a/b"', '""', '"x.txt"', "42"):
        with pytest.raises(peerbox.ScriptError) as info:
            run(ctx, f'import "kv" as kv; kv::set({bad}, "v")')
        assert info.value.kind == "throw" and "kv:" in str(info.value.value)
    with pytest.raises(peerbox.ScriptError, match="values are strings"):
        run(ctx, 'import "kv" as kv; kv::set("k", 5)')
    # private helpers are not visible to importers
    with pytest.raises(peerbox.CompileError):
        run(ctx, 'import "kv" as kv; kv::check("a")')


def test_plain_compile_finds_the_library_below_the_search_path(tmp_path: Path) -> None:
    sb = peerbox.Sandbox(cache_dir=tmp_path / "cache")
    try:
        # no peer: the library compiles, and its host calls fail catchably (no storage)
        prog = peerbox.compile('import "kv" as kv; let r = ""; try { kv::keys() } catch (e) { r = e.kind } r', "a.rhai", sandbox=sb)
        assert prog.run().value == "no_storage"
        # a module on the search path shadows the library; builtin: still reaches it
        (tmp_path / "kv.rhai").write_text('fn keys() { ["local"] }\n')
        prog = peerbox.compile('import "kv" as mine; import "builtin:kv" as lib; mine::keys()', "c.rhai", search_path=[tmp_path], sandbox=sb)
        assert prog.run().value == ["local"]
        assert "builtin:kv" in prog.files
        # only the built-in layer exists outside a peer
        with pytest.raises(peerbox.CompileError, match="module 'shared:kv' not found"):
            peerbox.compile('import "shared:kv" as k; 1', "d.rhai", sandbox=sb)
    finally:
        sb.close()
