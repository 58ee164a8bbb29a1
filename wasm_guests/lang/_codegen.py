"""Code generation: a resolved program to one WebAssembly module in text form.

Every value is a pair ``(i32 tag, i64 payload)`` (see ``wasm_guests/ABI.md``).
Each expression leaves one such pair on the wasm operand stack. Operations on
dynamically typed values call into rt, except the hot integer cases (``+ - *
/ %``, comparisons) which are inlined behind a tag test with checked
arithmetic, so loops over ints never leave the script module (operators are
compiled by the base class, :mod:`._operators`; the static facts used here,
such as which parameters a body changes in place, by :mod:`._analysis`).

Errors are values: a call that fails returns the tag ``EXC`` (255). After
every such call the generated code records the source line (``rt_set_line``)
and branches to the innermost ``catch`` of the function, or returns ``EXC``
to its caller. ``br`` unwinds the operand stack, so an error may be detected
in the middle of an expression.

Value semantics by copy-on-write: wherever a value that may still be
referenced elsewhere is stored (``let``, ``=``, container literals, builtin
arguments that rt stores, parameters a function changes or captures, loop
variables, thrown values) it is marked shared; a place is made private
before it changes (assignments and places: the base class
:mod:`._places`).

Memory: see :mod:`._emitter` for the roots and safe points; loops whose body
may allocate poll the collector at their back-edge when they are safe.
"""

from __future__ import annotations

import struct

from . import _ast as A
from ._builtins import Builtin
from ._analysis import changed_in_place, may_allocate
from ._emitter import BOOL, CLOSURE_TABLE_BASE, EXC, FLOAT, FN, INT, V
from ._hostfns import HostFn
from ._places import PlaceCompiler
from ._resolver import Binding, FnRef
from ._sortspec import comparator_spec

__all__ = ["FunctionCompiler"]

# expressions for which expr() works out whether the value is surely an int
_TYPED = (A.Int, A.Var, A.Binary, A.If, A.BlockExpr, A.Call)


class FunctionCompiler(PlaceCompiler):
    """Compiles statements and expressions of one function body (operators and places: the base
    classes)."""

    def body(self, block: A.Block, params: list[Binding] | None = None, first_local: int = 0) -> None:
        """A function body: its value is returned; an error returns EXC.

        ``params`` are bound from the wasm parameters starting at ``first_local``.
        """
        self.prologue_at = len(self.out)
        if self.env_root:
            self.add_root("e", "0")  # the environment keeps the captured cells alive
        self.param_ids = {b.id for b in params or ()}
        self.open_region()
        if params:
            self.bind_params(params, first_local, block)
        self.block_value(block, result=True)
        self.returns_int = self.returns_int and self.last_int
        self.ret()
        self.close_region()
        self.emit("%ret", f"i32.const {EXC}", "i64.const 0")

    def bind_params(self, params: list[Binding], first_local: int, block: A.Block) -> None:
        """Function entry: bind each parameter to its variable.

        Arguments are passed by reference; a parameter the body may change in
        place (or let a closure capture) is marked shared on entry, so its
        first change copies it and the caller's array or map never changes
        (value semantics by copy-on-write).
        """
        changed = changed_in_place(block, self.res) if params else set()
        for i, b in enumerate(params):
            self.emit(f"local.get {first_local + 2 * i}", f"local.get {first_local + 2 * i + 1}")
            if b.captured or b.id in changed:
                self.share_top()
            self.declare(b)

    # -- statements -----------------------------------------------------------------

    def block_value(self, block: A.Block, *, result: bool = False) -> None:
        """A block's statements and value (``result``: the value a function returns)."""
        for st in block.stmts:
            self.stmt(st)
        if block.tail is not None and result:
            self.result(block.tail)
        elif block.tail is not None:
            self.expr(block.tail)
        else:
            self.unit()
            self.last_int = False

    def stmt(self, st: A.Stmt) -> None:  # noqa: C901 - one dispatch over statement types
        self.visit(st)
        if isinstance(st, A.Let):
            if st.value is None:
                self.unit()
            else:
                self.value(st.value)
            self.declare(self.res.bindings[id(st)], known_int=st.value is not None and self.last_int)
        elif isinstance(st, A.Assign):
            self.assign(st)
        elif isinstance(st, A.ExprStmt):
            self.expr(st.expr)
            self.emit("drop", "drop")
        elif isinstance(st, A.While):
            brk, top, cont = self.label("brk"), self.label("top"), self.label("cont")
            self.emit(f"block {brk}", f"loop {top}")
            self.cond(st.cond)
            self.emit("i32.eqz", f"br_if {brk}")
            self.loop_body(st.body, brk, cont)
            self.back_edge(st)
            self.emit(f"br {top}", "end", "end")
        elif isinstance(st, A.Loop):
            brk, top, cont = self.label("brk"), self.label("top"), self.label("cont")
            self.emit(f"block {brk}", f"loop {top}")
            self.loop_body(st.body, brk, cont)
            self.back_edge(st)
            self.emit(f"br {top}", "end", "end")
        elif isinstance(st, A.For):
            self.for_(st)
        elif isinstance(st, A.Break):
            self.emit(f"br {self.loops[-1][0]}")
        elif isinstance(st, A.Continue):
            self.emit(f"br {self.loops[-1][1]}")
        elif isinstance(st, A.Return):
            if st.value is None:
                self.unit()
                self.last_int = False
            else:
                self.result(st.value)
            self.returns_int = self.returns_int and self.last_int
            self.ret()
        elif isinstance(st, A.Throw):
            thrower = "rt_throw"
            if st.value is None and self.caught:  # `throw;` in a catch block re-throws
                self.emit(*(f"local.get {x}" for x in self.caught[-1]))
                thrower = "rt_rethrow"
            elif st.value is None:
                self.unit()
            else:
                self.value(st.value)
            self.emit(f"call {self.mb.use(thrower)}", "drop", "drop")
            self.raise_(st.span)
        elif isinstance(st, A.TryCatch):
            self.try_(st)
        # Import: handled by the driver (module initialisers run before the script)

    def back_edge(self, st: A.Stmt) -> None:
        """A loop's back-edge: a safe point if the loop is safe and its body may allocate."""
        if self.safe and may_allocate(st):
            self.poll()

    def loop_body(self, body: A.Block, brk: str, cont: str) -> None:
        self.loops.append((brk, cont))
        self.emit(f"block {cont}")
        self.block_value(body)
        self.emit("drop", "drop", "end")
        self.loops.pop()

    def try_(self, st: A.TryCatch) -> None:
        end = self.label("tryend")
        self.emit(f"block {end}")
        self.open_region()
        self.block_value(st.body)
        self.emit("drop", "drop", f"br {end}")
        self.close_region()
        caught = (self.scratch("i32"), self.scratch("i64"))
        self.emit(f"call {self.mb.use('rt_exc_take')}", f"local.set {caught[1]}", f"local.set {caught[0]}")
        self.add_root("v", *caught)
        b = self.res.bindings.get(id(st))
        if b is not None and st.var is not None:
            self.emit(*(f"local.get {x}" for x in caught))
            self.declare(b)
        self.caught.append(caught)
        self.block_value(st.handler)
        self.caught.pop()
        self.emit("drop", "drop", "end")
        self.free("i32", caught[0])
        self.free("i64", caught[1])

    def for_(self, st: A.For) -> None:
        var = self.res.bindings[id(st)]
        index_b = self.res.params.get(id(st), [None])[0]
        brk, top, cont = self.label("brk"), self.label("top"), self.label("cont")
        it = st.iterable
        if isinstance(it, A.Call) and self.res.calls.get(id(it)) == "range":
            it = A.Range(span=it.span, start=it.args[0], end=it.args[1], inclusive=False)
        if isinstance(it, A.Range):
            i = self.scratch("i64")
            e = self.scratch("i64")
            for bound, loc in ((it.start, i), (it.end, e)):
                self.int_value(bound)
                self.emit(f"local.set {loc}")
            self.emit(f"block {brk}", f"loop {top}", f"local.get {i}", f"local.get {e}",
                      "i64.gt_s" if it.inclusive else "i64.ge_s", f"br_if {brk}",
                      f"i32.const {INT}", f"local.get {i}")
            self.declare(var, known_int=True)
            if index_b is not None:
                self.emit(f"i32.const {INT}", f"local.get {i}")
                self.declare(index_b, known_int=True)
            self.loop_body(st.body, brk, cont)
            if it.inclusive:
                self.emit(f"local.get {i}", f"local.get {e}", "i64.eq", f"br_if {brk}")
            self.back_edge(st)
            self.emit(f"local.get {i}", "i64.const 1", "i64.add", f"local.set {i}",
                      f"br {top}", "end", "end")
            self.free("i64", i, e)
            return
        arr = self.scratch("i32")
        n = self.scratch("i32")
        idx = self.scratch("i32")
        self.expr(it)
        self.call("rt_iter", it.span)
        self.emit("i32.wrap_i64", f"local.set {arr}", "drop", f"local.get {arr}", "i32.load",
                  f"local.set {n}", "i32.const 0", f"local.set {idx}")
        self.add_root("a", arr)
        self.emit(f"block {brk}", f"loop {top}", f"local.get {idx}", f"local.get {n}", "i32.ge_u",
                  f"br_if {brk}")
        self.emit(f"local.get {arr}", "i32.load offset=8", f"local.get {idx}", "i32.const 4", "i32.shl",
                  "i32.add", "local.tee $xt", "i32.load", "local.get $xt", "i64.load offset=8")
        self.share_top()
        self.declare(var)
        if index_b is not None:
            self.emit(f"i32.const {INT}", f"local.get {idx}", "i64.extend_i32_u")
            self.declare(index_b, known_int=True)
        self.loop_body(st.body, brk, cont)
        self.emit(f"local.get {idx}", "i32.const 1", "i32.add", f"local.set {idx}")
        self.back_edge(st)
        self.emit(f"br {top}", "end", "end")
        self.free("i32", arr, n, idx)

    def int_value(self, e: A.Expr) -> None:
        """Evaluate ``e`` and leave its i64 on the stack; anything but an int is an error."""
        if isinstance(e, A.Int):
            self.emit(f"i64.const {e.value}")
            return
        self.expr(e)
        self.emit("local.set $xp", "local.tee $xt", f"i32.const {INT}", "i32.ne", "if",
                  "local.get $xt", "local.get $xp", f"call {self.mb.use('rt_err_int')}", "drop", "drop")
        self.raise_(e.span)
        self.emit("end", "local.get $xp")

    # -- expressions ----------------------------------------------------------------

    def expr(self, e: A.Expr) -> None:
        """Evaluate ``e``, leaving its value on the stack; ``last_int`` tells if it is surely an int."""
        self._expr(e)
        if not isinstance(e, _TYPED):
            self.last_int = False

    def _expr(self, e: A.Expr) -> None:
        """Evaluate ``e``. Its parts are unsafe (values are held on the operand stack while
        the next part runs), except the branches and bodies of ``if``, blocks and ``switch``."""
        was = self.safe
        if not isinstance(e, (A.If, A.BlockExpr, A.Switch)):
            self.safe = False
        self.call_safe = was
        self._expr_of(e)
        self.safe = was

    def _expr_of(self, e: A.Expr) -> None:  # noqa: C901 - one dispatch over expression types
        self.visit(e)
        self.last_int = False
        if isinstance(e, A.Int):
            self.last_int = True
            self.emit(f"i32.const {INT}", f"i64.const {e.value}")
        elif isinstance(e, A.Var):
            b = self.res.bindings.get(id(e))
            if b is not None:
                self.load(b)
                self.last_int = b.id in self.known_int
            else:
                self.emit(f"i32.const {self.res.globals[id(e)]}", f"call {self.mb.use('rt_global')}")
        elif isinstance(e, A.Binary):
            self.binary(e)
        elif isinstance(e, A.Call):
            self.call_expr(e)
        elif isinstance(e, A.Str):
            self.str_const(e.value)
        elif isinstance(e, A.Bool):
            self.emit(f"i32.const {BOOL}", f"i64.const {int(e.value)}")
        elif isinstance(e, A.Unit):
            self.unit()
        elif isinstance(e, A.Float):
            bits = struct.unpack("<q", struct.pack("<d", e.value))[0]
            self.emit(f"i32.const {FLOAT}", f"i64.const {bits}")
        elif isinstance(e, A.Interp):
            self.interp(e)
        elif isinstance(e, A.ArrayLit):
            self.emit(f"i32.const {len(e.items)}", f"call {self.mb.use('rt_array_new')}")
            arr = self.to_temp()
            for item in e.items:
                self.push(arr)
                self.value(item)
                self.call("rt_array_push", item.span)  # () or too_deep
                self.emit("drop", "drop")
            self.push(arr)
            self.release(arr)
        elif isinstance(e, A.MapLit):
            self.emit(f"i32.const {len(e.entries)}", f"call {self.mb.use('rt_map_new')}")
            m = self.to_temp()
            for key, item in e.entries:
                self.push(m)
                self.prop_name(key)  # the key and its hash
                self.value(item)
                self.call("rt_map_set", item.span)  # () or too_deep
                self.emit("drop", "drop")
            self.push(m)
            self.release(m)
        elif isinstance(e, A.ModuleRef):
            self.load(self.res.module_consts[id(e)])
        elif isinstance(e, A.Unary):
            self.unary(e)
        elif isinstance(e, A.Logical):
            self.emit(f"i32.const {BOOL}")
            self.cond(e)
            self.emit("i64.extend_i32_u")
        elif isinstance(e, A.Index):
            self.expr(e.obj)
            self.expr(e.index)
            self.call("rt_index_get", e.span)
        elif isinstance(e, A.Prop):
            self.expr(e.obj)
            self.prop_get(e.name, e.span)
        elif isinstance(e, A.MethodCall):
            self.method(e)
        elif isinstance(e, A.Closure):
            self.closure(e)
        elif isinstance(e, A.If):
            self.if_(e)
        elif isinstance(e, A.Switch):
            self.switch(e)
        elif isinstance(e, A.BlockExpr):
            self.block_value(e.block)
        else:  # A.Range outside for/in/switch: the resolver reported it
            self.unit()

    def interp(self, e: A.Interp) -> None:
        parts = list(e.parts)
        if not parts or not isinstance(parts[0], A.Str):
            parts.insert(0, A.Str(span=e.span, value=""))
        self.expr(parts[0])
        for p in parts[1:]:
            self.expr(p)
            self.call("rt_add", p.span)

    def if_(self, e: A.If) -> None:
        self.cond(e.cond)
        self.emit("if (result i32 i64)")
        self.block_value(e.then)
        then_int = self.last_int
        self.emit("else")
        if isinstance(e.else_, A.If):
            self.if_(e.else_)
        elif e.else_ is not None:
            self.block_value(e.else_)
        else:
            self.unit()
            self.last_int = False
        self.emit("end")
        self.last_int = then_int and self.last_int

    def switch(self, e: A.Switch) -> None:
        self.expr(e.subject)
        subj = self.to_temp()
        assert subj.temp is not None
        self.add_root("v", f"$t{subj.temp}t", f"$t{subj.temp}p")  # a root while the cases run
        depth = 0
        for case in e.cases:
            if not case.patterns:
                self.emit("i32.const 1")
            for i, pat in enumerate(case.patterns):
                was, self.safe = self.safe, False
                if isinstance(pat, A.Range):
                    self.push(subj)
                    self.expr(pat.start)
                    self.emit(f"call {self.mb.use('rt_ge')}")
                    self.bool_i32()
                    self.push(subj)
                    self.expr(pat.end)
                    self.emit(f"call {self.mb.use('rt_le' if pat.inclusive else 'rt_lt')}")
                    self.bool_i32()
                    self.emit("i32.and")
                else:
                    self.push(subj)
                    self.expr(pat)
                    self.emit(f"call {self.mb.use('rt_eq')}")
                    self.bool_i32()
                self.safe = was
                if i:
                    self.emit("i32.or")
            if case.guard is not None:
                self.emit("if (result i32)")
                self.cond(case.guard)
                self.emit("else", "i32.const 0", "end")
            self.emit("if (result i32 i64)")
            self.expr(case.body)
            self.emit("else")
            depth += 1
        self.unit()
        self.emit(*(["end"] * depth))
        self.release(subj)

    # -- calls ------------------------------------------------------------------------

    def call_expr(self, e: A.Call) -> None:
        target = self.res.calls[id(e)]
        safe = self.call_safe
        if isinstance(target, FnRef):
            all_int = True
            for a in e.args:
                self.expr(a)
                all_int = all_int and self.last_int
            name = target.wasm_name
            if all_int and name in self.mb.int_clones:
                name += "_int"  # every argument is surely an int: skip the clone's entry test
            was, self.safe = self.safe, safe
            self.gc_call(f"call {name}", may_gc=target.wasm_name in self.mb.may_gc)
            self.safe = was
            self.check(e.span)
            self.last_int = name in self.mb.int_returns  # an all-int clone whose every result is an int
            if self.last_int:
                self.assumed.add(name)
        elif isinstance(target, Builtin):
            self.builtin(target, e.args[0] if e.args else None, e.args[1:], e.span)
            self.last_int = False
        elif isinstance(target, HostFn):
            self.emit(f"i32.const {target.op}")
            for a in e.args:
                self.expr(a)
            sig = (" ".join(["i32", *[V] * target.arity]), V)
            self.emit(f"call {self.mb.use(f'rt_host_{target.arity}', sig)}")
            self.check(e.span)
        else:  # range(a, b) outside a for loop was reported by the resolver
            self.unit()

    def builtin(self, b: Builtin, recv: A.Expr | None, args: tuple[A.Expr, ...], span: A.Span) -> None:
        if recv is not None and b.mutates:
            # Rhai's order: the receiver's indices, the arguments, then the receiver is made
            # private along its path (an argument may share it: `a.push(a)`) and changed
            parts = self.place_parts(recv)
            argv = []
            for a in args:
                self.value(a)
                argv.append(self.to_temp())
            self.place_ref(recv, parts)
            for op in argv:
                self.push(op)
            self.release(*argv, *parts.values())
        else:
            if recv is not None:
                self.expr(recv)  # read only: a reference
            for a in args:
                self.value(a)
        spec = (comparator_spec(args[0]) if b.export == "f_sort_2" and isinstance(args[0], A.Closure)
                else None)
        if spec is not None:  # a comparator of properties: rt sorts by keys (or calls it, when unsure)
            self.str_const(spec)
            self.emit(f"call {self.mb.use('rt_sort_keyed')}")
        else:
            sig = (" ".join([V] * b.arity), V)
            self.emit(f"call {self.mb.use(b.export, sig)}")
        self.check(span)
        if b.writeback and recv is not None:
            self.store_place(recv)
            self.unit()

    def method(self, e: A.MethodCall) -> None:
        target = self.res.methods[id(e)]
        if isinstance(target, Builtin):
            self.builtin(target, e.obj, e.args, e.span)
            return
        # f.call(args): a closure call through the table
        safe = self.call_safe
        n = len(e.args)
        self.mb.closure_arities.add(n)
        self.expr(e.obj)
        self.emit("local.set $xp", "local.tee $xt", f"i32.const {FN}", "i32.ne", "if",
                  "local.get $xt", "local.get $xp", f"call {self.mb.use('rt_err_not_fn')}", "drop", "drop")
        self.raise_(e.span)
        self.emit("end", "local.get $xp", "i32.wrap_i64", "local.tee $xt", "i32.load offset=4",
                  f"i32.const {n}", "i32.ne", "if", "local.get $xt", "i32.load offset=4", f"i32.const {n}",
                  f"call {self.mb.use('rt_err_arity')}", "drop", "drop")
        self.raise_(e.span)
        self.emit("end")
        clo = self.scratch("i32")
        self.emit("local.get $xt", f"local.tee {clo}", "i32.load offset=8")
        for a in e.args:
            self.expr(a)
        self.emit(f"local.get {clo}", "i32.load")
        was, self.safe = self.safe, safe
        self.gc_call(f"call_indirect (type $clo{n})", may_gc=self.mb.closures_may_gc)
        self.safe = was
        self.free("i32", clo)
        self.check(e.span)

    def closure(self, e: A.Closure) -> None:
        info = self.res.closures[id(e)]
        clo = self.scratch("i32")
        self.emit("i32.const 12", f"call {self.mb.use('rt_alloc')}", f"local.tee {clo}",
                  f"i32.const {CLOSURE_TABLE_BASE + info.slot}", "i32.store", f"local.get {clo}",
                  f"i32.const {len(info.params)}", "i32.store offset=4")
        if info.captures:
            self.emit(f"local.get {clo}", f"i32.const {4 * len(info.captures)}",
                      f"call {self.mb.use('rt_alloc')}", "local.tee $xt", "i32.store offset=8")
            for j, b in enumerate(info.captures):
                self.emit("local.get $xt", f"local.get {self.cells[b.id]}", f"i32.store offset={4 * j}")
        self.emit(f"i32.const {FN}", f"local.get {clo}", "i64.extend_i32_u")
        self.free("i32", clo)
