"""The sandbox: fresh state per run, limits, trap translation, host functions, threads."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time

import pytest

import peerbox
from peerbox.run._sandbox import pow_f64


def test_result_fields(sandbox: peerbox.Sandbox) -> None:
    prog = peerbox.compile('print("hi"); debug("x"); 40 + 2', "r.rhai", sandbox=sandbox)
    res = prog.run()
    assert res.value == 42
    assert res.log == ["hi", '"x"']
    assert res.fuel_used is None  # not metered unless the run has a fuel limit
    assert res.wall_time > 0
    metered = prog.run(limits=peerbox.Limits(fuel=10**9))
    assert metered.value == 42 and metered.fuel_used is not None and metered.fuel_used > 0
    # fuel is deterministic
    assert prog.run(limits=peerbox.Limits(fuel=10**9)).fuel_used == metered.fuel_used


def test_unmetered_sandbox_refuses_a_fuel_budget_directly(sandbox: peerbox.Sandbox) -> None:
    assert not sandbox.metered
    twin = sandbox.metered_twin()
    assert twin.metered and twin.metered_twin() is twin and sandbox.metered_twin() is twin


def test_fresh_store_per_run(sandbox: peerbox.Sandbox) -> None:
    prog = peerbox.compile(
        "let acc = []; for i in range(0, 3) { acc.push(i); } print(acc.len()); acc", "f.rhai", sandbox=sandbox
    )
    first = prog.run()
    for _ in range(3):
        again = prog.run()
        assert again.value == first.value == [0, 1, 2]
        assert again.log == ["3"]
        assert again.fuel_used == first.fuel_used


def test_memory_does_not_accumulate_across_runs(sandbox: peerbox.Sandbox) -> None:
    # each run builds ~8 MiB; 20 runs in a 32 MiB limit only work if nothing survives a run
    prog = peerbox.compile(
        'let s = "x"; for i in range(0, 23) { s += s; } s.len()', "m.rhai", sandbox=sandbox
    )
    limits = peerbox.Limits(memory=32 << 20)
    for _ in range(20):
        assert prog.run(limits=limits).value == 1 << 23


def test_script_error_fields(sandbox: peerbox.Sandbox) -> None:
    prog = peerbox.compile('print("before");\nlet a = [1];\na[5]', "e.rhai", sandbox=sandbox)
    with pytest.raises(peerbox.ScriptError) as info:
        prog.run()
    err = info.value
    assert err.kind == "index_out_of_range"
    assert (err.file, err.line) == ("e.rhai", 3)
    assert err.log == ["before"]
    assert str(err).startswith("e.rhai:3: runtime error: ")
    assert err.exit_code == 4


def test_uncaught_throw_carries_the_value(sandbox: peerbox.Sandbox) -> None:
    prog = peerbox.compile('throw #{code: 7, why: "no"}', "t.rhai", sandbox=sandbox)
    with pytest.raises(peerbox.ScriptError) as info:
        prog.run()
    assert info.value.kind == "throw"
    assert info.value.value == {"code": 7, "why": "no"}


# -- limits -------------------------------------------------------------------


def test_timeout(sandbox: peerbox.Sandbox) -> None:
    prog = peerbox.compile('print("spinning"); loop {}', "spin.rhai", sandbox=sandbox)
    start = time.monotonic()
    with pytest.raises(peerbox.LimitExceeded) as info:
        prog.run(limits=peerbox.Limits(timeout=0.3))
    elapsed = time.monotonic() - start
    assert info.value.limit == "timeout"
    assert "0.3 s timeout" in str(info.value)
    assert info.value.log == ["spinning"]
    assert info.value.exit_code == 5
    assert 0.25 <= elapsed < 3.0  # ends about when due; generous for a loaded machine


def test_memory_bomb(sandbox: peerbox.Sandbox) -> None:
    prog = peerbox.compile('let s = "x"; loop { s += s; }', "bomb.rhai", sandbox=sandbox)
    with pytest.raises(peerbox.LimitExceeded) as info:
        prog.run(limits=peerbox.Limits(memory=16 << 20))
    assert info.value.limit == "memory"


def test_memory_limit_below_the_runtime_footprint(sandbox: peerbox.Sandbox) -> None:
    prog = peerbox.compile("1", "tiny.rhai", sandbox=sandbox)
    with pytest.raises(peerbox.LimitExceeded) as info:
        prog.run(limits=peerbox.Limits(memory=64 << 10))
    assert info.value.limit == "memory"


def test_runaway_recursion(sandbox: peerbox.Sandbox) -> None:
    prog = peerbox.compile("fn f(x) { f(x + 1) } f(0)", "rec.rhai", sandbox=sandbox)
    with pytest.raises(peerbox.LimitExceeded) as info:
        prog.run()
    assert info.value.limit == "stack"


def test_deep_but_bounded_recursion_fits_the_default_stack(sandbox: peerbox.Sandbox) -> None:
    prog = peerbox.compile(
        "fn f(n) { if n == 0 { 0 } else { 1 + f(n - 1) } } f(1000)", "d.rhai", sandbox=sandbox
    )
    assert prog.run().value == 1000


def test_stack_limit_is_a_sandbox_setting(tmp_path: object) -> None:
    src = "fn f(n) { if n == 0 { 0 } else { 1 + f(n - 1) } } f(params.n)"
    with peerbox.Sandbox(max_wasm_stack=64 << 10, disk_cache=False) as small:
        with pytest.raises(peerbox.LimitExceeded) as info:
            peerbox.compile(src, "s.rhai", sandbox=small).run({"n": 20000})
        assert info.value.limit == "stack"
        assert str(64 << 10) in str(info.value)


def test_fuel(sandbox: peerbox.Sandbox) -> None:
    prog = peerbox.compile("let i = 0; loop { i += 1; }", "fuel.rhai", sandbox=sandbox)
    with pytest.raises(peerbox.LimitExceeded) as info:
        prog.run(limits=peerbox.Limits(fuel=100_000))
    assert info.value.limit == "fuel"


def test_fib_30_needs_no_special_limits(sandbox: peerbox.Sandbox) -> None:
    prog = peerbox.compile(
        "fn fib(n) { if n < 2 { n } else { fib(n - 1) + fib(n - 2) } } fib(25)", "fib.rhai", sandbox=sandbox
    )
    assert prog.run().value == 75025


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": 0},
        {"timeout": -1},
        {"timeout": math.inf},
        {"timeout": math.nan},
        {"timeout": "5"},
        {"timeout": True},
        {"memory": 0},
        {"memory": -5},
        {"memory": 1 << 40},
        {"memory": 1.5e6},
        {"fuel": 0},
        {"fuel": -1},
        {"fuel": 1 << 70},
        {"fuel": 2.5},
    ],
)
def test_limits_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(peerbox.UsageError, match="Limits"):
        peerbox.Limits(**kwargs)  # type: ignore[arg-type]


def test_limits_defaults() -> None:
    lim = peerbox.Limits()
    assert (lim.timeout, lim.memory, lim.fuel) == (10.0, 256 << 20, None)
    assert peerbox.Limits(fuel=5).timeout == 10.0


def test_run_rejects_non_limits(sandbox: peerbox.Sandbox) -> None:
    prog = peerbox.compile("1", "x.rhai", sandbox=sandbox)
    with pytest.raises(peerbox.UsageError):
        prog.run(limits={"timeout": 1})  # type: ignore[arg-type]


# -- lifetime, threads --------------------------------------------------------


def test_ticker_is_a_daemon_and_stops_on_close(tmp_path: object) -> None:
    # the Python fallback (where POSIX timers are unavailable); see test_timeouts.py for the native clock
    sb = peerbox.Sandbox(disk_cache=False, epoch_clock="thread")
    peerbox.compile("1", "x.rhai", sandbox=sb).run()
    thread = sb.ticker_thread
    assert thread is not None and thread.daemon and thread.is_alive()
    sb.close()
    assert not thread.is_alive()
    with pytest.raises(peerbox.UsageError, match="closed"):
        peerbox.compile("1", "x.rhai", sandbox=sb)


@pytest.mark.slow
def test_process_exits_promptly_after_runs(tmp_path: object) -> None:
    code = (
        "import peerbox\n"
        "p = peerbox.compile('let i = 0; while i < 1000 { i += 1; } i', 'x.rhai')\n"
        "print(p.run().value)\n"
    )
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1000"
    assert time.monotonic() - start < 30


def test_concurrent_runs_on_threads(sandbox: peerbox.Sandbox) -> None:
    prog = peerbox.compile("let t = 0; for i in range(0, params.n) { t += i; } t", "c.rhai", sandbox=sandbox)
    spin = peerbox.compile("loop {}", "spin.rhai", sandbox=sandbox)
    results: dict[int, object] = {}
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for _ in range(20):
                results[k] = prog.run({"n": 1000 + k}).value
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def runaway() -> None:
        try:
            spin.run(limits=peerbox.Limits(timeout=0.5))
        except peerbox.LimitExceeded as exc:
            results[-1] = exc.limit

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)] + [
        threading.Thread(target=runaway)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert results[-1] == "timeout"
    for k in range(4):
        n = 1000 + k
        assert results[k] == n * (n - 1) // 2


# -- host functions -----------------------------------------------------------


def test_float_display_uses_shortest_repr(sandbox: peerbox.Sandbox) -> None:
    prog = peerbox.compile(
        "[(0.1 + 0.2).to_string(), 1.0.to_string(), (1.0 / 0.0).to_string(), (0.0 / 0.0).to_string()]",
        "f.rhai",
        sandbox=sandbox,
    )
    # float division by zero is not an error (IEEE 754, as in Rhai): inf and NaN display as such
    assert prog.run().value == ["0.30000000000000004", "1.0", "inf", "NaN"]


def test_parse_float(sandbox: peerbox.Sandbox) -> None:
    prog = peerbox.compile("parse_float(params.s)", "p.rhai", sandbox=sandbox)
    for text, expected in [
        ("1.5", 1.5),
        ("-2e3", -2000.0),
        (" 7 ", 7.0),
        (".5", 0.5),
        ("1.", 1.0),
        ("inf", math.inf),
    ]:
        assert prog.run({"s": text}).value == expected, text
    assert math.isnan(prog.run({"s": "NaN"}).value)
    for bad in ["1_000", "0x10", "", "abc", "1e", "--1", "１"]:
        with pytest.raises(peerbox.ScriptError) as info:
            prog.run({"s": bad})
        assert info.value.kind == "invalid_argument", bad


def test_pow_f64_never_raises() -> None:
    assert pow_f64(2.0, 0.5) == math.sqrt(2.0)
    assert pow_f64(10.0, 400.0) == math.inf
    assert pow_f64(-10.0, 401.0) == -math.inf
    assert pow_f64(-10.0, 400.0) == math.inf
    assert math.isnan(pow_f64(-8.0, 1.0 / 3.0))
    assert pow_f64(0.0, -1.0) == math.inf
    assert pow_f64(-0.0, -1.0) == -math.inf
    assert pow_f64(-0.0, -2.0) == math.inf
    assert pow_f64(1.0, math.nan) == 1.0
    assert math.isnan(pow_f64(math.nan, 1.0))


def test_float_pow_in_a_script(sandbox: peerbox.Sandbox) -> None:
    prog = peerbox.compile("params.a ** params.b", "pow.rhai", sandbox=sandbox)
    assert prog.run({"a": 2.0, "b": 10.0}).value == 1024.0
    assert prog.run({"a": 10.0, "b": 400.0}).value == math.inf
