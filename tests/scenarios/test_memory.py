"""Memory is reclaimed while a run goes on (issue 14): the limit bounds what a script keeps.

Each script here allocates many times what it keeps; its peak guest memory
(``Result.peak_memory``) must stay near what it keeps. A script that keeps
more than its limit still ends with ``LimitExceeded("memory")``, and a
runaway recursion with ``LimitExceeded("stack")``, never an internal error.
The data-work programs of ``make bench`` also run on the debug build of rt
(``test_data_work.py``).
"""

from __future__ import annotations

from typing import Any

import pytest

import peerbox

MIB = 1 << 20


def run(source: str, *, memory: int | None = None, sandbox: peerbox.Sandbox | None = None,
        params: dict[str, Any] | None = None) -> peerbox.Result:
    limits = peerbox.Limits(timeout=60, memory=memory) if memory else peerbox.Limits(timeout=60)
    return peerbox.compile(source, sandbox=sandbox).run(params=params or {}, limits=limits)


CHURN = [
    pytest.param("let total = 0;\nfor i in 0..2000000 { let s = `item-${i}`; total += s.len(); }\ntotal",
                 22_888_890, id="strings"),
    pytest.param("let total = 0;\nfor i in 0..300000 { let m = #{id: i, tags: [i, `t${i}`]}; total += m.tags.len(); }\n"
                 "total", 600_000, id="maps-of-arrays"),
    pytest.param("let n = 0;\nfor i in 0..300000 { let a = [i, [i], #{k: `${i}`}]; let b = a; b[1].push(1); "
                 "n += b[1].len() - a[1].len(); }\nn", 300_000, id="copies-on-write"),
    pytest.param('let buf = ""; let n = 0;\nfor i in 0..1000000 { buf += `${i},`; if buf.len() > 4000 '
                 '{ n += buf.len(); buf = ""; } }\nn + buf.len()', 6_888_890, id="string-building"),
    pytest.param("fn item(i) { `item-${i}` }\nlet total = 0;\nfor i in 0..500000 { total += item(i).len(); }\ntotal",
                 5_388_890, id="function-results"),
    pytest.param("let f = |i| { let s = `item-${i}`; s.len() };\nlet total = 0;\n"
                 "for i in 0..500000 { total += f.call(i); }\ntotal", 5_388_890, id="closure-calls"),
    # cycles: a closure whose environment holds itself, made and dropped in every iteration
    pytest.param("let n = 0;\nfor i in 0..200000 { let f = (); f = || f; n += 1; }\nn", 200_000, id="closure-cycles"),
]


@pytest.mark.parametrize(("source", "expected"), CHURN)
def test_a_loop_that_allocates_and_drops_runs_in_constant_memory(source: str, expected: int) -> None:
    """Each loop allocates over 20 MiB in all and keeps almost nothing: the peak stays under 16 MiB."""
    result = run(source)
    assert result.value == expected
    assert result.peak_memory < 16 * MIB, result.peak_memory >> 20


def test_the_limit_bounds_what_a_script_keeps_not_what_it_allocated() -> None:
    """Under a 48 MiB limit: keep ~10 MiB while allocating ~200 MiB of garbage."""
    src = ("let keep = []; let total = 0;\n"
           "for i in 0..3000000 { let s = `garbage-garbage-${i}`; total += s.len();\n"
           "  if i % 20 == 0 { keep.push(`kept-${i}`); } }\n[keep.len(), total]")
    result = run(src, memory=48 * MIB)
    assert result.value == [150_000, 67_888_890]
    assert result.peak_memory <= 48 * MIB


def test_a_script_that_keeps_too_much_still_ends_with_limit_exceeded_memory() -> None:
    src = "let keep = [];\nfor i in 0..10000000 { keep.push(`item-number-${i}`); }\nkeep.len()"
    with pytest.raises(peerbox.LimitExceeded) as info:
        run(src, memory=32 * MIB)
    assert info.value.limit == "memory"


def test_a_runaway_recursion_holding_values_ends_with_limit_exceeded_stack() -> None:
    src = "fn f(n) { let s = `${n}`; let a = [s, s]; for i in 0..1 { } f(n + 1) }\nf(0)"
    with pytest.raises(peerbox.LimitExceeded) as info:
        run(src)
    assert info.value.limit == "stack"


def test_values_held_by_callers_survive_collections_in_callees(debug_sandbox: peerbox.Sandbox) -> None:
    """Collections at every safe point of deep call chains: what each frame holds survives."""
    src = """
fn build(n) {
    let here = [`level-${n}`];
    if n == 0 { return here; }
    let below = build(n - 1);
    for i in 0..3 { let junk = `${i}-${n}`; }
    here + below
}
let parts = [];
for i in 0..20 { parts.push(build(i % 5)); }
[parts.len(), parts[19], parts[4][0]]
"""
    result = run(src, sandbox=debug_sandbox)
    assert result.value == [20, ["level-4", "level-3", "level-2", "level-1", "level-0"], "level-4"]
