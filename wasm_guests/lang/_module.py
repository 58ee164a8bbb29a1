"""Assembling the script module: functions, imports, strings and the entry point.

:func:`generate` compiles every function of a resolved program with
:class:`~._codegen.FunctionCompiler` and wraps them into one WAT module
that imports what it uses from rt and exports ``main`` (see ABI.md).

Every function is compiled once, plus once per change of what its all-int
clone may assume (see :func:`_compile_int_clones`), so generation is linear
in the program; the WAT's size is charged to the budget's ``wat_bytes`` as
functions are finished and checked exactly once the text is assembled.
"""

from __future__ import annotations

from . import _ast as A
from ._budget import Budget
from ._analysis import int_specializable, reaches_gc
from ._codegen import FunctionCompiler
from ._emitter import CLOSURE_TABLE_BASE, EXC, SHADOW_SLOTS, ModuleBuilder
from ._resolver import FnRef, ModuleInfo, Resolution

__all__ = ["generate"]


def _compile_int_clones(mb: ModuleBuilder, functions: list[tuple[ModuleInfo, A.FnDef]]) -> dict[str, str]:
    """Compile the all-int clones; find those that return only ints (a fixpoint).

    Optimistically every clone returns ints (so ``fib(n - 1) + fib(n - 2)``
    adds two known ints); a clone with a return path that is not surely an
    int leaves the set, and the clones that relied on it (``assumed``) are
    compiled again, until nothing changes. A clone is recompiled only when
    a clone it calls leaves the set, so the total work is linear (a chain of
    calls does not recompile every clone once per link).
    """
    todo = {FnRef(mod.index, fn.name, len(fn.params)).wasm_name: (mod, fn) for mod, fn in functions
            if FnRef(mod.index, fn.name, len(fn.params)).wasm_name in mb.int_clones}
    mb.int_returns = {name + "_int" for name in todo}
    users: dict[str, set[str]] = {}  # clone "$f..._int" -> functions whose clones assumed its ints
    out: dict[str, str] = {}
    pending = list(todo)
    while pending:
        failed = set()
        for name in pending:
            mod, fn = todo[name]
            params = mb.res.params[id(fn)]
            clone = FunctionCompiler(mb, mod.index)
            clone.rooted = name in mb.may_gc
            clone.known_int = {b.id for b in params}
            clone.body(fn.body, params, 0)
            if not clone.returns_int:
                failed.add(name + "_int")
            for used in clone.assumed:
                users.setdefault(used, set()).add(name)
            out[name] = clone.finish(f"(func {name}_int {_params(len(params))} (result i32 i64)")
        newly = failed & mb.int_returns
        mb.int_returns -= newly
        pending = sorted({user for gone in newly for user in users.pop(gone, ())})
    return out


def _wat_bytes(data: bytes) -> str:
    out = []
    for c in data:
        if 0x20 <= c < 0x7F and c not in (0x22, 0x5C):
            out.append(chr(c))
        else:
            out.append(f"\\{c:02x}")
    return "".join(out)


def _params(n: int) -> str:
    return " ".join("(param i32 i64)" for _ in range(n))


def _add(mb: ModuleBuilder, text: str) -> None:
    """Add a finished function to the module (and its size to the budget's ``wat_bytes``)."""
    mb.funcs.append(text)
    mb.budget.wat_bytes += len(text) + 3


def generate(res: Resolution, init_order: list[int], budget: Budget) -> str:
    """Generate the WAT text of the script module for a resolved program.

    ``init_order`` lists the imported modules (indices into ``res.modules``)
    so that every module comes after the modules it imports; their top-level
    code runs in that order before the main script's. Raises
    :class:`~._budget.CompileLimitExceeded` when a function needs more than
    ``CompileLimits.locals`` locals, the text grows past ``wat_bytes`` or the
    deadline passes; on success ``budget.wat_bytes`` is the text's length.
    """
    mb = ModuleBuilder(res, budget)
    functions = [(mod, fn) for mod in res.modules for fn in mod.script.functions]
    mb.may_gc, mb.closures_may_gc = reaches_gc(
        [(FnRef(mod.index, fn.name, len(fn.params)).wasm_name, fn) for mod, fn in functions],
        list(res.closure_order), res)
    for mod, fn in functions:
        if int_specializable(fn, res):
            mb.int_clones.add(FnRef(mod.index, fn.name, len(fn.params)).wasm_name)
    clones = _compile_int_clones(mb, functions)
    # script functions
    for mod, fn in functions:
        params = res.params[id(fn)]
        name = FnRef(mod.index, fn.name, len(params)).wasm_name
        sig = f"{_params(len(params))} (result i32 i64)"
        f = FunctionCompiler(mb, mod.index)
        f.rooted = name in mb.may_gc
        if name in mb.int_clones:
            _add(mb, clones[name])
            # entry test: all arguments ints -> the clone that knows it
            for i in range(len(params)):
                f.emit(f"local.get {2 * i}", "i32.const 2", "i32.eq")
                if i:
                    f.emit("i32.and")
            f.emit("if", *(f"local.get {i}" for i in range(2 * len(params))), f"call {name}_int", "return",
                   "end")
        f.body(fn.body, params, 0)
        _add(mb, f.finish(f"(func {name} {sig}"))
    # module initialisers and the main body
    inits: list[str] = []
    for mod in [res.modules[i] for i in init_order] + [res.modules[0]]:
        f = FunctionCompiler(mb, mod.index)
        f.body(mod.script.body)
        name = f"$init{mod.index}"
        inits.append(name)
        _add(mb, f.finish(f"(func {name} (result i32 i64)"))
    # closures (they may create closures, so loop until all are emitted)
    emitted = 0
    while emitted < len(res.closure_order):
        c = res.closure_order[emitted]
        info = res.closures[id(c)]
        f = FunctionCompiler(mb, info.module)
        f.rooted, f.env_root = mb.closures_may_gc, True
        for j, b in enumerate(info.captures):
            cell = f.local(f"$c{b.id}", "i32")
            f.cells[b.id] = cell
            f.emit("local.get 0", f"i32.load offset={4 * j}", f"local.set {cell}")
        f.body(c.body, info.params, 1)
        mb.closure_arities.add(len(info.params))
        _add(mb, f.finish(
            f"(func $closure{info.slot} (param i32) {_params(len(info.params))} (result i32 i64)"))
        emitted += 1
    return _assemble(mb, inits)


# the shadow stack's base, top and end, the address of rt's "collect" word, unsafe calls in progress
_GC_GLOBALS = ("ssbase", "ssp", "ssend", "gcw", "nosafe")


def _assemble(mb: ModuleBuilder, inits: list[str]) -> str:
    main = FunctionCompiler(mb, 0)
    main.locals = []
    main.emit("local.get 0", "local.get 1", f"call {mb.use('rt_begin')}", "if",
              f"call {mb.use('rt_output')}", "return", "end")
    # the shadow stack: module constants in its first slots, then the frames (see ABI.md)
    first_segment = SHADOW_SLOTS + len(mb.global_slots)
    main.emit(f"i32.const {first_segment}", f"call {mb.use('rt_ss')}", "global.set $ssbase",
              "global.get $ssbase", f"i32.const {16 * len(mb.global_slots)}", "i32.add", "global.set $ssp",
              "global.get $ssbase", f"call {mb.use('rt_ss_end_of')}", "global.set $ssend",
              f"call {mb.use('rt_gc_word')}",
              "global.set $gcw", "i32.const 0", "global.set $nosafe")
    if mb.data:
        main.emit(f"i32.const {len(mb.data)}", f"call {mb.use('rt_alloc_perm')}", "global.set $strbase",
                  "global.get $strbase", "i32.const 0", f"i32.const {len(mb.data)}", "memory.init $strs",
                  "data.drop $strs")
    for name in inits[:-1]:
        main.emit(f"call {name}", "local.set 3", "local.tee 2", f"i32.const {EXC}", "i32.eq", "if",
                  "local.get 2", "local.get 3", f"call {mb.use('rt_finish')}", "return", "end")
    main.emit(f"call {inits[-1]}", f"call {mb.use('rt_finish')}")
    main_text = main.finish(
        '(func (export "main") (param i32 i32) (result i32) (local i32) (local i64)')
    nclosures = len(mb.res.closure_order)
    parts = ["(module"]
    for n in sorted(mb.closure_arities):
        parts.append(f"  (type $clo{n} (func (param i32) {_params(n)} (result i32 i64)))")
    table = CLOSURE_TABLE_BASE + nclosures
    parts.append(f'  (import "env" "__indirect_function_table" (table {table} funcref))')
    parts.append('  (import "rt" "memory" (memory 0))')
    for name, (ps, rs) in mb.imports.items():
        p = f" (param {ps})" if ps else ""
        r = f" (result {rs})" if rs else ""
        parts.append(f'  (import "rt" "{name}" (func ${name}{p}{r}))')
    parts.append("  (global $strbase (mut i32) (i32.const 0))")
    parts.extend(f"  (global ${g} (mut i32) (i32.const 0))" for g in _GC_GLOBALS)
    parts.extend(f"  (global {site} (mut i32) (i32.const 0))" for site in mb.ic_sites)
    parts.extend("  " + g for g in mb.globals)
    if mb.data:
        parts.append(f'  (data $strs "{_wat_bytes(bytes(mb.data))}")')
    if nclosures:
        names = " ".join(f"$closure{i}" for i in range(nclosures))
        parts.append(f"  (elem (i32.const {CLOSURE_TABLE_BASE}) func {names})")
    parts.extend("  " + f for f in mb.funcs)
    parts.append("  " + main_text)
    parts.append(")")
    wat = "\n".join(parts) + "\n"
    limit = mb.budget.limits.wat_bytes
    if len(wat) > limit:
        main.over("wat_bytes", "generated code too large (bytes of WebAssembly text)")
    mb.budget.wat_bytes = len(wat)
    return wat
