"""Name resolution and static checks: what a script author sees at compile time."""

from __future__ import annotations

import pytest

from peerbox.wasm_guests.lang import CompileError, ModuleSource, check, compile_to_wat


def errors(source: str, **kw: object) -> list[tuple[int, int, str]]:
    with pytest.raises(CompileError) as info:
        check(source, "r.rhai", **kw)  # type: ignore[arg-type]
    return [(d.line, d.col, d.message) for d in info.value.diagnostics]


@pytest.mark.parametrize(
    ("source", "line", "col", "fragment"),
    [
        ("let x = 1;\nx + y", 2, 5, "undefined variable 'y'"),
        ("let x = 1; fn f() { x }\nf()", 1, 21, "undefined variable 'x'"),
        ("const C = 1; C = 2;", 1, 14, "cannot assign to constant 'C'"),
        ("const A = [1]; A[0] = 2;", 1, 16, "cannot modify constant 'A'"),
        ("break;", 1, 1, "'break' outside of a loop"),
        ("loop { let f = || { continue; }; break; }", 1, 21, "'continue' outside of a loop"),
        ("fn f(a) { a }\nfn f(b) { b }", 2, 1, "defined twice"),
        ("foo(1)", 1, 1, "undefined function 'foo' taking 1 argument"),
        ("fn f(a, b) { a }\nf(1)", 2, 1, "function 'f' takes 2 arguments, not 1"),
        ("len(1, 2)", 1, 1, "builtin function 'len' does not take 2 arguments"),
        ("[1].frobnicate()", 1, 1, "unknown method 'frobnicate'"),
        ("m::f(1)", 1, 1, "unknown module 'm'"),
        ("let r = 1..3; r", 1, 9, "a range can only be used"),
        ("range(1, 3)", 1, 1, "range(a, b) can only be used in a 'for' loop"),
        ("params = 1;", 1, 1, "'params': it is read-only"),
        ("fn f(a, a) { a }", 1, 9, "duplicate parameter 'a'"),
        ("{ let inner = 1; }\ninner", 2, 1, "undefined variable 'inner'"),
        ("for (x, x) in [1] { }", 1, 1, "loop variables are both named 'x'"),
    ],
)
def test_static_errors_name_the_problem_and_its_position(
    source: str, line: int, col: int, fragment: str
) -> None:
    found = errors(source)
    assert any(ln == line and c == col and fragment in msg for ln, c, msg in found), found


def test_every_error_is_reported_at_once() -> None:
    found = errors("let a = b;\nlet c = d;\nnope();\nbreak;")
    assert [ln for ln, _, _ in found] == [1, 2, 3, 4]


def test_names_that_are_fine() -> None:
    check(
        "fn f(x) { params.a + x }\n"  # globals are visible inside functions
        "fn g() { f(1) }\n"  # functions in any order
        "let x = 1; let x = x + 1;\n"  # shadowing sees the previous x
        "let k = |y| x + y;\n"  # closures capture
        "for (v, i) in [1, 2] { x += v * i; }\n"
        "try { throw 1; } catch (e) { x += e; }\n"
        "let s = \"a\"; s.trim(); s.len()",
        "ok.rhai",
    )


def _modules(files: dict[str, str]) -> object:
    def resolve(name: str, importer: str) -> ModuleSource | None:
        text = files.get(name)
        return None if text is None else ModuleSource(file=f"{name}.rhai", source=text)

    return resolve


def test_module_errors() -> None:
    res = _modules({"m": "private fn hidden() { 1 }\nfn shown(x) { x }\nconst C = 2;"})
    found = errors(
        'import "m" as m;\nimport "absent" as a;\nm::hidden();\nm::shown();\nm::NOPE', resolver=res
    )
    msgs = "\n".join(m for _, _, m in found)
    assert "function 'hidden' of module 'm' is private" in msgs
    assert "module 'm' has no function 'shown' taking 0 arguments" in msgs
    assert "module 'm' has no constant 'NOPE'" in msgs
    assert "module 'absent' not found" in msgs


def test_import_cycle_names_the_chain() -> None:
    res = _modules({"a": 'import "b" as b;\nfn fa() { 1 }', "b": 'import "a" as a;\nfn fb() { 2 }'})
    with pytest.raises(CompileError) as info:
        compile_to_wat('import "a" as a;\na::fa()', "main.rhai", res)  # type: ignore[arg-type]
    err = info.value
    assert "import cycle: a.rhai -> b.rhai -> a.rhai" in str(err)
    assert err.file == "b.rhai" and err.line == 1


def test_errors_in_a_module_point_into_that_module() -> None:
    res = _modules({"bad": "fn f() {\n  undefined_thing\n}"})
    found = errors('import "bad" as b;\nb::f()', resolver=res)
    assert (2, 3, "undefined variable 'undefined_thing'") in found
