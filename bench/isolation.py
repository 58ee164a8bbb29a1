"""The isolation-overhead and host-call tables of ``make bench`` (issue 4, "Tests and benchmark").

What ONE invocation of the same small piece of logic (``programs/order.*``:
parse a param, normalise a string, build a small map) costs at each level of
isolation, in µs and as a ratio to the plain Python function (row (a)):

====================  =====================================================================
``iso_a_python``      (a) ``order.main(params)``, a plain Python function call
``iso_a_python_fs``   (a') ``order.main_fs``: (a) plus ``open().read()`` of the 1 KiB catalog
``iso_b_script``      (b) ``order.rhai``: ``prog.run(params)``, fresh Store per call, cached module
``iso_c_fs_read``     (c) ``order_fs.rhai``: ``ctx.run(prog, params)`` as a peer (temporary
                      root, fs backend): (b) plus one ``fs::read`` of the 1 KiB catalog
``iso_d_subprocess``  (d) a fresh ``python -c`` per call running ``order.main`` (params as a
                      JSON argument, the value printed as JSON)
``iso_d_cli``         (d') ``python -m peerbox run order_fs.rhai --peer bench --json`` per call
====================  =====================================================================

and what one host call costs (ratio to Python's own read):

=====================  ====================================================================
``hostcall_py_read``   ``open(path, encoding="utf-8").read()`` of the catalog, in Python
``hostcall_dispatch``  ``Dispatch.call(fs::read)`` from Python: arguments, budget, path rules,
                       FsBackend (fd walk, O_NOFOLLOW, fstat checks); no sandbox
``hostcall_fs_read``   ``fs::read`` from a script: one run doing N reads minus one run doing
                       the same loop without the read, divided by N
=====================  ====================================================================

In-process rows are timed in batches, alternating between the rows round by
round (so a burst of load from the other tenants of a shared machine hits
them all), for at least ``repeat`` rounds and up to :data:`ISO_BUDGET`
seconds; the best batch mean is reported, the median in the note. Every row
checks its value against the Python twin first (WRONG otherwise).
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from _rows import PROGRAMS, Row, _err, _timed, load_module

# -- sizes and targets ----------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    py: int        # calls per sample: (a)
    py_fs: int     # calls per sample: (a'), hostcall_py_read, hostcall_dispatch
    script: int    # runs per sample: (b), (c)
    proc: int      # subprocesses per sample: (d)
    cli: int       # CLI runs per sample: (d')
    reads: int     # N: fs::read calls in one run (hostcall_fs_read)


FULL = Sizes(py=20_000, py_fs=2_000, script=400, proc=4, cli=1, reads=2_000)
QUICK = Sizes(py=100, py_fs=10, script=5, proc=1, cli=1, reads=10)

ISO_BUDGET = 3.0      # seconds the in-process rows keep alternating after `repeat` rounds
MAX_ROUNDS = 40
TARGETS_US = {"iso_b_script": 60.0, "iso_c_fs_read": 100.0}

CATALOG = "data/catalog.txt"   # relative to the peer's storage root
PARAMS: dict[str, Any] = {"qty": "3", "sku": " ab-7", "price": 250, "catalog": CATALOG}
PEER = "bench"

ISO_ROWS: tuple[tuple[str, str], ...] = (
    ("iso_a_python", "(a) plain Python function, order.main(params)"),
    ("iso_a_python_fs", "(a') (a) + open().read() of the 1 KiB catalog"),
    ("iso_b_script", "(b) peerbox script in-process: prog.run(params), fresh sandbox, cached module"),
    ("iso_c_fs_read", "(c) (b) as a peer (fs backend) + one fs::read of the 1 KiB catalog"),
    ("iso_d_subprocess", "(d) fresh Python subprocess per call: python -c doing (a)"),
    ("iso_d_cli", "(d') `peerbox run order_fs.rhai --peer` CLI per call: (c) in a new process"),
)
HOSTCALL_ROWS: tuple[tuple[str, str], ...] = (
    ("hostcall_py_read", "Python open().read() of the 1 KiB catalog"),
    ("hostcall_dispatch", "Dispatch.call(fs::read) from Python: checks + FsBackend, no sandbox"),
    ("hostcall_fs_read", "fs::read from a script: (N reads − empty loop) / N"),
)
ROW_NAMES = [n for n, _ in ISO_ROWS] + [n for n, _ in HOSTCALL_ROWS]

_READ_LOOP = """\
let n = params.n;
let i = 0;
let t = 0;
while i < n {
    let s = fs::read(params.path);
    t += s.len();
    i += 1;
}
t
"""
# The same loop, the read replaced by a 1 KiB string that is already there.
_EMPTY_LOOP = _READ_LOOP.replace("fs::read(params.path)", "params.text")


def catalog_text() -> str:
    """The 1,024-byte ASCII catalog every fs row reads (it lists ``AB-7``)."""
    lines = "".join(f"AB-{i},{100 + (37 * i) % 900}\n" for i in range(200))
    return lines[:1023] + "\n"


# -- the peer ------------------------------------------------------------------------


class _Peer:
    """A temporary peer root with one peer (fs backend) holding the catalog."""

    def __enter__(self) -> _Peer:
        import peerbox

        self._tmp = tempfile.TemporaryDirectory(prefix="peerbox-bench-peers-")
        self.root = Path(self._tmp.name)
        peerbox.PeerStore(self.root).init(PEER)
        self.contexts = peerbox.Contexts(self.root)
        self.ctx = self.contexts.get(PEER)
        self.ctx.storage.mkdir(CATALOG.rsplit("/", 1)[0])
        self.ctx.storage.write_bytes(CATALOG, catalog_text().encode())
        self.files = str(self.ctx.peer.paths.storage)   # where the fs backend keeps the files
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.contexts.close()
        self._tmp.cleanup()


# -- timing -------------------------------------------------------------------------


@dataclass
class _Entry:
    """One row being timed: ``fn`` called ``iters`` times per sample."""

    row: Row
    fn: Callable[[], Any]
    iters: int

    def batch(self) -> Any:
        fn = self.fn
        v = None
        for _ in range(self.iters):
            v = fn()
        return v


def _check(row: Row, got: Any, want: Any) -> bool:
    """Mark ``row`` WRONG unless ``got == want``."""
    if got != want:
        row.status, row.note = "WRONG", f"got {got!r}, expected {want!r}"[:200]
        return False
    return True


def _prepare(row: Row, fn: Callable[[], Any], value_of: Callable[[Any], Any], want: Any,
             iters: int, warm: int) -> _Entry | None:
    """Warm ``fn`` up, check its value; the entry to time, or None if the row failed."""
    try:
        got = None
        for _ in range(max(1, warm)):
            got = value_of(fn())
    except Exception as e:  # noqa: BLE001 - a failing row is reported, not fatal
        row.status, row.note = "ERROR", _err(e)
        return None
    return _Entry(row, fn, iters) if _check(row, got, want) else None


def _alternate(entries: list[_Entry], repeat: int, quick: bool, budget: float) -> None:
    """Time every entry once per round: at least ``repeat`` rounds, then until ``budget`` s."""
    live = list(entries)
    t0 = time.perf_counter()
    rounds = 0
    while live and (rounds < repeat or (not quick and rounds < MAX_ROUNDS
                                        and time.perf_counter() - t0 < budget)):
        rounds += 1
        for e in list(live):
            wall: list[float] = []
            cpu: list[float] = []
            try:
                _timed(e.batch, wall, cpu)
            except Exception as exc:  # noqa: BLE001
                e.row.status, e.row.note = "ERROR", _err(exc)
                live.remove(e)
                continue
            e.row.samples.append(wall[0] / e.iters * 1e6)
            e.row.cpu.append(cpu[0] / e.iters * 1e6)


def _finish(row: Row) -> None:
    """Best sample as the figure, the median in the note, PASS/MISS against a target."""
    if row.status in ("ERROR", "WRONG") or not row.samples:
        return
    row.us = min(row.samples)
    if len(row.samples) > 1:
        row.note = f"median {fmt_us(statistics.median(row.samples))}" + (
            f"; {row.note}" if row.note else "")
    target = TARGETS_US.get(row.name)
    if target is not None:
        row.status = "PASS" if row.us < target else "MISS"


def _relative(rows: list[Row], base: str) -> None:
    """``rel`` = us / the ``base`` row's us (none if that row was not measured, e.g. ``--only``)."""
    first = next((r for r in rows if r.name == base), None)
    if first is not None and first.us:
        for r in rows:
            if r.us is not None:
                r.rel = r.us / first.us


# -- the tables ---------------------------------------------------------------------


def _subprocess_code() -> str:
    """``python -c`` source: order.py's text, then read params from argv[1], print the value."""
    return ((PROGRAMS / "order.py").read_text()
            + "\nimport json, sys\nprint(json.dumps(main(json.loads(sys.argv[1]))))\n")


def _run_json(cmd: list[str]) -> Any:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()[:200]}")
    return json.loads(proc.stdout)


def _run_cli_value(cmd: list[str]) -> Any:
    """The value of ``peerbox run --json`` (its document: value, log, usage)."""
    return _run_json(cmd)["value"]


def _same(v: Any) -> Any:
    return v


def _value(res: Any) -> Any:
    return res.value


def _script_runner(peer: _Peer, file: str, as_peer: bool) -> Callable[[], Any]:
    """A function running ``programs/FILE`` once with :data:`PARAMS`, compiled (cached) now.

    ``as_peer``: ``ctx.run(prog, PARAMS)`` in the peer's context; else ``prog.run(PARAMS)``.
    """
    import peerbox

    src = (PROGRAMS / file).read_text()
    if as_peer:
        ctx = peer.ctx
        prog = ctx.compile(src, filename=file)
        return lambda: ctx.run(prog, PARAMS)
    prog = peerbox.compile(src, filename=file)
    return lambda: prog.run(PARAMS)


def bench_isolation(quick: bool, repeat: int, wanted: Callable[[str], bool]) -> list[Row]:
    """The isolation-overhead rows (those ``wanted``)."""
    sz = QUICK if quick else FULL
    order = load_module("order")
    rows = {n: Row(n, t, "", unit="µs", group="isolation") for n, t in ISO_ROWS if wanted(n)}
    for key, target in TARGETS_US.items():
        if key in rows:
            rows[key].target = f"< {target:g} µs"
    with _Peer() as peer:
        want = order.main(dict(PARAMS))
        want_fs = order.main_fs(dict(PARAMS), peer.files)
        entries: list[_Entry | None] = []
        if "iso_a_python" in rows:
            rows["iso_a_python"].size = f"{sz.py:_} calls"
            entries.append(_prepare(rows["iso_a_python"], lambda: order.main(PARAMS), _same, want,
                                    sz.py, 100))
        if "iso_a_python_fs" in rows:
            rows["iso_a_python_fs"].size = f"{sz.py_fs:_} calls"
            entries.append(_prepare(rows["iso_a_python_fs"], lambda: order.main_fs(PARAMS, peer.files),
                                    _same, want_fs, sz.py_fs, 100))
        for name, file, run_as_peer, expected in (("iso_b_script", "order.rhai", False, want),
                                                  ("iso_c_fs_read", "order_fs.rhai", True, want_fs)):
            if name not in rows:
                continue
            row = rows[name]
            row.size = f"{sz.script:_} runs"
            try:
                fn = _script_runner(peer, file, run_as_peer)
            except Exception as e:  # noqa: BLE001
                row.status, row.note = "ERROR", _err(e)
                continue
            entries.append(_prepare(row, fn, _value, expected, sz.script, 200))
        _alternate([e for e in entries if e is not None], repeat, quick, ISO_BUDGET)

        # New processes: slow, timed on their own (nothing to alternate with at this scale).
        procs: list[tuple[str, list[str], Any, int]] = []
        if "iso_d_subprocess" in rows:
            procs.append(("iso_d_subprocess",
                          [sys.executable, "-c", _subprocess_code(), json.dumps(PARAMS)], want, sz.proc))
        if "iso_d_cli" in rows:
            procs.append(("iso_d_cli",
                          [sys.executable, "-m", "peerbox", "run", str(PROGRAMS / "order_fs.rhai"),
                           "--peer", PEER, "--root", str(peer.root), "--params-json", json.dumps(PARAMS),
                           "--json"], want_fs, sz.cli))
        peer.contexts.close()  # a peer's storage has one owner at a time: hand it to the CLI runs
        for name, cmd, expected, n in procs:
            row = rows[name]
            row.size = f"{n * repeat} processes"
            # warm-up (for the CLI: compiles into the private cache this run shares through the env)
            runner = _run_cli_value if name == "iso_d_cli" else _run_json
            entry = _prepare(row, functools.partial(runner, cmd), _same, expected, n, 1)
            if entry is not None:
                _alternate([entry], repeat, True, 0.0)
    out = list(rows.values())
    for r in out:
        _finish(r)
    _relative(out, ISO_ROWS[0][0])
    b, c = rows.get("iso_b_script"), rows.get("iso_c_fs_read")
    if b is not None and c is not None and b.us is not None and c.us is not None:
        c.note = (c.note + "; " if c.note else "") + f"(c) − (b) = {fmt_us(c.us - b.us)}"
    return out


def bench_hostcalls(quick: bool, repeat: int, wanted: Callable[[str], bool]) -> list[Row]:
    """The host-call rows (those ``wanted``)."""
    import peerbox
    from peerbox.hostcalls import Budget, Dispatch, Op

    sz = QUICK if quick else FULL
    rows = {n: Row(n, t, "", unit="µs", group="hostcall") for n, t in HOSTCALL_ROWS if wanted(n)}
    text = catalog_text()
    with _Peer() as peer:
        path = os.path.join(peer.files, CATALOG)

        def py_read() -> str:
            with open(path, encoding="utf-8") as f:
                return f.read()

        unlimited = 1 << 62
        dispatch = Dispatch(peer.ctx.storage, Budget(unlimited, unlimited, unlimited))
        entries: list[_Entry | None] = []
        if "hostcall_py_read" in rows:
            rows["hostcall_py_read"].size = f"{sz.py_fs:_} calls"
            entries.append(_prepare(rows["hostcall_py_read"], py_read, _same, text, sz.py_fs, 100))
        if "hostcall_dispatch" in rows:
            rows["hostcall_dispatch"].size = f"{sz.py_fs:_} calls"
            entries.append(_prepare(rows["hostcall_dispatch"], lambda: dispatch.call(Op.READ, [CATALOG]),
                                    _same, text, sz.py_fs, 100))
        loop_rows: tuple[Row, Row] | None = None
        row = rows.get("hostcall_fs_read")
        if row is not None:
            n = sz.reads
            row.size = f"N={n:_} reads per run"
            params = {"n": n, "path": CATALOG, "text": text}
            limits = peerbox.Limits(host_calls=n + 10)
            loop_rows = (Row("reads", "", "", group="hidden"), Row("empty", "", "", group="hidden"))
            try:
                progs = [peer.ctx.compile(src, filename=f"{name}.rhai")
                         for src, name in ((_READ_LOOP, "read_loop"), (_EMPTY_LOOP, "empty_loop"))]
            except Exception as e:  # noqa: BLE001
                row.status, row.note = "ERROR", _err(e)
            else:
                for r, prog in zip(loop_rows, progs):
                    run = functools.partial(peer.ctx.run, prog, params, limits=limits)
                    entries.append(_prepare(r, run, _value, n * len(text), 1, 2))
        _alternate([e for e in entries if e is not None], repeat, quick, ISO_BUDGET / 2)
    if row is not None and loop_rows is not None:
        reads, empty = loop_rows
        bad = next((r for r in loop_rows if r.status in ("ERROR", "WRONG")), None)
        if bad is not None:
            row.status, row.note = bad.status, f"{bad.name} loop: {bad.note}"
        elif row.status != "ERROR":
            n = sz.reads
            # per-round differences (for the JSON); the figure is best(reads) - best(empty)
            row.samples = [(a - b) / n for a, b in zip(reads.samples, empty.samples)]
            row.cpu = [(a - b) / n for a, b in zip(reads.cpu, empty.cpu)]
            row.us = (min(reads.samples) - min(empty.samples)) / n
            row.note = (f"run with N reads {fmt_us(min(reads.samples))}, "
                        f"empty loop {fmt_us(min(empty.samples))}")
    out = list(rows.values())
    for r in out:
        if r.name != "hostcall_fs_read":
            _finish(r)
    _relative(out, HOSTCALL_ROWS[0][0])
    return out


# -- rendering ----------------------------------------------------------------------


def fmt_us(v: float | None) -> str:
    if v is None:
        return "—"
    if v >= 1000:
        return f"{v:,.0f} µs"
    if v >= 10:
        return f"{v:.1f} µs"
    return f"{v:.2f} µs"


def _fmt_rel(r: float | None) -> str:
    if r is None:
        return "—"
    if r >= 100:
        return f"{r:,.0f}×"
    return f"{r:.1f}×" if r >= 1 else f"{r:.2f}×"


def render(rows: list[Row], group: str) -> str:
    """The markdown table of ``group`` ("isolation" or "hostcall"); "" if it has no rows."""
    mine = [r for r in rows if r.group == group]
    if not mine:
        return ""
    base = "× (a) plain Python" if group == "isolation" else "× Python open().read()"
    head = ["benchmark", "size", "µs per call", base, "target", "status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in mine:
        status = r.status + (f" ({r.note})" if r.note else "")
        cells = [r.name + " — " + r.title, r.size, fmt_us(r.us), _fmt_rel(r.rel), r.target, status]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)
