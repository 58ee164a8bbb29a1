"""Name resolution and static checks: the stage between the parser and codegen.

The resolver walks every parsed file of one compilation (the main script and
the modules it imports, transitively) and decides, for each name, what it
refers to:

* a variable: a :class:`Binding` shared by its declaration and every use, so
  the code generator can give it one wasm local (or a heap cell when a closure
  captures it, because Rhai closures share captured variables with their
  enclosing scope);
* a global (``params``, ``caller``, ``target``) or a module constant
  (``m::NAME``);
* a function: a script function of the same file, a public function of an
  imported module, a builtin (by name and arity), or a closure call.

It reports, all at once: undefined variables and functions, assignments to
constants, ``break``/``continue`` outside a loop, duplicate functions and
unknown module aliases. The AST is frozen, so results are side tables keyed by
``id(node)``; the AST outlives the :class:`Resolution`.

Cost: one visit per node (counted in the compile budget's ``resolved``, which
reads the clock every few thousand visits), and a name lookup walks the
scopes it is nested in (at most ``CompileLimits.depth`` of them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

from . import _ast as A
from ._budget import DEFAULT_LIMITS, TICK, Budget
from ._builtins import Builtin, lookup, names
from ._diagnostics import Diagnostics
from ._hostfns import NO_HOST_FUNCTIONS, HostFn, HostFunctions

__all__ = [
    "Binding", "ClosureInfo", "FnRef", "ModuleInfo", "Resolution", "resolve", "GLOBALS",
]

#: Names every script can read without declaring them, and their rt index.
GLOBALS: dict[str, int] = {"params": 0, "caller": 1, "target": 2}


@dataclass(eq=False, slots=True)
class Binding:
    """One declared variable. ``captured`` is set when a closure uses it."""

    name: str
    id: int
    const: bool = False
    captured: bool = False
    module_global: str | None = None  # wasm global name for a module's exported const


@dataclass(eq=False, slots=True)
class ClosureInfo:
    """A closure literal: its table slot, parameters and captured bindings."""

    slot: int
    module: int
    params: list[Binding]
    captures: list[Binding] = field(default_factory=list)
    captured_ids: set[int] = field(default_factory=set)  # ids of ``captures``, for membership


@dataclass(frozen=True, slots=True)
class FnRef:
    """A script function: which file defines it and its wasm name."""

    module: int
    name: str
    arity: int

    @property
    def wasm_name(self) -> str:
        return f"$f{self.module}_{self.name}_{self.arity}"


@dataclass(eq=False, slots=True)
class ModuleInfo:
    """One parsed file of the compilation; index 0 is the main script."""

    index: int
    file: str
    script: A.Script
    imports: dict[str, int] = field(default_factory=dict)  # alias -> module index
    functions: dict[tuple[str, int], A.FnDef] = field(default_factory=dict)
    arities: dict[str, set[int]] = field(default_factory=dict)  # function name -> its arities
    consts: dict[str, Binding] = field(default_factory=dict)


CallTarget = FnRef | Builtin | HostFn | Literal["range"]
MethodTarget = Builtin | Literal["call"]


@dataclass(eq=False, slots=True)
class Resolution:
    """Everything the code generator needs to know about names."""

    modules: list[ModuleInfo]
    bindings: dict[int, Binding] = field(default_factory=dict)
    params: dict[int, list[Binding]] = field(default_factory=dict)  # FnDef -> its params
    globals: dict[int, int] = field(default_factory=dict)  # Var -> GLOBALS index
    closures: dict[int, ClosureInfo] = field(default_factory=dict)
    closure_order: list[A.Closure] = field(default_factory=list)
    calls: dict[int, CallTarget] = field(default_factory=dict)
    methods: dict[int, MethodTarget] = field(default_factory=dict)
    module_consts: dict[int, Binding] = field(default_factory=dict)  # ModuleRef -> binding
    next_id: int = 0

    def new_binding(self, name: str, *, const: bool = False) -> Binding:
        self.next_id += 1
        return Binding(name=name, id=self.next_id, const=const)


class _Frame:
    """A function-like scope: a function body, a script body or a closure."""

    __slots__ = ("scopes", "closure", "parent", "loops")

    def __init__(self, parent: _Frame | None, closure: ClosureInfo | None) -> None:
        self.scopes: list[dict[str, Binding]] = [{}]
        self.closure = closure
        self.parent = parent  # only closures see their parent frame
        self.loops = 0


class _Resolver:
    def __init__(self, res: Resolution, diags: Diagnostics, budget: Budget, hosts: HostFunctions) -> None:
        self.res = res
        self.hosts = hosts
        self.diags = diags
        self.mod: ModuleInfo = res.modules[0]
        self.frame = _Frame(None, None)
        self.builtin_names = names()
        self.budget = budget

    def visit(self, node: A.Node) -> None:
        """Count one node visited; read the clock every few thousand."""
        b = self.budget
        b.resolved += 1
        if b.resolved % TICK == 0:
            b.check_time(lambda: node.span)

    # -- scopes ---------------------------------------------------------------

    def declare(self, name: str, node: A.Node, *, const: bool = False) -> Binding:
        b = self.res.new_binding(name, const=const)
        self.frame.scopes[-1][name] = b
        self.res.bindings[id(node)] = b
        return b

    def lookup(self, name: str) -> Binding | None:
        frame: _Frame | None = self.frame
        crossed: list[_Frame] = []
        while frame is not None:
            for scope in reversed(frame.scopes):
                b = scope.get(name)
                if b is not None:
                    if crossed and b.module_global is None:
                        b.captured = True
                        for f in crossed:
                            assert f.closure is not None
                            if b.id not in f.closure.captured_ids:
                                f.closure.captured_ids.add(b.id)
                                f.closure.captures.append(b)
                    return b
            crossed.append(frame)
            frame = frame.parent
        return None

    def push(self) -> None:
        self.frame.scopes.append({})

    def pop(self) -> None:
        self.frame.scopes.pop()

    # -- modules and functions -------------------------------------------------

    def run(self) -> None:
        for mod in self.res.modules:
            self.mod = mod
            for fn in mod.script.functions:
                key = (fn.name, len(fn.params))
                if key in mod.functions:
                    self.diags.error(
                        fn.span, f"function '{fn.name}' with {len(fn.params)} parameters is defined twice"
                    )
                mod.functions[key] = fn
                mod.arities.setdefault(fn.name, set()).add(len(fn.params))
            if mod.index != 0:  # a module's top-level consts are exported as wasm globals
                for st in mod.script.body.stmts:
                    if isinstance(st, A.Let) and st.const:
                        b = self.res.new_binding(st.name, const=True)
                        b.module_global = f"$g{mod.index}_{b.id}_{st.name}"
                        mod.consts[st.name] = b
                        self.res.bindings[id(st)] = b
        for mod in self.res.modules:
            self.mod = mod
            self.frame = _Frame(None, None)
            self.block_body(mod.script.body, top=mod.index != 0)
            for fn in mod.script.functions:
                self.frame = _Frame(None, None)
                ps: list[Binding] = []
                for p in fn.params:  # the parser reported duplicate names
                    b = self.res.new_binding(p)
                    self.frame.scopes[-1][p] = b
                    ps.append(b)
                self.res.params[id(fn)] = ps
                self.block_body(fn.body)

    # -- statements -------------------------------------------------------------

    def block_body(self, block: A.Block, *, top: bool = False) -> None:
        for st in block.stmts:
            self.stmt(st, top=top)
        if block.tail is not None:
            self.expr(block.tail)

    def block(self, block: A.Block) -> None:
        self.push()
        self.block_body(block)
        self.pop()

    def stmt(self, st: A.Stmt, *, top: bool = False) -> None:
        self.visit(st)
        if isinstance(st, A.Let):
            if st.value is not None:
                self.expr(st.value)
            pre = self.res.bindings.get(id(st)) if top and len(self.frame.scopes) == 1 else None
            if pre is not None:
                self.frame.scopes[-1][st.name] = pre
            else:
                self.declare(st.name, st, const=st.const)
        elif isinstance(st, A.Assign):
            self.assign(st)
        elif isinstance(st, A.ExprStmt):
            self.expr(st.expr)
        elif isinstance(st, A.While):
            self.expr(st.cond)
            self.loop_body(st.body)
        elif isinstance(st, A.Loop):
            self.loop_body(st.body)
        elif isinstance(st, A.For):
            self.for_(st)
        elif isinstance(st, (A.Break, A.Continue)):
            if self.frame.loops == 0:
                word = "break" if isinstance(st, A.Break) else "continue"
                self.diags.error(st.span, f"'{word}' outside of a loop")
        elif isinstance(st, (A.Return, A.Throw)):
            if st.value is not None:
                self.expr(st.value)
        elif isinstance(st, A.TryCatch):
            self.block(st.body)
            self.push()
            if st.var is not None:
                self.declare(st.var, st)
            self.block_body(st.handler)
            self.pop()
        elif isinstance(st, A.Import):
            self.import_(st)

    def import_(self, st: A.Import) -> None:
        # the driver loaded the module and recorded the alias already
        if st.alias is not None and st.alias not in self.mod.imports:
            self.diags.error(st.span, f"module '{st.path}' could not be loaded")

    def assign(self, st: A.Assign) -> None:
        self.expr(st.value)
        target = st.target
        if isinstance(target, A.Var):
            if target.name in GLOBALS and self.lookup(target.name) is None:
                self.diags.error(target.span, f"cannot assign to '{target.name}': it is read-only")
                return
            b = self.lookup(target.name)
            if b is None:
                self.diags.error(target.span, f"undefined variable '{target.name}'")
            else:
                if b.const:
                    self.diags.error(target.span, f"cannot assign to constant '{target.name}'")
                self.res.bindings[id(target)] = b
        elif isinstance(target, (A.Index, A.Prop)):
            root: A.Expr = target
            while isinstance(root, (A.Index, A.Prop)):
                if isinstance(root, A.Index):
                    self.expr(root.index)
                root = root.obj
            if isinstance(root, A.Var):
                b = self.lookup(root.name)
                if b is not None and b.const:
                    self.diags.error(root.span, f"cannot modify constant '{root.name}'")
            self.expr(root)
        else:
            self.diags.error(target.span, "cannot assign to this expression")

    def loop_body(self, body: A.Block) -> None:
        self.frame.loops += 1
        self.block(body)
        self.frame.loops -= 1

    def for_(self, st: A.For) -> None:
        it = st.iterable
        if isinstance(it, A.Range):
            self.expr(it.start)
            self.expr(it.end)
        elif isinstance(it, A.Call) and it.name == "range" and it.module is None and len(it.args) == 2:
            self.res.calls[id(it)] = "range"
            for a in it.args:
                self.expr(a)
        else:
            self.expr(it)
        self.push()
        b = self.res.new_binding(st.var)
        self.frame.scopes[-1][st.var] = b
        self.res.bindings[id(st)] = b
        if st.index is not None:
            if st.index == st.var:
                self.diags.error(st.span, f"loop variables are both named '{st.var}'")
            ib = self.res.new_binding(st.index)
            self.frame.scopes[-1][st.index] = ib
            self.res.params[id(st)] = [ib]
        self.loop_body(st.body)
        self.pop()

    # -- expressions ------------------------------------------------------------

    def expr(self, e: A.Expr) -> None:  # noqa: C901 - one dispatch over node types
        self.visit(e)
        if isinstance(e, (A.Unit, A.Bool, A.Int, A.Float, A.Str)):
            return
        if isinstance(e, A.Var):
            b = self.lookup(e.name)
            if b is not None:
                self.res.bindings[id(e)] = b
            elif e.name in GLOBALS:
                self.res.globals[id(e)] = GLOBALS[e.name]
            else:
                self.diags.error(e.span, f"undefined variable '{e.name}'")
        elif isinstance(e, A.Interp):
            for p in e.parts:
                self.expr(p)
        elif isinstance(e, A.ArrayLit):
            for x in e.items:
                self.expr(x)
        elif isinstance(e, A.MapLit):
            for _, x in e.entries:
                self.expr(x)
        elif isinstance(e, A.ModuleRef):
            self.module_ref(e)
        elif isinstance(e, A.Unary):
            self.expr(e.operand)
        elif isinstance(e, (A.Binary, A.Logical)):
            self.expr(e.left)
            if isinstance(e, A.Binary) and e.op == "in" and isinstance(e.right, A.Range):
                self.expr(e.right.start)
                self.expr(e.right.end)
            else:
                self.expr(e.right)
        elif isinstance(e, A.Index):
            self.expr(e.obj)
            self.expr(e.index)
        elif isinstance(e, A.Prop):
            self.expr(e.obj)
        elif isinstance(e, A.Call):
            self.call(e)
        elif isinstance(e, A.MethodCall):
            self.method(e)
        elif isinstance(e, A.Closure):
            self.closure(e)
        elif isinstance(e, A.If):
            self.if_(e)
        elif isinstance(e, A.Switch):
            self.expr(e.subject)
            for c in e.cases:
                for p in c.patterns:
                    if isinstance(p, A.Range):
                        self.expr(p.start)
                        self.expr(p.end)
                    else:
                        self.expr(p)
                if c.guard is not None:
                    self.expr(c.guard)
                self.expr(c.body)
        elif isinstance(e, A.BlockExpr):
            self.block(e.block)
        elif isinstance(e, A.Range):
            self.diags.error(
                e.span, "a range can only be used in a 'for' loop, after 'in' or as a switch case"
            )

    def if_(self, e: A.If) -> None:
        self.expr(e.cond)
        self.block(e.then)
        if isinstance(e.else_, A.If):
            self.if_(e.else_)
        elif e.else_ is not None:
            self.block(e.else_)

    def module_ref(self, e: A.ModuleRef) -> None:
        idx = self.mod.imports.get(e.module)
        if idx is None:
            self.diags.error(e.span, f"unknown module '{e.module}' (no 'import ... as {e.module}')")
            return
        target = self.res.modules[idx]
        b = target.consts.get(e.name)
        if b is None:
            self.diags.error(e.span, f"module '{e.module}' has no constant '{e.name}'")
            return
        self.res.module_consts[id(e)] = b

    def call(self, e: A.Call) -> None:
        for a in e.args:
            self.expr(a)
        n = len(e.args)
        if e.module is not None:
            idx = self.mod.imports.get(e.module)
            if idx is None and e.module in self.hosts.modules():
                host = self.hosts.lookup(e.module, e.name, n)
                if host is None:
                    msg = f"module '{e.module}' has no function '{e.name}' taking {_args(n)}"
                    self.diags.error(e.span, msg)
                else:
                    self.res.calls[id(e)] = host
                return
            if idx is None:
                self.diags.error(e.span, f"unknown module '{e.module}' (no 'import ... as {e.module}')")
                return
            target = self.res.modules[idx]
            fn = target.functions.get((e.name, n))
            if fn is None or fn.private:
                what = "private function" if fn is not None else "function"
                msg = f"module '{e.module}' has no {what} '{e.name}' taking {_args(n)}"
                if fn is not None:
                    msg = f"function '{e.name}' of module '{e.module}' is private"
                self.diags.error(e.span, msg)
                return
            self.res.calls[id(e)] = FnRef(idx, e.name, n)
            return
        if (e.name, n) in self.mod.functions:
            self.res.calls[id(e)] = FnRef(self.mod.index, e.name, n)
            return
        builtin = lookup(e.name, n)
        if builtin is not None:
            self.res.calls[id(e)] = builtin
            return
        if e.name == "range" and n == 2:
            self.diags.error(e.span, "range(a, b) can only be used in a 'for' loop")
            return
        arities = sorted(self.mod.arities.get(e.name, ()))
        if arities:
            self.diags.error(
                e.span,
                f"function '{e.name}' takes {' or '.join(map(str, arities))} arguments, not {n}",
            )
        elif e.name in self.builtin_names:
            self.diags.error(e.span, f"builtin function '{e.name}' does not take {_args(n)}")
        else:
            self.diags.error(e.span, f"undefined function '{e.name}' taking {_args(n)}")

    def method(self, e: A.MethodCall) -> None:
        self.expr(e.obj)
        for a in e.args:
            self.expr(a)
        if e.name == "call":
            self.res.methods[id(e)] = "call"
            return
        builtin = lookup(e.name, len(e.args) + 1)
        if builtin is None:
            if e.name in self.builtin_names:
                msg = f"method '{e.name}' does not take {_args(len(e.args))}"
            else:
                msg = f"unknown method '{e.name}'"
            self.diags.error(e.span, msg)
            return
        self.res.methods[id(e)] = builtin

    def closure(self, e: A.Closure) -> None:
        info = ClosureInfo(slot=len(self.res.closure_order), module=self.mod.index, params=[])
        self.res.closures[id(e)] = info
        self.res.closure_order.append(e)
        outer = self.frame
        self.frame = _Frame(outer, info)
        for p in e.params:
            b = self.res.new_binding(p)
            self.frame.scopes[-1][p] = b
            info.params.append(b)
        self.block_body(e.body)
        self.frame = outer


def _args(n: int) -> str:
    return "1 argument" if n == 1 else f"{n} arguments"


def resolve(modules: list[ModuleInfo], diags: Diagnostics, budget: Budget | None = None, *,
            hosts: HostFunctions = NO_HOST_FUNCTIONS) -> Resolution:
    """Resolve every name in ``modules`` (imports already linked by alias).

    ``hosts`` are the host functions scripts may call (``fs::read``; none by
    default). Records problems in ``diags``; the caller raises them with ``check()``.
    ``budget`` (default: a fresh one under the default limits) counts the
    nodes visited; raises :class:`~._budget.CompileLimitExceeded` only when
    its deadline passes.
    """
    res = Resolution(modules=modules)
    _Resolver(res, diags, budget or Budget(DEFAULT_LIMITS, diags, time.monotonic), hosts).run()
    return res
