"""Open logic (issue 7): what layered modules and signed installs cost.

``bench_logic(quick)`` returns ``[(label, value, unit), ...]``:

* a cached compile of a script whose imports go through the layers (the
  compile cache re-resolves every import and compares source hashes, so a
  changed module is noticed on the next request): 1 module, and a chain of
  10 peer modules ending in a built-in one;
* the first compile after an imported module changed (peerbox's compiler
  plus Cranelift, for the script and its modules);
* ``PeerLogic.set`` (compile check of the module and of every module
  importing it, the installer's statement, the peer's seal, atomic writes
  and fsyncs) with 0 and 5 dependents;
* a remote install handled sans-IO (``ExecHandler.handle_logic``: two
  signatures verified, policy, install, a signed reply);
* ``logic verify``, per recorded version.

``bench/run.py`` shows it in ``make bench``. Run alone: ``python bench/logic_bench.py [--quick]``.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["bench_logic"]


def _best(fn: Callable[[], object], n: int, rounds: int) -> float:
    """Best mean seconds per call over ``rounds`` batches of ``n`` calls."""
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        out.append((time.perf_counter() - t) / n)
    return min(out)


def bench_logic(quick: bool) -> list[tuple[str, float, str]]:
    import peerbox
    from peerbox.peer._context import PeerContext
    from peerbox.wire._reply import open_reply
    from peerbox.trust._exec import ExecHandler
    from peerbox.peer._logic import LogicLayers, PeerLogic
    from peerbox.trust._logic_push import make_logic_request

    rounds, n = (1, 20) if quick else (5, 200)
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = peerbox.PeerStore(Path(tmp))
        bob = store.init("bob")
        logic = PeerLogic(bob)
        logic.set("inbox", 'import "builtin:inbox" as base;\nfn deliver(t) { base::deliver(t) }\n')
        for i in reversed(range(10)):  # the end of the chain first: each must compile when set
            nxt = f'import "m{i + 1}" as m;\nfn f(x) {{ m::f(x) + 1 }}\n' if i < 9 else \
                'import "builtin:notes" as n;\nfn f(x) { x + n::count() }\n'
            logic.set(f"m{i}", nxt)
        sb = peerbox.Sandbox()
        layers = LogicLayers.of(bob)
        with PeerContext(bob) as ctx:
            def compile_with(script: str) -> Callable[[], object]:
                return lambda: peerbox.compile(script, "bench.rhai", resolver=layers, sandbox=sb)

            one = compile_with('import "inbox" as i; i::deliver("x")')
            chain = compile_with('import "m0" as m; m::f(1)')
            one(), chain()
            rows.append(("cached compile: import inbox (-> builtin:inbox)", _best(one, n, rounds) * 1e6, "µs"))
            rows.append(("cached compile: a chain of 10 peer modules -> builtin:notes",
                         _best(chain, n, rounds) * 1e6, "µs"))

            times = []
            for k in range(2 if quick else 5):
                logic.set("m9", f'import "builtin:notes" as n;\nfn f(x) {{ x + n::count() + {k} }}\n')
                t = time.perf_counter()
                chain()
                times.append(time.perf_counter() - t)
            rows.append(("first compile after the last module of the chain changed", min(times) * 1e3, "ms"))

            k = iter(range(10**6))
            rows.append(("logic set: a module no module imports",
                         _best(lambda: logic.set("solo", f"fn f() {{ {next(k)} }}\n"), max(3, n // 20),
                               rounds) * 1e3, "ms"))
            logic.set("base", "fn f() { 0 }\n")
            for i in range(5):
                logic.set(f"dep{i}", f'import "base" as b;\nfn g{i}() {{ b::f() }}\n')
            rows.append(("logic set: a module 5 others import",
                         _best(lambda: logic.set("base", f"fn f() {{ {next(k)} }}\n"), max(3, n // 20),
                               rounds) * 1e3, "ms"))

            handler = ExecHandler(ctx, store)
            key = bob.signing_key()
            samples = []
            for _ in range(3 if quick else 20):
                req = make_logic_request(key, target=bob.public_key, module="solo",
                                         source=f"fn f() {{ {next(k)} }}\n", now=int(time.time()))
                t = time.perf_counter()
                handled = handler.handle_logic(req)
                samples.append(time.perf_counter() - t)
                assert open_reply(handled.body).ok, handled.error
            handler.close()
            rows.append(("remote install, handled sans-IO (handle_logic)", statistics.median(samples) * 1e3,
                         "ms"))

            versions = sum(len(logic.versions(m)) for m in logic.history.modules())
            t = time.perf_counter()
            report = logic.verify()
            per = (time.perf_counter() - t) / versions
            assert not any(report.values()), report
            rows.append((f"logic verify, per version ({versions} versions)", per * 1e6, "µs"))
        sb.close()
    return rows


if __name__ == "__main__":
    for label, value, unit in bench_logic("--quick" in sys.argv):
        print(f"{label:<66} {value:10.1f} {unit}")
