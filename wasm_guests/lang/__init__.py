"""The peerbox language: a Rhai subset compiled to WebAssembly, in pure Python.

The pipeline, one module per stage::

    source --_lexer--> tokens --_parser--> AST (_ast) --_resolver--> names resolved
           --_codegen--> WAT text (the script module; see wasm_guests/ABI.md)

The code generator is built in layers: ``_emitter`` (locals, labels, error
regions, variables, roots and safe points for the collector), ``_operators``
(operators and conditions), ``_places`` (assignment, copy-on-write along a
place's path, what a function returns), ``_codegen`` (statements and
expressions), ``_module`` (the module: functions, imports, ``main``);
``_analysis`` holds the static facts they use. Given a peer's record schema
(``schema=``, plain data), ``_dbcheck`` checks ``db::`` calls against it
between resolving and generating code.

:func:`compile_to_wat` runs it for a script and every module it imports and
raises :class:`CompileError` with every diagnostic it found. Nothing here
touches wasmtime, files or the network: imports are read through the
``resolver`` callback the host supplies, and the host functions a script may
call (``fs::read`` ...) are the rows of the ``host_calls`` table it supplies
(:class:`HostCallSpec`; peerbox passes ``peerbox.hostcalls.HOST_CALLS``).

Compiling untrusted source is a job with a budget, :class:`CompileLimits`
(source bytes, tokens, syntax nodes, nesting depth, tree height, parameters,
locals per function, modules, WAT bytes and a wall-clock deadline read from
an injected clock). One budget covers the script and every module it
imports; each stage charges it as it goes and going over raises
:class:`CompileLimitExceeded` (a :class:`CompileError`) naming the limit, its
value and the position. Every stage is linear in its input (the tree's height
and nesting are bounded by the budget), and what each did is counted in
``Compiled.stats`` (:class:`CompileStats`).
"""

from __future__ import annotations

import functools
import hashlib
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peerbox._errors import UsageError

from . import _ast as ast
from ._ast import Span
from ._budget import (
    DEFAULT_LIMITS, Budget, CompileLimitExceeded, CompileLimits, CompileStats, raised_recursion_limit,
)
from ._builtins import BUILTINS, Builtin
from ._dbcheck import RecordSchema, check_records
from ._emitter import CODEGEN_VERSION
from ._hostfns import MAX_HOST_ARITY, HostCallSpec, HostFunctions
from ._module import generate
from ._diagnostics import CompileError, Diagnostic, Diagnostics
from ._parser import PARAM_TYPES, parse
from ._resolver import ModuleInfo, resolve

__all__ = [
    "compile_to_wat", "check", "check_syntax", "interface", "Interface", "Export", "PARAM_TYPES",
    "Compiled", "ModuleSource", "Resolver", "CompileError", "Diagnostic",
    "CompileLimits", "CompileStats", "CompileLimitExceeded", "DEFAULT_LIMITS", "Clock",
    "BUILTINS", "Builtin", "CODEGEN_VERSION", "MAX_MODULES", "ast", "compiler_fingerprint",
    "HostCallSpec", "MAX_HOST_ARITY", "RecordSchema",
]

#: Most files (the script and its modules) one compilation may pull in by
#: default (``CompileLimits.modules``).
MAX_MODULES = DEFAULT_LIMITS.modules

Clock = Callable[[], float]
"""Seconds on a monotonic clock; the compiler reads it to enforce ``CompileLimits.timeout``."""


@dataclass(frozen=True, slots=True)
class ModuleSource:
    """A module's text as the resolver found it; ``file`` names it in errors."""

    file: str
    source: str


Resolver = Callable[[str, str], "ModuleSource | None"]
"""``resolver(name, importer_file)``: the module ``import "name"`` means, or None."""


@dataclass(frozen=True, slots=True)
class Compiled:
    """The compiler's output: WAT text, the file table, the modules used and
    what compiling cost (``stats``, counted against the budget as it went)."""

    wat: str
    files: tuple[str, ...]  # file index (in runtime error lines) -> filename
    deps: tuple[ModuleSource, ...]  # every imported module, transitively
    imports: tuple[tuple[str, str, str], ...]  # (importer file, import name, resolved file)
    stats: CompileStats = CompileStats()


@functools.cache
def _source_digest() -> bytes:
    """SHA-256 over :data:`CODEGEN_VERSION` and the compiler's own source files (read once)."""
    h = hashlib.sha256(CODEGEN_VERSION.encode())
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.digest()


def compiler_fingerprint(host_calls: Iterable[HostCallSpec] = ()) -> str:
    """SHA-256 over the compiler's own source files and the host-call table it is given.

    Caches of compiled modules key on it, so any change to the compiler (not
    only a bump of :data:`CODEGEN_VERSION`), or to the op, name or arity of a
    host call, invalidates what it compiled. Without ``host_calls`` it is the
    digest of the source files alone, as before the table was a parameter.
    Raises ``ValueError`` for a table :func:`compile_to_wat` would refuse.
    """
    rows = HostFunctions(host_calls).functions
    if not rows:
        return _source_digest().hex()
    h = hashlib.sha256(_source_digest())
    for fn in rows:
        h.update(f"\0{fn.op}:{fn.qualname}/{fn.arity}".encode())
    return h.hexdigest()


def _load(source: str, filename: str, resolver: Resolver | None, diags: Diagnostics,
          budget: Budget) -> tuple[list[ModuleInfo], list[int], list[tuple[str, str, ModuleSource]]]:
    """Parse the script and, transitively, every module it imports (all charged to ``budget``)."""
    budget.add_source(filename, source, Span(filename, 1, 1, 1, 2))
    diags.add_source(filename, source)
    modules = [ModuleInfo(index=0, file=filename, script=parse(source, filename, diags, budget))]
    by_file: dict[str, int] = {filename: 0}
    order: list[int] = []
    deps: list[tuple[str, str, ModuleSource]] = []
    done: set[int] = set()

    def visit(mod: ModuleInfo, chain: list[str]) -> None:
        for st in mod.script.body.stmts:
            if not isinstance(st, ast.Import):
                continue
            found = resolver(st.path, mod.file) if resolver is not None else None
            if found is None:
                diags.error(st.span, f"module '{st.path}' not found")
                continue
            idx = by_file.get(found.file)
            deps.append((mod.file, st.path, found))
            if found.file in chain:
                cycle = " -> ".join([*chain[chain.index(found.file):], found.file])
                diags.error(st.span, f"import cycle: {cycle}")
                continue
            if idx is None:
                budget.add_source(found.file, found.source, st.span)
                diags.add_source(found.file, found.source)
                idx = len(modules)
                by_file[found.file] = idx
                modules.append(ModuleInfo(index=idx, file=found.file,
                                          script=parse(found.source, found.file, diags, budget)))
            if st.alias is not None:
                mod.imports[st.alias] = idx
            if idx not in done:
                visit(modules[idx], [*chain, found.file])
                done.add(idx)
                order.append(idx)

    visit(modules[0], [filename])
    return modules, order, deps


@dataclass(frozen=True, slots=True)
class Export:
    """A function the module publishes (``export fn name(a, b: string)``): its
    parameters, the type each declares (one of :data:`PARAM_TYPES`, a record
    type of the peer's schema such as ``Message``, either with a trailing ``?``
    when the argument may be ``()``; None: any) and the line it starts on.
    ``type_at``: where each declared type is written, ``(line, column)`` (None
    for an untyped parameter; empty when not known), for the publisher's errors."""

    name: str
    params: tuple[str, ...]
    types: tuple[str | None, ...]
    line: int
    type_at: tuple[tuple[int, int] | None, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class Interface:
    """What a module offers its importers: public functions with their parameters,
    top-level constants, and the modules it imports itself (as written); and the
    functions it publishes for remote calls (``exports``, each also in ``functions``)."""

    functions: tuple[tuple[str, tuple[str, ...]], ...]
    constants: tuple[str, ...]
    imports: tuple[str, ...]
    exports: tuple[Export, ...] = ()


def _budget(limits: CompileLimits | None, diags: Diagnostics, clock: Clock) -> Budget:
    if limits is None:
        limits = DEFAULT_LIMITS
    elif not isinstance(limits, CompileLimits):
        raise UsageError(f"limits must be a CompileLimits, not {type(limits).__name__}")
    return Budget(limits, diags, clock)


def _type_positions(source: str, fn: ast.FnDef) -> tuple[tuple[int, int] | None, ...]:
    """Where each declared type of ``fn``'s parameters is written: the first ``param : TYPE``
    after the function's start (the parameter list comes before anything else)."""
    lines = source.splitlines(keepends=True)
    start = sum(len(x) for x in lines[:fn.span.line - 1]) + fn.span.col - 1
    out: list[tuple[int, int] | None] = []
    for param, typ in zip(fn.params, fn.types, strict=False):
        if typ is None:
            out.append(None)
            continue
        m = re.compile(rf"\b{re.escape(param)}\s*:\s*({re.escape(typ.rstrip('?'))})\b").search(source, start)
        if m is None:
            out.append(None)
            continue
        at = m.start(1)
        line = source.count("\n", 0, at) + 1
        out.append((line, at - (source.rfind("\n", 0, at) + 1) + 1))
        start = m.end()
    return tuple(out)


def interface(source: str, filename: str = "<module>", *, limits: CompileLimits | None = None,
              clock: Clock = time.monotonic) -> Interface:
    """Parse ``source`` (no imports are followed) and describe what it offers and publishes.

    Raises :class:`CompileError` for a syntax error (a function exported twice
    included), :class:`CompileLimitExceeded` when parsing goes over ``limits``
    (default :data:`DEFAULT_LIMITS`).
    """
    diags = Diagnostics()
    budget = _budget(limits, diags, clock)
    budget.add_source(filename, source, Span(filename, 1, 1, 1, 2))
    diags.add_source(filename, source)
    script = parse(source, filename, diags, budget)
    diags.check()
    fns = tuple((f.name, tuple(f.params)) for f in script.functions if not f.private)
    consts = tuple(st.name for st in script.body.stmts if isinstance(st, ast.Let) and st.const)
    imports = tuple(st.path for st in script.body.stmts if isinstance(st, ast.Import))
    exports = tuple(Export(name=f.name, params=f.params, types=f.types, line=f.span.line,
                           type_at=_type_positions(source, f))
                    for f in script.functions if f.exported)
    return Interface(functions=fns, constants=consts, imports=imports, exports=exports)


def check(source: str, filename: str = "<script>", resolver: Resolver | None = None, *,
          limits: CompileLimits | None = None, clock: Clock = time.monotonic,
          host_calls: Iterable[HostCallSpec] = (), schema: Mapping[str, Any] | None = None) -> None:
    """Parse and resolve without generating code; raise :class:`CompileError` on any error
    (:class:`CompileLimitExceeded` when going over ``limits``). ``host_calls`` and ``schema`` as
    for :func:`compile_to_wat`."""
    hosts = HostFunctions(host_calls)
    records = RecordSchema(schema) if schema is not None else None
    diags = Diagnostics()
    budget = _budget(limits, diags, clock)
    with raised_recursion_limit(budget.limits):
        modules, _, _ = _load(source, filename, resolver, diags, budget)
        res = resolve(modules, diags, budget, hosts=hosts)
        if records is not None and not diags.items:
            check_records(res, records, diags)
    diags.check()


def check_syntax(source: str, filename: str = "<script>", *, limits: CompileLimits | None = None,
                 clock: Clock = time.monotonic) -> tuple[str, ...]:
    """Lex and parse ``source`` alone (no imports followed, no names resolved); return the module
    paths it imports, in order.

    What a sender can check of a script that another peer will compile against
    modules only that peer has (``peerbox send``). Raises :class:`CompileError`
    with every syntax error, rendered as :func:`compile_to_wat` renders them
    (file, line, column, the source line and a caret), or
    :class:`CompileLimitExceeded` when parsing goes over ``limits``.
    """
    diags = Diagnostics()
    budget = _budget(limits, diags, clock)
    with raised_recursion_limit(budget.limits):
        budget.add_source(filename, source, Span(filename, 1, 1, 1, 2))
        diags.add_source(filename, source)
        script = parse(source, filename, diags, budget)
    diags.check()
    return tuple(st.path for st in script.body.stmts if isinstance(st, ast.Import))


def compile_to_wat(source: str, filename: str = "<script>", resolver: Resolver | None = None, *,
                   limits: CompileLimits | None = None, clock: Clock = time.monotonic,
                   host_calls: Iterable[HostCallSpec] = (),
                   schema: Mapping[str, Any] | None = None) -> Compiled:
    """Compile a script and the modules it imports into one wasm module (WAT text).

    ``limits`` is the budget of the whole compilation, imported modules
    included (default :data:`DEFAULT_LIMITS`); ``clock`` is what its
    ``timeout`` is measured on. ``host_calls`` is the host's table of host
    functions (:class:`HostCallSpec` rows: ``op``, ``name`` such as
    ``fs::read``, ``params``); a call to one compiles to its op number, and
    without a table scripts have none. A malformed table (see
    :class:`~._hostfns.HostFunctions`) raises ``ValueError``: it is the
    host's bug, not the script's. Raises :class:`CompileError` listing every
    syntax and resolution error found in any of the files, each with its
    file, line and column, or :class:`CompileLimitExceeded` (a CompileError)
    as soon as the compilation goes over a limit. A wrong type of ``limits``
    is a :class:`~peerbox.UsageError`.

    ``schema`` is the record schema of the peer the script is compiled for,
    as plain data (peerbox passes ``Schema.canonical()``; see
    :mod:`._dbcheck`): with it, constant collection names, record literals
    given to ``db::insert``/``db::update`` and field reads on values that come
    straight from ``db::get``/``db::query`` are checked against it, each
    mistake a diagnostic at its position. Without it (the default) nothing of
    the kind is checked and scripts compile exactly as before. Malformed
    schema data raises ``ValueError``, like a malformed table.
    """
    hosts = HostFunctions(host_calls)
    records = RecordSchema(schema) if schema is not None else None
    diags = Diagnostics()
    budget = _budget(limits, diags, clock)
    with raised_recursion_limit(budget.limits):
        modules, order, deps = _load(source, filename, resolver, diags, budget)
        diags.check()
        res = resolve(modules, diags, budget, hosts=hosts)
        if records is not None and not diags.items:
            check_records(res, records, diags)
        diags.check()
        wat = generate(res, order, budget)
    seen: dict[str, ModuleSource] = {}
    for _, _, m in deps:
        seen.setdefault(m.file, m)
    return Compiled(wat=wat, files=tuple(m.file for m in modules), deps=tuple(seen.values()),
                    imports=tuple((imp, name, m.file) for imp, name, m in deps), stats=budget.stats())
