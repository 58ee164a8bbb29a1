"""Start-up (issue 13): what importing peerbox costs a fresh interpreter.

``bench_startup(quick)`` returns ``[(label, ms, ratio), ...]``: the best wall
time of a fresh ``python`` process doing each of

* ``pass`` (the reference: the interpreter alone),
* ``import peerbox.policy`` (the policy engine: no wasmtime, trio, h2, nacl),
* ``import peerbox`` (the lazy facade),
* ``import peerbox; peerbox.compile`` (the compiler and wasmtime loaded),
* ``peerbox --version`` and ``peerbox --help`` (the console entry point: its
  commands' modules load only when one is chosen),

and its ratio to the reference, all with bytecode cached (each is run once
untimed first). ``bench/run.py`` shows it in ``make bench``. Run alone:
``python bench/startup_bench.py [--quick]``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

__all__ = ["bench_startup"]

_CASES = [
    ("`python -c pass` (reference)", ["-c", "pass"]),
    ("`import peerbox.policy`", ["-c", "import peerbox.policy"]),
    ("`import peerbox`", ["-c", "import peerbox"]),
    ("`import peerbox; peerbox.compile` (compiler and wasmtime loaded)",
     ["-c", "import peerbox; peerbox.compile"]),
    ("`peerbox --version`", ["-m", "peerbox", "--version"]),
    ("`peerbox --help`", ["-m", "peerbox", "--help"]),
]


def _best(argv: list[str], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        subprocess.run([sys.executable, *argv], check=True, stdout=subprocess.DEVNULL,
                       cwd=Path(__file__).resolve().parent)
        best = min(best, time.perf_counter() - t)
    return best


def bench_startup(quick: bool) -> list[tuple[str, float, float]]:
    rounds = 2 if quick else 7
    for _, argv in _CASES:  # warm the bytecode caches
        _best(argv, 1)
    times = [(label, _best(argv, rounds)) for label, argv in _CASES]
    ref = times[0][1]
    return [(label, t * 1e3, t / ref) for label, t in times]


if __name__ == "__main__":
    for label, ms, ratio in bench_startup("--quick" in sys.argv):
        print(f"{label}: {ms:.1f} ms ({ratio:.1f}x)")
