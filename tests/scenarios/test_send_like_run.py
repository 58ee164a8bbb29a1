"""``peerbox send`` (and ``call``) behave like ``peerbox run`` (issue 17, part 6), against a real worker.

bob is served by a real ``peerbox serve`` subprocess; alice sends from the same
root with the real CLI in subprocesses (so stdin, stderr bytes and exit codes
are what a shell sees). bob's policy lets alice ``exec`` with a fuel cap of
:data:`FUEL_CAP` and import bob's own ``greet`` module, and lets her ``call``
``greet::hello``; carol may ``exec`` with no cap of the policy's (the default
limits, or what she asks for).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from peerbox.peer import Directory, PeerStore

from .conftest import Serving

pytestmark = pytest.mark.slow

#: The most fuel bob's policy lets alice's runs have.
FUEL_CAP = 2_000_000

POLICY = f"""\
version = 2

[[rule]]
effect = "allow"
who = "owner"
actions = ["*"]

[[rule]]
effect = "allow"
who = "alice"
actions = ["exec"]
limits = {{ fuel = {FUEL_CAP} }}

[[rule]]
effect = "allow"
who = "carol"
actions = ["exec"]

[[rule]]
effect = "allow"
who = "alice"
actions = ["module.import"]
resources = ["greet"]

[[rule]]
effect = "allow"
who = "alice"
actions = ["call"]
resources = ["greet::*"]
"""

GREET = """\
fn greeting(name) { `hello ${name}` }
export fn hello(name) { print(`greeting ${name}`); greeting(name) }
"""

#: A loop that needs about 60 fuel units per turn (measured: ~30 M for 500k turns).
LOOP = "let n = 0; for i in 0..params.turns { n += i; } n"

BAD = "let x = 1;\nlet y = ;\nx\n"


@dataclass
class World:
    root: Path
    tmp: Path

    def cli(self, *argv: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        """``python -m peerbox ARGV --root ROOT`` with ``stdin``; stdout and stderr as bytes."""
        return subprocess.run([sys.executable, "-m", "peerbox", *argv, "--root", str(self.root)],
                              input=stdin if stdin is not None else b"", capture_output=True, timeout=120,
                              cwd=self.tmp)

    def send(self, *argv: str, stdin: bytes | None = None, sender: str = "alice"
             ) -> subprocess.CompletedProcess[bytes]:
        """``peerbox send --from SENDER --to bob ARGV``."""
        return self.cli("send", "--from", sender, "--to", "bob", *argv, stdin=stdin)

    def script(self, name: str, source: str) -> str:
        path = self.tmp / name
        path.write_text(source, encoding="utf-8")
        return str(path)


@pytest.fixture(params=["shared"])
def world(request: pytest.FixtureRequest, tmp_path: Path, serving: Serving,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """alice, carol and bob under one root, bob served by a real ``peerbox serve`` (in the mode the
    parameter names, shared unless a test asks for isolated) and in the directory."""
    monkeypatch.delenv("PEERBOX_ROOT", raising=False)
    monkeypatch.setenv("PEERBOX_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "root"
    store = PeerStore(root)
    store.init("alice")
    store.init("carol")
    bob = store.init("bob")
    bob.paths.policy.write_text(POLICY, encoding="utf-8")
    (bob.paths.logic / "greet.rhai").write_text(GREET, encoding="utf-8")
    with serving(root, "--peers", "bob", "--mode", request.param) as (port, _proc):
        Directory(root).add("bob", bob.did, f"http://127.0.0.1:{port}")
        yield World(root, tmp_path)


def ok(done: subprocess.CompletedProcess[bytes]) -> subprocess.CompletedProcess[bytes]:
    assert done.returncode == 0, done.stderr.decode()
    return done


# ------------------------------------------------------------------ compile errors


def test_a_compile_error_reads_the_same_from_send_as_from_run(world: World) -> None:
    bad = world.script("bad.rhai", BAD)
    ran, sent = world.cli("run", bad), world.send(bad)
    assert ran.returncode == sent.returncode == 3
    assert sent.stderr == ran.stderr
    assert ran.stderr.startswith(f"{bad}:2:9: error: ".encode()) and b"^" in ran.stderr
    assert sent.stdout == b""
    # from stdin, both call the script <stdin>
    ran, sent = world.cli("run", "-", stdin=BAD.encode()), world.send("-", stdin=BAD.encode())
    assert ran.returncode == sent.returncode == 3
    assert sent.stderr == ran.stderr and ran.stderr.startswith(b"<stdin>:2:9: error: ")
    # --json: the same error document
    ran, sent = world.cli("run", bad, "--json"), world.send(bad, "--json")
    assert json.loads(sent.stdout) == json.loads(ran.stdout)
    assert json.loads(sent.stdout)["error"]["diagnostics"][0]["line"] == 2


def test_imports_of_the_targets_modules_are_left_to_the_target(world: World) -> None:
    # greet is bob's module: it cannot be resolved here, so only the syntax is checked here
    uses = world.script("uses.rhai", 'import "greet" as g;\ng::greeting("alice")\n')
    assert world.cli("run", uses).returncode == 3                     # run cannot find it here
    assert ok(world.send(uses)).stdout == b"hello alice\n"            # bob can
    # a syntax error is still caught here, with the user's file named
    broken = world.script("broken.rhai", 'import "greet" as g;\nlet = g::greeting("x");\n')
    sent = world.send(broken)
    assert sent.returncode == 3 and sent.stderr.startswith(f"{broken}:2:5: error: ".encode())
    # what only bob can check comes back from bob, naming the user's file, still exit 3
    wrong = world.script("wrong.rhai", 'import "greet" as g;\ng::nothing()\n')
    sent = world.send(wrong)
    assert sent.returncode == 3, sent.stderr
    assert f"{wrong}:2:".encode() in sent.stderr and b"request.rhai" not in sent.stderr
    assert b"nothing" in sent.stderr


# ------------------------------------------------------------------ params from a file or stdin


@pytest.mark.parametrize("world", ["shared", "isolated"], indirect=True)
def test_a_3_mib_param_from_stdin_arrives_intact(world: World) -> None:
    text = "ab" * (3 << 19)                                            # 3 MiB
    job = world.script("len.rhai", "params.s.len()")
    done = ok(world.send(job, "--params-file", "-", stdin=json.dumps({"s": text}).encode(), sender="carol"))
    assert done.stdout == f"{3 << 20}\n".encode()


def test_a_5_mib_param_from_a_file_passes_send_and_run(world: World) -> None:
    params = world.tmp / "big.json"
    params.write_text(json.dumps({"s": "x" * (5 << 20)}), encoding="utf-8")
    job = world.script("len.rhai", "params.s.len()")
    assert ok(world.send(job, "--params-file", str(params), sender="carol")).stdout == f"{5 << 20}\n".encode()
    assert ok(world.cli("run", job, "--params-file", str(params))).stdout == f"{5 << 20}\n".encode()


def test_params_file_json_and_param_override_in_that_order(world: World) -> None:
    params = world.tmp / "p.json"
    params.write_text('{"a": "file", "b": "file", "c": "file"}', encoding="utf-8")
    job = world.script("abc.rhai", "[params.a, params.b, params.c]")
    argv = ("--params-file", str(params), "--params-json", '{"b": "json", "c": "json"}', "--param", "c=param")
    want = ["file", "json", "param"]
    assert json.loads(ok(world.send(job, *argv, "--json")).stdout)["value"] == want
    assert json.loads(ok(world.cli("run", job, *argv, "--json")).stdout)["value"] == want
    # a script from stdin may take its params from a file (and the other way round)
    assert json.loads(ok(world.send("-", *argv, "--json", stdin=b"[params.a, params.c]")).stdout)["value"] \
        == ["file", "param"]
    assert ok(world.cli("run", "-", *argv, stdin=b"params.c")).stdout == b"param\n"


@pytest.mark.parametrize("command", ["run", "send"])
def test_script_and_params_cannot_both_come_from_stdin(world: World, command: str) -> None:
    argv = ("run", "-") if command == "run" else ("send", "--from", "alice", "--to", "bob", "-")
    done = world.cli(*argv, "--params-file", "-", stdin=b"1")
    assert done.returncode == 2 and b"cannot both be read from stdin" in done.stderr
    assert b"Traceback" not in done.stderr


def test_a_params_file_that_is_not_an_object_is_a_usage_error(world: World) -> None:
    job = world.script("one.rhai", "1")
    for text, message in (("[1, 2]", b"must hold one JSON object"), ("{", b"is not valid JSON")):
        done = world.send(job, "--params-file", "-", stdin=text.encode())
        assert done.returncode == 2 and message in done.stderr, done.stderr


# ------------------------------------------------------------------ limits asked of the target


def test_asking_for_more_fuel_than_the_policy_allows_gets_the_policys_cap(world: World) -> None:
    loop = world.script("loop.rhai", LOOP)
    # ~6 M fuel needed, 2 M allowed: asking for 100 M does not lift the cap
    done = world.send(loop, "--param", "turns=100000", "--fuel", "100000000", "--json")
    assert done.returncode == 5, done.stderr
    error = json.loads(done.stdout)["error"]
    assert error["kind"] == "limit_fuel" and error["type"] == "limit"
    # under the cap the same loop runs, metered (the policy's cap applies, so fuel is counted)
    done = ok(world.send(loop, "--param", "turns=1000", "--fuel", "100000000", "--json"))
    doc = json.loads(done.stdout)
    assert doc["value"] == 499500 and 0 < doc["usage"]["fuel"] <= FUEL_CAP


def test_asking_for_less_fuel_than_the_policy_allows_gets_the_lower_limit(world: World) -> None:
    loop = world.script("loop.rhai", LOOP)
    needed = json.loads(ok(world.send(loop, "--param", "turns=10000", "--json")).stdout)["usage"]["fuel"]
    assert 0 < needed < FUEL_CAP
    done = world.send(loop, "--param", "turns=10000", "--fuel", str(needed // 2))
    assert done.returncode == 5 and b"fuel" in done.stderr, done.stderr
    assert ok(world.send(loop, "--param", "turns=10000", "--fuel", str(needed * 2))).stdout == b"49995000\n"


def test_a_run_timeout_and_memory_can_be_asked_for(world: World) -> None:
    spin = world.script("spin.rhai", "loop { }")
    done = world.send(spin, "--timeout", "0.3", "--json", sender="carol")
    assert done.returncode == 5 and json.loads(done.stdout)["error"]["kind"] == "limit_timeout"
    hog = world.script("hog.rhai", 'let s = "x"; for i in 0..40 { s += s; } s.len()')
    done = world.send(hog, "--memory", "4M", "--json", sender="carol")
    assert done.returncode == 5 and json.loads(done.stdout)["error"]["kind"] == "limit_memory"
    for bad in (("--timeout", "0"), ("--fuel", "0"), ("--wait", "-1")):
        assert world.send(spin, *bad).returncode == 2


# ------------------------------------------------------------------ one JSON shape


def test_run_send_and_call_print_the_same_json_shape(world: World) -> None:
    job = world.script("job.rhai", 'print("working"); params.n * 2')
    ran = json.loads(ok(world.cli("run", job, "--param", "n=21", "--json")).stdout)
    sent = json.loads(ok(world.send(job, "--param", "n=21", "--json")).stdout)
    called = json.loads(ok(world.cli("call", "--from", "alice", "--to", "bob", "greet::hello",
                                     "--arg", "name=alice", "--json")).stdout)
    for doc in (ran, sent, called):
        assert set(doc) == {"value", "log", "usage"}
        assert set(doc["usage"]) == {"fuel", "wall_ms", "peak_memory"}
        assert doc["usage"]["peak_memory"] > 0 and doc["usage"]["wall_ms"] >= 0
    assert (ran["value"], ran["log"]) == (sent["value"], sent["log"]) == (42, ["working"])
    assert (called["value"], called["log"]) == ("hello alice", ["greeting alice"])
    assert ran["usage"]["fuel"] is None                                   # run: not metered
    assert sent["usage"]["fuel"] is not None and sent["usage"]["fuel"] > 0  # bob's cap meters alice's runs
    # a failure carries the log too, in both
    fails = world.script("fails.rhai", 'print("before"); throw "boom"')
    ran = json.loads(world.cli("run", fails, "--json").stdout)["error"]
    sent = json.loads(world.send(fails, "--json").stdout)["error"]
    assert ran["log"] == sent["log"] == ["before"] and ran["exit_code"] == sent["exit_code"] == 4


def test_call_takes_params_from_a_file_and_asks_for_limits(world: World) -> None:
    done = ok(world.cli("call", "--from", "alice", "--to", "bob", "greet::hello", "--params-file", "-",
                        "--fuel", "1000000", stdin=b'{"name": "file"}'))
    assert done.stdout == b"hello file\n"
    done = world.cli("call", "--from", "alice", "--to", "bob", "greet::hello", "--params-file", "-",
                     "--args-json", '{"name": "x"}', stdin=b"{}")
    assert done.returncode == 2 and b"not both" in done.stderr
