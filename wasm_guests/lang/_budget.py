"""Compile budgets: what one compilation of untrusted source may cost.

A compile is a job with a budget (:class:`CompileLimits`): source bytes,
tokens, syntax nodes, nesting depth, expression height, parameters per
function, closure or call, wasm locals per function, modules and bytes of
generated WAT, and a wall-clock deadline. Every stage checks the budget *as
it goes*, through one :class:`Budget` per compilation (shared by the script
and every module it imports, so importing many modules does not escape it):
a count is compared with its limit when it grows, and the deadline is read
from the injected clock every :data:`TICK` units of work. Going over raises
:class:`CompileLimitExceeded` (a :class:`~._diagnostics.CompileError`, exit
code 3) whose message names the limit, its value and where it was exceeded.

The work each stage did is recorded too (:class:`CompileStats`, on
``Compiled.stats``), so tests can check that the compiler's cost grows
linearly with its input without timing anything.
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import NoReturn

from peerbox._errors import UsageError

from ._ast import Span
from ._diagnostics import CompileError, Diagnostic, Diagnostics

__all__ = [
    "CompileLimits", "CompileStats", "CompileLimitExceeded", "Budget", "TICK",
    "DEFAULT_LIMITS", "MAX_DEPTH_LIMIT", "raised_recursion_limit",
]

#: Units of work (tokens, nodes) between two readings of the clock.
TICK = 2048

#: Largest ``depth`` and ``height`` a :class:`CompileLimits` may set: the
#: compiler recurses once per level, so these bound its Python stack.
MAX_DEPTH_LIMIT = 1000

_MAX_TIMEOUT = 24 * 3600.0
_MAX_COUNT = 1 << 40
# Ceilings that keep every module the compiler emits valid for wasmtime (so a
# limit set high never turns into "a bug in peerbox"): wasm allows 1000
# parameters (two values each, plus a closure's environment), 50,000 locals
# and 7,654,321 bytes of code per function (WAT text is never smaller).
_CEILINGS = {"depth": MAX_DEPTH_LIMIT, "height": MAX_DEPTH_LIMIT, "params": 400, "locals": 40_000,
             "function_wat_bytes": 7_000_000}


@dataclass(frozen=True, slots=True)
class CompileLimits:
    """The budget of one compilation (a script and every module it imports).

    Each field is a hard limit; going over it raises
    :class:`CompileLimitExceeded` naming the field:

    * ``source_bytes``: UTF-8 bytes of source, the script and its modules
      together (default 2 MiB: a 1 MiB request plus its imports);
    * ``tokens``: tokens lexed, all files together (default 400,000);
    * ``nodes``: syntax nodes parsed, all files together (default 400,000);
    * ``depth``: nesting of brackets, blocks, closures, ``if``/``switch`` and
      ``${}`` (default 200, at most 1000);
    * ``height``: height of one expression or statement tree, operator chains
      included (default 256, at most 1000); a taller statement is reported
      as "expression too complex" and parsing goes on;
    * ``params``: parameters of one function or closure, and arguments of
      one call (default 128, at most 400: wasm allows 1000 values, two per
      parameter);
    * ``locals``: wasm locals of one generated function, which grow with the
      variables declared in it (default 10,000, at most 40,000);
    * ``modules``: files in the compilation, the script included (default 64);
    * ``wat_bytes``: bytes of generated WebAssembly text, the whole module
      (default 16 MiB); Cranelift compiles it next, at a cost that grows
      with it;
    * ``function_wat_bytes``: bytes of WAT of one function (default 1 MiB,
      at most 7,000,000); Cranelift's time and memory grow faster than
      linearly with one function's size, so this keeps each function cheap
      (a script's top-level code is one function: split a huge one into
      functions);
    * ``timeout``: wall-clock seconds for the whole compilation, read from
      the compiler's clock every few thousand units of work (default 30 s;
      ``None``: no deadline). Cranelift's compile of the WAT comes after
      and is bounded by the two WAT limits, not by this.

    The defaults compile every example and the built-in library with room to
    spare. Raises :class:`~peerbox.UsageError` for a value that makes no sense.
    """

    source_bytes: int = 2 << 20
    tokens: int = 400_000
    nodes: int = 400_000
    depth: int = 200
    height: int = 256
    params: int = 128
    locals: int = 10_000
    modules: int = 64
    wat_bytes: int = 16 << 20
    function_wat_bytes: int = 1 << 20
    timeout: float | None = 30.0

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name == "timeout":
                continue
            v = getattr(self, f.name)
            top = _CEILINGS.get(f.name, _MAX_COUNT)
            if type(v) is not int or not 1 <= v <= top:
                raise UsageError(f"CompileLimits.{f.name} must be an int in [1, {top}], got {v!r}")
        t = self.timeout
        if t is not None and (not isinstance(t, (int, float)) or isinstance(t, bool)
                              or not math.isfinite(t) or not 0 < t <= _MAX_TIMEOUT):
            raise UsageError(
                f"CompileLimits.timeout must be a number of seconds in (0, {_MAX_TIMEOUT:.0f}] or None, "
                f"got {t!r}")


DEFAULT_LIMITS = CompileLimits()


@dataclass(frozen=True, slots=True)
class CompileStats:
    """What one compilation cost, counted by the stages themselves.

    ``source_bytes``, ``tokens``, ``nodes``: totals over every file;
    ``depth``, ``height``: the deepest nesting and tallest tree met;
    ``params``: the most parameters (or call arguments) met; ``locals``: the
    most wasm locals of one function; ``locals_total``: wasm locals of all
    functions; ``modules``: files compiled; ``wat_bytes``: length of the
    WAT; ``function_wat_bytes``: length of the largest function's WAT;
    ``resolved`` and ``generated``: nodes the resolver and the code
    generator visited (the generator visits small functions twice, for their
    all-int clones); ``instructions``: wasm instructions emitted.
    """

    source_bytes: int = 0
    tokens: int = 0
    nodes: int = 0
    depth: int = 0
    height: int = 0
    params: int = 0
    locals: int = 0
    locals_total: int = 0
    modules: int = 0
    wat_bytes: int = 0
    function_wat_bytes: int = 0
    resolved: int = 0
    generated: int = 0
    instructions: int = 0


class CompileLimitExceeded(CompileError):
    """A compilation went over its :class:`CompileLimits` budget.

    ``limit`` is the field's name (``"tokens"``, ``"timeout"``, ...) and
    ``value`` its value. Like every :class:`CompileError` it carries the
    position, and its exit code is 3. The first diagnostic is the limit's;
    errors found before it follow.
    """

    def __init__(self, limit: str, value: object, diagnostics: list[Diagnostic]) -> None:
        super().__init__(diagnostics)
        self.limit = limit
        self.value = value


def limit_message(limit: str, value: object, what: str) -> str:
    """The text of a budget diagnostic: what happened, then the limit's name and value."""
    return f"{what} (compile limit '{limit}' is {value})"


class Budget:
    """The running account of one compilation against its :class:`CompileLimits`.

    The stages add to the counters and call :meth:`fail` (or the helpers that
    call it) when one goes over; :meth:`check_time` reads the clock. Not
    thread-safe: one compilation, one thread.
    """

    __slots__ = ("limits", "clock", "deadline", "diags", "source_bytes", "tokens", "nodes", "depth",
                 "height", "params", "locals", "locals_total", "modules", "wat_bytes",
                 "function_wat_bytes", "resolved", "generated", "instructions", "next_tick", "next_clock")

    def __init__(self, limits: CompileLimits, diags: Diagnostics,
                 clock: Callable[[], float]) -> None:
        self.limits = limits
        self.clock = clock
        self.diags = diags
        self.deadline = math.inf if limits.timeout is None else clock() + limits.timeout
        self.source_bytes = self.tokens = self.nodes = self.depth = self.height = 0
        self.params = self.locals = self.locals_total = self.modules = self.wat_bytes = 0
        self.function_wat_bytes = 0
        self.resolved = self.generated = self.instructions = 0
        self.next_tick = 0  # the parser's node count at which it next reads the clock
        self.next_clock = 0  # the lexer's token count at which it next reads the clock

    def fail(self, limit: str, span: Span, what: str) -> NoReturn:
        """Raise :class:`CompileLimitExceeded` for ``limit`` at ``span``; ``what`` says what went over."""
        value = getattr(self.limits, limit)
        shown = f"{value} s" if limit == "timeout" else value
        first = self.diags.make(span, limit_message(limit, shown, what))
        raise CompileLimitExceeded(limit, value, [first, *self.diags.items])

    def check_time(self, where: Callable[[], Span]) -> None:
        """Raise for ``timeout`` if the deadline has passed; ``where()`` locates the work under way."""
        if self.clock() > self.deadline:
            self.fail("timeout", where(), "compilation took too long")

    def add_source(self, file: str, source: str, span: Span) -> None:
        """Count one file's bytes (``span``: the import that brought it in, or its start)."""
        self.modules += 1
        if self.modules > self.limits.modules:
            self.fail("modules", span, "too many modules, the script included")
        room = self.limits.source_bytes - self.source_bytes
        # a character is 1 to 4 UTF-8 bytes: encode at most room + 1 characters
        # (all of it when it fits, since then it has at most room characters)
        head = source[:room + 1].encode("utf-8", "surrogatepass")
        if len(head) > room:
            cut = len(head[:room].decode("utf-8", "ignore"))  # the first character past the budget
            line = source.count("\n", 0, cut) + 1
            col = cut - (source.rfind("\n", 0, cut) + 1) + 1
            self.diags.add_source(file, source)
            self.fail("source_bytes", Span(file, line, col, line, col + 1),
                      "source too large (in UTF-8 bytes, imported modules included)")
        self.source_bytes += len(head)

    def stats(self) -> CompileStats:
        """The counters as a frozen :class:`CompileStats`."""
        return CompileStats(**{f.name: getattr(self, f.name) for f in fields(CompileStats)})


# -- the recursion limit ------------------------------------------------------

# The recursion limit is process-wide: while any thread compiles it stays at
# least as high as the deepest compile needs; the last to finish puts the
# original value back.
_limit_lock = threading.Lock()
_limit_users = 0
_limit_saved = 0

#: Python frames the compiler may use per level of nesting or tree height.
FRAMES_PER_LEVEL = 24


def _stack_depth() -> int:
    depth = 0
    frame = sys._getframe()
    while frame is not None:
        depth += 1
        frame = frame.f_back  # type: ignore[assignment]
    return depth


@contextmanager
def raised_recursion_limit(limits: CompileLimits) -> Iterator[None]:
    """Keep the recursion limit high enough for a compile under ``limits`` while it runs.

    The parser recurses once per nesting level and the later passes once per
    level of tree height, a bounded number of frames each, so the limit
    needed follows from ``depth`` and ``height``.
    """
    global _limit_users, _limit_saved
    needed = _stack_depth() + max(limits.depth, limits.height) * FRAMES_PER_LEVEL + 200
    with _limit_lock:
        if _limit_users == 0:
            _limit_saved = sys.getrecursionlimit()
        _limit_users += 1
        if sys.getrecursionlimit() < needed:
            sys.setrecursionlimit(needed)
    try:
        yield
    finally:
        with _limit_lock:
            _limit_users -= 1
            if _limit_users == 0:
                sys.setrecursionlimit(_limit_saved)
