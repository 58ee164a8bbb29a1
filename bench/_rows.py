"""Rows and timing shared by the benchmark's tables (bench/run.py, bench/isolation.py).

A :class:`Row` is one line of one table; ``group`` says which table. The
performance table (``group="perf"``) compares a peerbox figure with a CPython
one; the isolation and host-call tables (``group="isolation"``/``"hostcall"``)
give one figure per row, ``us`` (µs per invocation), and ``rel``, its ratio
to the first row of that table.
"""

from __future__ import annotations

import gc
import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROGRAMS = Path(__file__).resolve().parent / "programs"


@dataclass
class Row:
    name: str
    title: str
    size: str
    peerbox: float | None = None     # seconds (workloads), ms/1000 lines (compile), µs (trivial)
    cpython: float | None = None     # seconds, workloads only
    unit: str = "s"
    target: str = "—"
    status: str = ""                 # PASS / MISS / "" (no target) / ERROR / WRONG
    note: str = ""
    samples: list[float] = field(default_factory=list)          # wall clock, every repeat
    cpython_samples: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)              # thread CPU time, every repeat
    cpython_cpu: list[float] = field(default_factory=list)
    group: str = "perf"              # which table: perf / isolation / hostcall
    us: float | None = None          # isolation/hostcall: µs per invocation (best sample)
    rel: float | None = None         # isolation/hostcall: us / the first row's us

    @property
    def ratio(self) -> float | None:
        if self.peerbox and self.cpython and self.unit == "s":
            return self.cpython / self.peerbox
        return None


def _fmt_time(v: float | None, unit: str) -> str:
    if v is None:
        return "—"
    if unit == "s":
        if v >= 1.0:
            return f"{v:.2f} s"
        if v >= 1e-3:
            return f"{v * 1e3:.1f} ms"
        return f"{v * 1e6:.0f} µs"
    if unit == "ms/1000 lines":
        return f"{v:.1f} ms"
    if unit == "µs":
        return f"{v:.1f} µs"
    return f"{v:g} {unit}"


def _fmt_ratio(r: float | None) -> str:
    if r is None:
        return "—"
    return f"{r:.1f}×" if r >= 1 else f"{r:.2f}×"


def render_table(rows: list[Row]) -> str:
    head = ["benchmark", "size", "peerbox", "CPython", "CPython/peerbox (>1 = peerbox faster)",
            "target", "status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        status = r.status + (f" ({r.note})" if r.note else "")
        cells = [r.name + " — " + r.title, r.size, _fmt_time(r.peerbox, r.unit),
                 _fmt_time(r.cpython, r.unit), _fmt_ratio(r.ratio), r.target, status]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)



# -- timing ---------------------------------------------------------------------

def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, list[float], Any]:
    """Run ``fn`` ``repeat`` times; the fastest wall time, all times, the last value."""
    samples: list[float] = []
    cpu: list[float] = []
    value: Any = None
    for _ in range(repeat):
        value = _timed(fn, samples, cpu)
    return min(samples), samples, value


def load_module(name: str) -> Any:
    """``programs/NAME.py`` as a module."""
    path = PROGRAMS / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_prog_{name}", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_py(name: str) -> Callable[[dict[str, Any]], Any]:
    """The ``main(params)`` of ``programs/NAME.py``."""
    return load_module(name).main  # type: ignore[no-any-return]


def _err(e: BaseException) -> str:
    msg = f"{type(e).__name__}: {e}".strip().splitlines()
    return msg[0][:160] if msg else type(e).__name__


def _timed(fn: Callable[[], Any], wall: list[float], cpu: list[float]) -> Any:
    """Call ``fn`` once with the cyclic GC paused (as timeit does), appending
    its wall and this thread's CPU seconds.

    Not ``gc.collect()`` before every sample: a collection right before a
    short peerbox run makes that run ~0.1-0.2 ms slower (cold caches).
    """
    gc.disable()
    try:
        c0 = time.thread_time()
        t0 = time.perf_counter()
        value = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    finally:
        gc.enable()
    return value

