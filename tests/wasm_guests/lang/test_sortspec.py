"""Sort comparators that only compare properties are sorted by keys in rt (``_sortspec.py``,
``rt/sort_keyed.c``), with exactly the closure's result.

The differential test sorts the same records twice in one run: with a
comparator of the recognised shape (rt reads the keys once and never calls
the closure) and with the same comparator behind a ``let`` (not recognised:
rt calls the closure for every comparison). Records, keys and comparator
trees are random, including what must send rt back to the closure (missing
keys, floats, non-maps, mixed kinds, differences that overflow): both sorts
must give the same array, or fail with the same error.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import peerbox
from peerbox.wasm_guests.lang import _ast as A
from peerbox.wasm_guests.lang._diagnostics import Diagnostics
from peerbox.wasm_guests.lang._parser import parse
from peerbox.wasm_guests.lang._sortspec import comparator_spec

OPS = ["<", ">", "<=", ">=", "==", "!="]
KEYS = ["k", "s", "x"]
KINDS = {"type_mismatch", "integer_overflow", "not_found"}  # what a comparator may raise


def closure_of(src: str) -> A.Closure:
    """The closure of a script ``let c = <src>;``."""
    script = parse(f"let c = {src};", "t.rhai", Diagnostics())
    let = script.body.stmts[0]
    assert isinstance(let, A.Let) and isinstance(let.value, A.Closure)
    return let.value


# -- what is recognised -----------------------------------------------------------------

@pytest.mark.parametrize(("src", "spec"), [
    ("|a, b| a.score - b.score", "1\x05scored0a0b"),
    ("|x, y| y.n - x.n", "1\x01nd0b0a"),
    ("|a, b| if a.name < b.name { -1 } else { 1 }", "1\x04name?<0a0bk-1;k1;"),
    ("|a, b| if a.s != b.s { b.s - a.s } else if a.n <= b.n { 0 } else { 7 }",
     "2\x01s\x01n?!0a0bd0b0a?l1a1bk0;k7;"),
    ("|a, b| { if a.k >= b.k { { 1 } } else { -2 } }", "1\x01k?g0a0bk1;k-2;"),
])
def test_comparators_of_properties_are_described(src: str, spec: str) -> None:
    assert comparator_spec(closure_of(src)) == spec


@pytest.mark.parametrize("src", [
    "|a, b| { let z = 0; a.k - b.k }",          # a statement
    "|a, b| a.k - c.k",                           # not a parameter
    "|a, b| a.k + b.k",                           # not a difference
    "|a, b| if a.k < b.k { -1 }",                 # no else: ()
    "|a, b| if a.k < b.k && a.j < b.j { -1 } else { 1 }",
    "|a, b| if a.k < 3 { -1 } else { 1 }",        # a constant in a comparison
    "|a, b| if a.k < b.k { 1.5 } else { 1 }",     # a float result
    "|a, b| a.k.j - b.k.j",                       # a path, not a property
    "|a, b| a[\"k\"] - b[\"k\"]",
    "|a| a.k",
    "|a, b, c| a.k - b.k",
    "|a, b| a.p - b.q + 0",
    "|a, b| if a.a < b.a { a.b - b.b } else if a.c < b.c { a.d - b.d } else { 0 }",  # 4 keys
])
def test_other_comparators_are_not(src: str) -> None:
    assert comparator_spec(closure_of(src)) is None


def test_the_bench_comparator_is_sorted_by_keys() -> None:
    src = """let r = [#{score: 1, name: "b"}, #{score: 2, name: "a"}, #{score: 1, name: "a"}];
r.sort(|a, b| {
    if a.score != b.score { b.score - a.score } else if a.name < b.name { -1 }
    else if a.name > b.name { 1 } else { 0 }
});
r"""
    prog = peerbox.compile(src)
    assert "rt_sort_keyed" in prog.wat
    assert prog.run().value == [{"score": 2, "name": "a"}, {"score": 1, "name": "a"}, {"score": 1, "name": "b"}]


# -- the differential test ---------------------------------------------------------------

SIDE = st.sampled_from(["a", "b"])
PROP = st.tuples(SIDE, st.sampled_from(KEYS)).map(lambda t: f"{t[0]}.{t[1]}")
LEAF = st.one_of(
    st.integers(-3, 3).map(str),
    st.tuples(PROP, PROP).map(lambda t: f"{t[0]} - {t[1]}"),
)
TREE = st.recursive(
    LEAF,
    lambda sub: st.tuples(PROP, st.sampled_from(OPS), PROP, sub, sub).map(
        lambda t: f"if {t[0]} {t[1]} {t[2]} {{ {t[3]} }} else {{ {t[4]} }}"),
    max_leaves=5,
)
INTS = st.one_of(st.integers(-2, 2), st.sampled_from([2**62, -(2**62), 2**63 - 1, -(2**63), 10**18]))
STRS = st.one_of(st.sampled_from(["", "a", "b", "ab", "aaaaaaaab", "aaaaaaaaa"]), st.text(alphabet="ab\0é", max_size=11))
KEY_VALUES = {"k": INTS, "s": STRS, "x": st.one_of(INTS, STRS, st.floats(allow_nan=False, width=32))}


@st.composite
def records(draw: st.DrawFn) -> list[Any]:
    """Mostly maps with every key of one kind each; sometimes a missing key, a float, a non-map."""
    kinds = {k: draw(st.sampled_from(["int", "str"])) for k in KEYS}
    messy = draw(st.integers(0, 4)) == 0

    def value(key: str) -> Any:
        if messy and draw(st.integers(0, 5)) == 0:
            return draw(KEY_VALUES["x"])
        return draw(INTS if kinds[key] == "int" else STRS)

    out: list[Any] = []
    for _ in range(draw(st.integers(0, 60))):
        if messy and draw(st.integers(0, 15)) == 0:
            out.append(draw(st.integers(0, 3)))
            continue
        rec = {k: value(k) for k in KEYS if not (messy and draw(st.integers(0, 12)) == 0)}
        out.append(rec)
    return out


def sort_both(tree: str) -> str:
    keyed = f"|a, b| {tree}"
    called = f"|a, b| {{ let unrecognised = 0; {tree} }}"
    return f"""
fn sorted(r, how) {{
    try {{
        if how == 0 {{ r.sort({keyed}); }} else {{ r.sort({called}); }}
        return r;
    }} catch (e) {{
        return [e.kind, e.message];
    }}
}}
[sorted(params.recs, 0), sorted(params.recs, 1)]
"""


DIFF = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


TIES = [{"k": i % 3, "s": "ab"[i % 2], "x": i} for i in range(40)]
LONG = ["aaaaaaaab", "aaaaaaaaa", "aaaaaaaa", "aaaaaaaa\0", "aaaaaaa", "aaaaaaa\0"]  # 8-byte prefixes (zero-padded) tie
LONG_TIES = [{"k": i % 2, "s": LONG[i % 6], "x": i} for i in range(40)]


@DIFF
@given(tree=TREE, recs=records())
def test_keyed_sort_gives_the_closures_result(tree: str, recs: list[Any]) -> None:
    check_both(tree, recs)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("key", ["k", "s"])
def test_each_comparison_on_ties(op: str, key: str) -> None:
    """Each operator, on ints and on strings, where equal keys decide the order."""
    for recs in (TIES, LONG_TIES):
        check_both(f"if a.{key} {op} b.{key} {{ -1 }} else {{ 1 }}", recs)
        check_both(f"if a.{key} {op} b.{key} {{ a.x - b.x }} else {{ b.x - a.x }}", recs)


def check_both(tree: str, recs: list[Any]) -> None:
    """The keyed sort and the closure's sort of ``recs`` by ``tree`` agree (in value or error)."""
    prog = peerbox.compile(sort_both(tree))
    assert "rt_sort_keyed" in prog.wat
    keyed, called = prog.run(params={"recs": recs}, limits=peerbox.Limits(timeout=20)).value
    assert keyed == called
    assert isinstance(keyed, list) and (len(keyed) == len(recs) or keyed[0] in KINDS)


def test_keyed_sort_on_the_debug_runtime(debug_sandbox: peerbox.Sandbox) -> None:
    """Large enough for merges (more than a run of 16), strings longer than their 8-byte prefixes."""
    recs: list[dict[str, Any]] = [{"k": (i * 7919) % 13, "s": f"name-{(i * 31) % 17:04d}", "x": i}
                                  for i in range(300)]
    tree = "if a.k != b.k { b.k - a.k } else if a.s < b.s { -1 } else if a.s > b.s { 1 } else { 0 }"
    prog = peerbox.compile(sort_both(tree), sandbox=debug_sandbox)
    keyed, called = prog.run(params={"recs": recs}).value
    assert keyed == called
    assert keyed == sorted(recs, key=lambda r: (-r["k"], r["s"]))
