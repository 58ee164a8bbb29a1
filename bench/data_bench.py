"""The data-work table of ``make bench`` (issue 14): scripts that move strings, maps and records.

Each row runs a peerbox script ``programs/data_<program>.rhai`` next to the
same program in CPython, ``programs/data_<program>.py`` (its ``main(params)``),
on the same params, made by ``programs/data_inputs.py``. Per row the table
shows both times, their ratio (CPython / peerbox, >1 = peerbox faster), the
value both sides returned (checked equal), and the peak memory of each side:
peerbox's ``Result.peak_memory`` (guest linear memory) and CPython's
``tracemalloc`` peak over one extra, untimed run (or, for a row whose CPython
run takes longer than :data:`TRACE_MAX_SECONDS`, the growth of the process's
peak RSS during its first timed run, since tracing would multiply its time).

A run that ends with ``LimitExceeded("memory")`` under the default limits
(256 MiB) is an ``OOM`` row, not a crash of the benchmark: today's guest
allocator never frees during a run, so the 20M string-building row and the
allocate-and-drop loop end that way. Under the table, the geometric mean of
the ratios of the rows that finished.

Used by ``bench/run.py`` (``bench_data``, ``render``, ``ROW_NAMES``) and by
``tests/scenarios/test_data_work.py`` (``PROGRAMS``, ``run_row`` with small
limits).
"""

from __future__ import annotations

import gc
import importlib.util
import math
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import peerbox

PROGRAMS_DIR = Path(__file__).resolve().parent / "programs"

RATIO_TARGET = 1.5          # every data row, CPython time / peerbox time (issue 14)
GEOMEAN_TARGET = 3.0        # the geometric mean over the data rows
PEAK_TARGET = 16 << 20      # bytes of guest memory, for the rows that only keep a little
ROW_BUDGET = 4.0            # seconds a row may keep alternating after its first round
TRACE_MAX_SECONDS = 0.3     # a CPython run longer than this is not re-run under tracemalloc (10-30x slower)


@dataclass(frozen=True)
class DataProgram:
    """One row of the table: a program, its input maker and its sizes.

    ``program`` names ``programs/data_<program>.{rhai,py}``; ``inputs`` names
    the function of ``programs/data_inputs.py`` that makes its params from a
    size; ``full`` and ``quick`` are the sizes of a full and a ``--quick`` run.
    ``peak_target``: the row's target for peerbox's peak memory, if any.
    """

    name: str
    title: str
    program: str
    inputs: str
    unit: str
    full: int
    quick: int
    peak_target: int | None = None
    wire: bool = False  # CBOR bytes in, CBOR bytes out (as the worker gets and sends them)


PROGRAMS: tuple[DataProgram, ...] = (
    DataProgram("data_wordcount", "word count: split a text, count in a map, max", "wordcount",
                "wordcount", "bytes", 1 << 20, 20_000),
    DataProgram("data_records", "records: build n maps, filter, group by city, sum", "records",
                "count", "records", 100_000, 2_000),
    DataProgram("data_strbuild_1m", "string building: n interpolated parts, flushed every 1,000",
                "strbuild", "count", "parts", 1_000_000, 10_000),
    DataProgram("data_strbuild_20m", "string building: the same, n = 20M", "strbuild", "count",
                "parts", 20_000_000, 100_000, peak_target=PEAK_TARGET),
    DataProgram("data_json", "JSON-like transform: nested orders in, summaries out", "json",
                "orders", "orders", 10_000, 200),
    DataProgram("data_json_wire", "the same transform from the wire: CBOR bytes in, CBOR bytes out", "json",
                "orders", "orders", 10_000, 200, wire=True),
    DataProgram("data_sort", "sort records by score, name with a closure", "sort", "records",
                "records", 100_000, 1_000),
    DataProgram("data_replace", "search (contains, index_of) and replace in a text", "replace",
                "replace", "bytes", 1 << 20, 20_000),
    DataProgram("data_allocdrop", "loop allocating and dropping a short string", "allocdrop",
                "count", "steps", 5_000_000, 50_000, peak_target=PEAK_TARGET),
)

ROW_NAMES = [p.name for p in PROGRAMS]


@dataclass
class DataRow:
    """One measured row. Times in seconds, memory in bytes; ``status`` is
    PASS / MISS (against the targets), OOM, WRONG (the values differ) or ERROR."""

    name: str
    title: str
    size: str
    target: str
    peerbox: float | None = None
    cpython: float | None = None
    peerbox_peak: int | None = None
    cpython_peak: int | None = None
    cpython_peak_how: str = ""      # "tracemalloc" or "rss"
    value: str = ""                 # a short repr of the value both sides returned
    status: str = ""
    note: str = ""
    samples: list[float] = field(default_factory=list)
    cpython_samples: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        """CPython time / peerbox time, or None when either is missing."""
        if self.peerbox and self.cpython:
            return self.cpython / self.peerbox
        return None


# -- loading ----------------------------------------------------------------------

def load_program_module(stem: str) -> ModuleType:
    """``programs/<stem>.py`` as a module, loaded by path.

    Not through ``sys.path``: ``programs/`` holds ``string.py``, which would
    shadow the standard library's. Raises OSError/ImportError if it is missing.
    """
    path = PROGRAMS_DIR / f"{stem}.py"
    spec = importlib.util.spec_from_file_location(f"peerbox_bench_{stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_params(p: DataProgram, size: int) -> dict[str, Any]:
    """The params of ``p`` at ``size``, from ``programs/data_inputs.py``."""
    maker: Callable[[int], dict[str, Any]] = getattr(load_program_module("data_inputs"), p.inputs)
    return maker(size)


def python_main(p: DataProgram) -> Callable[[dict[str, Any]], Any]:
    """The CPython twin of ``p``: ``main`` of ``programs/data_<program>.py``."""
    return load_program_module(f"data_{p.program}").main  # type: ignore[no-any-return]


def script_source(p: DataProgram) -> str:
    """The peerbox script of ``p``: ``programs/data_<program>.rhai``."""
    return (PROGRAMS_DIR / f"data_{p.program}.rhai").read_text()


# -- measuring ----------------------------------------------------------------------

def _short(value: Any, width: int = 48) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _err(e: BaseException) -> str:
    lines = f"{type(e).__name__}: {e}".strip().splitlines()
    return lines[0][:160] if lines else type(e).__name__


def _timed(fn: Callable[[], Any], samples: list[float]) -> Any:
    """Call ``fn`` once with the cyclic GC paused (as timeit does); append its wall time."""
    gc.disable()
    try:
        t0 = time.perf_counter()
        value = fn()
        samples.append(time.perf_counter() - t0)
    finally:
        gc.enable()
    return value


def _traced_peak(fn: Callable[[], Any]) -> int:
    """Bytes at the peak of Python allocations during one call of ``fn`` (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return max(0, tracemalloc.get_traced_memory()[1] - base)
    finally:
        tracemalloc.stop()


def _status_kib(key: str) -> int | None:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM) in bytes; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _rss_growth(fn: Callable[[], Any], samples: list[float]) -> tuple[Any, int | None]:
    """Time one call of ``fn`` (appended to ``samples``); its value and how far
    the process's peak RSS rose above its RSS before the call, in bytes.

    Resets the peak with ``/proc/self/clear_refs`` first (costs nothing in
    the call); the growth is None where that is not possible (not Linux, not
    allowed).
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return _timed(fn, samples), None
    before = _status_kib("VmRSS")
    value = _timed(fn, samples)
    after = _status_kib("VmHWM")
    return value, (None if before is None or after is None else max(0, after - before))


def run_row(p: DataProgram, size: int, repeat: int, *, limits: peerbox.Limits | None = None,
            budget: float = ROW_BUDGET) -> DataRow:
    """Measure one row: compile the script, then alternate CPython and peerbox runs.

    At least one round, then up to ``repeat`` rounds while the row has run for
    less than ``budget`` seconds; the best sample of each side is reported.
    ``limits`` (a ``peerbox.Limits``, default the default limits) applies to
    the peerbox runs. Never raises for what a program does: a compile error or
    a failing run is an ERROR row, a run over the memory limit an OOM row, a
    value that differs from CPython's a WRONG row.
    """
    import cbor2
    import peerbox  # imported when a row runs, so importing this module stays cheap
    from peerbox.run import CborParams

    row = DataRow(p.name, p.title, f"{size:_} {p.unit}", target=f"≥ {RATIO_TARGET:g}×"
                  + (f", peak < {p.peak_target >> 20} MiB" if p.peak_target else ""))
    run_kw: dict[str, Any] = {} if limits is None else {"limits": limits}
    try:
        params: Any = make_params(p, size)
        main = python_main(p)
        prog = peerbox.compile(script_source(p), filename=f"data_{p.program}.rhai")
        # warm-up on a tenth of the quick size: a new program's first run costs ~0.2-1 ms more
        prog.run(params=make_params(p, max(1, p.quick // 10)))
        if p.wire:  # both sides get the params' CBOR bytes and answer with their result's CBOR bytes
            params, main, prog = _wire_twins(params, main, prog, cbor2, CborParams)
    except Exception as e:  # noqa: BLE001 - a failing row is reported, not fatal
        row.status, row.note = "ERROR", _err(e)
        return row
    gc.collect()
    expected: Any = None
    result: Any = None
    oom = False
    rss: int | None = None
    t_row = time.perf_counter()
    rounds = 0
    try:
        while rounds < 1 or (rounds < repeat and time.perf_counter() - t_row < budget):
            rounds += 1
            if rounds == 1:
                expected, rss = _rss_growth(lambda: main(params), row.cpython_samples)
            else:
                expected = _timed(lambda: main(params), row.cpython_samples)
            if oom:
                continue
            try:
                result = _timed(lambda: prog.run(params=params, **run_kw), row.samples)
            except peerbox.LimitExceeded as e:
                if e.limit != "memory":
                    raise
                oom = True
                row.samples.clear()
    except Exception as e:  # noqa: BLE001
        row.status, row.note = "ERROR", _err(e)
        row.samples.clear()
        row.cpython = min(row.cpython_samples, default=None)
        return row
    row.cpython = min(row.cpython_samples)
    row.value = _short(expected)
    _measure_cpython_peak(row, lambda: main(params), rss)
    if oom:
        row.status = "OOM"
        mem = limits.memory if limits is not None else peerbox.Limits().memory
        row.note = f"LimitExceeded('memory') at the {mem >> 20} MiB limit"
        return row
    row.peerbox = min(row.samples)
    row.peerbox_peak = result.peak_memory
    if not (_same_cbor(result.value, expected) if p.wire else result.value == expected):
        row.status, row.note = "WRONG", f"peerbox {_short(result.value)} != CPython {row.value}"
        return row
    ok = (row.ratio or 0.0) >= RATIO_TARGET and (p.peak_target is None or row.peerbox_peak < p.peak_target)
    row.status = "PASS" if ok else "MISS"
    return row


@dataclass(frozen=True)
class _WireResult:
    value: bytes
    peak_memory: int


class _WireProgram:
    """A program run as the worker runs it: CBOR params in (``CborParams``), the value's CBOR out
    (``Result.value_cbor``, the guest's bytes, after the one-item check a worker makes before it
    signs them: ``check``)."""

    def __init__(self, prog: Any, check: Callable[[bytes], None]) -> None:
        self.prog, self.check = prog, check

    def run(self, params: Any, **kw: Any) -> _WireResult:
        res = self.prog.run(params=params, **kw)
        self.check(res.value_cbor)
        return _WireResult(res.value_cbor, res.peak_memory)


def _wire_twins(params: dict[str, Any], main: Callable[[Any], Any], prog: Any, cbor2: Any,
                cbor_params: Any) -> tuple[Any, Callable[[Any], Any], Any]:
    """The CBOR-in, CBOR-out twins of a row: the params' bytes, CPython's ``cbor2.loads`` + ``main`` +
    ``cbor2.dumps``, and the program run with ``CborParams`` whose value's bytes are checked as a
    worker checks them before signing (``peerbox.wire._raw_value.check_value_cbor``)."""
    from peerbox.wire._raw_value import check_value_cbor

    data = cbor_params(cbor2.dumps(params))

    def py_main(cbor_in: Any) -> bytes:
        return bytes(cbor2.dumps(main(cbor2.loads(cbor_in.data))))

    return data, py_main, _WireProgram(prog, check_value_cbor)


def _same_cbor(a: bytes, b: bytes) -> bool:
    import cbor2
    return bool(cbor2.loads(a) == cbor2.loads(b))


def _measure_cpython_peak(row: DataRow, fn: Callable[[], Any], rss: int | None) -> None:
    """Set ``row.cpython_peak``: tracemalloc over one more untimed run when the
    CPython run is short, else ``rss``, the RSS growth of its first timed run."""
    if (row.cpython or 0.0) > TRACE_MAX_SECONDS:
        row.cpython_peak, row.cpython_peak_how = rss, ("rss" if rss is not None else "")
        return
    try:
        row.cpython_peak, row.cpython_peak_how = _traced_peak(fn), "tracemalloc"
    except Exception as e:  # noqa: BLE001 - the time is still worth reporting
        row.note = (row.note + "; " if row.note else "") + f"CPython peak not measured: {_err(e)}"


def bench_data(quick: bool, repeat: int, wanted: Callable[[str], bool]) -> list[DataRow]:
    """Every wanted row of the table at the full or the ``--quick`` sizes.

    The peerbox runs get the default limits but a 300 s timeout: the 20M-part
    string build runs for seconds on both sides, and the table measures speed
    and memory, not the default timeout."""
    import peerbox

    limits = peerbox.Limits(timeout=300)
    rows: list[DataRow] = []
    for p in PROGRAMS:
        if wanted(p.name):
            print(f"bench: {p.name} ...", file=sys.stderr, flush=True)
            rows.append(run_row(p, p.quick if quick else p.full, repeat, limits=limits))
    return rows


# -- output -------------------------------------------------------------------------

def geomean(rows: list[DataRow]) -> tuple[float | None, int]:
    """The geometric mean of the ratios of the rows that have one, and how many do."""
    ratios = [r.ratio for r in rows if r.ratio is not None and r.status in ("PASS", "MISS")]
    if not ratios:
        return None, 0
    return math.exp(sum(math.log(x) for x in ratios) / len(ratios)), len(ratios)


def _fmt_s(v: float | None) -> str:
    if v is None:
        return "—"
    if v >= 1.0:
        return f"{v:.2f} s"
    if v >= 1e-3:
        return f"{v * 1e3:.1f} ms"
    return f"{v * 1e6:.0f} µs"


def _fmt_mem(v: int | None) -> str:
    if v is None:
        return "—"
    if v >= 1 << 20:
        return f"{v / (1 << 20):.1f} MiB"
    return f"{v / 1024:.0f} KiB"


def _fmt_ratio(r: float | None) -> str:
    if r is None:
        return "—"
    return f"{r:.1f}×" if r >= 1 else f"{r:.2f}×"


def render(rows: list[DataRow]) -> str:
    """The table as markdown, with the geometric-mean line under it ("" without rows)."""
    if not rows:
        return ""
    head = ["benchmark", "size", "peerbox", "CPython", "CPython/peerbox (>1 = peerbox faster)",
            "value (checked equal)", "peerbox peak (guest)", "CPython peak", "target", "status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        pb_peak = "OOM" if r.status == "OOM" else _fmt_mem(r.peerbox_peak)
        if r.cpython_peak_how == "rss" and r.cpython_peak is not None:
            cp_peak = f"RSS +{r.cpython_peak / (1 << 20):.1f} MiB"   # page-granular; reuse not counted
        else:
            cp_peak = _fmt_mem(r.cpython_peak)
        pb_time = "OOM" if r.status == "OOM" else _fmt_s(r.peerbox)
        status = r.status + (f" ({r.note})" if r.note else "")
        value = f"`{r.value}`" if r.value else "—"
        cells = [f"{r.name} — {r.title}", r.size, pb_time, _fmt_s(r.cpython), _fmt_ratio(r.ratio),
                 value, pb_peak, cp_peak, r.target, status]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    g, n = geomean(rows)
    left_out = len(rows) - n
    why = f"; {left_out} row{'s' if left_out != 1 else ''} without a ratio left out" if left_out else ""
    lines += ["", f"Geometric mean of CPython/peerbox over the {n} data rows that finished: "
              f"{_fmt_ratio(g)} (target ≥ {GEOMEAN_TARGET:g}×{why})."]
    return "\n".join(lines)


def to_json(rows: list[DataRow]) -> list[dict[str, Any]]:
    """The rows as JSON-ready dicts (every field, the ratio, every sample)."""
    return [dict(asdict(r), ratio=r.ratio) for r in rows]
