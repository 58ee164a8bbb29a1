"""Lexer tests: token kinds and values, literals, comments, spans and errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerbox.wasm_guests.lang._ast import Span
from peerbox.wasm_guests.lang._diagnostics import Diagnostics
from peerbox.wasm_guests.lang._lexer import KEYWORDS, RESERVED, Token, tokenize


def lex(src: str) -> tuple[list[Token], list[str]]:
    diags = Diagnostics()
    diags.add_source("t.rhai", src)
    tokens = tokenize(src, "t.rhai", diags)
    assert tokens[-1].kind == "eof"
    return tokens[:-1], [f"{d.line}:{d.col}: {d.message}" for d in diags.items]


def kinds(src: str) -> list[str]:
    tokens, errs = lex(src)
    assert errs == []
    return [t.kind for t in tokens]


def values(src: str) -> list[object]:
    tokens, errs = lex(src)
    assert errs == [], errs
    return [t.value for t in tokens]


def errors(src: str) -> list[str]:
    return lex(src)[1]


# -- kinds -------------------------------------------------------------------------

def test_keywords_are_their_own_kind() -> None:
    for word in KEYWORDS:
        assert kinds(word) == [word]


def test_reserved_words() -> None:
    for word in RESERVED:
        tokens, errs = lex(word)
        assert [(t.kind, t.value) for t in tokens] == [("reserved", word)] and errs == []


@pytest.mark.parametrize("src, expected", [
    ("x _y a1_B2 _", ["ident"] * 4),
    ("letx iff", ["ident", "ident"]),
    ("**= <<= >>= ..= == != <= >= && || += -= *= /= %= &= |= ^=",
     "**= <<= >>= ..= == != <= >= && || += -= *= /= %= &= |= ^=".split()),
    ("** << >> .. :: => #{", "** << >> .. :: => #{".split()),
    ("- + * / % < > = ! & | ^ . , ; : ( ) [ ] ? { }",
     "- + * / % < > = ! & | ^ . , ; : ( ) [ ] ? { }".split()),
    ("a||b", ["ident", "||", "ident"]),
    ("|x|x", ["|", "ident", "|", "ident"]),
    ("...", ["..", "."]),
    ("a.b", ["ident", ".", "ident"]),
    ("#{a:1}", ["#{", "ident", ":", "int", "}"]),
    ("1..5", ["int", "..", "int"]),
    ("1..=5", ["int", "..=", "int"]),
    ("1.abs()", ["int", ".", "ident", "(", ")"]),
    ("1.5.floor()", ["float", ".", "ident", "(", ")"]),
    ("x**=2", ["ident", "**=", "int"]),
    ("a/b/=c", ["ident", "/", "ident", "/=", "ident"]),
])
def test_kinds(src: str, expected: list[str]) -> None:
    assert kinds(src) == expected


# -- numbers -------------------------------------------------------------------------

@pytest.mark.parametrize("src, value", [
    ("0", 0), ("42", 42), ("1_000_000", 1_000_000), ("007", 7),
    ("0xff", 255), ("0XFF", 255), ("0x_ff_ff", 0xFFFF), ("0o17", 15), ("0b1010", 10),
    ("0b1111_0000", 240),
    ("9223372036854775807", 2 ** 63 - 1),
    ("9223372036854775808", 2 ** 63),  # the parser decides whether it is allowed
])
def test_integers(src: str, value: int) -> None:
    tokens, errs = lex(src)
    assert errs == [] and [(t.kind, t.value) for t in tokens] == [("int", value)]


@pytest.mark.parametrize("src, value", [
    ("1.5", 1.5), ("1e10", 1e10), ("1.5e-3", 1.5e-3), ("2.0e+5", 2.0e5), ("1E3", 1000.0),
    ("1_000.5", 1000.5), ("0.0", 0.0), ("1e999", float("inf")),
])
def test_floats(src: str, value: float) -> None:
    tokens, errs = lex(src)
    assert errs == [] and [(t.kind, t.value) for t in tokens] == [("float", value)]


@pytest.mark.parametrize("src, expected", [
    ("0x", ["1:1: invalid integer literal '0x'"]),
    ("0x_", ["1:1: invalid integer literal '0x_'"]),
    ("0b102", ["1:1: invalid integer literal '0b102'"]),
    ("0o8", ["1:1: invalid integer literal '0o8'"]),
    ("x = 0xfg;", ["1:5: invalid integer literal '0xfg'"]),
])
def test_bad_integers(src: str, expected: list[str]) -> None:
    assert errors(src) == expected


# -- strings -------------------------------------------------------------------------

@pytest.mark.parametrize("src, value", [
    ('""', ""),
    ('"hello"', "hello"),
    ('"a\\nb\\tc\\rd\\0e"', "a\nb\tc\rd\0e"),
    ('"q\\"q\\\'q\\\\"', "q\"q'q\\"),
    ('"\\x41\\x7e"', "A~"),
    ('"\\u{1F600} \\u{e9} \\u{0}"', "\U0001F600 \u00e9 \0"),
    ('"\\u00e9\\U0001F600"', "\u00e9\U0001F600"),
    ('"say ""hi"""', 'say "hi"'),
    ('"héllo wörld"', "héllo wörld"),
    ('"x\\\n   y"', "x  y"),            # line continuation: blanks up to the quote's column go
    ('  "x\\\n     y"', "x  y"),
    ('"x\\\r\n y"', "xy"),
    ("'a'", "a"), ("'\\n'", "\n"), ("'\\''", "'"), ("'\"'", '"'), ("'é'", "é"),
    ("'\\u{1F600}'", "\U0001F600"),
    ("`plain`", "plain"),
    ("`no \\n escapes`", "no \\n escapes"),     # back-tick strings are verbatim (Rhai)
    ("`two\nlines`", "two\nlines"),
    ("`\nfirst newline dropped\n`", "first newline dropped\n"),
    ("`a``b`", "a`b"),
    ("`cost: $5`", "cost: $5"),
    ("`$`", "$"),
    ("``", ""),
])
def test_string_values(src: str, value: str) -> None:
    tokens, errs = lex(src)
    assert errs == [], errs
    assert [(t.kind, t.value) for t in tokens] == [("str", value)]


def test_adjacent_strings_stay_separate() -> None:
    assert values('"a" "b"') == ["a", "b"]


def test_interpolation_parts() -> None:
    (token,), errs = lex("`x = ${x + 1}!`")
    assert errs == [] and token.kind == "interp"
    assert isinstance(token.value, tuple)
    text1, expr, text2 = token.value
    assert text1 == "x = " and text2 == "!"
    assert [t.kind for t in expr] == ["ident", "+", "int", "eof"]
    assert expr[0].span == Span("t.rhai", 1, 8, 1, 9)


def test_interpolation_nests_braces_strings_and_backticks() -> None:
    (token,), errs = lex('`a${ #{k: "}"}.k + `in${ {1} }` }b`')
    assert errs == []
    assert token.value[0] == "a" and token.value[2] == "b"  # type: ignore[index]
    inner = token.value[1]  # type: ignore[index]
    assert [t.kind for t in inner] == ["#{", "ident", ":", "str", "}", ".", "ident", "+",
                                       "interp", "eof"]
    nested = inner[8].value[1]
    assert [t.kind for t in nested] == ["{", "int", "}", "eof"]


def test_interpolation_over_lines() -> None:
    (token,), errs = lex("`a\n${\n x\n}\nb`")
    assert errs == []
    assert token.value[0] == "a\n" and token.value[2] == "\nb"  # type: ignore[index]
    assert token.value[1][0].span == Span("t.rhai", 3, 2, 3, 3)  # type: ignore[index]


@pytest.mark.parametrize("src, expected", [
    ('"abc', ["1:1: unterminated string"]),
    ('x = "abc\ny', ["1:5: unterminated string"]),
    ("'a", ["1:1: unterminated character literal"]),
    ("`abc", ["1:1: unterminated string"]),
    ("`a ${ 1 + ", ["1:11: expected '}' to close '${' at 1:4, found end of input"]),
    ('"bad \\q"', ["1:6: invalid escape sequence '\\q'"]),
    ('"\\x4"', ["1:2: invalid escape sequence '\\x': expected hex digits"]),
    ('"\\u{}"', ["1:2: invalid escape sequence '\\u': expected hex digits"]),
    ('"\\u{1234567}"', ["1:2: invalid escape sequence '\\u': expected hex digits"]),
    ('"\\u{110000}"', ["1:2: invalid unicode escape: not a character"]),
    ('"\\uD800"', ["1:2: invalid unicode escape: not a character"]),
    ('"ok" "\\z" "\\y"', ["1:7: invalid escape sequence '\\z'",
                         "1:12: invalid escape sequence '\\y'"]),
    ("''", ['1:1: a character literal holds exactly one character (use "..." for strings)']),
    ("'ab'", ['1:1: a character literal holds exactly one character (use "..." for strings)']),
])
def test_string_errors(src: str, expected: list[str]) -> None:
    assert errors(src) == expected


# -- comments, blanks, shebang ---------------------------------------------------------

@pytest.mark.parametrize("src, expected", [
    ("a // comment\nb", ["ident", "ident"]),
    ("a /* c */ b", ["ident", "ident"]),
    ("a /* multi\nline */ b", ["ident", "ident"]),
    ("a /* outer /* inner */ still comment */ b", ["ident", "ident"]),
    ("/**/x", ["ident"]),
    ("/*/ */x", ["ident"]),
    ("x// c", ["ident"]),
    ("#!/usr/bin/env peerbox\nlet", ["let"]),
    ("#!", []),
    ("\t a \r\n\f b \v", ["ident", "ident"]),
    ('"// not a comment"', ["str"]),
])
def test_comments_and_blanks(src: str, expected: list[str]) -> None:
    assert kinds(src) == expected


def test_comment_errors() -> None:
    assert errors("x /* open") == ["1:3: unterminated block comment"]
    assert errors("/* a /* b */") == ["1:1: unterminated block comment"]


def test_shebang_only_on_the_first_line() -> None:
    assert errors("x\n#!y") == ["2:1: unexpected character '#'"]


def test_byte_order_mark_is_skipped() -> None:
    tokens, errs = lex("\ufefflet x")
    assert errs == [] and [t.kind for t in tokens] == ["let", "ident"]
    assert tokens[0].span.col == 2
    assert kinds("\ufeff#!/bin/peerbox\nx") == ["ident"]


_LONE = "in string (a lone surrogate is not Unicode text)"


@pytest.mark.parametrize("src, expected", [
    ('"a\udcffb"', [f"1:1: invalid character '\\udcff' {_LONE}"]),
    ("`x\ud800`", [f"1:1: invalid character '\\ud800' {_LONE}"]),
    ("`${ '\udfff' }`", [f"1:5: invalid character '\\udfff' {_LONE}"]),
    ("x \udcff", ["1:3: unexpected character '\\udcff'"]),
    ("// \udcff\nx", []),
])
def test_lone_surrogates(src: str, expected: list[str]) -> None:
    assert errors(src) == expected


def test_unknown_characters() -> None:
    tokens, errs = lex("a @ b $ c # d ~ é \\")
    assert [t.text for t in tokens] == ["a", "b", "c", "d"]
    assert errs == ["1:3: unexpected character '@'", "1:7: unexpected character '$'",
                    "1:11: unexpected character '#'", "1:15: unexpected character '~'",
                    "1:17: unexpected character 'é'", "1:19: unexpected character '\\\\'"]


# -- spans -------------------------------------------------------------------------------

def test_token_spans_and_texts() -> None:
    tokens, _ = lex('let é = "ü";\n  x += 0x1F')
    assert [(t.text, t.span.line, t.span.col, t.span.end_col) for t in tokens] == [
        ("let", 1, 1, 4), ("=", 1, 7, 8), ('"ü"', 1, 9, 12), (";", 1, 12, 13),
        ("x", 2, 3, 4), ("+=", 2, 5, 7), ("0x1F", 2, 8, 12),
    ]


def test_multiline_token_span() -> None:
    tokens, _ = lex("x = `a\nbc`;")
    assert tokens[2].span == Span("t.rhai", 1, 5, 2, 4)
    assert tokens[3].span == Span("t.rhai", 2, 4, 2, 5)


def test_eof_span_is_at_the_end() -> None:
    diags = Diagnostics()
    tokens = tokenize("a\nbc ", "t.rhai", diags)
    assert tokens[-1].span == Span("t.rhai", 2, 4, 2, 4)
    assert tokenize("", "t.rhai", diags)[-1].span == Span("t.rhai", 1, 1, 1, 1)


def test_crlf_line_endings() -> None:
    tokens, errs = lex("a\r\nb\r\n  c")
    assert errs == []
    assert [(t.span.line, t.span.col) for t in tokens] == [(1, 1), (2, 1), (3, 3)]


# -- fuzzing --------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_tokenize_never_raises_and_tokens_are_in_order(src: str) -> None:
    tokens = tokenize(src, "f.rhai", Diagnostics())
    assert tokens[-1].kind == "eof"
    positions = [(t.span.line, t.span.col) for t in tokens]
    assert positions == sorted(positions)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="`${}\"'\\/*\nab1 ", max_size=100))
def test_quotes_and_comments_soup_never_raises(src: str) -> None:
    tokenize(src, "f.rhai", Diagnostics())
