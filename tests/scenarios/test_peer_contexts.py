"""Scripts run as peers: every ``fs::`` host call, refusals, budgets, logs and threads.

Everything here goes through real scripts compiled and run in a peer's
context (``peerbox.Contexts`` -> ``PeerContext.compile`` / ``.run``), on both
storage backends, and checks what a script author would see: values,
``e.kind``/``e.message`` of caught refusals, ``LimitExceeded`` and the log.
Backend-level behaviour (path rules one by one, FIFOs, hard links, quotas in
isolation) is tested in ``tests/hostcalls``.
"""

# ruff: noqa: E501  (tables of programs read best one program per line)

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import peerbox
from peerbox import Contexts, PeerContext

BACKENDS = ("fs", "sqlite")

#: A script helper: call ``f`` and return its value, or "kind: message" of what it raised.
ATTEMPT = 'fn attempt(f) { let r = (); try { r = f.call(); } catch (e) { r = e.kind + ": " + e.message; } r }\n'


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def contexts(tmp_path: Path) -> Iterator[Contexts]:
    with Contexts(tmp_path / "root") as cs:
        yield cs


MakePeer = Callable[..., PeerContext]


@pytest.fixture
def make_peer(contexts: Contexts) -> MakePeer:
    """``make_peer(name, backend, quotas=None)``: ``init`` a peer under the root and return its context."""

    def make(name: str, kind: str, quotas: dict[str, int] | None = None) -> PeerContext:
        peer = contexts.store.init(name, kind)
        if quotas:
            with open(peer.paths.meta, "a", encoding="utf-8") as f:
                f.write("\n[quotas]\n" + "".join(f"{k} = {v}\n" for k, v in quotas.items()))
        return contexts.get(name)

    return make


@pytest.fixture
def peer(make_peer: MakePeer, backend: str) -> PeerContext:
    """Peer ``alice`` with this test's backend."""
    return make_peer("alice", backend)


def run(ctx: PeerContext, source: str, params: dict[str, Any] | None = None, **limits: Any) -> Any:
    """Compile ``source`` for ``ctx`` and run it there; the script's value."""
    lim = peerbox.Limits(**limits) if limits else None
    return ctx.run(ctx.compile(source, "job.rhai"), params, limits=lim).value


def run_result(ctx: PeerContext, source: str, params: dict[str, Any] | None = None, **limits: Any) -> peerbox.Result:
    lim = peerbox.Limits(**limits) if limits else None
    return ctx.run(ctx.compile(source, "job.rhai"), params, limits=lim)


def run_limit(ctx: PeerContext, source: str, params: dict[str, Any] | None = None, **limits: Any) -> peerbox.LimitExceeded:
    with pytest.raises(peerbox.LimitExceeded) as info:
        run(ctx, source, params, **limits)
    return info.value


# -- every fs:: host call, the same on both backends ----------------------------------------

TOUR = ATTEMPT + r'''
let out = #{};
out.write = fs::write("a.txt", "héllo");
out.append = fs::append("a.txt", " wörld");
out.append_new = fs::append("new.txt", "n");
out.read = fs::read("a.txt");
out.mkdir = fs::mkdir("d/e/f");
out.mkdir_again = fs::mkdir("d/e");
out.write_deep = fs::write("d/e/f/deep.txt", "deep");
out.list_root = fs::list("");
out.list_d = fs::list("d");
out.list_f = fs::list("d/e/f");
out.exists = [fs::exists("a.txt"), fs::exists("d/e"), fs::exists("zz"), fs::exists("a.txt/x"), fs::exists(""), fs::exists("zz/y")];
let s = fs::stat("a.txt");
out.stat_file = [s.size, s.is_dir, type_of(s.modified)];
out.modified = s.modified;
let sd = fs::stat("d");
out.stat_dir = [sd.size, sd.is_dir];
out.stat_root = fs::stat("").is_dir;
out.write_bytes = fs::write_bytes("b.bin", params.blob);
out.read_bytes = fs::read_bytes("b.bin");
out.blob_type = type_of(out.read_bytes);
out.blob_len = out.read_bytes.len();
out.read_bytes_of_text = fs::read_bytes("a.txt");
out.overwrite = [fs::write("a.txt", "short"), fs::read("a.txt"), fs::stat("a.txt").size];
out.delete_file = [fs::delete("d/e/f/deep.txt"), fs::exists("d/e/f/deep.txt")];
out.delete_dir = [fs::delete("d/e/f"), fs::exists("d/e/f"), fs::list("d/e")];
out.errors = [
  attempt(|| fs::read("zz")),
  attempt(|| fs::read("d")),
  attempt(|| fs::write("d", "x")),
  attempt(|| fs::list("a.txt")),
  attempt(|| fs::read("a.txt/x")),
  attempt(|| fs::delete("d")),
  attempt(|| fs::delete("")),
  attempt(|| fs::delete("zz")),
  attempt(|| fs::write("zz/y", "x")),
  attempt(|| fs::stat("zz")),
  attempt(|| fs::read("b.bin")),
  attempt(|| fs::write(1, 2)),
  attempt(|| fs::write("x", params.blob)),
  attempt(|| fs::write_bytes("x", "s")),
];
out.list_end = fs::list("");
out
'''

TOUR_EXPECTED: dict[str, Any] = {
    "write": None,
    "append": None,
    "append_new": None,
    "read": "héllo wörld",
    "mkdir": None,
    "mkdir_again": None,
    "write_deep": None,
    "list_root": ["a.txt", "d", "new.txt"],
    "list_d": ["e"],
    "list_f": ["deep.txt"],
    "exists": [True, True, False, False, True, False],
    "stat_file": [len("héllo wörld".encode()), False, "i64"],
    "stat_dir": [0, True],
    "stat_root": True,
    "write_bytes": None,
    "read_bytes": b"\x00\xff\x01pb",
    "blob_type": "blob",
    "blob_len": 5,
    "read_bytes_of_text": "héllo wörld".encode(),
    "overwrite": [None, "short", 5],
    "delete_file": [None, False],
    "delete_dir": [None, False, []],
    "errors": [
        "not_found: no such file: 'zz'",
        "is_a_directory: is a directory: 'd'",
        "is_a_directory: is a directory: 'd'",
        "not_a_directory: not a directory: 'a.txt'",
        "not_a_directory: not a directory: 'a.txt'",
        "invalid_argument: cannot delete 'd': the directory is not empty",
        "invalid_path: cannot delete the peer root",
        "not_found: no such file or directory: 'zz'",
        "not_found: no such directory: 'zz'",
        "not_found: no such file or directory: 'zz'",
        "invalid_argument: file is not valid UTF-8: b.bin",
        "invalid_argument: fs::write: expected a path (string), got int",
        "invalid_argument: fs::write: expected a string, got blob",
        "invalid_argument: fs::write_bytes: expected a blob, got string",
    ],
    "list_end": ["a.txt", "b.bin", "d", "new.txt"],
}


def test_every_fs_call_from_a_script(peer: PeerContext) -> None:
    before = time.time()
    got = run(peer, TOUR, {"blob": b"\x00\xff\x01pb"})
    modified = got.pop("modified")
    assert isinstance(modified, int) and before - 5 <= modified <= time.time() + 5
    assert got == TOUR_EXPECTED


def test_same_script_same_results_on_both_backends(make_peer: MakePeer) -> None:
    results = {kind: run(make_peer(f"p-{kind}", kind), TOUR, {"blob": b"\x00\xff\x01pb"}) for kind in BACKENDS}
    for value in results.values():
        value.pop("modified")
    assert results["fs"] == results["sqlite"]


def test_files_persist_across_runs_and_programs(peer: PeerContext) -> None:
    run(peer, 'fs::mkdir("notes"); fs::write("notes/one.txt", "1")')
    assert run(peer, 'fs::append("notes/one.txt", "2"); fs::read("notes/one.txt")') == "12"
    assert run(peer, 'fs::list("notes")') == ["one.txt"]


def test_names_are_nfc_normalised_once(peer: PeerContext) -> None:
    # "e" + combining acute (NFD) and "é" (NFC) name the same file, listed in NFC.
    got = run(peer, 'fs::write("e\\u0301.txt", "nfd"); [fs::read("\\u00e9.txt"), fs::list(""), fs::exists("e\\u0301.txt")]')
    assert got == ["nfd", ["\u00e9.txt"], True]


def test_host_calls_from_functions_closures_and_callbacks(peer: PeerContext) -> None:
    source = r'''
fn save(name, text) { fs::write(name, text); fs::read(name).len() }
fn who() { caller.name + "->" + target.name }
let sizes = ["a", "bb", "ccc"].map(|t| save(t + ".txt", t));
let kept = fs::list("").filter(|n| fs::read(n).len() > 1);
let reader = |n| fs::read(n);
[sizes, kept, reader.call("ccc.txt"), who()]
'''
    assert run(peer, source) == [[1, 2, 3], ["bb.txt", "ccc.txt"], "ccc", "alice->alice"]


def test_caller_target_and_params(peer: PeerContext) -> None:
    did = peer.peer.did
    source = r'''
fn ids() { [caller.id, target.id, type_of(caller), caller.name] }
[caller, target, ids(), params.n + 1, params.xs, caller == target]
'''
    got = run(peer, source, {"n": 41, "xs": ["x", 2.5, None, True]})
    me = {"id": did, "name": "alice"}
    assert got == [me, me, [did, did, "map", "alice"], 42, ["x", 2.5, None, True], True]
    assert did.startswith("did:key:z6Mk")


def test_caller_can_differ_from_target(peer: PeerContext, contexts: Contexts) -> None:
    contexts.store.init("bob", "fs")
    bob = contexts.get("bob")
    got = peer.run(peer.compile("[caller.name, caller.id, target.name]", "who.rhai"), caller=bob.principal).value
    assert got == ["bob", bob.peer.did, "alice"]


# -- refusals are catchable runtime errors with clear messages ------------------------------

REFUSALS = [
    ('fs::read("../x")', "invalid_path: path escapes the peer root: ../x"),
    ('fs::write("../x", "y")', "invalid_path: path escapes the peer root: ../x"),
    ('fs::read("a/../../x")', "invalid_path: path escapes the peer root: a/../../x"),
    ('fs::list("..")', "invalid_path: path escapes the peer root: .."),
    ('fs::read("/etc/passwd")', "invalid_path: path escapes the peer root: /etc/passwd (absolute paths are not allowed)"),
    ('fs::exists("/")', "invalid_path: path escapes the peer root: / (absolute paths are not allowed)"),
    ('fs::read("a/../b")', "invalid_path: invalid path 'a/../b': '..' components are not allowed"),
    ('fs::read("./a")', "invalid_path: invalid path './a': '.' components are not allowed"),
    ('fs::read("a\\u0000b")', "invalid_path: invalid path 'a\\x00b': control character U+0000"),
    ('fs::write("x\\u0000", "y")', "invalid_path: invalid path 'x\\x00': control character U+0000"),
    ('fs::read("a\\nb")', "invalid_path: invalid path 'a\\nb': control character U+000A"),
    ('fs::read("a//b")', "invalid_path: invalid path 'a//b': empty component"),
    ('fs::mkdir("a/")', "invalid_path: invalid path 'a/': empty component"),
    ('fs::read(".peerbox-tmp-x")', "invalid_path: invalid path '.peerbox-tmp-x': names starting with '.peerbox-tmp-' are reserved"),
    ('fs::stat(params.long_name)', "invalid_path: invalid path '" + "n" * 120 + "…': a component is longer than 255 bytes"),
    ('fs::write(params.long_path, "x")', "invalid_path: invalid path '" + "a/" * 60 + "…': longer than 1024 bytes"),
    ('fs::read(42)', "invalid_argument: fs::read: expected a path (string), got int"),
]


@pytest.mark.parametrize(("call", "expected"), REFUSALS, ids=[c for c, _ in REFUSALS])
def test_refusals_are_catchable_with_clear_messages(peer: PeerContext, call: str, expected: str) -> None:
    source = f'let m = "no error"; try {{ {call}; }} catch (e) {{ m = e.kind + ": " + e.message; }} [m, fs::list("")]'
    params = {"long_name": "n" * 256, "long_path": "a/" * 600 + "b"}
    assert run(peer, source, params) == [expected, []]


def test_uncaught_refusal_is_a_script_error_with_a_line(peer: PeerContext) -> None:
    with pytest.raises(peerbox.ScriptError) as info:
        run(peer, 'let a = 1;\nfs::read("../x");\n')
    err = info.value
    assert (err.kind, err.message, err.file, err.line) == ("invalid_path", "path escapes the peer root: ../x", "job.rhai", 2)
    assert str(err) == "job.rhai:2: runtime error: path escapes the peer root: ../x"


def test_a_run_without_a_peer_has_no_storage() -> None:
    prog = peerbox.compile(
        'let k = ""; try { fs::write("a", "b"); } catch (e) { k = e.kind; } [k, fs::exists("a")]', "nopeer.rhai"
    )
    with pytest.raises(peerbox.ScriptError) as info:
        prog.run()
    assert info.value.kind == "no_storage"
    assert "no storage" in info.value.message and "--peer" in info.value.message
    prog2 = peerbox.compile('let k = ""; try { fs::list(""); } catch (e) { k = e.kind; } k', "nopeer2.rhai")
    assert prog2.run().value == "no_storage"


# -- quotas (set in peer.toml) ------------------------------------------------------------

QUOTA_SCRIPT = ATTEMPT + r'''
let before = [fs::list(""), fs::list("sub"), fs::read("keep.txt"), fs::read("sub/s"), fs::stat("fill.txt").size];
let errors = [
  attempt(|| fs::write("keep.txt", params.big)),
  attempt(|| fs::write("other.txt", params.big)),
  attempt(|| fs::append("keep.txt", params.tail)),
  attempt(|| fs::write_bytes("keep.txt", params.blob)),
  attempt(|| fs::write("other.txt", "o")),
  attempt(|| fs::mkdir("x/y/z")),
  attempt(|| fs::write("sub/s", params.hundred)),
];
let after = [fs::list(""), fs::list("sub"), fs::read("keep.txt"), fs::read("sub/s"), fs::stat("fill.txt").size];
[errors, before == after, after]
'''


def test_quota_exceeded_is_catchable_and_changes_nothing(make_peer: MakePeer, backend: str) -> None:
    ctx = make_peer("alice", backend, {"max_total_bytes": 150, "max_file_size": 100, "max_files": 4})
    # 4 entries (keep.txt, sub, sub/s, fill.txt) holding 4 + 1 + 99 = 104 bytes
    run(ctx, 'fs::write("keep.txt", "kept"); fs::mkdir("sub"); fs::write("sub/s", "s"); fs::write("fill.txt", params.f)',
        {"f": "F" * 99})
    params = {"big": "B" * 101, "tail": "T" * 97, "blob": b"b" * 101, "hundred": "H" * 100}
    errors, unchanged, after = run(ctx, QUOTA_SCRIPT, params)
    assert errors == [
        "quota_exceeded: writing 'keep.txt': 101 bytes is over the 100-byte limit on one file",
        "quota_exceeded: writing 'other.txt': 101 bytes is over the 100-byte limit on one file",
        "quota_exceeded: writing 'keep.txt': 101 bytes is over the 100-byte limit on one file",
        "quota_exceeded: writing 'keep.txt': 101 bytes is over the 100-byte limit on one file",
        "quota_exceeded: creating 'other.txt': the peer would have 5 files and directories, over its quota of 4",
        "quota_exceeded: creating 'x/y/z': the peer would have 7 files and directories, over its quota of 4",
        "quota_exceeded: writing 'sub/s': the peer's files would take 203 bytes, over its 150-byte quota",
    ]
    assert unchanged and after == [["fill.txt", "keep.txt", "sub"], ["s"], "kept", "s", 99]
    # nothing of a refused mkdir was created, and the next run sees the same
    assert run(ctx, '[fs::exists("x"), fs::exists("other.txt"), fs::read("keep.txt")]') == [False, False, "kept"]
    # freeing space makes the same write fit
    assert run(ctx, 'fs::delete("fill.txt"); fs::write("sub/s", params.h); fs::stat("sub/s").size', {"h": "H" * 100}) == 100


# -- the host-call budget (not catchable) ----------------------------------------------------

def test_host_call_budget_stops_a_loop(peer: PeerContext) -> None:
    err = run_limit(peer, 'let n = 0; loop { fs::exists("a"); n += 1; print(n); }', host_calls=100)
    assert err.limit == "hostcalls" and "100 host calls" in str(err)
    assert err.log[-1] == "100"


def test_host_call_budget_cannot_be_caught(peer: PeerContext) -> None:
    source = 'let n = 0; loop { try { fs::exists("a"); } catch (e) { print("caught " + e.kind); } n += 1; }'
    err = run_limit(peer, source, host_calls=100)
    assert err.limit == "hostcalls" and err.log == []
    # failing calls count too, and catching their refusals does not reset anything
    err = run_limit(peer, 'loop { try { fs::read("../x"); } catch (e) { } }', host_calls=50)
    assert err.limit == "hostcalls"


def test_bytes_read_budget(peer: PeerContext) -> None:
    run(peer, 'fs::write("k.txt", params.s)', {"s": "r" * 1000})
    source = 'let n = 0; loop { try { fs::read("k.txt"); } catch (e) { print("caught"); } n += 1; print(n); }'
    err = run_limit(peer, source, host_bytes_read=10_000)
    assert err.limit == "hostcalls" and "read more than 10000 bytes" in str(err)
    assert err.log[-1] == "10" and "caught" not in err.log


def test_bytes_written_budget_stops_before_writing(peer: PeerContext) -> None:
    source = 'let n = 0; loop { n += 1; try { fs::write("w.txt", params.s + n); } catch (e) { print("caught"); } print(n); }'
    err = run_limit(peer, source, {"s": "w" * 98}, host_bytes_written=1000)
    assert err.limit == "hostcalls" and "wrote more than 1000 bytes" in str(err)
    assert err.log[-1] == "10" and "caught" not in err.log
    assert run(peer, 'fs::read("w.txt")') == "w" * 98 + "10"  # the 11th write never happened


def test_context_is_usable_after_a_stopped_run(peer: PeerContext) -> None:
    run_limit(peer, 'loop { fs::write("x.txt", "1"); }', host_calls=10)
    run_limit(peer, 'fs::write("y.txt", "2"); loop { }', timeout=0.2)
    with pytest.raises(peerbox.ScriptError):
        run(peer, 'fs::write("z.txt", "3"); let a = 1 / 0;')
    assert run(peer, 'fs::list("")') == ["x.txt", "y.txt", "z.txt"]


# -- the log ------------------------------------------------------------------------------------

def test_print_and_debug_go_to_the_log(peer: PeerContext) -> None:
    source = 'fn note(x) { debug(x); } print("start"); fs::write("a", "1"); note(fs::list("")); print(caller.name); 7'
    res = run_result(peer, source)
    assert res.value == 7 and res.log == ["start", '["a"]', "alice"]


def test_huge_printing_loop_ends_with_a_truncated_log(peer: PeerContext) -> None:
    source = 'fs::write("a", "x"); for i in 0..params.n { print(params.line); debug(i); } fs::read("a")'
    res = run_result(peer, source, {"n": 300_000, "line": "L" * 100}, memory=64 << 20)
    assert res.value == "x"
    assert res.log[0] == "L" * 100 and res.log[1] == "0"
    assert res.log[-1] == "[log truncated]"
    assert sum(len(line) for line in res.log) < 100_000  # 30 MB printed, a bounded log kept


def test_log_is_kept_when_a_limit_stops_the_run(peer: PeerContext) -> None:
    err = run_limit(peer, 'print("before"); loop { fs::exists("a"); }', host_calls=3)
    assert err.log == ["before"]


# -- runs on threads ----------------------------------------------------------------------------

def _threads(targets: list[Callable[[], None]]) -> list[threading.Thread]:
    """Start one thread per target with a native stack large enough for wasm."""
    old = threading.stack_size()
    threading.stack_size(64 << 20)
    try:
        threads = [threading.Thread(target=t, daemon=True) for t in targets]
        for t in threads:
            t.start()
    finally:
        threading.stack_size(old)
    return threads


def _wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> float:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)
    return time.monotonic()


RUNAWAY = 'fs::write("started", "1"); loop { }'


@pytest.mark.slow
def test_two_peers_scripts_run_concurrently(make_peer: MakePeer) -> None:
    ctxs = [make_peer("alice", "fs"), make_peer("bob", "sqlite")]
    progs = [c.compile(RUNAWAY, "spin.rhai") for c in ctxs]
    ended: dict[int, float] = {}
    errors: dict[int, BaseException] = {}

    def spin(i: int) -> Callable[[], None]:
        def go() -> None:
            try:
                ctxs[i].run(progs[i], limits=peerbox.Limits(timeout=2.0))
            except BaseException as exc:
                errors[i] = exc
            ended[i] = time.monotonic()
        return go

    threads = _threads([spin(0), spin(1)])
    both = _wait_for(lambda: all(c.storage.exists("started") for c in ctxs) or len(ended) > 0)
    for t in threads:
        t.join(30)
    # both scripts were inside their loops at the same moment
    assert both < min(ended.values())
    assert all(isinstance(e, peerbox.LimitExceeded) and e.limit == "timeout" for e in errors.values())
    assert len(errors) == 2


@pytest.mark.slow
def test_runaway_in_one_context_does_not_delay_another(make_peer: MakePeer) -> None:
    bob, alice = make_peer("bob", "sqlite"), make_peer("alice", "fs")
    spin = bob.compile(RUNAWAY, "spin.rhai")
    short = alice.compile('fs::write("n" + params.i, "" + params.i); fs::read("n" + params.i).len() + fs::list("").len()', "short.rhai")
    box: dict[str, Any] = {}
    results: list[Any] = []
    times: list[float] = []

    def runaway() -> None:
        try:
            bob.run(spin, limits=peerbox.Limits(timeout=3.0))
        except BaseException as exc:
            box["error"] = exc

    def shorts() -> None:
        for i in range(30):
            t0 = time.monotonic()
            results.append(alice.run(short, {"i": i}).value)
            times.append(time.monotonic() - t0)

    (spinner,) = _threads([runaway])
    _wait_for(lambda: bob.storage.exists("started") or not spinner.is_alive())
    assert spinner.is_alive()
    (worker,) = _threads([shorts])
    worker.join(20)
    assert not worker.is_alive() and len(results) == 30
    assert spinner.is_alive(), "the 30 short runs should finish while the runaway still runs"
    assert results == [len(str(i)) + i + 1 for i in range(30)]
    spinner.join(20)
    err = box.get("error")
    assert isinstance(err, peerbox.LimitExceeded) and err.limit == "timeout"
    assert max(times) < 2.0  # loose: each short run took far less than the runaway's 3 s


def test_fresh_store_per_run(peer: PeerContext) -> None:
    prog = peer.compile(
        'let seen = fs::exists("mark"); fs::append("mark", "x"); let a = []; a.push(1); print("run"); [seen, a.len(), fs::read("mark")]',
        "fresh.rhai",
    )
    results = [peer.run(prog) for _ in range(3)]
    assert [r.value for r in results] == [[False, 1, "x"], [True, 1, "xx"], [True, 1, "xxx"]]
    assert all(r.log == ["run"] for r in results)


def test_budget_is_per_run(peer: PeerContext) -> None:
    prog = peer.compile('for i in 0..8 { fs::exists("a"); } 1', "budget.rhai")
    limits = peerbox.Limits(host_calls=10)
    assert [peer.run(prog, limits=limits).value for _ in range(5)] == [1] * 5


# -- big values through host calls -------------------------------------------------------------

def test_write_over_the_argument_cap_is_a_clean_refusal(peer: PeerContext) -> None:
    """A 32 MiB + 1 string is over the 16 MiB file quota: a catchable refusal like any other.

    (A regression test: the sandbox's 32 MiB cap on a host call's argument
    array once turned this into "host call arguments outside guest memory
    (a bug in peerbox)".)
    """
    source = 'let s = "x"; for i in 0..25 { s += s; } s += "y"; let k = ""; try { fs::write("huge", s); } catch (e) { k = e.kind + ": " + e.message; } [k, fs::list("")]'
    assert run(peer, source) == ["quota_exceeded: writing 'huge': 33554433 bytes is over the 16777216-byte limit on one file", []]


def test_write_just_over_the_file_quota_is_refused(peer: PeerContext) -> None:
    source = 'let s = "x"; for i in 0..24 { s += s; } s += "y"; let k = ""; try { fs::write("huge", s); } catch (e) { k = e.kind + ": " + e.message; } [k, fs::list("")]'
    assert run(peer, source) == ["quota_exceeded: writing 'huge': 16777217 bytes is over the 16777216-byte limit on one file", []]


def test_reading_more_than_guest_memory_is_a_memory_limit(peer: PeerContext) -> None:
    run(peer, 'fs::write("big", params.s)', {"s": "z" * (6 << 20)})
    err = run_limit(peer, 'let k = ""; try { k = fs::read("big").len(); } catch (e) { k = e.kind; } k', memory=4 << 20)
    assert err.limit == "memory"
    # a user-facing message, like the other limits' (it once carried wasmtime's raw backtrace)
    assert "backtrace" not in str(err) and "<wasm function" not in str(err), str(err)
    assert run(peer, 'fs::read("big").len()', memory=32 << 20) == 6 << 20


# -- which limit stopped a run that was making host calls ----------------------------------------

@pytest.mark.slow
def test_runaway_recursion_with_host_calls_is_the_stack_limit(peer: PeerContext) -> None:
    """(Found: when the stack runs out inside the host's call back into the guest to
    allocate the reply, the run is reported as the *memory* limit. Fuel and
    timeouts that run out at that moment are misreported the same way.)"""
    err = run_limit(peer, 'fn f(n) { fs::exists("a"); f(n + 1) } f(0)', host_calls=10**9)
    assert err.limit == "stack", str(err)


@pytest.mark.slow
def test_fuel_running_out_around_host_calls_is_the_fuel_limit(make_peer: MakePeer) -> None:
    """Whatever instruction the fuel runs out on, the limit reported is fuel.

    (Found: when the fuel runs out inside the reply allocation the host makes
    in the guest, the run is reported as *memory*; with this loop that is
    33 budgets in every ~1 300, e.g. 20 935-20 967.)
    """
    peer = make_peer("alice", "fs")
    run(peer, 'fs::write("a", "x")')
    prog = peer.compile('loop { fs::read("a"); }', "fuel.rhai")
    limits: dict[str, list[int]] = {}
    for fuel in range(10_000, 40_000, 11):
        try:
            peer.run(prog, limits=peerbox.Limits(fuel=fuel, host_calls=10**9))
        except peerbox.LimitExceeded as exc:
            limits.setdefault(exc.limit, []).append(fuel)
    assert set(limits) == {"fuel"}, {k: v[:5] for k, v in limits.items()}
