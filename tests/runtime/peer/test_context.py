"""The Python API of peer contexts: ``peerbox.Contexts`` and ``peerbox.PeerContext``.

A context is what a script runs inside: its ``caller``/``target``, its
storage (opened once per process and shared by every run of that peer) and
its ``logic/`` modules. These tests use the API the way an embedding
application would and check what it can observe.
"""

# ruff: noqa: E501  (scripts and expected messages read best on one line)

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import peerbox
from peerbox import Contexts, PeerContext, UsageError

BACKENDS = ("fs", "sqlite")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def contexts(root: Path) -> Iterator[Contexts]:
    with Contexts(root) as cs:
        yield cs


@pytest.fixture
def alice(contexts: Contexts, backend: str) -> PeerContext:
    contexts.store.init("alice", backend)
    return contexts.get("alice")


def test_get_returns_one_context_per_peer(contexts: Contexts, alice: PeerContext) -> None:
    assert contexts.get("alice") is alice
    contexts.store.init("bob", "fs")
    bob = contexts.get("bob")
    assert bob is not alice and contexts.get("bob") is bob
    assert contexts.root == contexts.store.root


def test_storage_is_opened_once_and_shared_by_runs(alice: PeerContext) -> None:
    storage = alice.storage
    prog = alice.compile('fs::append("count", "x"); fs::read("count").len()', "count.rhai")
    assert [alice.run(prog).value for _ in range(3)] == [1, 2, 3]
    assert alice.storage is storage
    # the embedding application sees the same storage the scripts write to
    assert storage.read_bytes("count") == b"xxx"


def test_storage_opened_once_even_from_many_threads(contexts: Contexts, backend: str) -> None:
    contexts.store.init("carol", backend)
    seen: list[object] = []
    barrier = threading.Barrier(8)

    def grab() -> None:
        barrier.wait()
        seen.append(contexts.get("carol").storage)

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(seen) == 8 and all(s is seen[0] for s in seen)


def test_principal_is_the_did_and_name(alice: PeerContext) -> None:
    p = alice.principal
    assert p == {"id": alice.peer.did, "name": "alice"}
    assert p["id"].startswith("did:key:z6Mk") and len(p["id"]) == 56
    assert alice.run(alice.compile("[caller, target]", "who.rhai")).value == [p, p]


def test_explicit_caller_is_seen_by_the_script(alice: PeerContext) -> None:
    stranger = {"id": "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK", "name": "stranger"}
    got = alice.run(alice.compile("[caller.name, caller.id, target.name]", "who.rhai"), caller=stranger).value
    assert got == ["stranger", stranger["id"], "alice"]


def test_params_reach_the_script(alice: PeerContext) -> None:
    prog = alice.compile('fs::write(params.name, params.text); [fs::read(params.name), params.n * 2, params.blob]', "p.rhai")
    res = alice.run(prog, {"name": "out.txt", "text": "ünï", "n": 21, "blob": b"\x00\x01"})
    assert res.value == ["ünï", 42, b"\x00\x01"]


def test_imports_come_from_the_peers_logic_folder(alice: PeerContext, tmp_path: Path) -> None:
    logic = alice.peer.paths.logic
    (logic / "notes.rhai").write_text('fn save(n, t) { fs::write(n, t); fs::list("") }\nfn owner() { target.name }\n')
    prog = alice.compile('import "notes" as notes;\n[notes::save("n.txt", "hi"), notes::owner()]', "main.rhai")
    assert alice.run(prog).value == [["n.txt"], "alice"]
    # an extra search path comes after logic/
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "notes.rhai").write_text('fn owner() { "shadowed" }\n')
    (extra / "more.rhai").write_text('fn two() { 2 }\n')
    prog = alice.compile('import "notes" as n; import "more" as m;\n[n::owner(), m::two()]', "main2.rhai",
                         search_path=[extra])
    assert alice.run(prog).value == ["alice", 2]


def test_a_missing_module_is_a_compile_error(alice: PeerContext) -> None:
    with pytest.raises(peerbox.CompileError):
        alice.compile('import "nowhere" as n; 1', "main.rhai")


def test_unknown_peer_is_a_usage_error(contexts: Contexts) -> None:
    contexts.store.init("alice", "fs")
    with pytest.raises(UsageError, match="no peer named 'zed'"):
        contexts.get("zed")
    with pytest.raises(UsageError, match="invalid peer name"):
        contexts.get("../alice")


def test_missing_root_is_a_usage_error(tmp_path: Path) -> None:
    with Contexts(tmp_path / "nowhere") as cs, pytest.raises(UsageError, match="no peer root"):
        cs.get("alice")


def test_closed_context_refuses_to_run(contexts: Contexts, alice: PeerContext) -> None:
    prog = alice.compile('fs::write("a", "1"); 1', "a.rhai")
    assert alice.run(prog).value == 1
    contexts.close()
    with pytest.raises(UsageError, match="closed"):
        alice.run(prog)
    # a new Contexts opens the peer again, with its files
    with Contexts(contexts.root) as again:
        ctx = again.get("alice")
        assert ctx is not alice
        assert ctx.run(ctx.compile('fs::read("a")', "r.rhai")).value == "1"


def test_context_as_a_context_manager(root: Path, backend: str) -> None:
    peer = peerbox.PeerStore(root).init("dave", backend)
    with PeerContext(peer) as ctx:
        prog = ctx.compile('fs::write("x", "y"); fs::list("")', "x.rhai")
        assert ctx.run(prog).value == ["x"]
    with pytest.raises(UsageError):
        ctx.run(prog)


def test_quotas_come_from_peer_toml(root: Path, backend: str) -> None:
    peer = peerbox.PeerStore(root).init("erin", backend)
    with open(peer.paths.meta, "a", encoding="utf-8") as f:
        f.write("\n[quotas]\nmax_file_size = 10\n")
    with Contexts(root) as cs:
        ctx = cs.get("erin")
        assert ctx.quotas.max_file_size == 10
        assert ctx.quotas.max_files == peerbox.hostcalls.Quotas().max_files
        source = 'let k = ""; try { fs::write("big", "0123456789A"); } catch (e) { k = e.kind; } fs::write("ok", "0123456789"); [k, fs::list("")]'
        assert ctx.run(ctx.compile(source, "q.rhai")).value == ["quota_exceeded", ["ok"]]


@pytest.mark.parametrize(
    "table",
    ["[quotas]\nmax_file_size = 'ten'\n", "[quotas]\nmax_files = -1\n", "[quotas]\nspeed = 3\n"],
    ids=["not-an-int", "negative", "unknown-key"],
)
def test_malformed_quotas_are_a_usage_error_naming_the_file(root: Path, table: str) -> None:
    peer = peerbox.PeerStore(root).init("frank", "fs")
    with open(peer.paths.meta, "a", encoding="utf-8") as f:
        f.write("\n" + table)
    with Contexts(root) as cs, pytest.raises(UsageError) as info:
        cs.get("frank").run(peerbox.compile("1", "one.rhai"))
    # the operator must learn which file to fix (load_quotas promises to name it)
    assert str(peer.paths.meta) in str(info.value)


def test_explicit_quotas_override_the_file(root: Path, backend: str) -> None:
    peer = peerbox.PeerStore(root).init("gina", backend)
    with PeerContext(peer, quotas=peerbox.hostcalls.Quotas(max_files=1)) as ctx:
        source = 'fs::write("a", "1"); let k = ""; try { fs::write("b", "2"); } catch (e) { k = e.kind; } [k, fs::list("")]'
        assert ctx.run(ctx.compile(source, "q.rhai")).value == ["quota_exceeded", ["a"]]


def test_program_compiled_elsewhere_runs_in_the_context(alice: PeerContext) -> None:
    prog = peerbox.compile('fs::write("from-plain-compile", "x"); [fs::list(""), target.name]', "plain.rhai")
    assert alice.run(prog).value == [["from-plain-compile"], "alice"]
    with pytest.raises(peerbox.ScriptError) as info:
        prog.run()  # the same program outside any context has no storage
    assert info.value.kind == "no_storage"


def test_runs_of_one_context_on_many_threads(alice: PeerContext) -> None:
    prog = alice.compile('fs::append("tally", "x"); fs::write("t" + params.i, "" + params.i); fs::read("t" + params.i)', "t.rhai")
    errors: list[BaseException] = []
    values: list[str] = []

    def work(base: int) -> None:
        try:
            for i in range(base, base + 10):
                values.append(alice.run(prog, {"i": i}).value)
        except BaseException as exc:
            errors.append(exc)

    old = threading.stack_size()
    threading.stack_size(64 << 20)
    try:
        threads = [threading.Thread(target=work, args=(k * 10,)) for k in range(4)]
        for t in threads:
            t.start()
    finally:
        threading.stack_size(old)
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(values, key=int) == [str(i) for i in range(40)]
    # every append landed: appends of one peer are serialised, none lost
    assert alice.run(alice.compile('fs::read("tally").len()', "n.rhai")).value == 40
    assert len(alice.run(alice.compile('fs::list("")', "l.rhai")).value) == 41


def test_storage_location_follows_the_backend(alice: PeerContext, backend: str) -> None:
    alice.run(alice.compile('fs::write("where.txt", "here")', "w.rhai"))
    storage = alice.peer.paths.storage
    if backend == "fs":
        assert (storage / "where.txt").read_text() == "here"
    else:
        assert storage.name == "storage.sqlite" and storage.is_file()
        assert not (alice.peer.paths.dir / "files").exists()
    assert os.listdir(alice.peer.paths.logic) == []


# -- per-caller quotas ------------------------------------------------------------------

CAROL = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"


def test_quota_for_tracks_a_capped_caller_and_charges_its_writes(alice: PeerContext) -> None:
    assert alice.quota_for(CAROL) is None  # no cap, no ledger yet: nothing to account
    quota = alice.quota_for(CAROL, max_bytes=10)
    assert quota is not None and quota.tracked and quota.caller == CAROL
    prog = alice.compile('fs::write("a.txt", "0123456789"); let k = ""; try { fs::write("b.txt", "x"); } catch (e) { k = e.kind; } k')
    assert alice.run(prog, caller={"id": CAROL, "name": "carol"}, quota=quota).value == "quota_exceeded"
    assert alice.ledger.usage(CAROL) == (10, 1)
    assert (alice.peer.paths.dir / "quota.sqlite").exists()


def test_run_passes_a_release_only_quota_when_the_ledger_exists(alice: PeerContext) -> None:
    carol = alice.quota_for(CAROL, max_bytes=100, max_files=5)
    assert carol is not None
    alice.run(alice.compile('fs::mkdir("inbox"); fs::write("inbox/1.txt", "hello")'), quota=carol)
    assert alice.ledger.usage(CAROL) == (5, 2)
    owner = alice.quota_for(None)  # the ledger exists now: release-only
    assert owner is not None and not owner.tracked
    alice.run(alice.compile('fs::delete("inbox/1.txt")'))  # the owner's own run, no quota given
    assert alice.ledger.usage(CAROL) == (0, 1)  # her message's bytes are free again


def test_close_closes_the_ledger(contexts: Contexts, alice: PeerContext) -> None:
    ledger = alice.ledger
    alice.close()
    with pytest.raises(peerbox.Error):
        ledger.usage(CAROL)
    with pytest.raises(UsageError):
        alice.ledger.usage(CAROL)
