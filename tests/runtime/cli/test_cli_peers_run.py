"""The command line with peers: ``peerbox init``, ``peerbox peers``, ``peerbox run FILE --peer NAME``.

Most commands run in-process through the ``cli`` fixture (``peerbox.cli._main.main``);
the ones where the real process matters (exit status, stderr without a
traceback, ``$PEERBOX_ROOT`` from the environment, the working directory)
run ``python -m peerbox`` in a subprocess.
"""

# ruff: noqa: E501  (scripts and expected messages read best on one line)

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import peerbox

Cli = Callable[..., Any]
Script = Callable[[str, str], str]

DID_PREFIX = "did:key:z6Mk"


def _proc(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``python -m peerbox ...`` in ``cwd`` (default tmp_path) with extra environment variables."""
    base = {k: v for k, v in os.environ.items() if k != "PEERBOX_ROOT"}
    base["PEERBOX_CACHE_DIR"] = str(tmp_path / "proc-cache")

    def run(*argv: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "peerbox", *argv], capture_output=True, text=True, timeout=60,
            cwd=cwd or tmp_path, env={**base, **env},
        )

    return run


@pytest.fixture
def proc(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    return _proc(tmp_path)


@pytest.fixture(autouse=True)
def _no_env_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PEERBOX_ROOT", raising=False)


def _did_from_init(out: str) -> str:
    line = next(line for line in out.splitlines() if "did:" in line)
    did = line.split()[-1]
    assert did.startswith(DID_PREFIX)
    return did


def test_init_peers_and_run_as_a_peer(cli: Cli, script: Script, tmp_path: Path) -> None:
    root = str(tmp_path / "root")
    res = cli("init", "alice", "--root", root)
    assert res.code == 0 and "created peer alice" in res.out
    alice_did = _did_from_init(res.out)
    res = cli("init", "bob", "--root", root, "--backend", "sqlite")
    assert res.code == 0
    bob_did = _did_from_init(res.out)

    res = cli("peers", "--root", root)
    rows = [line.split() for line in res.out.splitlines()]
    assert res.code == 0 and rows == [["NAME", "DID", "BACKEND"], ["alice", alice_did, "fs"], ["bob", bob_did, "sqlite"]]
    res = cli("peers", "--root", root, "--json")
    listed = json.loads(res.out)
    assert [(p["name"], p["did"], p["backend"]) for p in listed] == [("alice", alice_did, "fs"), ("bob", bob_did, "sqlite")]

    job = script("job.rhai", 'print("as " + caller.name);\nfs::write("hello.txt", "hi from " + target.name);\n[caller.id, fs::read("hello.txt"), fs::list("")]')
    res = cli("run", job, "--peer", "alice", "--root", root, "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["value"] == [alice_did, "hi from alice", ["hello.txt"]]
    assert res.err == "as alice\n"
    res = cli("run", job, "--peer", "bob", "--root", root)
    assert res.code == 0 and res.out == f'["{bob_did}", "hi from bob", ["hello.txt"]]\n'

    # each peer keeps its own files across runs of the command
    look = script("look.rhai", 'fs::read("hello.txt")')
    assert cli("run", look, "--peer", "alice", "--root", root).out == "hi from alice\n"
    assert cli("run", look, "--peer", "bob", "--root", root).out == "hi from bob\n"
    assert (tmp_path / "root" / "peers" / "alice" / "files" / "hello.txt").read_text() == "hi from alice"


def test_run_with_params_and_logic_modules(cli: Cli, script: Script, tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert cli("init", "alice", "--root", str(root)).code == 0
    (root / "peers" / "alice" / "logic" / "store.rhai").write_text('fn put(k, v) { fs::write(k, v); fs::read(k) }\n')
    job = script("job.rhai", 'import "store" as s;\ns::put(params.key, `${params.n + 1}`)')
    res = cli("run", job, "--peer", "alice", "--root", str(root), "--param", "key=k.txt", "--param", "n=41")
    assert res.code == 0 and res.out == "42\n", res.err


@pytest.mark.slow
def test_peerbox_root_env_and_root_flag(proc: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    r1, r2 = tmp_path / "r1", tmp_path / "r2"
    dids = {}
    for r in (r1, r2):
        res = proc("init", "alice", PEERBOX_ROOT=str(r))
        assert res.returncode == 0, res.stderr
        dids[r] = _did_from_init(res.stdout)
    assert dids[r1] != dids[r2]
    (tmp_path / "who.rhai").write_text('fs::write("seen", "1"); caller.id')
    res = proc("run", "who.rhai", "--peer", "alice", PEERBOX_ROOT=str(r1))
    assert (res.returncode, res.stdout) == (0, dids[r1] + "\n"), res.stderr
    res = proc("run", "who.rhai", "--peer", "alice", "--root", str(r2), PEERBOX_ROOT=str(r1))
    assert (res.returncode, res.stdout) == (0, dids[r2] + "\n"), res.stderr  # --root wins
    res = proc("peers", "--json", PEERBOX_ROOT=str(r2))
    assert [p["did"] for p in json.loads(res.stdout)] == [dids[r2]]
    assert (r1 / "peers/alice/files/seen").exists() and (r2 / "peers/alice/files/seen").exists()


def test_default_root_is_peerbox_data_in_the_cwd(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli("init", "alice").code == 0
    assert (tmp_path / "peerbox-data" / "peers" / "alice" / "peer.key").is_file()
    (tmp_path / "w.rhai").write_text('fs::write("x", "y"); fs::list("")')
    res = cli("run", "w.rhai", "--peer", "alice")
    assert res.code == 0 and res.out == '["x"]\n'
    assert (tmp_path / "peerbox-data" / "peers" / "alice" / "files" / "x").read_text() == "y"


@pytest.mark.slow
def test_runtime_refusal_exits_4_without_a_traceback(proc: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    assert proc("init", "alice", "--root", "root").returncode == 0
    (tmp_path / "esc.rhai").write_text('print("start");\nfs::read("../x");\n')
    res = proc("run", "esc.rhai", "--peer", "alice", "--root", "root")
    assert res.returncode == 4
    assert res.stderr == "start\nesc.rhai:2: runtime error: path escapes the peer root: ../x\n"
    assert res.stdout == "" and "Traceback" not in res.stderr


@pytest.mark.parametrize("backend", ["fs", "sqlite"])
def test_runtime_refusal_in_process_and_as_json(cli: Cli, script: Script, tmp_path: Path, backend: str) -> None:
    root = str(tmp_path / "root")
    assert cli("init", "alice", "--root", root, "--backend", backend).code == 0
    esc = script("esc.rhai", 'let a = 1;\nfs::write("/etc/x", "y")')
    res = cli("run", esc, "--peer", "alice", "--root", root)
    assert res.code == 4
    assert res.err == f"{esc}:2: runtime error: path escapes the peer root: /etc/x (absolute paths are not allowed)\n"
    res = cli("run", esc, "--peer", "alice", "--root", root, "--json")
    err = json.loads(res.out)["error"]
    assert res.code == 4 and (err["type"], err["kind"], err["line"], err["exit_code"]) == ("runtime", "invalid_path", 2, 4)
    # caught in the script, the same refusal is just a value
    caught = script("caught.rhai", 'let m = ""; try { fs::read("../x"); } catch (e) { m = e.kind + ": " + e.message; } m')
    res = cli("run", caught, "--peer", "alice", "--root", root)
    assert res.code == 0 and res.out == "invalid_path: path escapes the peer root: ../x\n"


def test_unknown_peer_and_root_exit_2(cli: Cli, script: Script, tmp_path: Path) -> None:
    root = str(tmp_path / "root")
    job = script("job.rhai", "1")
    assert cli("init", "alice", "--root", root).code == 0
    res = cli("run", job, "--peer", "carol", "--root", root)
    assert res.code == 2 and "no peer named 'carol'" in res.err and res.out == ""
    res = cli("run", job, "--peer", "alice", "--root", str(tmp_path / "missing"))
    assert res.code == 2 and "no peer root" in res.err
    res = cli("run", job, "--peer", "../alice", "--root", root)
    assert res.code == 2 and "invalid peer name" in res.err
    res = cli("run", job, "--peer", "carol", "--root", root, "--json")
    assert res.code == 2 and json.loads(res.out)["error"]["type"] == "usage"
    assert "Traceback" not in res.err


@pytest.mark.slow
def test_unknown_peer_exits_2_as_a_process(proc: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    (tmp_path / "job.rhai").write_text("1")
    assert proc("init", "alice", "--root", "root").returncode == 0
    res = proc("run", "job.rhai", "--peer", "carol", "--root", "root")
    assert res.returncode == 2 and res.stderr.startswith("error: no peer named 'carol'") and "Traceback" not in res.stderr


def test_host_call_budget_flag_exits_5(cli: Cli, script: Script, tmp_path: Path) -> None:
    root = str(tmp_path / "root")
    assert cli("init", "alice", "--root", root).code == 0
    loop = script("loop.rhai", 'loop { try { fs::exists("a"); } catch (e) { } }')
    res = cli("run", loop, "--peer", "alice", "--root", root, "--host-calls", "5")
    assert res.code == 5
    assert "hostcalls" in res.err and "more than 5 host calls" in res.err
    res = cli("run", loop, "--peer", "alice", "--root", root, "--host-calls", "5", "--json")
    err = json.loads(res.out)["error"]
    assert res.code == 5 and (err["type"], err["limit"]) == ("limit", "hostcalls")
    few = script("few.rhai", 'for i in 0..5 { fs::exists("a"); } "done"')
    assert cli("run", few, "--peer", "alice", "--root", root, "--host-calls", "5").out == "done\n"


def test_run_without_peer_has_no_storage(cli: Cli, script: Script) -> None:
    job = script("job.rhai", 'fs::write("a", "b")')
    res = cli("run", job)
    assert res.code == 4 and f"{job}:1: runtime error: " in res.err and "no storage" in res.err and "--peer" in res.err
    caught = script("caught.rhai", 'let k = ""; try { fs::list(""); } catch (e) { k = e.kind; } k')
    assert cli("run", caught).out == "no_storage\n"


def test_secret_key_is_never_printed(cli: Cli, script: Script, tmp_path: Path) -> None:
    root = str(tmp_path / "root")
    outputs = [cli("init", "alice", "--root", root), cli("init", "bob", "--root", root, "--json")]
    outputs += [cli("peers", "--root", root), cli("peers", "--root", root, "--json")]
    job = script("job.rhai", "print(caller); target")
    outputs.append(cli("run", job, "--peer", "alice", "--root", root, "--json"))
    store = peerbox.PeerStore(root)
    for name in ("alice", "bob"):
        secret = store.get(name).signing_key().secret_seed().hex()
        assert all(secret not in r.out and secret not in r.err for r in outputs)


def test_oversized_write_is_a_runtime_error_not_a_crash(cli: Cli, script: Script, tmp_path: Path) -> None:
    """An uncaught refusal of a 32 MiB write exits 4 like any other (it once exited 1, "a bug in peerbox")."""
    root = str(tmp_path / "root")
    assert cli("init", "alice", "--root", root).code == 0
    big = script("big.rhai", 'let s = "x";\nfor i in 0..25 { s += s; }\ns += "y";\nfs::write("huge", s);\n')
    res = cli("run", big, "--peer", "alice", "--root", root)
    assert (res.code, res.err) == (4, f"{big}:4: runtime error: writing 'huge': 33554433 bytes is over the 16777216-byte limit on one file\n")
