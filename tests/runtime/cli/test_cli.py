"""The peerbox command: exit codes, output formats, params, compile, process behaviour."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from peerbox.cli._args import parse_param, parse_size

Script = Callable[[str, str], str]
Cli = Callable[..., Any]


def test_run_ok_prints_value_and_log(cli: Cli, script: Script) -> None:
    path = script("ok.rhai", 'print("hello");\ndebug("dbg");\n40 + 2\n')
    r = cli("run", path)
    assert r.code == 0
    assert r.out == "42\n"
    assert r.err == 'hello\n"dbg"\n'


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        ('"text"', "text"),
        ("()", "()"),
        ('[1, "a", 2.5]', '[1, "a", 2.5]'),
        ("#{b: 1, a: true}", '#{"a": true, "b": 1}'),
    ],
)
def test_display_forms(cli: Cli, script: Script, source: str, shown: str) -> None:
    r = cli("run", script("d.rhai", source))
    assert (r.code, r.out) == (0, shown + "\n")


def test_json_output(cli: Cli, script: Script) -> None:
    path = script("j.rhai", 'print("log line"); #{a: [1, 2.5, "x", ()], b: true}')
    r = cli("run", path, "--json")
    assert r.code == 0
    doc = json.loads(r.out)
    assert doc["value"] == {"a": [1, 2.5, "x", None], "b": True}
    assert doc["log"] == ["log line"]                      # the log is in the document, and on stderr
    assert set(doc["usage"]) == {"fuel", "wall_ms", "peak_memory"} and doc["usage"]["fuel"] is None
    assert doc["usage"]["peak_memory"] > 0
    assert r.out.count("\n") == 1
    assert r.err == "log line\n"
    assert json.loads(cli("run", script("u.rhai", "()"), "--json").out)["value"] is None
    metered = json.loads(cli("run", script("f.rhai", "let s = 0; for i in 0..100 { s += i } s"), "--json",
                             "--fuel", "1000000").out)
    assert metered["value"] == 4950 and metered["usage"]["fuel"] > 0


def test_json_nan_and_blob(cli: Cli, script: Script) -> None:
    r = cli("run", script("n.rhai", "params.f"), "--json", "--params-json", '{"f": [1e999, 0.5]}')
    assert r.code == 0
    assert json.loads(r.out)["value"] == [None, 0.5]


def test_params(cli: Cli, script: Script) -> None:
    path = script("p.rhai", "params")
    r = cli(
        "run",
        path,
        "--json",
        "--param",
        "a=1",
        "--param",
        "b=hello",
        "--param",
        'c=[1, "x"]',
        "--param",
        "d=true",
        "--param",
        'e="quoted"',
        "--param",
        "f=1.5",
        "--param",
        "g=",
        "--param",
        "h=a=b",
    )
    assert r.code == 0, r.err
    assert json.loads(r.out)["value"] == {
        "a": 1,
        "b": "hello",
        "c": [1, "x"],
        "d": True,
        "e": "quoted",
        "f": 1.5,
        "g": "",
        "h": "a=b",
    }
    r = cli("run", path, "--json", "--params-json", '{"a": 1, "b": 2}', "--param", "b=3")
    assert json.loads(r.out)["value"] == {"a": 1, "b": 3}


def test_parse_param_and_size() -> None:
    assert parse_param("k=v") == ("k", "v")
    assert parse_param("k=null") == ("k", None)
    assert parse_param('k={"x": 1}') == ("k", {"x": 1})
    assert parse_size("65536") == 65536
    assert parse_size("64K") == 64 << 10
    assert parse_size("256M") == 256 << 20
    assert parse_size("1g") == 1 << 30


# -- exit codes -----------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "{missing}"],
        ["run", "{dir}"],
        ["run", "{ok}", "--bogus"],
        ["run", "{ok}", "--param", "novalue"],
        ["run", "{ok}", "--param", "=1"],
        ["run", "{ok}", "--params-json", "[1]"],
        ["run", "{ok}", "--params-json", "{bad"],
        ["run", "{ok}", "--memory", "lots"],
        ["run", "{ok}", "--memory", "0"],
        ["run", "{ok}", "--timeout", "-1"],
        ["run", "{ok}", "--timeout", "soon"],
        ["run", "{ok}", "--fuel", "0"],
        ["run", "{ok}", "--stack", "1"],
        ["run", "{ok}", "--param", "big=99999999999999999999"],
        ["compile", "{ok}", "--emit", "elf"],
        ["frobnicate"],
        [],
    ],
)
def test_usage_errors_exit_2(cli: Cli, script: Script, tmp_path: Path, argv: list[str]) -> None:
    ok = script("ok.rhai", "1")
    subst = {"{missing}": str(tmp_path / "nope.rhai"), "{dir}": str(tmp_path), "{ok}": ok}
    r = cli(*[subst.get(a, a) for a in argv])
    assert r.code == 2, r.err
    assert r.out == ""
    assert "Traceback" not in r.err
    assert "error" in r.err


def test_missing_file_message(cli: Cli, tmp_path: Path) -> None:
    r = cli("run", str(tmp_path / "nope.rhai"))
    assert r.err == f"error: cannot read {tmp_path / 'nope.rhai'}: no such file\n"


def test_compile_error_exit_3(cli: Cli, script: Script) -> None:
    path = script("bad.rhai", "let x = 1;\nlet y = x +;\nfoo(1)\n")
    r = cli("run", path)
    assert r.code == 3
    assert r.out == ""
    lines = r.err.splitlines()
    assert lines[0].startswith(f"{path}:2:")
    assert ": error: " in lines[0]
    assert lines[1] == "    let y = x +;"
    assert lines[2].strip().startswith("^")
    assert "Traceback" not in r.err


def test_runtime_error_exit_4(cli: Cli, script: Script) -> None:
    path = script("rt.rhai", 'print("before");\nlet a = [1];\nlet s = "x";\ns - a\n')
    r = cli("run", path)
    assert r.code == 4
    assert r.err.splitlines() == ["before", f"{path}:4: runtime error: cannot subtract array from string"]


@pytest.mark.parametrize(
    ("source", "flags", "limit"),
    [
        ("loop {}", ["--timeout", "0.3"], "timeout"),
        ('let s = "x"; loop { s += s; }', ["--memory", "16M"], "memory"),
        ("fn f(x) { f(x + 1) } f(0)", [], "stack"),
        ("let i = 0; loop { i += 1; }", ["--fuel", "100000"], "fuel"),
    ],
)
def test_limits_exit_5(cli: Cli, script: Script, source: str, flags: list[str], limit: str) -> None:
    r = cli("run", script("lim.rhai", source), *flags)
    assert r.code == 5
    assert r.err.startswith(f"error: resource limit: {limit}: ")


def test_json_errors_keep_stdout_one_document(cli: Cli, script: Script, tmp_path: Path) -> None:
    cases = [
        (script("c.rhai", "let = ;"), [], 3, "compile"),
        (script("r.rhai", "throw 5"), [], 4, "runtime"),
        (script("l.rhai", "loop {}"), ["--timeout", "0.2"], 5, "limit"),
        (str(tmp_path / "missing.rhai"), [], 2, "usage"),
        (script("u.rhai", "1"), ["--nope"], 2, "usage"),
    ]
    for path, flags, code, kind in cases:
        r = cli("run", path, "--json", *flags)
        assert r.code == code, (path, r.err)
        doc = json.loads(r.out)
        assert doc["error"]["type"] == kind
        assert doc["error"]["exit_code"] == code
    doc = json.loads(cli("run", script("r.rhai", "throw #{a: 1}"), "--json").out)
    assert doc["error"]["kind"] == "throw"
    assert doc["error"]["value"] == {"a": 1}
    assert doc["error"]["line"] == 1


def test_imports_from_script_dir_and_include(cli: Cli, script: Script, tmp_path: Path) -> None:
    script("lib/extra.rhai", "fn g() { 10 }")
    script("app/util.rhai", "fn f() { 1 }")
    main = script("app/main.rhai", 'import "util" as u;\nimport "extra" as e;\nu::f() + e::g()\n')
    assert cli("run", main).code == 3  # extra is not found without -I
    r = cli("run", main, "-I", str(tmp_path / "lib"))
    assert (r.code, r.out) == (0, "11\n")


# -- compile --------------------------------------------------------------------


def test_compile_emit_wat(cli: Cli, script: Script) -> None:
    r = cli("compile", script("w.rhai", "1 + 2"))
    assert r.code == 0
    assert r.out.startswith("(module")


@pytest.mark.slow
def test_compile_emit_wasm(cli: Cli, script: Script, tmp_path: Path) -> None:
    out = tmp_path / "out.wasm"
    r = cli("compile", script("w.rhai", "let a = [1, 2]; a.map(|x| x * 2)"), "--emit", "wasm", "-o", str(out))
    assert r.code == 0, r.err
    data = out.read_bytes()
    assert data[:4] == b"\0asm"
    validator = shutil.which("wasm-validate")
    if validator is not None:
        proc = subprocess.run([validator, str(out)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def test_compile_error_from_compile_command(cli: Cli, script: Script) -> None:
    assert cli("compile", script("b.rhai", "let ;")).code == 3


# -- real processes -------------------------------------------------------------


@pytest.mark.slow
def test_version_and_module_entry(cli_proc: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    import peerbox

    proc = cli_proc("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"peerbox {peerbox.__version__}"


@pytest.mark.slow
def test_infinite_loop_ends_with_exit_5(
    cli_proc: Callable[..., subprocess.CompletedProcess[str]], script: Script
) -> None:
    start = time.monotonic()
    proc = cli_proc("run", script("spin.rhai", "loop {}"), "--timeout", "0.5")
    assert proc.returncode == 5
    assert "timeout" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - start < 30  # it ends; no tight timing here


@pytest.mark.slow
def test_ctrl_c_interrupts_a_long_run(script: Script, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "peerbox", "run", script("spin.rhai", "loop {}"), "--timeout", "none"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a CI runner may start us with SIGINT ignored, which Python would then respect
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(3.0)  # well past start-up (imports), into the endless run
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_broken_pipe_is_quiet(script: Script) -> None:
    path = script("big.rhai", 'let s = "x"; for i in range(0, 22) { s += s; } s')
    proc = subprocess.Popen(
        [sys.executable, "-m", "peerbox", "run", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(10)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=20)
    assert "Traceback" not in err
    assert proc.returncode in (0, 141)
