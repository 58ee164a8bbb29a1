"""Compile budgets (issue 12, findings 1 and 8): every limit of CompileLimits, checked as the
compiler goes, refuses with a CompileError naming the limit, its value and the position.

* regressions for each reported instance (600 parameters, 40,000 lets, a 540 KB string
  literal, an 80 KB arithmetic script, a 5000-digit literal, a 254-link ``**`` chain);
* at the limit a script compiles, one past it the compile is refused naming that limit
  (generated scripts; the limits are set from the compile's own ``stats``);
* imported modules are charged to the importing script's budget;
* the deadline is read in every stage, and a reading past it always ends the compile;
* token soup under tiny limits never raises anything but CompileError.
"""

from __future__ import annotations

import dataclasses
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import peerbox
from peerbox.wasm_guests.lang import (
    CompileError, CompileLimitExceeded, CompileLimits, Compiled, ModuleSource, compile_to_wat,
)

# big enough that nothing but the limit under test is ever reached
HUGE = CompileLimits(source_bytes=1 << 30, tokens=1 << 30, nodes=1 << 30, depth=1000, height=1000,
                     params=400, locals=40_000, modules=1000, wat_bytes=1 << 34,
                     function_wat_bytes=7_000_000, timeout=None)

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def refused(src: str, limits: CompileLimits | None = None, **kw: object) -> CompileLimitExceeded:
    """Compile ``src`` expecting a refusal for a limit; return the error."""
    with pytest.raises(CompileLimitExceeded) as info:
        compile_to_wat(src, "t.rhai", limits=limits, **kw)  # type: ignore[arg-type]
    err = info.value
    assert isinstance(err, CompileError) and err.exit_code == 3
    assert f"compile limit '{err.limit}'" in str(err)
    return err


# -- the reported instances ----------------------------------------------------------

PARAMS_600 = ", ".join(f"p{i}" for i in range(600))


@pytest.mark.parametrize("src", [
    f"fn f({PARAMS_600}) {{ p0 }}",
    f"let c = |{PARAMS_600}| p0; c",
    "let c = || 1; c.call(" + ", ".join(["1"] * 600) + ")",
    "print(" + ", ".join(["1"] * 600) + ")",
], ids=["fn", "closure", "closure-call", "builtin-call"])
def test_600_parameters_are_refused_naming_the_limit(src: str) -> None:
    err = refused(src)
    assert err.limit == "params" and err.value == 128
    assert err.line == 1 and src[:err.col - 1].count(",") == 128  # at the 129th
    assert "compile limit 'params' is 128" in err.message


def test_600_parameters_through_peerbox_compile_are_a_compile_error_not_a_bug() -> None:
    with pytest.raises(peerbox.CompileError) as info:
        peerbox.compile(f"fn f({PARAMS_600}) {{ p0 }}\nf", filename="p.rhai")
    assert info.value.exit_code == 3 and "'params'" in str(info.value)


def test_a_function_at_the_parameter_limit_compiles_and_runs() -> None:
    names = [f"p{i}" for i in range(128)]
    src = f"fn f({', '.join(names)}) {{ p0 + p127 }}\nf({', '.join(str(i) for i in range(128))})"
    assert peerbox.compile(src).run().value == 127


@pytest.mark.slow
def test_40000_lets_are_refused_for_locals_never_an_internal_error() -> None:
    src = "".join(f"let a{i} = {i};\n" for i in range(40_000)) + "a0"
    err = refused(src)
    assert err.limit == "locals"
    with pytest.raises(peerbox.CompileError):
        peerbox.compile(src)


def test_lets_within_the_locals_budget_compile_and_run() -> None:
    src = "".join(f"let a{i} = {i};\n" for i in range(4000)) + "a3999 + a1"
    assert peerbox.compile(src).run().value == 4000


def test_the_540kb_string_literal_compiles_within_budget() -> None:
    src = 'let s = "' + "a\\n" * (540 * 1024 // 3) + '";\ns.len()'
    c = compile_to_wat(src, "s.rhai")
    assert c.stats.tokens < 20 and c.stats.source_bytes == len(src)


def test_the_80kb_arithmetic_script_is_refused_cleanly() -> None:
    line = "y = " + " + ".join(["x"] * 100) + ";\n"
    src = "let x = 1; let y = 0;\n" + line * (80 * 1024 // len(line))
    err = refused(src)
    assert err.limit == "function_wat_bytes"
    # the same work split into functions stays within every budget
    fns = "".join(f"fn f{i}(x) {{ {' + '.join(['x'] * 100)} }}\n" for i in range(200))
    assert compile_to_wat("let x = 1;\n" + fns + "f0(x)", "t.rhai").stats.function_wat_bytes < 1 << 20


def test_arithmetic_reuses_scratch_locals() -> None:
    """Finding 1's codegen cause: every inline + or - had a wasm local of its own."""
    c = compile_to_wat("let x = 1;\n" + ("x = " + " + ".join(["x"] * 100) + ";\n") * 5, "t.rhai")
    assert c.stats.locals < 20


def test_a_huge_decimal_literal_is_a_compile_error() -> None:
    with pytest.raises(CompileError, match="integer literal too large"):
        compile_to_wat("let x = " + "1" * 5000 + ";", "t.rhai")
    assert compile_to_wat("let x = " + "0" * 5000 + "7;", "t.rhai").stats.tokens == 5


def test_a_long_pow_chain_within_the_height_compiles() -> None:
    compile_to_wat("let x = 1; x" + " ** x" * 254, "t.rhai")  # was a RecursionError


# -- at the limit it compiles, past it the limit is named ------------------------------

def _modules(n: int) -> dict[str, str]:
    return {f"m{i}": f"fn f{i}(a) {{ a + {i} }}\nconst K{i} = {i};" for i in range(n)}


def _resolver(mods: dict[str, str]) -> object:
    def resolve(name: str, importer: str) -> ModuleSource | None:
        return ModuleSource(name + ".rhai", mods[name]) if name in mods else None
    return resolve


@st.composite
def scripts(draw: st.DrawFn) -> tuple[str, dict[str, str]]:
    """A script exercising nesting, trees, parameters, locals and modules at a drawn size."""
    n = draw(st.integers(1, 30))
    shape = draw(st.sampled_from([
        "paren", "array", "map", "block", "if", "closure", "interp", "sum", "neg", "props", "else-if",
        "params", "closure-params", "args", "lets", "modules", "strings", "functions",
    ]))
    mods: dict[str, str] = {}
    src = {
        "paren": "let x = 1; " + "(" * n + "x" + ")" * n,
        "array": "[" * n + "1" + "]" * n,
        "map": "#{a: " * n + "1" + "}" * n,
        "block": "{" * n + "1" + "}" * n,
        "if": "let x = true; " + "if x { " * n + "1" + " }" * n,
        "closure": "|a| " * n + "1",
        "interp": "`${" * n + "1" + "}`" * n,
        "sum": "let x = 1; x" + " + x" * n,
        "neg": "let x = 1; " + "-" * n + "x",
        "props": "let x = #{}; x" + ".a" * n,
        "else-if": "let x = true; if x { 1 }" + " else if x { 2 }" * n,
        "params": f"fn f({', '.join(f'p{i}' for i in range(n))}) {{ p0 }}",
        "closure-params": f"let c = |{', '.join(f'p{i}' for i in range(n))}| p0; c",
        "args": "let c = |a| a; c.call(" + ", ".join(["1"] * n) + ")",
        "lets": "".join(f"let v{i} = {i};\n" for i in range(n)) + "v0",
        "strings": "".join(f'let s{i} = "\\u{{41}}{i}\\t";\n' for i in range(n)),
        "functions": "".join(f"fn g{i}(a) {{ a * {i} }}\n" for i in range(n)) + "g0(2)",
    }.get(shape)
    if src is None:
        mods = _modules(n)
        src = "".join(f'import "m{i}" as m{i};\n' for i in range(n)) + "m0::f0(m0::K0)"
    return src, mods


LIMITS = ["source_bytes", "tokens", "nodes", "depth", "height", "params", "locals", "modules",
          "wat_bytes", "function_wat_bytes"]


@FAST
@given(scripts(), st.sampled_from(LIMITS))
def test_at_the_limit_it_compiles_one_past_it_is_refused(script: tuple[str, dict[str, str]],
                                                         limit: str) -> None:
    src, mods = script
    res = _resolver(mods)
    used = getattr(compile_to_wat(src, "t.rhai", res, limits=HUGE).stats, limit)  # type: ignore[arg-type]
    if used <= 1:
        return  # a limit below 1 makes no sense
    compile_to_wat(src, "t.rhai", res, limits=dataclasses.replace(HUGE, **{limit: used}))  # type: ignore[arg-type]
    with pytest.raises(CompileError) as info:
        compile_to_wat(src, "t.rhai", res,  # type: ignore[arg-type]
                       limits=dataclasses.replace(HUGE, **{limit: used - 1}))
    err = info.value
    assert f"compile limit '{limit}' is {used - 1}" in str(err)
    if limit != "height":  # a too-tall statement is an ordinary error; parsing goes on
        assert isinstance(err, CompileLimitExceeded) and err.limit == limit and err.value == used - 1
    assert err.line >= 1 and err.col >= 1 and err.file.endswith(".rhai")


@pytest.mark.parametrize(("src", "limit"), [
    ("(" * 250 + "1" + ")" * 250, "depth"),
    ("[" * 250 + "]" * 250, "depth"),
    ("#{a: " * 250 + "1" + "}" * 250, "depth"),
    ("{" * 250 + "}" * 250, "depth"),
    ("let x = true; " + "if x {" * 250 + "}" * 250, "depth"),
    ("|a| " * 250 + "a", "depth"),
    ("`${" * 250 + "1" + "}`" * 250, "depth"),
    ("f(" * 250 + "1" + ")" * 250, "depth"),
    ("-" * 300 + "1", "height"),
    ("!" * 300 + "true", "height"),
    ("let x = #{}; x" + ".a" * 300, "height"),
    ("let x = 1; x" + " + x" * 300, "height"),
    ("let x = 1; x" + " ** x" * 300, "height"),
    ("let x = true; if x {}" + " else if x {}" * 300, "height"),
])
def test_deep_shapes_are_refused_by_depth_or_height_never_a_recursion_error(src: str, limit: str) -> None:
    before = sys.getrecursionlimit()
    with pytest.raises(CompileError) as info:
        compile_to_wat(src, "t.rhai")
    assert f"compile limit '{limit}'" in str(info.value)
    assert sys.getrecursionlimit() == before


def test_the_largest_depth_and_height_allowed_compile_without_recursion_errors() -> None:
    top = dataclasses.replace(HUGE, depth=1000, height=1000)
    compile_to_wat("let x = 1; " + "(" * 990 + "x" + ")" * 990, "t.rhai", limits=top)
    compile_to_wat("let x = 1; x" + " ** x" * 990, "t.rhai", limits=top)
    compile_to_wat("let x = 1; " + "-(" * 490 + "x" + ")" * 490, "t.rhai", limits=top)
    compile_to_wat("let x = true; if x {1}" + " else if x {2}" * 990, "t.rhai", limits=top)


# -- imports share the budget ---------------------------------------------------------

def test_imported_modules_count_against_the_importers_budget() -> None:
    mods = _modules(20)
    src = "".join(f'import "m{i}" as m{i};\n' for i in range(20)) + "1"
    stats = compile_to_wat(src, "t.rhai", _resolver(mods)).stats  # type: ignore[arg-type]
    alone = compile_to_wat(src, "t.rhai", lambda n, i: ModuleSource(n + ".rhai", "")).stats
    assert stats.tokens > alone.tokens + 20 * 10 and stats.modules == 21
    err = refused(src, dataclasses.replace(HUGE, tokens=alone.tokens + 50), resolver=_resolver(mods))
    assert err.limit == "tokens" and err.file.startswith("m")  # refused inside a module
    err = refused(src, dataclasses.replace(HUGE, source_bytes=len(src) + 100), resolver=_resolver(mods))
    assert err.limit == "source_bytes" and err.file.startswith("m")
    err = refused(src, dataclasses.replace(HUGE, modules=5), resolver=_resolver(mods))
    assert err.limit == "modules" and (err.file, err.line) == ("t.rhai", 5)  # the import of the 6th file


def test_source_bytes_count_utf8_and_point_at_the_first_byte_past() -> None:
    src = 'let s = "ééé";'  # 3 two-byte characters
    size = len(src.encode())
    compile_to_wat(src, "t.rhai", limits=dataclasses.replace(HUGE, source_bytes=size))
    err = refused(src, dataclasses.replace(HUGE, source_bytes=size - 1))
    assert err.limit == "source_bytes" and err.col == len(src)  # the closing ';'


# -- the deadline ---------------------------------------------------------------------

class Clock:
    """A fake clock: 0.0 for the first ``until`` readings (the first is the start of the
    compile), then far in the future; it records which compiler modules read it."""

    def __init__(self, until: float = float("inf")) -> None:
        self.reads = 0
        self.until = until
        self.readers: set[str] = set()

    def __call__(self) -> float:
        self.reads += 1
        self.readers.add(sys._getframe(1).f_globals.get("__name__", "?").rsplit(".", 1)[-1])
        self.readers.add(sys._getframe(2).f_globals.get("__name__", "?").rsplit(".", 1)[-1])
        return 0.0 if self.reads <= self.until else 1e9


BIG = "let x = 1;\n" + "".join(
    f'fn f{i}(a) {{ let s = "a\\tb"; /* c */ let x = a + {i}; `${{s}}${{x}}` }}\n'
    for i in range(3000)) + "f0(1)"


def test_the_deadline_is_read_in_every_stage() -> None:
    clock = Clock()
    compile_to_wat(BIG, "t.rhai", limits=CompileLimits(timeout=1.0), clock=clock)
    assert {"_lexer", "_parse_base", "_resolver", "_emitter"} <= clock.readers, clock.readers
    assert clock.reads < 100  # periodic, not per token


@pytest.mark.slow
def test_any_reading_past_the_deadline_ends_the_compile() -> None:
    reads = Clock()
    compile_to_wat(BIG, "t.rhai", limits=CompileLimits(timeout=1.0), clock=reads)
    assert reads.reads > 8
    for until in sorted({1, 2, 3, reads.reads // 3, reads.reads // 2, reads.reads - 2, reads.reads - 1}):
        err = refused(BIG, CompileLimits(timeout=1.0), clock=Clock(until))
        assert err.limit == "timeout" and "compile limit 'timeout' is 1.0 s" in err.message


def test_no_timeout_means_no_deadline() -> None:
    compile_to_wat(BIG, "t.rhai", limits=CompileLimits(timeout=None), clock=Clock(1))


# -- only CompileError, whatever the input and the limits --------------------------------

SOUP = [
    "let", "fn", "if", "else", "for", "in", "while", "switch", "try", "catch", "return", "x", "y",
    "f", "1", "2.5", '"s\\n"', "`a${x}b`", "(", ")", "[", "]", "{", "}", "#{", ":", ",", ";", "+",
    "-", "*", "**", "!", "|", "||", "=", "==", "=>", ".", "..", "_", "a:", "print", "\n", "|x|",
]

tiny_limits = st.builds(
    CompileLimits,
    source_bytes=st.integers(1, 400), tokens=st.integers(1, 80), nodes=st.integers(1, 80),
    depth=st.integers(1, 8), height=st.integers(1, 8), params=st.integers(1, 3),
    locals=st.integers(1, 30), modules=st.integers(1, 3), wat_bytes=st.integers(1, 20_000),
    function_wat_bytes=st.integers(1, 8000), timeout=st.none(),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(SOUP), max_size=60).map(" ".join), tiny_limits)
def test_token_soup_under_tiny_limits_raises_only_compile_errors(src: str, limits: CompileLimits) -> None:
    try:
        c = compile_to_wat(src, "soup.rhai", limits=limits)
    except CompileError as e:
        assert e.diagnostics and "soup.rhai:" in str(e)
        return
    assert isinstance(c, Compiled) and len(c.wat) <= limits.wat_bytes


# -- CompileLimits itself ----------------------------------------------------------------

@pytest.mark.parametrize("kw", [
    {"tokens": 0}, {"nodes": -1}, {"depth": 1001}, {"height": 0}, {"params": 401}, {"locals": 40_001},
    {"function_wat_bytes": 7_000_001}, {"timeout": 0}, {"timeout": float("nan")}, {"timeout": "5"},
    {"tokens": True}, {"wat_bytes": 1.5},
])
def test_nonsense_limits_are_a_usage_error(kw: dict[str, object]) -> None:
    with pytest.raises(peerbox.UsageError):
        CompileLimits(**kw)  # type: ignore[arg-type]


def test_compile_limits_is_public_and_passed_on() -> None:
    assert peerbox.CompileLimits is CompileLimits
    with pytest.raises(peerbox.CompileError, match="compile limit 'tokens' is 3"):
        peerbox.compile("let x = 1; x + 2", limits=peerbox.CompileLimits(tokens=3))
    with pytest.raises(peerbox.UsageError):
        peerbox.compile("1", limits={"tokens": 3})  # type: ignore[arg-type]


@pytest.mark.parametrize("source", [
    "x" * 200_000,                                  # an undefined variable
    "let a = 1; a." + "y" * 200_000 + "()",         # an unknown method
    'import "' + "m" * 100_000 + '" as m;',         # a missing module
])
def test_an_error_quoting_a_huge_name_stays_small(source: str) -> None:
    """Messages quote names from the source; a caller must not get a megabyte back."""
    with pytest.raises(CompileError) as info:
        compile_to_wat(source, "big.rhai")
    text = str(info.value)
    assert len(text) < 2_000
    assert "more characters" in info.value.message
