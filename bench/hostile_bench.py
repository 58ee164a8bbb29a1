"""Hostile input (issue 12): what the defences cost, and that the costs stay linear.

``bench_hostile(quick)`` returns ``[(label, value, unit), ...]``, each figure a
ratio against a reference measured in the same run, plus the absolute
figures behind it:

* **compile scaling**: peerbox's front end (source → WAT, no Cranelift) on a
  script of n and of 4n bytes, for three shapes an attacker would pick
  (many statements, long string literals full of escapes, one long
  arithmetic chain); the row is (time per byte at 4n) / (time per byte at
  n): 1.0 is linear, the quadratic compiler of finding 1 was ~4 and worse;
* **pre-authentication**: refusing a forged 1 MiB request (size, outer
  structure, signature over the raw bytes: nothing decoded) against
  opening a valid 1 KiB one (signature, strict decoding, field checks);
* **timeouts under load**: how far past a 300 ms timeout a spinning script
  ends, alone and with 8 busy Python threads holding the GIL (the epoch
  clock is a native timer, so the second is the first plus what any Python
  thread pays to get the GIL back next to 8 busy ones: the reference row,
  a ``time.sleep(0.3)`` under the same load).

``bench/run.py`` shows it in ``make bench``. Run alone: ``python bench/hostile_bench.py [--quick]``.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections.abc import Callable

__all__ = ["bench_hostile"]

Row = tuple[str, float, str]


def _best(fn: Callable[[], object], rounds: int) -> float:
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return min(out)


def _shapes(n: int) -> dict[str, str]:
    """Scripts of about ``n`` bytes in three shapes."""
    # Functions of 20 statements each: a script's top level is one wasm function, whose size
    # has its own limit (Cranelift is superlinear per function), so real scripts split it.
    fn = "fn f{i}(a) {{\n" + "".join(f"    let v{j} = a * {j} + 1;\n" for j in range(20)) + "    v19\n}}\n"
    per = len(fn.format(i=10_000))
    lines = "".join(fn.format(i=i) for i in range(n // per))
    chunk = "ab\\n\\t\\u{e9}\\\\ "
    literal = 'let s = "' + chunk * (n // len(chunk)) + '";\ns.len()\n'
    chain = "let x = 1;\nlet y = " + " + ".join(["x"] * (n // 4)) + ";\ny\n"
    return {"many functions": lines, "string literal with escapes": literal,
            "one long `+` chain": chain}


def _compile_scaling(quick: bool) -> list[Row]:
    from peerbox.wasm_guests.lang import CompileLimits, compile_to_wat

    n = 8_000 if quick else 32_000
    rounds = 1 if quick else 3
    # Room past the defaults: the row measures how cost grows, not where the limits refuse.
    limits = CompileLimits(height=1000, locals=40_000, wat_bytes=1 << 30, tokens=1 << 30, nodes=1 << 30)
    rows: list[Row] = []
    small, large = _shapes(n), _shapes(4 * n)
    for shape in small:
        src_n, src_4n = small[shape], large[shape]
        if shape.startswith("one long"):  # the height limit caps one chain: compare n vs 4n chains
            src_n = "".join(f"fn f{i}(x) {{ {' + '.join(['x'] * 200)} }}\n" for i in range(n // 800))
            src_4n = "".join(f"fn f{i}(x) {{ {' + '.join(['x'] * 200)} }}\n" for i in range(4 * n // 800))
        t_n = _best(lambda s=src_n: compile_to_wat(s, "bench.rhai", limits=limits), rounds)  # type: ignore[misc]
        t_4n = _best(lambda s=src_4n: compile_to_wat(s, "bench.rhai", limits=limits), rounds)  # type: ignore[misc]
        per_n, per_4n = t_n / len(src_n), t_4n / len(src_4n)
        rows.append((f"compile scaling, {shape}: µs/KB at {len(src_n) // 1024} KB → "
                     f"{len(src_4n) // 1024} KB ({per_n * 1024e6:.0f} → {per_4n * 1024e6:.0f})",
                     per_4n / per_n, "× (1 = linear)"))
    return rows


def _preauth(quick: bool) -> list[Row]:
    import peerbox
    from peerbox.wire._envelope import make_request, open_request, preauthenticate

    alice, bob = peerbox.KeyPair.generate(), peerbox.KeyPair.generate()
    now = int(time.time())
    valid = make_request(alice, target=bob.public_key, script="1 + 1", params={"x": "y" * 900}, now=now)
    big = make_request(alice, target=bob.public_key, script="// " + "x" * ((1 << 20) - 4096), now=now)
    forged = big[:-64] + bytes(64)  # the same envelope, signature zeroed
    n = 20 if quick else 200

    def refuse() -> None:
        for _ in range(n):
            try:
                preauthenticate(forged)
            except peerbox.Error:
                pass
            else:  # pragma: no cover - the bench would be measuring the wrong thing
                raise AssertionError("a forged envelope was accepted")

    def open_valid() -> None:
        for _ in range(n):
            open_request(valid)

    rounds = 1 if quick else 5
    t_forged = _best(refuse, rounds) / n
    t_valid = _best(open_valid, rounds) / n
    return [(f"a forged 1 MiB request refused ({t_forged * 1e6:.0f} µs) / a valid 1 KiB request opened "
             f"({t_valid * 1e6:.0f} µs)", t_forged / t_valid, "×")]


def _spin_overshoot(busy: int, runs: int, reference: bool = False) -> float:
    """Median ms past a 300 ms timeout at which a spinning script ends, with ``busy`` GIL-bound threads.

    ``reference``: a ``time.sleep(0.3)`` instead (the same wait for the GIL on the way back,
    no script): what any Python code pays next to those threads.
    """
    import peerbox

    prog = peerbox.compile("loop { }")
    limits = peerbox.Limits(timeout=0.3)
    stop = threading.Event()

    def hog() -> None:
        x = 0
        while not stop.is_set():
            x += 1

    hogs = [threading.Thread(target=hog, daemon=True) for _ in range(busy)]
    for t in hogs:
        t.start()
    over = []
    try:
        for _ in range(runs):
            t = time.perf_counter()
            if reference:
                time.sleep(0.3)
                over.append((time.perf_counter() - t - 0.3) * 1e3)
                continue
            try:
                prog.run(limits=limits)
            except peerbox.LimitExceeded:
                pass
            over.append((time.perf_counter() - t - 0.3) * 1e3)
    finally:
        stop.set()
        for t in hogs:
            t.join()
    return statistics.median(over)


def _timeouts(quick: bool) -> list[Row]:
    runs = 2 if quick else 7
    alone = _spin_overshoot(0, runs)
    loaded = _spin_overshoot(8, runs)
    floor = _spin_overshoot(8, runs, reference=True)
    return [("300 ms timeout, spinning script: ms past the timeout, alone", alone, "ms"),
            ("the same with 8 busy Python threads", loaded, "ms"),
            ("reference: `time.sleep(0.3)` with 8 busy Python threads, ms past 300 ms "
             "(the GIL's hand-back, paid by any Python code)", floor, "ms")]


def bench_hostile(quick: bool) -> list[Row]:
    return _compile_scaling(quick) + _preauth(quick) + _timeouts(quick)


if __name__ == "__main__":
    for label, value, unit in bench_hostile("--quick" in sys.argv):
        print(f"{label}: {value:.2f} {unit}")
