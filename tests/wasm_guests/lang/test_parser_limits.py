"""Parser tests: nesting and tree-height limits (too deep, too complex), the recursion
limit kept across calls and threads, and fuzzing (no input makes the parser raise).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peerbox.wasm_guests.lang import _ast as A
from peerbox.wasm_guests.lang._diagnostics import Diagnostics
from peerbox.wasm_guests.lang._parser import MAX_AST_HEIGHT, parse

# the parse helpers, fixtures of this folder's conftest
Sx = Callable[[object], str]  # an AST node as an s-expression
Parse = Callable[[str], tuple[A.Script, list[str]]]  # source -> (tree, errors)
Errors = Callable[[str], list[str]]  # source -> error lines


# -- nesting limits and robustness ---------------------------------------------------------

@pytest.mark.parametrize("opener, closer", [
    ("(", ")"), ("[", "]"), ("{", "}"), ("#{a: ", "}"), ("f(", ")"), ("a[", "]"),
    ("if x { ", "}"), ("|x| ", ""), ("`${", "}`"), ("switch ", " {}"),
])
def test_nesting_too_deep(opener: str, closer: str, errors: Errors) -> None:
    src = opener * 300 + "1" + closer * 300
    errs = errors(src)
    assert len(errs) == 1 and errs[0].endswith("nesting too deep (compile limit 'depth' is 200)"), errs


@pytest.mark.parametrize("opener, closer, depth", [
    ("(", ")", 199), ("[", "]", 199), ("f(", ")", 199), ("`${", "}`", 199),
    ("{", "}", 120), ("if a { ", "}", 120),
])
def test_nesting_within_the_limits_is_fine(opener: str, closer: str, depth: int, errors: Errors) -> None:
    assert errors(opener * depth + "1" + closer * depth) == []


def _height(node: object) -> int:
    """Nodes on the longest root-to-leaf path (iterative, for any depth)."""
    best = 0
    stack = [(node, 1)]
    while stack:
        n, d = stack.pop()
        best = max(best, d)
        for name in getattr(n, "__slots__", ()):
            value = getattr(n, name)
            items = value if isinstance(value, tuple) else (value,)
            for item in items:
                if isinstance(item, tuple):  # map entries
                    item = item[1]
                if isinstance(item, A.Node) and not isinstance(item, A.Span):
                    stack.append((item, d + 1))
    return best


CHAINS = [
    ("1", " + 1"), ("", "-"), ("", "!"), ("x", ".y"), ("x", "[0]"), ("2", " ** 2"),
    ("f(x)", ".g(1)"), ("a", " && a"), ("a", " .. a"),
]


@pytest.mark.parametrize("first, link", CHAINS)
def test_operator_chains_count_toward_the_height_limit(
        first: str, link: str, run: Parse, errors: Errors) -> None:
    short = first + link * 200 + ("1" if not first else "")
    script, errs = run(short)
    assert errs == []
    assert _height(script.body) <= MAX_AST_HEIGHT + 1
    long = first + link * 20000 + ("1" if not first else "")
    errs = errors(long)
    assert len(errs) == 1 and "expression too complex" in errs[0], errs


def test_long_else_if_chain_is_too_complex(errors: Errors) -> None:
    assert errors("if a {} " + "else if a {} " * 100) == []
    errs = errors("if a {} " + "else if a {} " * 20000)
    assert errs == ["1:1: expression too complex (compile limit 'height' is 256); "
                    "split it up with 'let'"]


def test_too_complex_statement_is_dropped_and_parsing_goes_on(sx: Sx, run: Parse) -> None:
    script, errs = run("let a = 1;\nlet b = " + "a + " * 300 + "a;\nlet c = 2 +;\nc")
    assert errs == [
        "2:9: expression too complex (compile limit 'height' is 256); split it up with 'let'",
        "3:12: expected an expression, found ';'",
    ]
    assert sx(script.body) == "{(let a 1) => c}"


@pytest.mark.parametrize("src", [
    "(" * 199 + "x" + " + x" * 300 + ")" * 199,
    "((" * 50 + "x" + (" + x)" * 2) * 50 + " + x" * 200,
    "[" * 150 + "x" + " + x" * 120 + "]" * 150,
    "{" * 100 + "-" * 100 + "x" + "}" * 100,
    "f(" * 100 + "x" + ".y" * 100 + ")" * 100,
    "`${" * 100 + "!" * 100 + "x" + "}`" * 100,
    "if a { " * 60 + "x" + " + 1" * 150 + " }" * 60,
    "|a| " * 100 + "a" + " * a" * 100,
    "switch x { _ => " * 60 + "1" + " + 1" * 100 + " }" * 60,
    "let v = #{a: " * 100 + "x" + " - x" * 100 + "}" * 100 + ";",
])
def test_every_returned_tree_respects_the_height_limit(src: str, run: Parse) -> None:
    script, _ = run(src)
    assert _height(script.body) <= MAX_AST_HEIGHT + 1
    for fn in script.functions:
        assert _height(fn) <= MAX_AST_HEIGHT


def test_parse_restores_the_recursion_limit(errors: Errors) -> None:
    before = sys.getrecursionlimit()
    errors("(" * 250)
    assert sys.getrecursionlimit() == before


def test_deep_nesting_inside_a_deep_caller_stack(errors: Errors) -> None:
    def recurse(n: int) -> list[str]:
        return errors("(" * 199 + "1" + ")" * 199) if n == 0 else recurse(n - 1)
    assert recurse(400) == []


# -- fuzzing ---------------------------------------------------------------------------------

_FRAGMENTS = [
    "let", "const", "fn", "private", "import", "as", "if", "else", "while", "loop", "for",
    "in", "break", "continue", "return", "throw", "try", "catch", "switch", "true", "false",
    "this", "x", "y", "_", "f", "m", "::", "(", ")", "[", "]", "{", "}", "#{", "|", "||",
    "&&", ",", ";", ":", "=>", "=", "+=", "**=", "**", "-", "!", ".", "..", "..=", "1",
    "0x", "0xFF", "9223372036854775808", "1.5", "1e5", '"a"', '"\\q"', "'c'", "'", '"',
    "`a${x}b`", "`${", "`", "${", "/*", "*/", "//", "\n", " ", "@", "#", "$", "\\", "\r\n",
    "é", "\x00",
]

_FUZZ = settings(max_examples=300, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(st.text(max_size=200))
def test_random_text_never_raises(src: str) -> None:
    script = parse(src, "f.rhai", Diagnostics())
    assert isinstance(script, A.Script)


@_FUZZ
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=60), st.sampled_from(["", " "]))
def test_random_token_soup_never_raises(parts: list[str], sep: str) -> None:
    src = sep.join(parts)
    diags = Diagnostics()
    diags.add_source("f.rhai", src)
    script = parse(src, "f.rhai", diags)
    assert isinstance(script, A.Script)
    for d in diags.items:
        assert d.line >= 1 and d.col >= 1 and d.message


@_FUZZ
@given(st.text(alphabet="(){}[]#|`$ab1;,=+-.\n\"'", max_size=300))
def test_random_brackets_never_raise(src: str) -> None:
    parse(src, "f.rhai", Diagnostics())


_WRAPPERS = [
    "({})", "[{}]", "f({})", "{{ ({}) }}", "{} + 1", "1 * {}", "-{}", "!{}", "{}.y", "{}[0]",
    "{}.m(1)", "`${{({})}}`", "|a| {}", "if a {{ ({}) }}", "if a {{ }} else {{ ({}) }}",
    "switch a {{ _ => ({}) }}", "#{{k: {}}}", "{{ let v = {}; v }}", "{} ** 2", "2 ** {}",
    "{} && b", "{}..5", "m::f({})", "{{ return {}; }}", "{{ while {} {{ }} }}",
]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_WRAPPERS), min_size=1, max_size=600))
def test_random_nesting_never_exceeds_the_height_limit(run: Parse, wrappers: list[str]) -> None:
    src = "x"
    for w in wrappers:
        src = w.format(src)
    script, errs = run(f"let r = {src};")
    assert _height(script.body) <= MAX_AST_HEIGHT + 1
    assert all("too deep" in e or "too complex" in e for e in errs), errs


def test_parsing_in_threads_keeps_the_recursion_limit_consistent(errors: Errors) -> None:
    import threading

    before = sys.getrecursionlimit()
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                assert errors("(" * 199 + "1" + ")" * 199) == []
        except BaseException as e:  # noqa: BLE001 - any failure is what we look for
            failures.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert sys.getrecursionlimit() == before


def test_an_error_on_a_huge_line_shows_a_window_around_the_column() -> None:
    from peerbox.wasm_guests.lang import CompileError, compile_to_wat

    src = "let x = 1;" * 3000 + " let y = ;"
    with pytest.raises(CompileError) as info:
        compile_to_wat(src, "big.rhai")
    text, line, caret = str(info.value).splitlines()
    assert text == "big.rhai:1:30010: error: expected an expression, found ';'"
    assert line.startswith("    …let x = 1;") and line.endswith("let y = ;") and len(line) < 200
    assert line[caret.index("^")] == ";"  # the caret still points at the column
