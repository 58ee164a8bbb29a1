"""The reference evaluator's lexer: source text to :class:`Tok` tokens.

Reads the subset described in the package docstring: numbers, ``"..."``
strings (escapes ``\\n \\t \\r \\" \\\\ \\u{..}``), back-tick templates
(`` `text ${expr} text` ``: the token's value is a tuple of literal texts and
expression sources, parsed by :mod:`._syntax`), identifiers, keywords and
punctuation (``#{`` opens a map literal). Anything else raises
:class:`Unsupported`. Int literals are checked against the int64 range here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

I64_MIN = -(2**63)
I64_MAX = 2**63 - 1


class Unsupported(Exception):
    """The program uses something outside the evaluator's subset, or does not parse."""


_PUNCT = [
    "..=", "<<=", ">>=", "**", "<<", ">>", "<=", ">=", "==", "!=", "&&", "||", "+=", "-=", "*=", "/=",
    "%=", "#{", "..", "+", "-", "*", "/", "%", "<", ">", "!", "&", "|", "^", "=", "(", ")", "{", "}",
    ";", "[", "]", ",", ".", ":",
]
KEYWORDS = {
    "let", "const", "if", "else", "while", "true", "false", "in", "for", "fn", "break", "continue",
    "return", "try", "catch",
}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUM = re.compile(r"[0-9][0-9_]*(\.[0-9][0-9_]*)?")


@dataclass(frozen=True)
class Tok:
    kind: str  # "int", "float", "str", "tmpl", "ident", "kw", "op", "eof"
    text: str
    value: Any = None


def _skip_comment(src: str, i: int) -> int:
    """``i`` is at ``/*``: the index after the matching ``*/`` (they nest)."""
    depth, i, n = 1, i + 2, len(src)
    while depth:
        if i >= n:
            raise Unsupported("unterminated comment")
        if src.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif src.startswith("*/", i):
            depth, i = depth - 1, i + 2
        else:
            i += 1
    return i


def _string(src: str, i: int) -> tuple[str, int]:
    """``i`` is at the opening ``"``: the string's value and the index after it."""
    j, n = i + 1, len(src)
    out: list[str] = []
    while True:
        if j >= n or src[j] == "\n":
            raise Unsupported("unterminated string")
        ch = src[j]
        if ch == '"':
            return "".join(out), j + 1
        if ch == "\\":
            e = src[j + 1 : j + 2]
            simple = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
            if e in simple:
                out.append(simple[e])
                j += 2
                continue
            if e == "u" and src[j + 2 : j + 3] == "{":
                k = src.index("}", j)
                out.append(chr(int(src[j + 3 : k], 16)))
                j = k + 1
                continue
            raise Unsupported("bad escape")
        out.append(ch)
        j += 1


def _template(src: str, i: int) -> tuple[tuple[Any, ...], int]:
    """``i`` is at the opening back-tick: the parts (``("s", text)`` or ``("e", source)``)."""
    j, n = i + 1, len(src)
    parts: list[tuple[str, str]] = []
    text: list[str] = []
    while True:
        if j >= n:
            raise Unsupported("unterminated template")
        if src[j] == "`":
            if text:
                parts.append(("s", "".join(text)))
            return tuple(parts), j + 1
        if src.startswith("${", j):
            if text:
                parts.append(("s", "".join(text)))
                text = []
            depth, k = 1, j + 2
            while depth:
                if k >= n:
                    raise Unsupported("unterminated interpolation")
                c = src[k]
                if c == '"':
                    _, k = _string(src, k)
                    continue
                depth += {"{": 1, "}": -1}.get(c, 0)
                k += 1
            parts.append(("e", src[j + 2 : k - 1]))
            j = k
            continue
        if src[j] == "\\":
            raise Unsupported("escape in a template")
        text.append(src[j])
        j += 1


def lex(src: str) -> list[Tok]:
    toks: list[Tok] = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c in " \t\r\n":
            i += 1
            continue
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j + 1
            continue
        if src.startswith("/*", i):
            i = _skip_comment(src, i)
            continue
        if c.isdigit():
            m = _NUM.match(src, i)
            assert m
            text = m.group(0)
            i = m.end()  # `0..3` lexes as 0, `..`, 3: a float needs a digit after its dot
            clean = text.replace("_", "")
            if m.group(1):
                toks.append(Tok("float", text, float(clean)))
            else:
                v = int(clean)
                if v > I64_MAX:
                    raise Unsupported("integer literal too large")
                toks.append(Tok("int", text, v))
            continue
        if c == '"':
            value, j = _string(src, i)
            toks.append(Tok("str", src[i:j], value))
            i = j
            continue
        if c == "`":
            parts, j = _template(src, i)
            toks.append(Tok("tmpl", src[i:j], parts))
            i = j
            continue
        m = _IDENT.match(src, i)
        if m:
            w = m.group(0)
            toks.append(Tok("kw" if w in KEYWORDS else "ident", w))
            i = m.end()
            continue
        for p in _PUNCT:
            if src.startswith(p, i):
                toks.append(Tok("op", p))
                i += len(p)
                break
        else:
            raise Unsupported(f"unexpected character {c!r}")
    toks.append(Tok("eof", ""))
    return toks
