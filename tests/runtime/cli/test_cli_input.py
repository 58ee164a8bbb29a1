"""Bounded CLI input: scripts, params, envelopes and sources are read and parsed within limits."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from peerbox.cli._input import MAX_PARAMS_BYTES, MAX_JSON_DEPTH, MAX_SCRIPT_BYTES, bound_message, json_depth_ok
from peerbox.peer._context import Contexts

Cli = Callable[..., Any]
Script = Callable[[str, str], str]


def test_run_reads_at_most_the_limit_from_dev_zero(cli: Cli) -> None:
    r = cli("run", "/dev/zero")
    assert r.code == 2
    assert f"/dev/zero is larger than {MAX_SCRIPT_BYTES} bytes, the limit on a script" in r.err
    assert "Traceback" not in r.err


def test_run_stops_reading_a_fifo_that_never_ends(cli: Cli, tmp_path: Path) -> None:
    fifo = tmp_path / "script.fifo"
    os.mkfifo(fifo)
    written = [0]

    def writer() -> None:
        chunk = b"1;\n" * 20_000
        try:
            with open(fifo, "wb") as f:
                while written[0] < 64 * MAX_SCRIPT_BYTES:  # far more than the limit, unless stopped
                    f.write(chunk)
                    written[0] += len(chunk)
        except BrokenPipeError:
            pass  # the reader stopped at the limit and closed its end

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    r = cli("run", str(fifo))
    t.join(60)
    assert r.code == 2
    assert "larger than" in r.err and "the limit on a script" in r.err
    assert not t.is_alive()
    assert written[0] < 8 * MAX_SCRIPT_BYTES  # the writer was cut off, not drained


def test_a_script_at_the_limit_runs_and_one_byte_more_is_refused(cli: Cli, tmp_path: Path) -> None:
    body = "1\n"
    ok = tmp_path / "ok.rhai"
    ok.write_text("//" + "x" * (MAX_SCRIPT_BYTES - len(body) - 3) + "\n" + body)
    assert ok.stat().st_size == MAX_SCRIPT_BYTES
    assert cli("run", str(ok)).code == 0
    big = tmp_path / "big.rhai"
    big.write_bytes(ok.read_bytes() + b" ")
    r = cli("run", str(big))
    assert r.code == 2 and str(big) in r.err and str(MAX_SCRIPT_BYTES) in r.err


def test_a_huge_undefined_name_is_not_echoed_whole(cli: Cli, script: Script) -> None:
    name = "a" * 500_000
    r = cli("run", script("u.rhai", f"{name} + 1\n"))
    assert r.code == 3
    assert len(r.err) < 20_000
    assert "more characters" in r.err
    r = cli("run", script("u.rhai", f"{name} + 1\n"), "--json")
    assert r.code == 3 and len(r.out) < 40_000
    assert json.loads(r.out)["error"]["type"] == "compile"


@pytest.mark.parametrize("flag", ["--params-json", "--param"])
def test_deeply_nested_json_params_are_a_usage_error(cli: Cli, script: Script, flag: str) -> None:
    path = script("p.rhai", "params")
    deep = "[" * 200_000 + "]" * 200_000
    arg = '{"a": ' + deep + "}" if flag == "--params-json" else "a=" + deep
    r = cli("run", path, flag, arg)
    assert r.code == 2, r.err
    assert f"deeper than {MAX_JSON_DEPTH} levels" in r.err
    assert "Traceback" not in r.err and len(r.err) < 2_000


def test_json_params_at_the_depth_limit_still_parse(cli: Cli, script: Script) -> None:
    path = script("p.rhai", "type_of(params.a)")
    nested = "[" * 100 + "]" * 100
    r = cli("run", path, "--param", f"a={nested}")
    assert (r.code, r.out) == (0, "array\n")
    # brackets inside strings do not count
    r = cli("run", path, "--params-json", json.dumps({"a": "[" * 10_000}))
    assert (r.code, r.out) == (0, "string\n")


def test_huge_params_are_refused(cli: Cli, script: Script) -> None:
    path = script("p.rhai", "params")
    big = json.dumps({"a": "x" * (MAX_PARAMS_BYTES + 1)})
    r = cli("run", path, "--params-json", big)
    assert r.code == 2 and "limit on params" in r.err and len(r.err) < 2_000
    part = "y" * (MAX_PARAMS_BYTES // 3 + 1)
    r = cli("run", path, *[a for i in range(3) for a in ("--param", f"k{i}={part}")])
    assert r.code == 2 and "limit on params" in r.err


def test_depth_scan() -> None:
    assert json_depth_ok("[[]]", 2) and not json_depth_ok("[[[]]]", 2)
    assert json_depth_ok('["[[[[", "\\"[[["]', 1)
    assert json_depth_ok('{"a": {"b": 1}, "c": [1]}', 2) and not json_depth_ok('{"a": {"b": [1]}}', 2)
    text = bound_message("x" * 10_000 + "\nshort")
    assert text.endswith("\nshort") and "9600 more characters" in text


@pytest.fixture
def root(cli: Cli, tmp_path: Path) -> str:
    r = str(tmp_path / "root")
    assert cli("init", "bob", "--root", r).code == 0
    return r


def test_other_commands_read_bounded_input(cli: Cli, root: str, tmp_path: Path) -> None:
    out = str(tmp_path / "o.cose")
    cases = [
        ("envelope", "make", "--from", "bob", "--to", "bob", "/dev/zero", "-o", out, "--root", root),
        ("envelope", "inspect", "/dev/zero"),
        ("handle", "/dev/zero", "--as", "bob", "-o", out, "--root", root),
        ("logic", "set", "bob", "m", "/dev/zero", "--root", root),
        ("send", "--from", "bob", "--to", "bob", "/dev/zero", "--root", root),
    ]
    for argv in cases:
        r = cli(*argv)
        assert r.code == 2, (argv, r.err)
        assert "larger than" in r.err, (argv, r.err)
    r = cli("envelope", "make", "--from", "bob", "--to", "bob", "/dev/null", "--param", "a=" + "[" * 1000,
            "-o", out, "--root", root)
    assert r.code == 2 and "deeper than" in r.err


def test_handle_while_another_process_holds_the_storage(cli: Cli, root: str, tmp_path: Path) -> None:
    """Storage is shared between processes: ``handle`` runs while another owner has bob's storage
    open, and the request is delivered once, and only once."""
    src = tmp_path / "w.rhai"
    src.write_text('fs::write("a.txt", "hi"); fs::read("a.txt")\n')
    req, out = str(tmp_path / "req.cose"), str(tmp_path / "reply.cose")
    made = cli("envelope", "make", "--from", "bob", "--to", "bob", str(src), "-o", req, "--root", root)
    assert made.code == 0
    with Contexts(root) as held:
        held.get("bob").storage  # noqa: B018 - another owner holds bob's storage
        r = cli("handle", req, "--as", "bob", "-o", out, "--root", root)
        assert r.code == 0, r.err
    assert cli("envelope", "inspect", out, "--json", "--root", root).out.count('"hi"') == 1
    r = cli("handle", req, "--as", "bob", "-o", out, "--root", root)
    assert r.code == 2 and "already used" in r.err  # delivered once, and only once
