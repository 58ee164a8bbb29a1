"""Fuzzing the compiler: any input gives a program or a CompileError, nothing else.

Arbitrary text, soups of the language's own tokens, pathological nesting and
mutations of valid programs go through ``compile_to_wat``. The only exception
allowed out is ``CompileError`` (no IndexError, RecursionError, ...), and each
compile must finish within a few seconds (a SIGALRM timer turns a hang into a
failure). Mutants that do compile are also compiled by ``peerbox.compile``
(wasmtime must accept the module: nothing but a CompileError may come out)
and run under a 1 s timeout, where they may fail only with a ScriptError or a
LimitExceeded, never with an error meaning "a bug in peerbox" (exit code 1).
"""

from __future__ import annotations

import re
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import peerbox
from peerbox.wasm_guests.lang import CompileError, CompileLimits, compile_to_wat

COMPILE_SECONDS = 5.0

FUZZ = settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class CompileHang(Exception):
    pass


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise CompileHang in the main thread if the body runs longer than ``seconds``."""
    if threading.current_thread() is not threading.main_thread():  # pragma: no cover
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise CompileHang(f"compile took more than {seconds}s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def compile_only(src: str) -> Any:
    """Compile ``src``: the Compiled result, or None after a CompileError. Anything else fails."""
    with time_limit(COMPILE_SECONDS):
        try:
            return compile_to_wat(src, "fuzz.rhai")
        except CompileError as e:
            assert e.diagnostics, "CompileError without diagnostics"
            text = str(e)  # rendering must work for any input too
            assert "fuzz.rhai:" in text
            return None


# -- arbitrary text -------------------------------------------------------------------

@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_text(src: str) -> None:
    compile_only(src)


@FUZZ
@given(st.text(alphabet=st.characters(codec="ascii"), max_size=300))
def test_arbitrary_ascii(src: str) -> None:
    compile_only(src)


# -- token soup -----------------------------------------------------------------------

KEYWORDS = [
    "let", "const", "fn", "private", "import", "as", "if", "else", "while", "loop", "for", "in",
    "break", "continue", "return", "throw", "try", "catch", "switch", "true", "false",
    "export", "do", "this", "var", "static", "yield",
]
OPERATORS = (
    "**= <<= >>= ..= == != <= >= && || += -= *= /= %= &= |= ^= ** << >> .. :: => "
    "- + * / % < > = ! & | ^ . , ; : ( ) [ ] ? { } #{ ` ${ \" ' \\ // /* */ # @ $ ~ |"
).split()
ATOMS = [
    "x", "y", "f", "m", "params", "caller", "target", "print", "debug", "len", "push", "call",
    "type_of", "range", "_", "0", "1", "42", "9223372036854775807", "9223372036854775808",
    "1.5", "1e10", "0x1F", "0b102", "1_000", '"s"', '"a\\nb"', '"\\u{41}"', '"\\u{110000}"',
    "`t ${x} u`", "'c'", "()", "[]", "#{}", "|x| x", "// c\n", "/* c */", "\n",
]
TOKENS = KEYWORDS + OPERATORS + ATOMS

token_soup = st.lists(st.sampled_from(TOKENS), max_size=60).flatmap(
    lambda toks: st.lists(st.sampled_from([" ", "", "\n", "  "]), min_size=len(toks), max_size=len(toks)).map(
        lambda seps: "".join(t + s for t, s in zip(toks, seps))
    )
)


@pytest.mark.slow
@FUZZ
@given(token_soup)
def test_token_soup(src: str) -> None:
    compile_only(src)


# a statement-shaped soup: more likely to get deep into the parser and the resolver
stmt_soup = st.lists(
    st.one_of(
        st.builds(lambda a, b: f"let {a} = {b};", st.sampled_from(["x", "y", "f"]), token_soup),
        st.builds(lambda a: f"fn f(x) {{ {a} }}", token_soup),
        st.builds(lambda a, b: f"if {a} {{ {b} }}", token_soup, token_soup),
        st.builds(lambda a: f"for x in {a} {{ }}", token_soup),
        st.builds(lambda a: f"switch x {{ {a} }}", token_soup),
        st.builds(lambda a: f"try {{ {a} }} catch (e) {{ }}", token_soup),
        token_soup,
    ),
    max_size=6,
).map("\n".join)


@pytest.mark.slow
@FUZZ
@given(stmt_soup)
def test_statement_soup(src: str) -> None:
    compile_only(src)


# -- pathological shapes --------------------------------------------------------------

DEEP = 3000

PATHOLOGICAL = [
    pytest.param("(" * DEEP + "1" + ")" * DEEP, id="deep-parens"),
    pytest.param("(" * DEEP, id="unclosed-parens"),
    pytest.param(")" * DEEP, id="closing-parens"),
    pytest.param("[" * DEEP + "]" * DEEP, id="deep-arrays"),
    pytest.param("#{a: " * DEEP + "1" + "}" * DEEP, id="deep-maps"),
    pytest.param("{" * DEEP + "}" * DEEP, id="deep-blocks"),
    pytest.param("- " * DEEP + "1", id="unary-minus-chain"),
    pytest.param("!" * DEEP + "true", id="not-chain"),
    pytest.param("if true { " * DEEP + "1" + " }" * DEEP, id="nested-ifs"),
    pytest.param("let x = 1; x" + ".a" * DEEP, id="property-chain"),
    pytest.param("let x = [1]; x" + "[0]" * DEEP, id="index-chain"),
    pytest.param("|x| " * DEEP + "1", id="nested-closures"),
    pytest.param("2 ** " * DEEP + "2", id="right-assoc-pow-chain"),
    pytest.param("`${" * DEEP + "1" + "}`" * DEEP, id="nested-interpolation"),
    pytest.param("/*" * DEEP + "*/" * DEEP + "1", id="nested-comments"),
    pytest.param("fn f() { " * 50 + "}" * 50, id="nested-fn-definitions"),
    pytest.param("1 + " * 20000 + "1", id="long-sum"),
    pytest.param("let x = 0;\n" + "x += 1;\n" * 20000 + "x", id="many-statements"),
    pytest.param("[" + "1, " * 20000 + "1]", id="long-array"),
    pytest.param("let a = 1;\n" * 3000 + "a", id="many-shadowing-lets"),
    pytest.param('"' + "a" * 200000 + '"', id="long-string"),
    pytest.param("\x00\x01\x02 let \ufeff x = 1;", id="control-chars"),
    pytest.param("let x = 1;\r\nlet y = 2;\rx + y", id="cr-line-endings"),
    pytest.param("\udcff", id="lone-surrogate"),
    pytest.param('let s = "\udcff";', id="lone-surrogate-in-string"),
]


@pytest.mark.parametrize("src", PATHOLOGICAL)
def test_pathological_input(src: str) -> None:
    compile_only(src)


@pytest.mark.parametrize("src", PATHOLOGICAL)
def test_pathological_input_under_small_limits(src: str) -> None:
    small = CompileLimits(tokens=500, nodes=500, depth=20, height=20, params=4, locals=50,
                          wat_bytes=50_000, function_wat_bytes=20_000, timeout=5.0)
    with time_limit(COMPILE_SECONDS):
        try:
            compile_to_wat(src, "fuzz.rhai", limits=small)
        except CompileError as e:
            assert "fuzz.rhai:" in str(e)


def test_deep_nesting_in_a_thread() -> None:
    # embedders may compile off the main thread, where the C stack is smaller
    out: list[BaseException | None] = []

    def work() -> None:
        try:
            for src in ("(" * DEEP + "1" + ")" * DEEP, "[" * DEEP + "]" * DEEP, "- " * DEEP + "1"):
                try:
                    compile_to_wat(src, "fuzz.rhai")
                except CompileError:
                    pass
            out.append(None)
        except BaseException as e:  # noqa: BLE001 - anything else is the failure we look for
            out.append(e)

    t = threading.Thread(target=work)
    t.start()
    t.join(60)
    assert not t.is_alive(), "compile hung in a thread"
    assert out == [None], f"compile raised {out[0]!r} in a thread"


def test_recursion_limit_restored() -> None:
    before = sys.getrecursionlimit()
    compile_only("(" * DEEP + "1" + ")" * DEEP)
    assert sys.getrecursionlimit() == before


# -- mutations of valid programs ------------------------------------------------------

SEEDS = [
    "let x = 1;\nlet y = x + 2 * 3;\ny",
    'let s = "";\nfor i in 0..5 { s += i; }\ns',
    "fn fib(n) { if n < 2 { n } else { fib(n - 1) + fib(n - 2) } }\nfib(10)",
    "let a = [3, 1, 2];\na.sort();\na.push(4);\na.map(|x| x * 2).filter(|x| x > 2)",
    'let m = #{a: 1, "b c": [1, 2]};\nm.a += 1;\nm["b c"].push(3);\nm.keys()',
    "let n = 0;\nwhile n < 10 { n += 1; if n % 3 == 0 { continue; } if n > 7 { break; } }\nn",
    'let r = switch 3 { 1 | 2 => "low", 3 if true => "three", _ => "other" };\nr',
    'let k = "";\ntry { throw #{code: 1}; } catch (e) { k = `code ${e.code}`; }\nk',
    "let x = 1;\nlet f = |y| x + y;\nx = 40;\nf.call(2)",
    "fn counter() { let c = 0; |d| { c += d; c } }\nlet f = counter();\nf.call(1);\nf.call(2)",
    'let v = 0;\nloop { v += 1; if v >= 3 { break; } }\nfor (x, i) in ["a", "b"] { v += i; }\nv',
    'let s = "  Hello ";\ns.trim();\n[s.len(), s.to_upper(), s.index_of("l"), s.sub_string(1, 2)]',
    "const LIMIT = 5;\nfn clamp(x, lim) { if x > lim { lim } else { x } }\n"
    "[clamp(3, LIMIT), clamp(9, LIMIT)]",
    'let total = 0;\nfor x in range(0, 4) { total += x ** 2; }\nprint(total);\ndebug("done");\ntotal',
]

_TOKEN_RE = re.compile(
    r'"(?:[^"\\]|\\.)*"|`[^`]*`|\d+(?:\.\d+)?|[A-Za-z_]\w*'
    r"|\*\*|\.\.=?|::|=>|[-+*/%<>=!&|^]=?|&&|\|\||#\{|\S"
)


def tokens_of(src: str) -> list[str]:
    return _TOKEN_RE.findall(src)


BINOPS = [
    "+", "-", "*", "/", "%", "**", "==", "!=", "<", "<=", ">", ">=",
    "&&", "||", "&", "|", "^", "<<", ">>", "in",
]
NUMBERS = ["0", "1", "-1", "2", "63", "64", "9223372036854775807", "2.5", "0.0", '"7"', "()", "[]", "true"]
IDENTS = ["x", "y", "n", "s", "a", "m", "k", "v", "f", "i", "e", "params"]


def similar_token(draw: st.DrawFn, tok: str) -> str:
    """A token of the same class: keeps the program well-formed more often than a random one."""
    if tok in BINOPS:
        return draw(st.sampled_from(BINOPS))
    if tok[0].isdigit() or tok[0] == '"':
        return draw(st.sampled_from(NUMBERS))
    if tok[0].isalpha() or tok[0] == "_":
        return draw(st.sampled_from(IDENTS + [tok]))
    return tok


MUTATIONS = ["delete", "insert", "swap", "replace", "duplicate", "similar", "similar", "similar"]


@st.composite
def mutants(draw: st.DrawFn) -> str:
    toks = tokens_of(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):
        op = draw(st.sampled_from(MUTATIONS))
        if not toks:
            toks = [draw(st.sampled_from(TOKENS))]
            continue
        i = draw(st.integers(0, len(toks) - 1))
        if op == "delete":
            del toks[i]
        elif op == "insert":
            toks.insert(i, draw(st.sampled_from(TOKENS)))
        elif op == "swap":
            j = draw(st.integers(0, len(toks) - 1))
            toks[i], toks[j] = toks[j], toks[i]
        elif op == "replace":
            toks[i] = draw(st.sampled_from(TOKENS))
        elif op == "similar":
            toks[i] = similar_token(draw, toks[i])
        else:
            toks.insert(i, toks[i])
    return " ".join(toks)


def test_seeds_are_valid() -> None:
    for src in SEEDS:
        assert compile_only(src) is not None, src
        assert compile_only(" ".join(tokens_of(src))) is not None, src


@pytest.mark.slow
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutants())
def test_mutated_programs(src: str) -> None:
    if compile_only(src) is None:
        event("compile error")
        return
    prog = peerbox.compile(src, filename="fuzz.rhai")  # anything raised here fails the test
    try:
        prog.run(limits=peerbox.Limits(timeout=1.0, fuel=20_000_000))
        event("ran")
    except (peerbox.ScriptError, peerbox.LimitExceeded) as e:
        event(f"run failed: {type(e).__name__}")
