"""The compiled-module cache: memory and disk levels, import manifests, corruption."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import peerbox
import peerbox.wasm_guests.lang as lang
from peerbox.run._cache import ImportRecord, ModuleCache, cache_key, manifest_is_current, source_sha256
from peerbox.run._program import SearchPathResolver

MAIN = 'import "lib" as lib;\nlib::f(params.x)\n'


def _no_compiler(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("compile_to_wat was called on a cache hit")

    monkeypatch.setattr(lang, "compile_to_wat", boom)


def _count_compiles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = lang.compile_to_wat

    def counting(source: str, filename: str, resolver: Any = None, **kw: Any) -> Any:
        calls.append(filename)
        return real(source, filename, resolver, **kw)

    monkeypatch.setattr(lang, "compile_to_wat", counting)
    return calls


def test_memory_hit_returns_the_same_program(
    sandbox: peerbox.Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_compiles(monkeypatch)
    a = peerbox.compile("1 + 1", "a.rhai", sandbox=sandbox)
    b = peerbox.compile("1 + 1", "a.rhai", sandbox=sandbox)
    assert a is b
    assert calls == ["a.rhai"]
    # filename and source are both part of the key
    assert peerbox.compile("1 + 1", "b.rhai", sandbox=sandbox) is not a
    assert peerbox.compile("1 + 2", "a.rhai", sandbox=sandbox) is not a
    assert calls == ["a.rhai", "b.rhai", "a.rhai"]


def test_disk_hit_does_no_parsing_or_codegen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    with peerbox.Sandbox(cache_dir=cache) as first:
        prog = peerbox.compile('print("x"); params.n * 2', "d.rhai", sandbox=first)
        wat = prog.wat
        assert prog.run({"n": 21}).value == 42
    assert list(cache.glob("*.pbm"))
    _no_compiler(monkeypatch)
    with peerbox.Sandbox(cache_dir=cache) as second:
        again = peerbox.compile('print("x"); params.n * 2', "d.rhai", sandbox=second)
        res = again.run({"n": 21})
        assert (res.value, res.log) == (42, ["x"])
        assert again.wat == wat
        assert again.files == ("d.rhai",)


def test_disk_cache_can_be_disabled(tmp_path: Path) -> None:
    with peerbox.Sandbox(cache_dir=tmp_path / "c", disk_cache=False) as sb:
        peerbox.compile("1", "x.rhai", sandbox=sb).run()
    assert not (tmp_path / "c").exists()


def test_editing_an_imported_module_invalidates(
    tmp_path: Path, sandbox: peerbox.Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    libdir = tmp_path / "lib"
    libdir.mkdir()
    (libdir / "lib.rhai").write_text("fn f(x) { x + 1 }\n")
    calls = _count_compiles(monkeypatch)
    prog = peerbox.compile(MAIN, "main.rhai", search_path=[libdir], sandbox=sandbox)
    assert prog.run({"x": 1}).value == 2
    assert [r.name for r in prog.imports] == ["lib"]
    # unchanged: a memory hit
    assert peerbox.compile(MAIN, "main.rhai", search_path=[libdir], sandbox=sandbox) is prog
    assert len(calls) == 1
    # edited: recompiled, at both levels
    (libdir / "lib.rhai").write_text("fn f(x) { x + 100 }\n")
    edited = peerbox.compile(MAIN, "main.rhai", search_path=[libdir], sandbox=sandbox)
    assert edited.run({"x": 1}).value == 101
    assert len(calls) == 2
    with peerbox.Sandbox(cache_dir=sandbox.disk.directory) as other:
        assert (
            peerbox.compile(MAIN, "main.rhai", search_path=[libdir], sandbox=other).run({"x": 1}).value == 101
        )
        assert len(calls) == 2  # the disk entry written for the edited version
        (libdir / "lib.rhai").write_text("fn f(x) { x + 1000 }\n")
        assert (
            peerbox.compile(MAIN, "main.rhai", search_path=[libdir], sandbox=other).run({"x": 1}).value
            == 1001
        )
        assert len(calls) == 3


def test_a_module_found_elsewhere_on_the_search_path_invalidates(
    tmp_path: Path, sandbox: peerbox.Sandbox
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    (two / "lib.rhai").write_text("fn f(x) { x + 2 }\n")
    assert peerbox.compile(MAIN, "m.rhai", search_path=[one, two], sandbox=sandbox).run({"x": 0}).value == 2
    (one / "lib.rhai").write_text("fn f(x) { x + 1 }\n")  # now shadows two/lib.rhai
    assert peerbox.compile(MAIN, "m.rhai", search_path=[one, two], sandbox=sandbox).run({"x": 0}).value == 1


def test_missing_module_after_a_cached_compile_is_a_compile_error(
    tmp_path: Path, sandbox: peerbox.Sandbox
) -> None:
    (tmp_path / "lib.rhai").write_text("fn f(x) { x }\n")
    peerbox.compile(MAIN, "m.rhai", search_path=[tmp_path], sandbox=sandbox)
    (tmp_path / "lib.rhai").unlink()
    with pytest.raises(peerbox.CompileError):
        peerbox.compile(MAIN, "m.rhai", search_path=[tmp_path], sandbox=sandbox)


def _corrupt_every_entry(cache: Path, how: str) -> int:
    n = 0
    for path in cache.glob("*.pbm"):
        if path.name.startswith("rt-"):
            continue
        data = bytearray(path.read_bytes())
        if how == "truncate":
            data = data[: len(data) // 2]
        elif how == "flip":
            data[len(data) // 2] ^= 0xFF
        elif how == "garbage":
            data = bytearray(b"not a cache file at all")
        path.write_bytes(bytes(data))
        n += 1
    return n


@pytest.mark.parametrize("how", ["truncate", "flip", "garbage"])
def test_corrupt_cache_file_is_ignored_and_rewritten(tmp_path: Path, how: str) -> None:
    cache = tmp_path / "cache"
    with peerbox.Sandbox(cache_dir=cache) as sb:
        peerbox.compile("params.a + 1", "c.rhai", sandbox=sb)
    assert _corrupt_every_entry(cache, how) == 1
    with peerbox.Sandbox(cache_dir=cache) as sb:
        assert peerbox.compile("params.a + 1", "c.rhai", sandbox=sb).run({"a": 1}).value == 2
    # rewritten: a third sandbox gets a valid disk hit
    key = next(p.stem for p in cache.glob("*.pbm") if not p.name.startswith("rt-"))
    assert ModuleCache(cache).load(key) is not None


def test_incompatible_module_bytes_are_recompiled(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with peerbox.Sandbox(cache_dir=cache) as sb:
        peerbox.compile("7", "i.rhai", sandbox=sb)
    disk = ModuleCache(cache)
    key = next(p.stem for p in cache.glob("*.pbm") if not p.name.startswith("rt-"))
    entry = disk.load(key)
    assert entry is not None
    from dataclasses import replace

    disk.save(key, replace(entry, module=b"\x7fELF but not a wasmtime module"))  # valid checksum, bad payload
    with peerbox.Sandbox(cache_dir=cache) as sb:
        assert peerbox.compile("7", "i.rhai", sandbox=sb).run().value == 7


def test_corrupt_runtime_cache_is_ignored(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with peerbox.Sandbox(cache_dir=cache) as sb:
        peerbox.compile("1", "x.rhai", sandbox=sb).run()
    rt_files = list(cache.glob("rt-*.pbm"))
    assert len(rt_files) == 1
    rt_files[0].write_bytes(b"garbage")
    with peerbox.Sandbox(cache_dir=cache) as sb:
        assert peerbox.compile("1", "x.rhai", sandbox=sb).run().value == 1


def test_unwritable_cache_dir_is_not_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache dir should be")
    with peerbox.Sandbox(cache_dir=blocker / "sub") as sb:
        assert peerbox.compile("3", "u.rhai", sandbox=sb).run().value == 3


def test_cache_key_parts() -> None:
    base = dict(compiler_version="1", rt_sha256="r", filename="f", source="s")
    k = cache_key(**base)
    for field in base:
        assert cache_key(**{**base, field: base[field] + "x"}) != k
    # length-prefixed: moving a character between parts changes the key
    assert cache_key(**{**base, "filename": "fs", "source": ""}) != cache_key(**{**base, "filename": "f"})


def test_manifest_check(tmp_path: Path) -> None:
    (tmp_path / "m.rhai").write_text("fn g() { 1 }")
    resolver = SearchPathResolver([tmp_path])
    found = resolver("m", "main.rhai")
    assert found is not None
    rec = ImportRecord("m", "main.rhai", found.file, source_sha256(found.source))
    assert manifest_is_current([rec], resolver)
    assert manifest_is_current([], None)
    assert not manifest_is_current([rec], None)
    (tmp_path / "m.rhai").write_text("fn g() { 2 }")
    assert not manifest_is_current([rec], resolver)


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a.b", "a//b", "", "a/../b", "a\\b", "x/", "ü"])
def test_resolver_refuses_bad_names(tmp_path: Path, name: str) -> None:
    (tmp_path / "x.rhai").write_text("fn f() { 1 }")
    assert SearchPathResolver([tmp_path / "sub"])(name, "main.rhai") is None


def test_resolver_finds_nested_names_in_order(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "pkg").mkdir(parents=True)
    (tmp_path / "b" / "pkg" / "mod-1.rhai").write_text("fn f() { 1 }")
    found = SearchPathResolver([tmp_path / "a", tmp_path / "b"])("pkg/mod-1", "main.rhai")
    assert found is not None and found.file.endswith("mod-1.rhai") and found.source == "fn f() { 1 }"


def test_module_not_found_is_a_compile_error(sandbox: peerbox.Sandbox, tmp_path: Path) -> None:
    with pytest.raises(peerbox.CompileError):
        peerbox.compile('import "../escape" as e;\n1', "m.rhai", search_path=[tmp_path], sandbox=sandbox)


# -- the disk cache's size cap (LRU eviction) -------------------------------------------------


def _entry_size(payload: bytes) -> int:
    return len(b"PEERBOX-MODULE1\n") + 32 + len(payload)


def _backdate(cache: ModuleCache, name: str, seconds_ago: float) -> None:
    import os
    import time

    assert cache.directory is not None
    t = time.time() - seconds_ago
    os.utime(cache.directory / f"{name}.pbm", (t, t))


def test_disk_cache_stays_under_its_cap_least_recently_used_first(tmp_path: Path) -> None:
    payload = b"m" * 1000
    cache = ModuleCache(tmp_path / "c", max_bytes=3 * _entry_size(payload) + 10)
    for name in ("e0", "e1", "e2"):
        cache.save_blob(name, payload)
    assert cache.stats().entries == 3
    for age, name in ((300, "e0"), (200, "e1"), (100, "e2")):
        _backdate(cache, name, age)
    assert cache.load_blob("e0") == payload  # used again: now the most recent
    cache.save_blob("e3", payload)  # over the cap: the least recently used (e1) goes
    assert cache.load_blob("e1") is None
    assert [cache.load_blob(n) for n in ("e0", "e2", "e3")] == [payload] * 3
    for i in range(20):  # many distinct entries: the total never goes over the cap
        cache.save_blob(f"x{i}", payload)
        stats = cache.stats()
        assert stats.bytes <= stats.max_bytes
        assert stats.entries == 3
    assert cache.load_blob("x19") == payload  # the newest always survives its own save


def test_disk_cache_cap_from_environment_and_validation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PEERBOX_CACHE_MAX_BYTES", raising=False)
    assert ModuleCache(tmp_path).max_bytes == 256 << 20
    monkeypatch.setenv("PEERBOX_CACHE_MAX_BYTES", "64K")
    assert ModuleCache(tmp_path).max_bytes == 64 << 10
    monkeypatch.setenv("PEERBOX_CACHE_MAX_BYTES", "lots")
    with pytest.raises(peerbox.UsageError, match="PEERBOX_CACHE_MAX_BYTES"):
        ModuleCache(tmp_path)
    monkeypatch.delenv("PEERBOX_CACHE_MAX_BYTES")
    assert ModuleCache(tmp_path).max_bytes == 256 << 20
    for bad in (-1, 1.5, True):
        with pytest.raises(peerbox.UsageError):
            ModuleCache(tmp_path, max_bytes=bad)  # type: ignore[arg-type]
    big = ModuleCache(tmp_path / "small", max_bytes=100)
    big.save_blob("huge", b"x" * 200)  # larger than the whole cap: not stored
    assert big.stats().entries == 0


def test_compiled_scripts_are_evicted_from_a_small_cache(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    cap = 300 << 10  # the runtime module and about 5 small scripts (12 do not fit)
    with peerbox.Sandbox(cache_dir=cache_dir) as sb:
        sb.disk.max_bytes = cap
        for i in range(12):
            peerbox.compile(f"let x = {i};\n" + "x + 1;\n" * 50, f"s{i}.rhai", sandbox=sb).run()
            assert sb.disk.stats().bytes <= cap
        assert 1 <= sb.disk.stats().entries < 13
        assert peerbox.compile("let x = 11;\n" + "x + 1;\n" * 50, "s11.rhai", sandbox=sb).run().value is None


def test_eviction_ignores_temporary_files_and_entries_deleted_meanwhile(tmp_path: Path) -> None:
    payload = b"p" * 500
    cache = ModuleCache(tmp_path, max_bytes=2 * _entry_size(payload))
    partial = tmp_path / ".e9.pbm.123.456.tmp"  # another process's write in progress
    partial.write_bytes(b"half")
    cache.save_blob("a", payload)
    cache.save_blob("b", payload)
    (tmp_path / "a.pbm").unlink()  # another process evicted it first
    cache.save_blob("c", payload)
    cache.save_blob("d", payload)
    assert partial.read_bytes() == b"half"
    assert cache.stats().entries == 2
    assert cache.clear() == 2
    assert cache.stats().entries == 0 and partial.exists()


def test_cache_cli_stats_and_clear(tmp_path: Path, cli: Any, script: Any,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    cache_dir = tmp_path / "cli-cache"
    monkeypatch.setenv("PEERBOX_CACHE_DIR", str(cache_dir))
    with peerbox.Sandbox(cache_dir=cache_dir) as sb:
        peerbox.compile("40 + 2", "a.rhai", sandbox=sb).run()
    r = cli("cache", "stats", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["directory"] == str(cache_dir)
    assert doc["entries"] >= 2 and doc["bytes"] > 0  # the script and the runtime module
    assert doc["max_bytes"] == 256 << 20
    r = cli("cache", "stats")
    assert r.code == 0 and str(cache_dir) in r.out and f"{doc['entries']} entries" in r.out
    r = cli("cache", "clear")
    assert r.code == 0 and f"removed {doc['entries']} entries" in r.err
    assert json.loads(cli("cache", "stats", "--json").out)["entries"] == 0
    monkeypatch.setenv("PEERBOX_CACHE_MAX_BYTES", "nonsense")
    r = cli("cache", "stats")
    assert r.code == 2 and "PEERBOX_CACHE_MAX_BYTES" in r.err


def test_a_changed_schema_never_reuses_a_module_checked_against_the_old_one(
    sandbox: peerbox.Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from peerbox.peer import parse_schema_text

    old = parse_schema_text('[types.Note]\ntext = "string"\n[collections.notes]\ntype = "Note"\n')
    new = parse_schema_text('[types.Note]\nbody = "string"\n[collections.notes]\ntype = "Note"\n')
    src = 'db::count("notes"); let n = db::get("notes", 1); n.text'
    calls = _count_compiles(monkeypatch)
    prog = peerbox.compile(src, "n.rhai", sandbox=sandbox, schema=old)
    assert peerbox.compile(src, "n.rhai", sandbox=sandbox, schema=old) is prog  # same schema: a hit
    assert calls == ["n.rhai"]
    with pytest.raises(peerbox.CompileError, match="type Note has no field 'text'"):
        peerbox.compile(src, "n.rhai", sandbox=sandbox, schema=new)
    # nor from the disk level, in another sandbox sharing the directory
    assert sandbox.disk.directory is not None
    with peerbox.Sandbox(cache_dir=sandbox.disk.directory) as other:
        with pytest.raises(peerbox.CompileError, match="type Note has no field 'text'"):
            peerbox.compile(src, "n.rhai", sandbox=other, schema=new)
        assert peerbox.compile(src, "n.rhai", sandbox=other) is not prog  # no schema: its own entry
    assert calls == ["n.rhai", "n.rhai", "n.rhai", "n.rhai"]
    assert cache_key(compiler_version="v", rt_sha256="r", filename="f", source="s") != cache_key(
        compiler_version="v", rt_sha256="r", filename="f", source="s", schema=old.digest)
