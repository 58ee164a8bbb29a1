"""No Sandbox option or run limit reaches a Rust panic or a crash (issue 12, finding 6).

wasmtime's C API turns an Engine configuration it refuses into a panic that
aborts the process (``--stack 4M`` did, exit 134), and guest code on a
native stack smaller than ``max_wasm_stack`` dies with SIGSEGV. Every
option is either honoured or refused with :class:`peerbox.UsageError`.
Candidates that could crash run in a subprocess, so a crash fails the test
instead of killing pytest.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import peerbox
from peerbox.run._sandbox import MAX_WASM_STACK, MIN_WASM_STACK

DEPTH = "fn f(n) { if n == 0 { 0 } else { 1 + f(n - 1) } } f(params.n)"


def _deepest(sandbox: peerbox.Sandbox) -> int:
    """The deepest recursion of ``f`` that fits, to within a factor of two."""
    prog = peerbox.compile(DEPTH, "depth.rhai", sandbox=sandbox)
    n = 1000
    while n < 10_000_000:
        try:
            prog.run({"n": n * 2})
        except peerbox.LimitExceeded as exc:
            assert exc.limit == "stack"
            return n
        n *= 2
    return n


def test_a_4_mib_stack_works_and_goes_deeper_than_1_mib(tmp_path: Path) -> None:
    with peerbox.Sandbox(cache_dir=tmp_path / "a") as small, peerbox.Sandbox(
        cache_dir=tmp_path / "b", max_wasm_stack=4 << 20
    ) as big:
        shallow, deep = _deepest(small), _deepest(big)
    assert deep >= 2 * shallow


def test_the_largest_stack_is_honoured(tmp_path: Path) -> None:
    with peerbox.Sandbox(cache_dir=tmp_path / "c", max_wasm_stack=MAX_WASM_STACK) as sb:
        prog = peerbox.compile("fn g(x) { g(x + 1) } g(0)", "runaway.rhai", sandbox=sb)
        with pytest.raises(peerbox.LimitExceeded) as info:
            prog.run()
        assert info.value.limit == "stack"


@pytest.mark.parametrize(
    "stack", [MIN_WASM_STACK - 1, MAX_WASM_STACK + 1, 0, -1, 1 << 40, 4.0e6, "4M", None, True]
)
def test_a_stack_out_of_range_is_refused_naming_the_maximum(stack: Any) -> None:
    with pytest.raises(peerbox.UsageError, match=str(MAX_WASM_STACK)):
        peerbox.Sandbox(disk_cache=False, max_wasm_stack=stack)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_concurrent_runs": 0},
        {"max_concurrent_runs": 1 << 20},
        {"max_concurrent_runs": 2.0},
        {"memory_cache_size": -1},
        {"memory_cache_size": "many"},
        {"disk_cache": "yes"},
        {"pooling": 1},
        {"metered": None},
        {"cache_dir": 42},
    ],
)
def test_other_sandbox_options_are_validated(kwargs: dict[str, Any]) -> None:
    with pytest.raises(peerbox.UsageError, match=next(iter(kwargs))):
        peerbox.Sandbox(**kwargs)


@pytest.mark.parametrize(
    "limits",
    [
        {"timeout": 0},
        {"timeout": -1.0},
        {"timeout": math.nan},
        {"timeout": math.inf},
        {"timeout": 1e300},
        {"memory": -1},
        {"memory": 1 << 64},
        {"fuel": -1},
        {"fuel": 1 << 64},
    ],
)
def test_sandbox_run_validates_limits_passed_directly(tmp_path: Path, limits: dict[str, Any]) -> None:
    # Sandbox.run is reachable without peerbox.Limits: a negative memory limit meant "none" to wasmtime
    with peerbox.Sandbox(cache_dir=tmp_path / "c") as sb:
        prog = peerbox.compile("1", "one.rhai", sandbox=sb)
        script = prog._script  # noqa: SLF001 - the sandbox-level entry point under test
        run = {"timeout": 1.0, "memory": 16 << 20, "fuel": None, **limits}
        target = sb.metered_twin() if run["fuel"] is not None else sb
        if target is not sb:
            script = target.prepare(target.compile_wat(prog.wat))
        with pytest.raises(peerbox.UsageError):
            target.run(script, b"\xa0", files=("one.rhai",), **run)


_CHILD = r"""
import json, sys, threading
import peerbox
out = []
for case in json.loads(sys.argv[1]):
    opts, lim, native = case["sandbox"], case["limits"], case["native_stack"]
    def attempt():
        try:
            with peerbox.Sandbox(disk_cache=False, **opts) as sb:
                prog = peerbox.compile(
                    "fn f(n) { if n == 0 { 0 } else { 1 + f(n - 1) } } f(params.n)", "x.rhai", sandbox=sb)
                try:
                    res = prog.run({"n": lim.pop("n")}, limits=peerbox.Limits(**lim))
                    out.append(["ok", res.value])
                except (peerbox.LimitExceeded, peerbox.ScriptError) as exc:
                    out.append(["stopped", type(exc).__name__])
        except peerbox.UsageError as exc:
            out.append(["usage", str(exc)])
    if native:
        threading.stack_size(native)
        t = threading.Thread(target=attempt)
        t.start()
        t.join()
    else:
        attempt()
print(json.dumps(out))
"""

_numbers = st.one_of(
    st.integers(min_value=-(1 << 70), max_value=1 << 70),
    st.sampled_from([0, 1, 64 << 10, (1 << 20) + 1, 2 << 20, (2 << 20) + 1, 3 << 20, 8 << 20, 64 << 20]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.booleans(),
)
_case = st.fixed_dictionaries(
    {
        "sandbox": st.fixed_dictionaries(
            {},
            optional={
                "max_wasm_stack": st.one_of(
                    st.integers(min_value=MIN_WASM_STACK, max_value=MAX_WASM_STACK), _numbers
                ),
                "max_concurrent_runs": st.one_of(st.integers(min_value=0, max_value=8), _numbers),
                "pooling": st.one_of(st.booleans(), st.none(), st.integers(0, 2)),
                "memory_cache_size": st.one_of(st.integers(-2, 4), _numbers),
            },
        ),
        "limits": st.fixed_dictionaries(
            {"n": st.sampled_from([10, 3000, 200_000])},
            optional={
                "timeout": st.one_of(st.floats(min_value=0.001, max_value=2.0), _numbers),
                "memory": st.one_of(st.integers(min_value=0, max_value=64 << 20), _numbers),
                "fuel": st.one_of(st.integers(min_value=0, max_value=10**9), _numbers),
            },
        ),
        # the thread running the guest: default, or one with a small native stack
        "native_stack": st.sampled_from([0, 0, 1 << 20]),
    }
)


def _json_safe(value: Any) -> bool:
    try:
        return bool(json.loads(json.dumps(value)) == value)
    except (TypeError, ValueError):
        return False


@pytest.mark.slow
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_case, min_size=1, max_size=6))
def test_any_option_values_give_a_sandbox_or_a_usage_error_never_a_crash(cases: list[dict[str, Any]]) -> None:
    # NaN and infinities do not survive JSON: send them as what the child would receive anyway
    cases = [c for c in cases if _json_safe(c)]
    if not cases:
        return
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(cases)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert "panicked" not in proc.stderr
    results = json.loads(proc.stdout)
    assert len(results) == len(cases)
    for case, (kind, detail) in zip(cases, results, strict=True):
        assert kind in ("ok", "stopped", "usage"), (case, kind, detail)


@pytest.mark.slow
def test_a_small_native_stack_thread_does_not_crash(tmp_path: Path) -> None:
    # guest code on a thread whose stack is smaller than the wasm stack limit used to die with SIGSEGV
    code = (
        "import threading, peerbox\n"
        "threading.stack_size(512 << 10)\n"
        "def go():\n"
        "    p = peerbox.compile('fn g(x) { g(x + 1) } g(0)', 'r.rhai')\n"
        "    try:\n"
        "        p.run()\n"
        "    except peerbox.LimitExceeded as exc:\n"
        "        print(exc.limit)\n"
        "t = threading.Thread(target=go); t.start(); t.join()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "stack"


@pytest.mark.slow
def test_cli_stack_4m_works_and_goes_deeper(
    cli_proc: Callable[..., subprocess.CompletedProcess[str]], script: Callable[[str, str], str]
) -> None:
    path = script("deep.rhai", DEPTH)
    n = 60_000  # too deep for the 1 MiB default, fine in 4 MiB
    default = cli_proc("run", path, "--param", f"n={n}")
    assert default.returncode == 5, default.stderr
    assert "stack" in default.stderr
    big = cli_proc("run", path, "--param", f"n={n}", "--stack", "4M")
    assert big.returncode == 0, big.stderr
    assert big.stdout.strip() == str(n)


@pytest.mark.slow
@pytest.mark.parametrize("stack", ["1G", "65M", "1K"])
def test_cli_stack_out_of_range_exits_2_naming_the_maximum(
    cli_proc: Callable[..., subprocess.CompletedProcess[str]], script: Callable[[str, str], str], stack: str
) -> None:
    proc = cli_proc("run", script("one.rhai", "1"), "--stack", stack)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert str(MAX_WASM_STACK) in proc.stderr
    assert "Traceback" not in proc.stderr and "panicked" not in proc.stderr
