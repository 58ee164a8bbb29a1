"""Compile diagnostics: positions, messages and the caret rendering.

A :class:`CompileError` carries every :class:`Diagnostic` that error recovery
could find, each with ``(file, line, col)``, and renders them the way
compilers do::

    job.rhai:3:9: error: undefined variable 'y'
        let x = y + 1;
                ^
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from peerbox._errors import Error

from ._ast import Span

__all__ = ["Diagnostic", "CompileError", "Diagnostics"]

#: Most characters of a source line shown under an error (a window around the column).
_MAX_SHOWN = 160
#: Most characters of a name quoted in a message: messages quote names from the source (an
#: undefined variable, a module), a name may be as long as the script, and a caller gets it back.
_MAX_QUOTED = 80
#: Most characters of one message, whatever it quotes.
_MAX_MESSAGE = 1000
_QUOTED = re.compile(rf"(?<![\w])'([^'\n]{{{_MAX_QUOTED + 1},}})'(?![\w])")  # not an apostrophe


def _bounded(message: str) -> str:
    """``message`` with each long quoted name cut (saying how much was left out), then capped."""
    if len(message) <= _MAX_QUOTED:
        return message
    message = _QUOTED.sub(
        lambda m: f"'{m[1][:_MAX_QUOTED]}… ({len(m[1]) - _MAX_QUOTED} more characters)'", message)
    if len(message) <= _MAX_MESSAGE:
        return message
    return f"{message[:_MAX_MESSAGE]}… ({len(message) - _MAX_MESSAGE} more characters)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Diagnostic:
    """One compile error: where it is and what is wrong there."""

    file: str
    line: int
    col: int
    message: str
    source_line: str = ""
    width: int = 1

    def render(self) -> str:
        head = f"{self.file}:{self.line}:{self.col}: error: {self.message}"
        if not self.source_line:
            return head
        text = self.source_line.expandtabs(1)
        col = self.col
        if len(text) > _MAX_SHOWN:  # a window around the column, so one huge line stays readable
            start = max(0, min(col - 1 - _MAX_SHOWN // 2, len(text) - _MAX_SHOWN))
            text = ("…" if start else "") + text[start:start + _MAX_SHOWN] + \
                ("…" if start + _MAX_SHOWN < len(text) else "")
            col = col - start + (1 if start else 0)
        caret = " " * (col - 1) + "^" * max(1, min(self.width, len(text) - col + 1, _MAX_SHOWN))
        return f"{head}\n    {text}\n    {caret}"


class CompileError(Error):
    """The source does not compile. ``diagnostics`` lists every error found.

    ``str(err)`` renders all of them with source lines and carets; ``file``,
    ``line`` and ``col`` are those of the first.
    """

    exit_code = 3

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        if not diagnostics:
            raise ValueError("CompileError needs at least one diagnostic")
        self.diagnostics = list(diagnostics)
        first = self.diagnostics[0]
        self.file, self.line, self.col = first.file, first.line, first.col
        self.message = first.message
        super().__init__("\n".join(d.render() for d in self.diagnostics))


@dataclass(slots=True)
class Diagnostics:
    """Collects diagnostics for one compilation, with the sources to quote."""

    sources: dict[str, str] = field(default_factory=dict)
    items: list[Diagnostic] = field(default_factory=list)
    limit: int = 100
    _lines: dict[str, list[int]] = field(default_factory=dict)  # file -> offsets of line starts

    def add_source(self, file: str, text: str) -> None:
        self.sources[file] = text
        self._lines.pop(file, None)

    def _line(self, file: str, line: int) -> str:
        """Line ``line`` (1-based) of ``file``, or "" (line starts are found once per file)."""
        text = self.sources.get(file, "")
        starts = self._lines.get(file)
        if starts is None:
            starts = [0]
            find = text.find
            i = find("\n")
            while i != -1:
                starts.append(i + 1)
                i = find("\n", i + 1)
            self._lines[file] = starts
        if not 0 < line <= len(starts):
            return ""
        a = starts[line - 1]
        b = starts[line] - 1 if line < len(starts) else len(text)
        return text[a:b]

    def make(self, span: Span, message: str) -> Diagnostic:
        """The :class:`Diagnostic` for ``message`` at ``span``, quoting its source line."""
        width = span.end_col - span.col if span.end_line == span.line else 1
        return Diagnostic(file=span.file, line=span.line, col=span.col, message=_bounded(message),
                          source_line=self._line(span.file, span.line).rstrip("\r"), width=max(1, width))

    def error(self, span: Span, message: str) -> None:
        """Record an error at ``span``; past ``limit`` errors, stop recording."""
        if len(self.items) >= self.limit:
            return
        self.items.append(self.make(span, message))

    def check(self) -> None:
        """Raise :class:`CompileError` if anything was recorded."""
        if self.items:
            raise CompileError(self.items)
