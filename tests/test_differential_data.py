"""Differential test over strings, arrays, maps, functions and closures (issue 14).

Hypothesis generates programs that alias containers as much as it can: ``a1 =
a0; a1.push(..)``, ``a0[i] = a1``, ``m0.k = a0``, nested places
(``m0.k[0] = ..``), script functions that change their parameters and return
them, closures that capture containers (captured variables are shared with
the enclosing scope, as in Rhai) or take them as parameters, and loops that
build and drop strings, arrays and maps; half the statements sit in ``try {
.. } catch { .. }`` so a program goes on after a runtime error (unwinding
through rt and the shadow stack). Each program runs on the default
sandbox and on ``debug_sandbox`` (a debug build of rt that collects at every
safe point and poisons what it frees); both must give the reference
evaluator's value (tests/_refeval/), or the same runtime error kind, and no
run may end in an internal error or a trap.

To keep it fast, several programs share one compiled script: each program is
the body of a function ``pK()`` and the script returns
``[p0() or "ERR:<kind>", p1() ...]`` (each call in its own try/catch). The
reference evaluates each program on its own, at the top level.

``FIXED`` pins the reference's rules that matter most (copies, shared
captures, display forms, builtins' edge cases) on both sandboxes too.

The memory test runs loops that allocate far more than 64 MiB in total and
keep a counter and a bounded sample; ``Result.peak_memory`` must stay under
16 MiB (without reclaiming memory the run would need the total).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import peerbox

# slow: each example compiles two scripts (one per sandbox, ~0.2 s each)
pytestmark = [pytest.mark.filterwarnings("ignore:Generating overly large repr"), pytest.mark.slow]


def _load(name: str) -> ModuleType:
    """Import the package tests/<name>/ by its path (tests/ is not on sys.path)."""
    if name in sys.modules:
        return sys.modules[name]
    package = Path(__file__).with_name(name)
    spec = importlib.util.spec_from_file_location(
        name, package / "__init__.py", submodule_search_locations=[str(package)])
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


ref = _load("_refeval")

# PEERBOX_DIFF_EXAMPLES=2000 for a longer bug hunt; the default (100) keeps the module near 40 s
EXAMPLES = int(os.environ.get("PEERBOX_DIFF_EXAMPLES", "100"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture],
)


# -- programs ------------------------------------------------------------------------

#: Script functions every program may call: each changes its parameters and returns them.
PRELUDE = """\
fn fa(x, v) { x.push(v); x[0] = v; x }
fn fm(m, v) { m.k = [v, m.k]; m.t = `${m.t}!`; m }
fn fs(s, v) { s += `${v}`; s.replace("a", "b"); s }
fn f2(x, y) { x.push(y); y.insert(0, x.len()); [x, y] }
fn fr(x, k) { if k <= 0 { x } else { x.push(`${k}`); let y = fr(x, k - 1); y.pop(); y } }
"""

ARRS = ["a0", "a1"]
MAPS = ["m0", "m1"]
STRS = ["s0", "s1"]

small_str = st.text(alphabet="ab,é X", max_size=4).map(lambda s: f'"{s}"')
idx = st.sampled_from(["0", "1", "-1", "2", "-2", "n % 3"])
# constant keys, and the same keys built at run time (hashed by rt, not by the compiler)
key = st.sampled_from(['"k"', '"t"', '"n"', '"z"', "s0", "s1", "`k`", '("t" + "")', '`${"n"}`'])
prop = st.sampled_from(["k", "t", "n"])


def _pick(xs: list[str]) -> st.SearchStrategy[str]:
    return st.sampled_from(xs)


int_e = st.one_of(
    st.integers(-3, 9).map(str), st.just("n"), _pick(ARRS).map(lambda a: f"{a}.len()"),
    _pick(MAPS).map(lambda m: f"len({m})"), _pick(STRS).map(lambda s: f"{s}.len()"),
)
str_e = st.one_of(
    small_str, _pick(STRS), _pick(STRS),
    st.builds(lambda s, a: f"`<${{{s}}}|${{{a}}}>`", _pick(STRS), st.sampled_from(ARRS + MAPS + ["n"])),
    st.builds(lambda s, t: f"{s} + {t}", _pick(STRS), st.one_of(small_str, _pick(STRS + ARRS))),
    st.builds(lambda s, a, b: f"{s}.sub_string({a}, {b})", _pick(STRS), st.integers(-3, 3),
              st.integers(-1, 4)),
    _pick(STRS).map(lambda s: f"{s}.to_upper()"),
    st.builds(lambda s, v: f"fs({s}, {v})", _pick(STRS), st.sampled_from(ARRS + ["n", '"a"'])),
    _pick(MAPS).map(lambda m: f"{m}.t"),
)
scalar_e = st.one_of(int_e, str_e, st.sampled_from(["true", "()", "0.5"]))


def _arr_e(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        _pick(ARRS), _pick(ARRS),
        st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.builds(lambda a, b: f"{a} + {b}", _pick(ARRS), _pick(ARRS)),
        st.builds(lambda s, sep: f'{s}.split("{sep}")', _pick(STRS), st.sampled_from([",", "a", " "])),
        _pick(MAPS).map(lambda m: f"{m}.keys()"), _pick(MAPS).map(lambda m: f"{m}.values()"),
        st.builds(lambda a, v: f"fa({a}, {v})", _pick(ARRS), inner),
        st.builds(lambda a, b: f"f2({a}, {b})", _pick(ARRS), _pick(ARRS)),
        st.builds(lambda a, k: f"fr({a}, {k})", _pick(ARRS), st.integers(0, 4)),
        _pick(ARRS).map(lambda a: f"f1.call({a})"), st.just("g0.call()"),
        _pick(MAPS).map(lambda m: f"{m}.k"),
        st.builds(lambda a, i: f"{a}[{i}]", _pick(ARRS), idx),
    )


def _map_e(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        _pick(MAPS), _pick(MAPS),
        st.builds(lambda k, t, v: f"#{{k: {k}, t: {t}, n: {v}}}", inner, str_e, int_e),
        st.builds(lambda a, b: f"{a} + {b}", _pick(MAPS), _pick(MAPS)),
        st.builds(lambda m, v: f"fm({m}, {v})", _pick(MAPS), inner),
        _pick(MAPS).map(lambda m: f"f3.call({m})"),
    )


any_e = st.recursive(scalar_e, lambda ch: st.one_of(_arr_e(ch), _map_e(ch)), max_leaves=4)
arr_e = _arr_e(any_e)
map_e = _map_e(any_e)
place = st.one_of(
    _pick(ARRS), st.builds(lambda a, i: f"{a}[{i}]", _pick(ARRS), idx),
    st.builds(lambda m, p: f"{m}.{p}", _pick(MAPS), prop),
    st.builds(lambda m, k: f"{m}[{k}]", _pick(MAPS), key),
    st.builds(lambda m, i: f"{m}.k[{i}]", _pick(MAPS), idx),
    st.builds(lambda m, i, p: f"{m}.k[{i}].{p}", _pick(MAPS), idx, prop),
    st.builds(lambda a, i, p: f"{a}[{i}].{p}", _pick(ARRS), idx, prop),
)


@st.composite
def statement(draw: st.DrawFn, depth: int, fresh: list[int]) -> str:
    simple = ["assign", "assign", "mutate", "mutate", "mutate", "place", "place", "str", "count",
              "alias", "salias", "closure"]
    compound = ["for", "range", "range", "while", "if", "try"]
    kind = draw(st.sampled_from(simple + compound if depth < 2 else simple))
    if kind == "assign":
        which = draw(st.sampled_from(["a", "m", "s"]))
        if which == "a":
            return f"{draw(_pick(ARRS))} = {draw(arr_e)};"
        if which == "m":
            return f"{draw(_pick(MAPS))} = {draw(map_e)};"
        return f"{draw(_pick(STRS))} = {draw(str_e)};"
    if kind == "mutate":
        a, v = draw(_pick(ARRS)), draw(any_e)
        return draw(st.sampled_from([
            f"{a}.push({v});", f"{a}.insert({draw(idx)}, {v});", f"{a}.pop();", f"{a}.remove({draw(idx)});",
            f"{a} += {draw(arr_e)};", f"n += {a}.len();", f"{draw(_pick(MAPS))}.remove({draw(key)});",
            f"{draw(_pick(MAPS))}.k.push({v});", f"{a}[{draw(idx)}].push({v});",
        ]))
    if kind == "place":
        op = draw(st.sampled_from(["=", "=", "+="]))
        return f"{draw(place)} {op} {draw(any_e)};"
    if kind == "str":
        s = draw(_pick(STRS))
        return draw(st.sampled_from([
            f"{s} += {draw(str_e)};", f"{s} += {draw(any_e)};",
            f'{s}.replace("{draw(st.sampled_from(["a", ",", "é", "ab"]))}", {draw(small_str)});',
            f"{draw(place)}.replace(\"a\", \"Z\");",
        ]))
    if kind == "count":
        return draw(st.sampled_from([
            f"n += f0.call({draw(scalar_e)});", f"n += {draw(int_e)};",
            f"if {draw(scalar_e)} in {draw(_pick(ARRS))} {{ n += 1; }}",
            f"if {draw(small_str)} in {draw(_pick(MAPS))} {{ n += 2; }}",
            f"if {draw(_pick(STRS))}.contains({draw(small_str)}) {{ n += 4; }}",
        ]))
    fresh[0] += 1
    t = f"t{fresh[0]}"
    if kind == "alias":
        src, dst = draw(st.one_of(_pick(ARRS), _pick(MAPS))), draw(place)
        change = draw(st.sampled_from([f"{t}.push({draw(any_e)})", f"{t}.k = {draw(any_e)}",
                                       f"{t}[0] = {draw(any_e)}", f"{t} += {draw(arr_e)}"]))
        return draw(st.sampled_from([
            f"let {t} = {src}; {change}; {dst} = {t};",
            f"let {t} = {src}; {dst} = {t}; {change};",
            f"let {t} = {src}; {change}; {src} = {t};",
        ]))
    if kind == "salias":
        s, d = draw(_pick(STRS)), draw(st.one_of(_pick(STRS), place))
        return draw(st.sampled_from([
            f"let {t} = {s}; {s} += {draw(str_e)}; {t} += {draw(small_str)}; {d} = {t};",
            f"let {t} = {s}.sub_string({draw(st.integers(-2, 2))}, 2); {t} += {draw(str_e)}; {d} += {t};",
            f'let {t} = {s}.split(","); {t}[0] += {draw(small_str)}; {d} = {t};',
            f"let {t} = [{s}, {s}]; {t}[0] += \"!\"; {t}[1].replace(\"a\", \"\"); {d} = {t};",
        ]))
    if kind == "closure":
        x = draw(st.one_of(_pick(ARRS), _pick(MAPS), _pick(STRS)))
        body = draw(st.sampled_from([
            f"{x}.len()", f"{{ {x} += [v]; {x}.len() }}" if x[0] == "a" else f"{{ {x}.t = v; 1 }}",
            f"{{ let c = {x}; c.push(v); c.len() }}", f"`${{{x}}}${{v}}`.len()",
        ]))
        then = draw(st.sampled_from([f"n += {t}.call({draw(scalar_e)});",
                                     f"let h{t} = {t}; {draw(_pick(ARRS))}.push(h{t}.call(n)); {x} = ();"]))
        if draw(st.integers(0, 4)) == 0:  # a closure that captures itself: a cycle
            return (f"let {t} = (); {t} = |v| {{ if v > 0 {{ {t}.call(v - 1) + 1 }} else {{ {x}.len() }} }}; "
                    f"n += {t}.call({draw(st.integers(0, 3))});")
        return f"let {t} = |v| {body}; {then}"
    inner = " ".join(draw(st.lists(statement(depth + 1, fresh), min_size=1, max_size=3)))
    if kind == "for":
        return f"for {t} in {draw(_pick(ARRS))} {{ {inner} }}"
    if kind == "while":
        return f"let {t} = 0; while {t} < {draw(st.integers(0, 4))} {{ {t} += 1; {inner} }}"
    if kind == "try":
        return f"try {{ {inner} }} catch {{ n += 100; }}"
    if kind == "range":
        k = draw(st.integers(0, 4))
        build = draw(st.sampled_from([
            f"let b{t} = [{t}, `${{{t}}}`]; b{t}.push(#{{x: b{t}}});",
            f"let b{t} = `${{{draw(_pick(STRS))}}}-${{{t}}}`; b{t} += b{t};",
            f"let b{t} = #{{k: [{t}], t: `{t}`}}; b{t}.k.push(b{t});", "",
        ]))
        return f"for {t} in 0..{k} {{ {build} {inner} }}"
    cond = draw(st.sampled_from([f"{draw(_pick(ARRS))}.len() > {draw(st.integers(0, 4))}",
                                 "n % 2 == 0", f"{draw(_pick(STRS))}.len() < 6"]))
    return f"if {cond} {{ {inner} }}"


@st.composite
def program(draw: st.DrawFn) -> str:
    """A program body; its value is the array of its variables."""
    fresh = [0]
    init = [
        f"let a0 = {draw(st.sampled_from(['[1, [2], #{k: [3]}]', '[]', '[0, 1, 2]']))};",
        'let a1 = ["x", a0];',
        "let m0 = " + draw(st.sampled_from(['#{k: [1], t: "t", n: 0}', "#{}", "#{k: a0}"])) + ";",
        "let m1 = #{k: a1, t: \"\", n: 1};",
        f"let s0 = {draw(small_str)}; let s1 = \"\"; let n = 0;",
        "let f0 = |v| { a0.push(v); a0.len() };",
        "let f1 = |x| { x.push(s0); x };",
        "let f3 = |m| { m.k = [n, m.k]; m };",
        "let g0 = || [a1, m0.k];",
    ]
    body = draw(st.lists(statement(0, fresh), min_size=1, max_size=7))
    # half the statements go on after a runtime error (and unwind through rt and the shadow stack)
    guard = draw(st.lists(st.booleans(), min_size=len(body), max_size=len(body)))
    body = [f"try {{ {s} }} catch {{ n -= 1; }}" if g else s for s, g in zip(body, guard, strict=True)]
    return "\n".join(init + body + ["[a0, a1, m0, m1, s0, s1, n]"])


def _batch_script(bodies: list[str]) -> str:
    parts = [PRELUDE]
    for i, b in enumerate(bodies):
        parts.append(f"fn p{i}() {{\n{b}\n}}")
    parts.append("let r = [];")
    for i in range(len(bodies)):
        parts.append(f'try {{ r.push(p{i}()); }} catch (e) {{ r.push("ERR:" + e.kind); }}')
    parts.append("r")
    return "\n".join(parts)


def _expected(bodies: list[str]) -> tuple[list[str], list[Any]]:
    """The programs the reference can judge, and its value for each."""
    kept, values = [], []
    for b in bodies:
        try:
            v = ref.evaluate(PRELUDE + b)
        except (ref.Unspecified, ref.Unsupported):
            continue
        kept.append(b)
        values.append(f"ERR:{v[1]}" if isinstance(v, tuple) else v)
    return kept, values


def _run(src: str, sandbox: peerbox.Sandbox | None, **limits: Any) -> peerbox.Result:
    prog = peerbox.compile(src, filename="diff_data.rhai", sandbox=sandbox)
    try:
        return prog.run(limits=peerbox.Limits(timeout=20.0, **limits))
    except peerbox.Error as e:
        pytest.fail(f"the run ended in {type(e).__name__}: {e}\nprogram:\n{src}")


STATS = {"examples": 0, "programs": 0, "dropped": 0, "errors": 0}


@pytest.fixture(scope="module", autouse=True)
def _report_stats() -> Iterator[None]:
    """Print how many programs were compared (``pytest -s`` shows it)."""
    yield
    print(f"\ndifferential data programs: {STATS}")


def _check(src: str, kept: list[str], expected: list[Any], got: Any, where: str,
           same: Callable[[Any, Any], bool]) -> None:
    assert isinstance(got, list) and len(got) == len(expected), f"{where}: program:\n{src}\ngot {got!r}"
    bad = [(b, x, g) for b, x, g in zip(kept, expected, got, strict=True) if not same(g, x)]
    assert not bad, f"{where} disagrees with the reference:\n" + "\n".join(
        f"--- program:\n{b}\n  expected {x!r}\n  got      {g!r}" for b, x, g in bad)


@SETTINGS
@given(st.lists(program(), min_size=1, max_size=4))
def test_data_programs_match_reference(debug_sandbox: peerbox.Sandbox, same: Callable[[Any, Any], bool],
                                       bodies: list[str]) -> None:
    kept, expected = _expected(bodies)
    STATS["examples"] += 1
    STATS["programs"] += len(kept)
    STATS["dropped"] += len(bodies) - len(kept)
    STATS["errors"] += sum(isinstance(x, str) and x.startswith("ERR:") for x in expected)
    if not kept:
        return
    src = _batch_script(kept)
    _check(src, kept, expected, _run(src, None).value, "default sandbox", same)
    _check(src, kept, expected, _run(src, debug_sandbox).value, "debug sandbox", same)


# -- memory: loops that allocate and drop --------------------------------------------------

MiB = 1 << 20
#: What a run may use at its largest, keeping < 1 MiB (the rest is garbage the collector reclaims).
PEAK_BOUND = 16 * MiB
#: Each program allocates at least this much in total (a lower bound counted from what it builds).
TOTAL_ALLOCATED = 96 * MiB
KEEP = 8  # the sample each program keeps: its last KEEP values

# name -> (loop body building `v` (W: width), bytes it allocates at least, n's increment, v.len())
Builder = tuple[str, Callable[[int], int], Callable[[int, int], int], Callable[[int, int], int]]
BUILDERS: dict[str, Builder] = {
    # one string grown by `+=` (in place when unshared): its buffer alone is >= its length
    "string": ("let v = `item-${i}-`; for j in 0..W { v += \"xyzw\"; } n += v.len();",
               lambda w: 4 * w, lambda i, w: len(f"item-{i}-") + 4 * w,
               lambda i, w: len(f"item-{i}-") + 4 * w),
    # an array of W fresh strings: 16-byte slots, and each string's block
    "array": ("let v = []; for j in 0..W { v.push(`${i}:${j}`); } n += v.len();",
              lambda w: 32 * w, lambda i, w: w, lambda i, w: w),
    # a map of W keys, each holding a 2-slot array
    "map": ("let v = #{}; for j in 0..W { v[`k${j}`] = [i, j]; } n += v.len();",
            lambda w: 48 * w, lambda i, w: w, lambda i, w: w),
    # records changed through a copy (copy-on-write), pushed into an array
    "records": ("let v = []; for j in 0..W { let r = #{id: j, name: `n${j}`, tags: [i]}; let c = r; "
                "c.tags.push(j); v.push(c); } n += v[-1].tags.len() + v[0].tags.len();",
                lambda w: 64 * w, lambda i, w: 4, lambda i, w: w),
    # a CSV-like line, split, and replaced (the replace writes the string back)
    "split": ("let v = \"\"; for j in 0..W { v += `${j},`; } let parts = v.split(\",\"); "
              "v.replace(\",\", \";\"); n += parts.len();",
              lambda w: 16 * w, lambda i, w: w + 1, lambda i, w: len("".join(f"{j}," for j in range(w)))),
}


def _memory_program(kind: str, width: int, iterations: int, every: int) -> str:
    body = BUILDERS[kind][0].replace("W", str(width))
    return (
        "let n = 0; let keep = [];\n"
        f"for i in 0..{iterations} {{\n    {body}\n"
        f"    if i % {every} == 0 {{ keep.push(v); if keep.len() > {KEEP} {{ keep.remove(0); }} }}\n}}\n"
        "[n, keep.len(), keep[-1].len()]"
    )


def _memory_expected(kind: str, width: int, iterations: int, every: int) -> list[int]:
    _, _, n_inc, v_len = BUILDERS[kind]
    kept = list(range(0, iterations, every))
    return [sum(n_inc(i, width) for i in range(iterations)), min(len(kept), KEEP), v_len(kept[-1], width)]


@settings(max_examples=max(4, EXAMPLES // 16), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.sampled_from(sorted(BUILDERS)), st.integers(64, 256), st.integers(1, 5000))
def test_allocate_and_drop_stays_bounded(debug_sandbox: peerbox.Sandbox, same: Callable[[Any, Any], bool],
                                         kind: str, width: int, every: int) -> None:
    # the same program, 3 iterations: the reference's value, on both sandboxes
    small = _memory_program(kind, width, 3, 1)
    expected = ref.evaluate(small)
    assert expected == _memory_expected(kind, width, 3, 1)
    for sandbox in (None, debug_sandbox):
        assert same(_run(small, sandbox).value, expected), f"program:\n{small}"

    # enough iterations that everything it builds adds up to TOTAL_ALLOCATED at least
    iterations = -(-TOTAL_ALLOCATED // BUILDERS[kind][1](width))
    src = _memory_program(kind, width, iterations, every)
    res = _run(src, None, memory=256 * MiB)
    assert res.value == _memory_expected(kind, width, iterations, every), f"program:\n{src}"
    assert res.peak_memory < PEAK_BOUND, (
        f"peak guest memory {res.peak_memory / MiB:.1f} MiB for a program keeping < 1 MiB "
        f"(allocating >= {TOTAL_ALLOCATED // MiB} MiB in all):\n{src}")


# -- fixed points of the reference (each checked on peerbox too) ------------------------------

FIXED: list[tuple[str, Any]] = [
    ("let a = [1]; let b = a; b.push(2); [a, b]", [[1], [1, 2]]),
    ("let m = #{a: [1]}; let b = m.a; b.push(2); [m, b]", [{"a": [1]}, [1, 2]]),
    ("let a = [[1]]; let b = a[0]; b.push(2); a[0] = b; b.push(3); [a, b]", [[[1, 2]], [1, 2, 3]]),
    ("fn f(a) { a.push(1); a } let x = [0]; let y = f(x); [x, y]", [[0], [0, 1]]),
    ("let a = [1]; let g = |v| { a.push(v); a.len() }; let r = g.call(5); [a, r]", [[1, 5], 2]),
    ("let a = [1]; let f = || a.len(); let b = a; b.push(2); [a, b, f.call()]", [[1], [1, 2], 1]),
    ("let a = [1]; let f = || a; let r = f.call(); r.push(4); [a, r]", [[1], [1, 4]]),
    ("let x = 1; let f = || x; let g = f; x = 7; g.call()", 7),
    ("let fs = []; for i in 0..3 { fs.push(|| i); } [fs[0].call(), fs[2].call()]", [0, 2]),
    ("let a = [1,2]; for x in a { a.push(x); } a", [1, 2, 1, 2]),
    ("let m = #{a: [#{b: 1}]}; m.a[0].b = 5; m", {"a": [{"b": 5}]}),
    ("let m = #{}; m.self = m; m.self.self = m; m", {"self": {"self": {"self": {}}}}),
    ("let a = [1]; a.push(a); a.push(a); a", [1, [1], [1, [1]]]),
    ('let a = "ab"; a += "c"; let b = a; a += "x"; b += "y"; [a, b]', ["abcx", "abcy"]),
    ('let a = "hello"; let p = a.sub_string(0, 3); p += "X"; a += "Y"; [a, p]', ["helloY", "helX"]),
    ('let t = "abcabc"; let r = [t, t]; r[0].replace("a", "Z"); r[1] += "!"; [t, r]',
     ["abcabc", ["ZbcZbc", "abcabc!"]]),
    ('let s = "héllo"; [s.len(), s.sub_string(-2, 5), s.sub_string(-10, 2), s.sub_string(1, -1)]',
     [5, "lo", "hé", ""]),
    ('let m = #{b: 1, a: 2}; [m.keys(), m.values(), `${m}`, m.c]',
     [["a", "b"], [2, 1], '#{"a": 2, "b": 1}', None]),
    ('"" + [1.0, "a\\"", (), true, [2]]', '[1.0, "a\\"", (), true, [2]]'),
    ("let a = [1,2]; a.insert(-1, 7); a.insert(9, 8); [a, a.remove(-9), a.pop()]", [[1, 7, 2, 8], None, 8]),
    ("let t = (); t = |v| { if v > 0 { t.call(v - 1) + 1 } else { 0 } }; t.call(3)", 3),
    ("let a = [1]; try { a.push(2); a[5] = 1; a.push(3); } catch { a.push(4); } a", [1, 2, 4]),
    ("let m = #{}; m.x.y = 1", ("error", "not_found")),
    ("[1] + 2", ("error", "type_mismatch")),
    ("let g = |a, b| a; g.call(1)", ("error", "arity")),
]


@pytest.mark.parametrize(("src", "expected"), FIXED)
def test_fixed_programs(debug_sandbox: peerbox.Sandbox, same: Callable[[Any, Any], bool],
                        src: str, expected: Any) -> None:
    assert ref.evaluate(src) == expected
    for sandbox in (None, debug_sandbox):
        prog = peerbox.compile(src, sandbox=sandbox)
        if isinstance(expected, tuple):
            with pytest.raises(peerbox.ScriptError) as info:
                prog.run()
            assert info.value.kind == expected[1]
        else:
            assert same(prog.run().value, expected)
