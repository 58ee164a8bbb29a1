"""The lexer: source text to tokens.

One compiled master regex finds every token together with the blanks before
it; a dict classifies operators and keywords, and only literals, comments and
odd characters take a slower branch. The constructs a regex cannot finish
(nested block comments, back-tick strings with ``${...}``, unterminated
literals) drop to small hand-written scanners, and the regex then resumes
where they stopped. Tokens carry source offsets only; :class:`Lines` turns an
offset into a line and column when a span is actually needed, which keeps the
per-token cost to a few list appends (lexing and parsing must cost a few
milliseconds per thousand lines).

Problems (unknown characters, unterminated strings or comments, bad escapes,
malformed numbers) are recorded in the :class:`Diagnostics` and lexing
carries on, so the parser still sees a token stream. The only exception is
the compile budget (:mod:`._budget`): more tokens than ``CompileLimits.tokens``,
``${}`` nested deeper than ``CompileLimits.depth`` or a passed deadline raise
:class:`~._budget.CompileLimitExceeded`. Every scanner is linear in the text
it scans, and the hand-written loops read the clock every few thousand steps.

Token kinds: a keyword, operator or bracket is its own text (``"let"``,
``"+="``, ``"#{"``); otherwise ``"ident"`` (value: the name), ``"reserved"``
(a reserved word; value: the word), ``"int"`` (value: an ``int``, possibly
too large for i64, which the parser reports), ``"float"``, ``"str"`` (value:
the decoded text; also character literals and back-tick strings without
interpolation), ``"interp"`` (a back-tick string with ``${...}``; value: a
tuple of :data:`Part`) and ``"eof"``.
"""

from __future__ import annotations

import re
import time
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate
from collections.abc import Callable

from ._ast import Span
from ._budget import DEFAULT_LIMITS, TICK, Budget
from ._diagnostics import Diagnostics

__all__ = [
    "KEYWORDS", "RESERVED", "MAX_NESTING", "Lines", "Part", "TokenStream", "Token",
    "lex", "tokenize",
]

#: Words with a meaning in the grammar; each is its own token kind.
KEYWORDS = frozenset({
    "let", "const", "fn", "private", "import", "as", "if", "else", "while", "loop",
    "for", "in", "break", "continue", "return", "throw", "try", "catch", "switch",
    "true", "false", "export",
})

#: Words Rhai reserves: lexed as kind ``"reserved"``; the parser rejects them as names.
RESERVED = frozenset({"do", "until", "this", "var", "static", "yield"})

#: Deepest nesting of brackets, blocks and ``${}`` interpolations accepted by
#: default (``CompileLimits.depth``).
MAX_NESTING = DEFAULT_LIMITS.depth

_OPERATORS = [
    "**=", "<<=", ">>=", "..=", "==", "!=", "<=", ">=", "&&", "||", "+=", "-=", "*=", "/=", "%=",
    "&=", "|=", "^=", "**", "<<", ">>", "..", "::", "=>", "-", "+", "*", "/", "%", "<", ">", "=",
    "!", "&", "|", "^", ".", ",", ";", ":", "(", ")", "[", "]", "?", "{", "}", "#{",
]

# kind of a token text, for texts that are their own kind
_KIND: dict[str, str] = {w: w for w in KEYWORDS}
_KIND.update({w: "reserved" for w in RESERVED})
_KIND.update({op: op for op in _OPERATORS})
# inside ${...} braces are counted, so they take the slow branch
_KIND_IN_BRACES = {t: k for t, k in _KIND.items() if t not in ("{", "}", "#{")}

# slow-branch class of a token by its first character
_FIRST: dict[str, str] = {c: "ident" for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"}
_FIRST.update({c: "num" for c in "0123456789"})
_FIRST.update({'"': "quote", "'": "quote", "`": "quote", "/": "comment", "{": "brace",
               "}": "brace", "#": "brace"})

_TOKEN = re.compile(
    r"""[ \t\n\r\f\v]*(
      [A-Za-z_][A-Za-z0-9_]*
    | \*\*= | <<= | >>= | \.\.= | == | != | <= | >= | && | \|\| | \+= | -= | \*=
    | /= | %= | &= | \|= | \^= | \*\* | << | >> | \.\. | :: | => | \#\{
    | [-+*%<>=!&|^.,;:()\[\]?{}]
    | 0[xXoObB][0-9A-Za-z_]*
    | [0-9][0-9_]* (?:\.[0-9][0-9_]*)? (?:[eE][+-]?[0-9][0-9_]*)?
    | "(?: [^"\\\n] | \\(?:\r\n|[\s\S]) | "" )*"
    | '(?: [^'\\\n] | \\[^\n] )*'
    | `(?: [^`$] | `` | \$(?!\{) )*`
    | // [^\n]*
    | /\*(?: [^*/] | \*(?!/) | /(?!\*) )*\*/
    | /(?![*/])
    | /\* | ["'`]
    | [^ \t\n\r\f\v]
    )""",
    re.VERBOSE,
)

_DQ_STOP = re.compile(r'["\\\n]')
_BT_STOP = re.compile(r"[`$\n]")
_BC_STOP = re.compile(r"/\*|\*/")
_HEX = re.compile(r"[0-9A-Fa-f]+")
_ESCAPE = re.compile(r"\\|\"\"")
_RADIX = {"x": (16, re.compile(r"[0-9A-Fa-f_]*[0-9A-Fa-f][0-9A-Fa-f_]*")),
          "o": (8, re.compile(r"[0-7_]*[0-7][0-7_]*")),
          "b": (2, re.compile(r"[01_]*[01][01_]*"))}
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'"}
_HEX_COUNT = {"x": 2, "u": 4, "U": 8}
_SURROGATE = re.compile("[\ud800-\udfff]")


class Lines:
    """Offsets to 1-based (line, column) for one source text.

    ``span(file, a, b)`` is the :class:`Span` of offsets ``a`` to ``b``
    (exclusive); it is a closure over the line table because the parser calls
    it for nearly every node.
    """

    __slots__ = ("starts", "span")

    def __init__(self, source: str) -> None:
        starts = list(accumulate(map((1).__add__, map(len, source.split("\n"))), initial=0))
        starts.pop()
        self.starts = starts
        self.span = _span_maker(starts)

    def pos(self, offset: int) -> tuple[int, int]:
        line = bisect_right(self.starts, offset)
        return line, offset - self.starts[line - 1] + 1


def _span_maker(starts: list[int]) -> Callable[[str, int, int], Span]:
    count = len(starts)

    def span(file: str, a: int, b: int, bisect: Callable[[list[int], int], int] = bisect_right,
             ) -> Span:
        la = bisect(starts, a)
        sa = starts[la - 1]
        if b <= a:
            return Span(file, la, a - sa + 1, la, a - sa + 1)
        if la == count or b <= starts[la]:
            return Span(file, la, a - sa + 1, la, b - sa + 1)
        lb = bisect(starts, b - 1)
        return Span(file, la, a - sa + 1, lb, b - starts[lb - 1] + 1)

    return span


class TokenStream:
    """Tokens as parallel lists: ``kinds[i]``, ``values[i]`` and ``offsets[i]``
    (start, end) in the source; the last token is always ``"eof"``.

    ``open`` is the offset of the ``${`` a stream of interpolated tokens came
    from (None for a whole file).
    """

    __slots__ = ("kinds", "values", "offsets", "lines", "open")

    def __init__(self, kinds: list[str], values: list[object], offsets: list[tuple[int, int]],
                 lines: Lines, open: int | None = None) -> None:
        self.kinds = kinds
        self.values = values
        self.offsets = offsets
        self.lines = lines
        self.open = open


#: One piece of a back-tick string with interpolation: literal text (``str``)
#: or the tokens of one ``${...}``, with its source offsets (start, end).
Part = tuple[str | TokenStream, int, int]


@dataclass(frozen=True, slots=True)
class Token:
    """One token: its kind (see the module doc), source text, value and span.

    For an ``"interp"`` token ``value`` is a tuple whose items are literal
    text (``str``) or the tokens of one ``${...}`` (``tuple[Token, ...]``).
    """

    kind: str
    text: str
    value: object
    span: Span


class _Lexer:
    __slots__ = ("src", "file", "diags", "lines", "depth", "quiet", "budget", "steps")

    def __init__(self, src: str, file: str, diags: Diagnostics, budget: Budget) -> None:
        self.src = src
        self.file = file
        self.diags = diags
        self.lines = Lines(src)
        self.depth = 0
        self.quiet = False
        self.budget = budget
        self.steps = 0  # iterations of the hand-written scanners, for the clock

    def error(self, a: int, b: int, message: str) -> None:
        if not self.quiet:
            self.diags.error(self.lines.span(self.file, a, max(b, a + 1)), message)

    def step(self, at: int) -> None:
        """One iteration of a hand-written scanner at offset ``at``: read the clock now and then."""
        self.steps += 1
        if self.steps % TICK == 0:
            self.budget.check_time(lambda: self.lines.span(self.file, at, at + 1))

    def tick(self, count: int, counted: int, offsets: list[tuple[int, int]]) -> int:
        """Add the ``count - counted`` tokens lexed since the last tick to the budget, fail
        past ``CompileLimits.tokens``, read the clock; returns the count at which to tick next."""
        b = self.budget
        b.tokens += count - counted
        limit = b.limits.tokens
        if b.tokens > limit:
            a, e = offsets[-1]
            b.fail("tokens", self.lines.span(self.file, a, max(e, a + 1)),
                   "too many tokens, imported modules included")
        if b.tokens >= b.next_clock and offsets:  # the clock: every TICK tokens
            b.next_clock = b.tokens + TICK
            at = offsets[-1][0]
            b.check_time(lambda: self.lines.span(self.file, at, at + 1))
        return count + min(TICK, limit - b.tokens + 1)

    # -- the main loop ----------------------------------------------------------

    def run(self, pos: int, open: int | None) -> tuple[TokenStream, int, bool]:
        """Lex from offset ``pos``. Inside ``${`` (``open`` is its offset), stop
        after the ``}`` that closes it. Returns the stream, the offset after
        it, and whether that ``}`` was found."""
        src = self.src
        kinds: list[str] = []
        values: list[object] = []
        offsets: list[tuple[int, int]] = []
        kadd = kinds.append
        vadd = values.append
        oadd = offsets.append
        kind_of = (_KIND if open is None else _KIND_IN_BRACES).get
        first = _FIRST.get
        finditer = _TOKEN.finditer
        braces = 0
        closed = False
        end = pos
        counted = 0
        check_at = self.tick(0, 0, offsets)
        while True:
            restart = -1
            for m in finditer(src, pos):
                if len(kinds) >= check_at:  # the token budget and the clock, now and then
                    check_at = self.tick(len(kinds), counted, offsets)
                    counted = len(kinds)
                x = m.group(1)
                k = kind_of(x)
                if k is not None:
                    kadd(k)
                    vadd(x)
                    oadd(m.span(1))
                    continue
                k = first(x[0])
                if k == "ident":
                    kadd("ident")
                    vadd(x)
                    oadd(m.span(1))
                elif k == "num":
                    a, b = m.span(1)
                    if x[1:2] in ("x", "X", "o", "O", "b", "B"):
                        kadd("int")
                        vadd(self.radix_int(x, a))
                    elif "." in x or "e" in x or "E" in x:
                        kadd("float")
                        vadd(float(x.replace("_", "")))
                    else:
                        kadd("int")
                        vadd(_decimal(x))
                    oadd((a, b))
                elif k == "quote":
                    a, b = m.span(1)
                    if b - a > 1:  # a complete literal
                        kadd("str")
                        vadd(self.literal(x, a))
                        oadd((a, b))
                        continue
                    check_at = self.tick(len(kinds), counted, offsets)  # a nested run counts too
                    counted = len(kinds)
                    value, b = self.slow_quote(a)
                    kadd("interp" if type(value) is tuple else "str")
                    vadd(value)
                    oadd((a, b))
                    restart = b
                    break
                elif k == "comment":
                    if x[1] == "*" and len(x) == 2:  # nested or unterminated
                        restart = self.block_comment(m.start(1))
                        break
                elif k == "brace" and x != "#":
                    a, b = m.span(1)
                    if x == "}":
                        if not braces:
                            end = b
                            closed = True
                            break
                        braces -= 1
                    else:
                        braces += 1
                    kadd(x)
                    vadd(x)
                    oadd((a, b))
                else:
                    a, b = m.span(1)
                    self.error(a, b, f"unexpected character {x!r}")
            else:
                end = len(src)
            if restart < 0:
                break
            pos = restart
        self.tick(len(kinds), counted, offsets)
        eof = end - 1 if closed else end
        kadd("eof")
        vadd(None)
        oadd((eof, end))
        return TokenStream(kinds, values, offsets, self.lines, open), end, closed

    # -- literals -------------------------------------------------------------------

    def radix_int(self, text: str, a: int) -> int:
        base, digits = _RADIX[text[1].lower()]
        body = text[2:]
        if digits.fullmatch(body) is None:
            self.error(a, a + len(text), f"invalid integer literal '{text}'")
            return 0
        return int(body.replace("_", ""), base)

    def literal(self, text: str, a: int) -> str:
        """The value of a complete string, character or back-tick literal at ``a``."""
        q = text[0]
        if q == "`":  # verbatim, as in Rhai; a newline right after the back-tick is dropped
            body = text[1:-1].replace("``", "`")
            if body.startswith("\n"):
                return body[1:]
            return body[2:] if body.startswith("\r\n") else body
        if q == '"':
            body = text[1:-1]
            return body if _ESCAPE.search(body) is None else self.decode(a, a + len(text) - 1)
        value = self.decode(a, a + len(text) - 1)
        if len(value) != 1:
            self.error(a, a + len(text),
                       "a character literal holds exactly one character (use \"...\" for strings)")
        return value

    def decode(self, a: int, stop: int) -> str:
        """Decode the body of the literal whose quote is at ``a``, up to ``stop``:
        escapes, line continuations and (in ``"..."``) ``""``."""
        src = self.src
        out: list[str] = []
        i = a + 1
        dq = src[a] == '"'
        k = -1  # the next '""' at or after i (searched again only once passed: linear)
        while i < stop:
            self.step(i)
            j = src.find("\\", i, stop)
            if dq and k < i:
                k = src.find('""', i, stop)
                if k == -1:
                    dq = False
                    k = stop
            if dq and (j == -1 or k < j):
                out.append(src[i:k + 1])
                i = k + 2
                continue
            if j == -1:
                out.append(src[i:stop])
                break
            out.append(src[i:j])
            text, i = self.escape(j, a)
            out.append(text)
        return "".join(out)

    def escape(self, p: int, quote: int) -> tuple[str, int]:
        """Decode the escape whose backslash is at ``p`` in the literal whose
        quote is at ``quote``; returns (text, next offset)."""
        src = self.src
        c = src[p + 1:p + 2]
        simple = _SIMPLE_ESCAPES.get(c)
        if simple is not None:
            return simple, p + 2
        if c == "\n" or (c == "\r" and src.startswith("\n", p + 2)):
            return "", self.continuation(p, quote)
        if c in _HEX_COUNT:
            if c == "u" and src.startswith("{", p + 2):
                close = src.find("}", p + 3, p + 12)
                digits = src[p + 3:close] if close != -1 else ""
                end = close + 1
                ok = 1 <= len(digits) <= 6 and _HEX.fullmatch(digits) is not None
            else:
                count = _HEX_COUNT[c]
                digits = src[p + 2:p + 2 + count]
                end = p + 2 + count
                ok = len(digits) == count and _HEX.fullmatch(digits) is not None
            if ok:
                code = int(digits, 16)
                if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
                    return chr(code), end
                self.error(p, end, "invalid unicode escape: not a character")
                return "", end
            self.error(p, p + 2, f"invalid escape sequence '\\{c}': expected hex digits")
            return "", p + 2
        self.error(p, p + 2, f"invalid escape sequence '\\{c}'")
        return c, p + 2

    def continuation(self, p: int, quote: int) -> int:
        """After a backslash-newline at ``p``: skip the next line's blanks up to
        the column of the string's opening quote at ``quote`` (Rhai's rule)."""
        src = self.src
        i = src.index("\n", p) + 1
        limit = i + self.lines.pos(quote)[1]
        n = len(src)
        while i < limit and i < n and src[i] in " \t":
            i += 1
        return i

    def slow_quote(self, a: int) -> tuple[str | tuple[Part, ...], int]:
        """A literal the regex could not finish: unterminated, or a back-tick
        string with ``${...}``. Returns its value and end offset."""
        q = self.src[a]
        if q == "`":
            return self.backtick(a)
        src = self.src
        nl = src.find("\n", a)
        stop = len(src) if nl == -1 else nl
        if src.endswith("\\", a + 1, stop) and q == '"':  # continuation at end of input
            stop -= 1
        what = "string" if q == '"' else "character literal"
        self.error(a, a + 1, f"unterminated {what}")
        self.quiet = True
        value = self.decode(a, stop)
        self.quiet = False
        return value, stop

    def block_comment(self, a: int) -> int:
        """Skip a nested (or unterminated) ``/* */`` comment at ``a``; returns its end."""
        src = self.src
        depth = 0
        i = a
        while True:
            self.step(i)
            m = _BC_STOP.search(src, i)
            if m is None:
                self.error(a, a + 2, "unterminated block comment")
                return len(src)
            i = m.end()
            if m.group() == "/*":
                depth += 1
            else:
                depth -= 1
                if depth == 0:
                    return i

    def backtick(self, a: int) -> tuple[str | tuple[Part, ...], int]:
        """A back-tick string with ``${...}``: taken verbatim as in Rhai (no
        escapes, ````` is a back-tick, a newline right after the opening
        back-tick is dropped) and ``${...}`` lexed recursively."""
        src = self.src
        n = len(src)
        parts: list[Part] = []
        text: list[str] = []
        i = a + 1
        if src.startswith("\n", i):
            i += 1
        elif src.startswith("\r\n", i):
            i += 2
        tstart = i
        while True:
            self.step(i)
            m = _BT_STOP.search(src, i)
            if m is None:
                self.error(a, a + 1, "unterminated string")
                text.append(src[i:])
                i = tend = n
                break
            p = m.start()
            c = src[p]
            if c == "\n":
                text.append(src[i:p + 1])
                i = p + 1
                continue
            if c == "`":
                text.append(src[i:p])
                if src.startswith("`", p + 1):
                    text.append("`")
                    i = p + 2
                    continue
                tend = p
                i = p + 1
                break
            if not src.startswith("{", p + 1):
                text.append(src[i:p + 1])
                i = p + 1
                continue
            text.append(src[i:p])
            joined = "".join(text)
            if joined:
                parts.append((joined, tstart, p))
            text = []
            self.depth += 1
            if self.depth > self.budget.depth:
                self.budget.depth = self.depth
                if self.depth > self.budget.limits.depth:
                    self.budget.fail("depth", self.lines.span(self.file, p, p + 2), "nesting too deep")
            stream, i, closed = self.run(p + 2, p)
            self.depth -= 1
            parts.append((stream, p, i))
            if not closed:
                line, col = self.lines.pos(p)
                self.error(n, n, f"expected '}}' to close '${{' at {line}:{col}, found end of input")
                return tuple(parts), n
            tstart = i
        joined = "".join(text)
        if joined:
            parts.append((joined, tstart, tend))
        if all(type(part[0]) is str for part in parts):
            return "".join(str(part[0]) for part in parts), i
        return tuple(parts), i


def _decimal(text: str) -> int:
    """The value of a decimal integer literal; more than 19 digits is simply too large
    for i64 (so a huge literal never reaches ``int()``'s digit limit or quadratic cost)."""
    digits = text.replace("_", "").lstrip("0") if "_" in text or text[0] == "0" else text
    if len(digits) > 19:
        return 1 << 64
    return int(digits) if digits else 0


def lex(source: str, file: str, diags: Diagnostics, budget: Budget | None = None) -> TokenStream:
    """Lex a whole file into a :class:`TokenStream`; errors go to ``diags``.

    A byte-order mark and a ``#!`` line at the very start are skipped.
    ``budget`` is the compilation's (default: a fresh one under the default
    limits). Raises :class:`~._budget.CompileLimitExceeded` when the budget
    runs out, and nothing else.
    """
    if budget is None:
        budget = Budget(DEFAULT_LIMITS, diags, time.monotonic)
    lexer = _Lexer(source, file, diags, budget)
    pos = 1 if source.startswith("\ufeff") else 0
    if source.startswith("#!", pos):
        nl = source.find("\n")
        pos = len(source) if nl == -1 else nl
    stream = lexer.run(pos, None)[0]
    if _SURROGATE.search(source) is not None:
        _check_surrogates(lexer, stream)
    return stream


def _check_surrogates(lexer: _Lexer, stream: TokenStream) -> None:
    """Report string literals holding a lone surrogate (a Python ``str`` can,
    UTF-8 text cannot). Outside literals they are already unknown characters."""
    for kind, value, (a, b) in zip(stream.kinds, stream.values, stream.offsets, strict=True):
        texts: list[str] = []
        if kind == "str":
            texts = [str(value)]
        elif kind == "interp":
            assert isinstance(value, tuple)
            for part, _, _ in value:
                if isinstance(part, str):
                    texts.append(part)
                else:
                    _check_surrogates(lexer, part)
        for text in texts:
            m = _SURROGATE.search(text)
            if m is not None:
                lexer.error(a, b, f"invalid character {m.group()!r} in string (a lone surrogate "
                                  "is not Unicode text)")
                break


def _to_tokens(stream: TokenStream, source: str, file: str) -> list[Token]:
    tokens: list[Token] = []
    span = stream.lines.span
    for kind, value, (a, b) in zip(stream.kinds, stream.values, stream.offsets, strict=True):
        if kind == "interp":
            assert isinstance(value, tuple)
            value = tuple(
                p if isinstance(p, str) else tuple(_to_tokens(p, source, file))
                for p, _, _ in value
            )
        tokens.append(Token(kind, source[a:b], value, span(file, a, b)))
    return tokens


def tokenize(source: str, file: str, diags: Diagnostics, budget: Budget | None = None) -> list[Token]:
    """The tokens of ``source`` (ending with an ``"eof"`` token).

    Lexical errors are recorded in ``diags``; raises only what :func:`lex` raises.
    """
    return _to_tokens(lex(source, file, diags, budget), source, file)
