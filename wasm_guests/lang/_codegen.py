"""Code generation: a resolved program to one WebAssembly module in text form.

Every value is a pair ``(i32 tag, i64 payload)`` (see ``wasm_guests/ABI.md``).
Each expression leaves one such pair on the wasm operand stack. Operations on
dynamically typed values call into rt, except the hot integer cases (``+ - *
/ %``, comparisons) which are inlined behind a tag test with checked
arithmetic, so loops over ints never leave the script module.

Errors are values: a call that fails returns the tag ``EXC`` (255). After
every such call the generated code records the source line (``rt_set_line``)
and branches to the innermost ``catch`` of the function, or returns ``EXC``
to its caller. ``br`` unwinds the operand stack, so an error may be detected
in the middle of an expression.

Value semantics: arrays and maps are mutated in place through their headers,
so the generator copies (``rt_copy``, only for tags ARRAY and MAP) wherever a
value that may still be referenced elsewhere is stored: ``let``, ``=``,
container literals, builtin arguments that rt stores, function parameters on
entry (the callee copies), loop variables and thrown values.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from . import _ast as A
from ._builtins import Builtin
from ._resolver import Binding, FnRef, Resolution

__all__ = ["generate", "CLOSURE_TABLE_BASE", "CODEGEN_VERSION"]

CLOSURE_TABLE_BASE = 64
CODEGEN_VERSION = "1"

UNIT, BOOL, INT, FLOAT, STR, ARRAY, MAP, FN = 0, 1, 2, 3, 4, 5, 6, 7
EXC = 255
I64_MIN = -(2**63)

V = "i32 i64"
# rt imports used by generated code: name -> (params, results)
_RT_SIGS: dict[str, tuple[str, str]] = {
    "rt_alloc": ("i32", "i32"),
    "rt_begin": ("i32 i32", "i32"),
    "rt_output": ("", "i32"),
    "rt_finish": (V, "i32"),
    "rt_throw": (V, V),
    "rt_set_line": ("i32", ""),
    "rt_exc_take": ("", V),
    "rt_err_bool": (V, V),
    "rt_err_int": (V, V),
    "rt_err_not_fn": (V, V),
    "rt_err_arity": ("i32 i32", V),
    "rt_err_overflow": ("", V),
    "rt_neg": (V, V),
    "rt_not": (V, V),
    "rt_copy": (V, V),
    "rt_global": ("i32", V),
    "rt_array_new": ("i32", V),
    "rt_array_push": (f"{V} {V}", ""),
    "rt_map_new": ("", V),
    "rt_map_set": (f"{V} {V} {V}", ""),
    "rt_index_get": (f"{V} {V}", V),
    "rt_index_set": (f"{V} {V} {V}", V),
    "rt_prop_get": (f"{V} {V}", V),
    "rt_prop_set": (f"{V} {V} {V}", V),
    "rt_iter": (V, V),
    "rt_in": (f"{V} {V}", V),
}
_BINOPS = {
    "+": "rt_add", "-": "rt_sub", "*": "rt_mul", "/": "rt_div", "%": "rt_mod", "**": "rt_pow",
    "&": "rt_band", "|": "rt_bor", "^": "rt_bxor", "<<": "rt_shl", ">>": "rt_shr",
    "==": "rt_eq", "!=": "rt_ne", "<": "rt_lt", "<=": "rt_le", ">": "rt_gt", ">=": "rt_ge",
}
for _op in _BINOPS.values():
    _RT_SIGS[_op] = (f"{V} {V}", V)
_COMPARE = {"==": "i64.eq", "!=": "i64.ne", "<": "i64.lt_s", "<=": "i64.le_s", ">": "i64.gt_s", ">=": "i64.ge_s"}
_JOINS = frozenset({"end", "else", "if"})
_JOIN_PREFIXES = ("block", "loop", "if ")
# expressions whose value is never referenced from anywhere else
_FRESH = (A.Unit, A.Bool, A.Int, A.Float, A.Str, A.Interp, A.ArrayLit, A.MapLit, A.Binary,
          A.Unary, A.Logical, A.Closure)


@dataclass(slots=True)
class _Operand:
    """Where an evaluated operand lives: constants, a binding's locals or temps."""

    tag: str  # one instruction pushing the i32 tag
    payload: str  # one instruction pushing the i64 payload
    int_const: int | None = None
    temp: int | None = None


@dataclass(slots=True)
class _ModuleBuilder:
    res: Resolution
    strings: dict[bytes, int] = field(default_factory=dict)
    data: bytearray = field(default_factory=bytearray)
    imports: dict[str, tuple[str, str]] = field(default_factory=dict)
    funcs: list[str] = field(default_factory=list)
    globals: list[str] = field(default_factory=list)
    closure_arities: set[int] = field(default_factory=set)

    def string(self, s: str) -> tuple[int, int]:
        b = s.encode("utf-8", "surrogatepass")
        off = self.strings.get(b)
        if off is None:
            off = len(self.data)
            self.strings[b] = off
            self.data += b
        return off, len(b)

    def use(self, name: str, sig: tuple[str, str] | None = None) -> str:
        if name not in self.imports:
            self.imports[name] = sig if sig is not None else _RT_SIGS[name]
        return f"${name}"


class _Fn:
    """Emits the body of one wasm function."""

    def __init__(self, mb: _ModuleBuilder, file_index: int) -> None:
        self.mb = mb
        self.res = mb.res
        self.file_index = file_index
        self.out: list[str] = []
        self.locals: list[str] = ["(local $xt i32)", "(local $xp i64)", "(local $ln i32)"]
        self.vals: dict[int, tuple[str, str]] = {}  # binding id -> (tag local, payload local)
        self.cells: dict[int, str] = {}  # binding id -> cell pointer local
        self.free_temps: list[int] = []
        self.ntemps = 0
        self.nlabels = 0
        self.regions: list[tuple[str, str]] = []  # (fail, overflow) labels of enclosing regions
        self.ln_known: int | None = None  # what $ln holds here, if known in this basic block
        self.loops: list[tuple[str, str]] = []
        self.caught: list[tuple[str, str]] = []  # locals holding what each enclosing catch caught

    # -- plumbing -----------------------------------------------------------------

    def emit(self, *ins: str) -> None:
        self.out.extend(ins)
        if self.ln_known is not None:
            for x in ins:  # control may join here: $ln is no longer known
                if x in _JOINS or x.startswith(_JOIN_PREFIXES):
                    self.ln_known = None
                    break

    def label(self, kind: str) -> str:
        self.nlabels += 1
        return f"${kind}{self.nlabels}"

    def local(self, name: str, ty: str) -> str:
        self.locals.append(f"(local {name} {ty})")
        return name

    def fresh(self, prefix: str, ty: str) -> str:
        """A new local with a name no other local of this function has."""
        return self.local(f"${prefix}_{len(self.locals)}", ty)

    def temp(self) -> int:
        if self.free_temps:
            return self.free_temps.pop()
        self.ntemps += 1
        n = self.ntemps
        self.local(f"$t{n}t", "i32")
        self.local(f"$t{n}p", "i64")
        return n

    def release(self, *ops: _Operand) -> None:
        for op in ops:
            if op.temp is not None:
                self.free_temps.append(op.temp)

    def to_temp(self) -> _Operand:
        """Pop a value from the stack into a fresh temp pair."""
        n = self.temp()
        self.emit(f"local.set $t{n}p", f"local.set $t{n}t")
        return _Operand(f"local.get $t{n}t", f"local.get $t{n}p", temp=n)

    def push(self, op: _Operand) -> None:
        self.emit(op.tag, op.payload)

    def line_code(self, span: A.Span) -> int:
        return (self.file_index << 24) | min(span.line, 0xFFFFFF)

    def set_line(self, span: A.Span) -> None:
        """Record in $ln the line an error detected next would be reported at."""
        code = self.line_code(span)
        if self.ln_known != code:
            self.out.extend((f"i32.const {code}", "local.set $ln"))
            self.ln_known = code

    def raise_(self, span: A.Span) -> None:
        """An error is pending in rt: unwind to the innermost region's fail path."""
        self.set_line(span)
        self.emit(f"br {self.regions[-1][0]}")

    def fail_if(self, span: A.Span, *, overflow: bool = False) -> None:
        """Pop an i32; if it is non-zero, fail (an overflow raises integer_overflow first)."""
        self.set_line(span)
        self.emit(f"br_if {self.regions[-1][1 if overflow else 0]}")

    def check(self, span: A.Span) -> None:
        """After a call that may fail: unwind if the value on the stack is EXC."""
        self.emit("local.set $xp", "local.tee $xt", f"i32.const {EXC}", "i32.eq")
        self.fail_if(span)
        self.emit("local.get $xt", "local.get $xp")

    def open_region(self) -> None:
        """Start code whose errors go to one fail path (a function body or a try body).

        Layout: ``block $fail (block $ovf <code> end; rt_err_overflow) end; <fail path>``;
        the code must leave its block by a branch or return.
        """
        fail, ovf = self.label("fail"), self.label("ovf")
        self.regions.append((fail, ovf))
        self.emit(f"block {fail}", f"block {ovf}")

    def close_region(self) -> None:
        """End the region's code and emit its fail path, which records the line."""
        self.regions.pop()
        self.emit("end", f"call {self.mb.use('rt_err_overflow')}", "drop", "drop", "end",
                  "local.get $ln", f"call {self.mb.use('rt_set_line')}")

    def body(self, block: A.Block, params: list[Binding] | None = None, first_local: int = 0) -> None:
        """A function body: its value is returned; an error returns EXC.

        ``params`` are bound from the wasm parameters starting at ``first_local``.
        """
        self.open_region()
        if params:
            self.bind_params(params, first_local, block)
        self.block_value(block)
        self.emit("return")
        self.close_region()
        self.emit(f"i32.const {EXC}", "i64.const 0")

    def call(self, name: str, span: A.Span | None) -> None:
        self.emit(f"call {self.mb.use(name)}")
        if span is not None:
            self.check(span)

    def bool_i32(self) -> None:
        """Replace the BOOL value on the stack by its i32 payload."""
        self.emit("local.set $xp", "drop", "local.get $xp", "i32.wrap_i64")

    def unit(self) -> None:
        self.emit(f"i32.const {UNIT}", "i64.const 0")

    def copy_top(self, span: A.Span) -> None:
        """Deep-copy the value on the stack if it is an array or a map (``$copy``)."""
        self.mb.use("rt_copy")
        self.emit("call $copy")
        self.check(span)

    def str_const(self, s: str) -> None:
        off, n = self.mb.string(s)
        self.emit(f"i32.const {STR}", "global.get $strbase", "i64.extend_i32_u",
                  f"i64.const {(n << 32) | off}", "i64.add")

    # -- bindings -------------------------------------------------------------------

    def _locals_of(self, b: Binding) -> tuple[str, str]:
        pair = self.vals.get(b.id)
        if pair is None:
            pair = (self.local(f"$v{b.id}t", "i32"), self.local(f"$v{b.id}p", "i64"))
            self.vals[b.id] = pair
        return pair

    def declare(self, b: Binding) -> None:
        """Pop the value on the stack into a new variable ``b``."""
        if b.module_global is not None:
            self.emit(f"global.set {b.module_global}p", f"global.set {b.module_global}t")
        elif b.captured:
            cell = self.cells.get(b.id) or self.local(f"$c{b.id}", "i32")
            self.cells[b.id] = cell
            self.emit("local.set $xp", "local.set $xt", "i32.const 16",
                      f"call {self.mb.use('rt_alloc')}", f"local.tee {cell}",
                      "local.get $xt", "i32.store", f"local.get {cell}", "local.get $xp",
                      "i64.store offset=8")
        else:
            t, p = self._locals_of(b)
            self.emit(f"local.set {p}", f"local.set {t}")

    def store(self, b: Binding) -> None:
        """Pop the value on the stack into the existing variable ``b``."""
        if b.captured and b.module_global is None:
            cell = self.cells[b.id]
            self.emit("local.set $xp", "local.set $xt", f"local.get {cell}", "local.get $xt",
                      "i32.store", f"local.get {cell}", "local.get $xp", "i64.store offset=8")
        else:
            self.declare(b)

    def operand_of(self, b: Binding) -> _Operand | None:
        """A binding readable without side effects in place (plain locals only)."""
        if b.captured or b.module_global is not None:
            return None
        t, p = self._locals_of(b)
        return _Operand(f"local.get {t}", f"local.get {p}")

    def load(self, b: Binding) -> None:
        if b.module_global is not None:
            self.emit(f"global.get {b.module_global}t", f"global.get {b.module_global}p")
        elif b.captured:
            cell = self.cells[b.id]
            self.emit(f"local.get {cell}", "i32.load", f"local.get {cell}", "i64.load offset=8")
        else:
            t, p = self._locals_of(b)
            self.emit(f"local.get {t}", f"local.get {p}")

    def bind_params(self, params: list[Binding], first_local: int, block: A.Block) -> None:
        """Function entry: bind each parameter to its variable.

        Arguments are passed by reference; a parameter the body may change in
        place (or let a closure capture) is copied first, so the caller's
        array or map never changes (value semantics).
        """
        changed = _changed_in_place(block, self.res) if params else set()
        for i, b in enumerate(params):
            self.emit(f"local.get {first_local + 2 * i}", f"local.get {first_local + 2 * i + 1}")
            if b.captured or b.id in changed:
                self.copy_top(block.span)
            self.declare(b)

    # -- statements -----------------------------------------------------------------

    def block_value(self, block: A.Block) -> None:
        for st in block.stmts:
            self.stmt(st)
        if block.tail is not None:
            self.expr(block.tail)
        else:
            self.unit()

    def stmt(self, st: A.Stmt) -> None:  # noqa: C901 - one dispatch over statement types
        if isinstance(st, A.Let):
            if st.value is None:
                self.unit()
            else:
                self.value(st.value)
            self.declare(self.res.bindings[id(st)])
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
            self.emit(f"br {top}", "end", "end")
        elif isinstance(st, A.Loop):
            brk, top, cont = self.label("brk"), self.label("top"), self.label("cont")
            self.emit(f"block {brk}", f"loop {top}")
            self.loop_body(st.body, brk, cont)
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
            else:
                self.expr(st.value)
            self.emit("return")
        elif isinstance(st, A.Throw):
            if st.value is None and self.caught:  # `throw;` in a catch block re-throws
                self.emit(*(f"local.get {x}" for x in self.caught[-1]))
            elif st.value is None:
                self.unit()
            else:
                self.value(st.value)
            self.emit(f"call {self.mb.use('rt_throw')}", "drop", "drop")
            self.raise_(st.span)
        elif isinstance(st, A.TryCatch):
            self.try_(st)
        # Import: handled by the driver (module initialisers run before the script)

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
        caught = (self.fresh("ext", "i32"), self.fresh("exp", "i64"))
        self.emit(f"call {self.mb.use('rt_exc_take')}", f"local.set {caught[1]}", f"local.set {caught[0]}")
        b = self.res.bindings.get(id(st))
        if b is not None and st.var is not None:
            self.emit(*(f"local.get {x}" for x in caught))
            self.declare(b)
        self.caught.append(caught)
        self.block_value(st.handler)
        self.caught.pop()
        self.emit("drop", "drop", "end")

    def for_(self, st: A.For) -> None:
        var = self.res.bindings[id(st)]
        index_b = self.res.params.get(id(st), [None])[0]
        brk, top, cont = self.label("brk"), self.label("top"), self.label("cont")
        it = st.iterable
        if isinstance(it, A.Call) and self.res.calls.get(id(it)) == "range":
            it = A.Range(span=it.span, start=it.args[0], end=it.args[1], inclusive=False)
        if isinstance(it, A.Range):
            i = self.fresh("ri", "i64")
            e = self.fresh("re", "i64")
            for bound, loc in ((it.start, i), (it.end, e)):
                self.int_value(bound)
                self.emit(f"local.set {loc}")
            self.emit(f"block {brk}", f"loop {top}", f"local.get {i}", f"local.get {e}",
                      "i64.gt_s" if it.inclusive else "i64.ge_s", f"br_if {brk}",
                      f"i32.const {INT}", f"local.get {i}")
            self.declare(var)
            if index_b is not None:
                self.emit(f"i32.const {INT}", f"local.get {i}")
                self.declare(index_b)
            self.loop_body(st.body, brk, cont)
            if it.inclusive:
                self.emit(f"local.get {i}", f"local.get {e}", "i64.eq", f"br_if {brk}")
            self.emit(f"local.get {i}", "i64.const 1", "i64.add", f"local.set {i}",
                      f"br {top}", "end", "end")
            return
        arr = self.fresh("fa", "i32")
        n = self.fresh("fn", "i32")
        idx = self.fresh("fi", "i32")
        self.expr(it)
        self.call("rt_iter", it.span)
        self.emit("i32.wrap_i64", f"local.set {arr}", "drop", f"local.get {arr}", "i32.load",
                  f"local.set {n}", "i32.const 0", f"local.set {idx}")
        self.emit(f"block {brk}", f"loop {top}", f"local.get {idx}", f"local.get {n}", "i32.ge_u",
                  f"br_if {brk}")
        self.emit(f"local.get {arr}", "i32.load offset=8", f"local.get {idx}", "i32.const 4", "i32.shl",
                  "i32.add", "local.tee $xt", "i32.load", "local.get $xt", "i64.load offset=8")
        self.copy_top(st.span)
        self.declare(var)
        if index_b is not None:
            self.emit(f"i32.const {INT}", f"local.get {idx}", "i64.extend_i32_u")
            self.declare(index_b)
        self.loop_body(st.body, brk, cont)
        self.emit(f"local.get {idx}", "i32.const 1", "i32.add", f"local.set {idx}", f"br {top}", "end", "end")

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

    # -- assignment -----------------------------------------------------------------

    def assign(self, st: A.Assign) -> None:
        target = st.target
        if isinstance(target, A.Var):
            b = self.res.bindings[id(target)]
            if st.op is None:
                self.value(st.value)
            else:
                left = self.operand_of(b)
                if left is None:
                    self.load(b)
                    left = self.to_temp()
                right = self.operand(st.value)
                self.binop(st.op, left, right, st.span)
                self.release(left, right)
            self.store(b)
            return
        # a[i] = v / m.k = v, possibly compound; the object is a reference
        assert isinstance(target, (A.Index, A.Prop))
        self.expr(target.obj)
        obj = self.to_temp()
        if isinstance(target, A.Index):
            self.expr(target.index)
            key = self.to_temp()
        else:
            self.str_const(target.name)
            key = self.to_temp()
        getter, setter = ("rt_index_get", "rt_index_set") if isinstance(target, A.Index) else (
            "rt_prop_get", "rt_prop_set")
        if st.op is None:
            self.value(st.value)
        else:
            self.push(obj)
            self.push(key)
            self.call(getter, target.span)
            left = self.to_temp()
            right = self.operand(st.value)
            self.binop(st.op, left, right, st.span)
            self.release(left, right)
        val = self.to_temp()
        self.push(obj)
        self.push(key)
        self.push(val)
        self.call(setter, st.span)
        self.emit("drop", "drop")
        self.release(obj, key, val)

    def store_place(self, place: A.Expr) -> bool:
        """Pop the value on the stack into ``place`` if it is one (writeback builtins)."""
        if isinstance(place, A.Var) and id(place) in self.res.bindings:
            b = self.res.bindings[id(place)]
            if b.const:
                self.emit("drop", "drop")
            else:
                self.store(b)
            return True
        if isinstance(place, (A.Index, A.Prop)):
            val = self.to_temp()
            self.expr(place.obj)
            if isinstance(place, A.Index):
                self.expr(place.index)
                setter = "rt_index_set"
            else:
                self.str_const(place.name)
                setter = "rt_prop_set"
            self.push(val)
            self.call(setter, place.span)
            self.emit("drop", "drop")
            self.release(val)
            return True
        self.emit("drop", "drop")
        return False

    # -- expressions ----------------------------------------------------------------

    def value(self, e: A.Expr) -> None:
        """Evaluate ``e`` for storing: a copy unless the value is fresh."""
        self.expr(e)
        if not isinstance(e, _FRESH):
            self.copy_top(e.span)

    def operand(self, e: A.Expr) -> _Operand:
        """Evaluate ``e`` to an operand, avoiding temps for constants and locals."""
        if isinstance(e, A.Int):
            return _Operand(f"i32.const {INT}", f"i64.const {e.value}", int_const=e.value)
        if isinstance(e, A.Var) and id(e) in self.res.bindings:
            op = self.operand_of(self.res.bindings[id(e)])
            if op is not None:
                return op
        self.expr(e)
        return self.to_temp()

    def expr(self, e: A.Expr) -> None:  # noqa: C901 - one dispatch over expression types
        if isinstance(e, A.Int):
            self.emit(f"i32.const {INT}", f"i64.const {e.value}")
        elif isinstance(e, A.Var):
            b = self.res.bindings.get(id(e))
            if b is not None:
                self.load(b)
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
                self.emit(f"call {self.mb.use('rt_array_push')}")
            self.push(arr)
            self.release(arr)
        elif isinstance(e, A.MapLit):
            self.emit(f"call {self.mb.use('rt_map_new')}")
            m = self.to_temp()
            for key, item in e.entries:
                self.push(m)
                self.str_const(key)
                self.value(item)
                self.emit(f"call {self.mb.use('rt_map_set')}")
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
            self.str_const(e.name)
            self.call("rt_prop_get", e.span)
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

    def unary(self, e: A.Unary) -> None:
        x = e.operand
        if e.op == "-" and isinstance(x, A.Int):
            self.emit(f"i32.const {INT}", f"i64.const {-x.value}")
        elif e.op == "-" and isinstance(x, A.Float):
            self.expr(A.Float(span=x.span, value=-x.value))
        elif e.op == "!":
            self.emit(f"i32.const {BOOL}")
            self.cond(x)
            self.emit("i32.eqz", "i64.extend_i32_u")
        elif e.op == "-":
            self.expr(x)
            self.emit("local.set $xp", "local.tee $xt", f"i32.const {INT}", "i32.eq", "local.get $xp",
                      f"i64.const {I64_MIN}", "i64.ne", "i32.and", "if (result i32 i64)",
                      f"i32.const {INT}", "i64.const 0", "local.get $xp", "i64.sub", "else",
                      "local.get $xt", "local.get $xp")
            self.call("rt_neg", e.span)
            self.emit("end")
        else:  # unary plus: numbers only
            self.expr(x)
            self.emit("local.set $xp", "local.tee $xt", f"i32.const {INT}", "i32.sub", "i32.const 1",
                      "i32.gt_u", "if", "local.get $xt", "local.get $xp",
                      f"call {self.mb.use('rt_err_int')}", "drop", "drop")
            self.raise_(e.span)
            self.emit("end", "local.get $xt", "local.get $xp")

    def cond(self, e: A.Expr) -> None:
        """Evaluate a condition to an i32 0/1; anything but a bool is an error."""
        if isinstance(e, A.Bool):
            self.emit(f"i32.const {int(e.value)}")
        elif isinstance(e, A.Logical):
            self.cond(e.left)
            if e.op == "&&":
                self.emit("if (result i32)")
                self.cond(e.right)
                self.emit("else", "i32.const 0", "end")
            else:
                self.emit("if (result i32)", "i32.const 1", "else")
                self.cond(e.right)
                self.emit("end")
        elif isinstance(e, A.Unary) and e.op == "!":
            self.cond(e.operand)
            self.emit("i32.eqz")
        elif isinstance(e, A.Binary) and e.op in _COMPARE:
            left = self.operand(e.left)
            right = self.operand(e.right)
            self.compare(e.op, left, right, as_i32=True)
            self.release(left, right)
        else:
            self.expr(e)
            self.emit("local.set $xp", "local.tee $xt", f"i32.const {BOOL}", "i32.ne", "if",
                      "local.get $xt", "local.get $xp", f"call {self.mb.use('rt_err_bool')}", "drop", "drop")
            self.raise_(e.span)
            self.emit("end", "local.get $xp", "i32.wrap_i64")

    def binary(self, e: A.Binary) -> None:
        if e.op == "in":
            self.in_(e)
            return
        # a simple right operand cannot change the left one: read locals in place
        simple_right = isinstance(e.right, (A.Int, A.Var, A.Str, A.Bool, A.Float))
        if simple_right and isinstance(e.left, A.Var):
            left = self.operand(e.left)
        elif isinstance(e.left, A.Int):
            left = self.operand(e.left)
        else:
            self.expr(e.left)
            left = self.to_temp()
        right = self.operand(e.right)
        self.binop(e.op, left, right, e.span)
        self.release(left, right)

    def _both_ints(self, left: _Operand, right: _Operand) -> None:
        """Push i32: are both operands ints? (constant-folds known int literals)"""
        tests = [op.tag for op in (left, right) if op.int_const is None]
        if not tests:
            self.emit("i32.const 1")
            return
        self.emit(tests[0], f"i32.const {INT}", "i32.eq")
        if len(tests) == 2:
            self.emit(tests[1], f"i32.const {INT}", "i32.eq", "i32.and")

    def compare(self, op: str, left: _Operand, right: _Operand, *, as_i32: bool) -> None:
        self._both_ints(left, right)
        self.emit("if (result i32)" if as_i32 else "if (result i32 i64)")
        if not as_i32:
            self.emit(f"i32.const {BOOL}")
        self.emit(left.payload, right.payload, _COMPARE[op])
        if not as_i32:
            self.emit("i64.extend_i32_u")
        self.emit("else")
        self.push(left)
        self.push(right)
        self.emit(f"call {self.mb.use(_BINOPS[op])}")
        if as_i32:
            self.bool_i32()  # rt comparisons return BOOL, never EXC
        self.emit("end")

    def binop(self, op: str, left: _Operand, right: _Operand, span: A.Span) -> None:
        if op in _COMPARE:
            self.compare(op, left, right, as_i32=False)
            return
        fast = self._fast_int(op, left, right, span)
        if fast is None:
            self.push(left)
            self.push(right)
            self.call(_BINOPS[op], span)
            return
        self._both_ints(left, right)
        self.emit("if (result i32 i64)")
        self.emit(*fast)
        self.emit("else")
        self.push(left)
        self.push(right)
        self.call(_BINOPS[op], span)
        self.emit("end")

    def _fast_int(self, op: str, left: _Operand, right: _Operand, span: A.Span) -> list[str] | None:
        """Instructions computing ``left op right`` for two ints (checked), or None."""
        a, b = left.payload, right.payload
        saved, self.out = self.out, []
        if op in ("+", "-"):
            r = self.fresh("r", "i64")
            self.emit(f"i32.const {INT}", a, b, "i64.add" if op == "+" else "i64.sub", f"local.tee {r}")
            # overflow iff the sign of the result differs from both (add) / from a and not b (sub)
            if op == "+":
                self.emit(a, "i64.xor", b, f"local.get {r}", "i64.xor")
            else:
                self.emit(a, "i64.xor", a, b, "i64.xor")
            self.emit("i64.and", "i64.const 0", "i64.lt_s")
            self.fail_if(span, overflow=True)
            self.emit(f"local.get {r}")
        elif op == "*":
            # both within i32: the product cannot overflow i64; otherwise ask rt
            self.emit(a, "i64.const 2147483648", "i64.add", "i64.const 4294967295", "i64.le_u",
                      b, "i64.const 2147483648", "i64.add", "i64.const 4294967295", "i64.le_u",
                      "i32.and", "if (result i32 i64)", f"i32.const {INT}", a, b, "i64.mul", "else",
                      left.tag, a, right.tag, b)
            self.call("rt_mul", span)
            self.emit("end")
        elif op in ("/", "%") and right.int_const not in (None, 0, -1):
            self.emit(f"i32.const {INT}", a, b, "i64.div_s" if op == "/" else "i64.rem_s")
        elif op in ("/", "%"):
            self.emit(b, "i64.const 1", "i64.add", "i64.const 1", "i64.gt_u", "if (result i32 i64)",
                      f"i32.const {INT}", a, b, "i64.div_s" if op == "/" else "i64.rem_s", "else",
                      left.tag, a, right.tag, b)
            self.call(_BINOPS[op], span)
            self.emit("end")
        else:
            self.out = saved
            return None
        fast, self.out = self.out, saved
        return fast

    def in_(self, e: A.Binary) -> None:
        if isinstance(e.right, A.Range):
            self.expr(e.left)
            x = self.to_temp()
            self.emit(f"i32.const {BOOL}")
            self.push(x)
            self.expr(e.right.start)
            self.emit(f"call {self.mb.use('rt_ge')}")
            self.bool_i32()
            self.push(x)
            self.expr(e.right.end)
            self.emit(f"call {self.mb.use('rt_le' if e.right.inclusive else 'rt_lt')}")
            self.bool_i32()
            self.emit("i32.and", "i64.extend_i32_u")
            self.release(x)
            return
        self.expr(e.left)
        self.expr(e.right)
        self.call("rt_in", e.span)

    def if_(self, e: A.If) -> None:
        self.cond(e.cond)
        self.emit("if (result i32 i64)")
        self.block_value(e.then)
        self.emit("else")
        if isinstance(e.else_, A.If):
            self.if_(e.else_)
        elif e.else_ is not None:
            self.block_value(e.else_)
        else:
            self.unit()
        self.emit("end")

    def switch(self, e: A.Switch) -> None:
        self.expr(e.subject)
        subj = self.to_temp()
        depth = 0
        for case in e.cases:
            if not case.patterns:
                self.emit("i32.const 1")
            for i, pat in enumerate(case.patterns):
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
        if isinstance(target, FnRef):
            for a in e.args:
                self.expr(a)
            self.emit(f"call {target.wasm_name}")
            self.check(e.span)
        elif isinstance(target, Builtin):
            self.builtin(target, e.args[0] if e.args else None, e.args[1:], e.span)
        else:  # range(a, b) outside a for loop was reported by the resolver
            self.unit()

    def builtin(self, b: Builtin, recv: A.Expr | None, args: tuple[A.Expr, ...], span: A.Span) -> None:
        if recv is not None:
            self.expr(recv)  # the receiver is a reference: in-place methods change it
        for a in args:
            self.value(a)
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
        clo = self.fresh("clo", "i32")
        self.emit("local.get $xt", f"local.tee {clo}", "i32.load offset=8")
        for a in e.args:
            self.expr(a)
        self.emit(f"local.get {clo}", "i32.load", f"call_indirect (type $clo{n})")
        self.check(e.span)

    def closure(self, e: A.Closure) -> None:
        info = self.res.closures[id(e)]
        clo = self.fresh("mk", "i32")
        self.emit("i32.const 12", f"call {self.mb.use('rt_alloc')}", f"local.tee {clo}",
                  f"i32.const {CLOSURE_TABLE_BASE + info.slot}", "i32.store", f"local.get {clo}",
                  f"i32.const {len(info.params)}", "i32.store offset=4")
        if info.captures:
            self.emit(f"local.get {clo}", f"i32.const {4 * len(info.captures)}",
                      f"call {self.mb.use('rt_alloc')}", "local.tee $xt", "i32.store offset=8")
            for j, b in enumerate(info.captures):
                self.emit("local.get $xt", f"local.get {self.cells[b.id]}", f"i32.store offset={4 * j}")
        self.emit(f"i32.const {FN}", f"local.get {clo}", "i64.extend_i32_u")

    # -- output ----------------------------------------------------------------------

    def finish(self, header: str) -> str:
        lines = [header, *self.locals, *self.out, ")"]
        return "\n  ".join(lines)


def _children(node: object) -> list[object]:
    out: list[object] = []
    for name in getattr(node, "__dataclass_fields__", ()):
        v = getattr(node, name)
        if isinstance(v, tuple):
            for x in v:
                out.extend(x if isinstance(x, tuple) else (x,))
        elif isinstance(v, A.Node):
            out.append(v)
    return out


def _root(e: A.Expr) -> A.Expr:
    while isinstance(e, (A.Index, A.Prop)):
        e = e.obj
    return e


def _changed_in_place(block: A.Block, res: Resolution) -> set[int]:
    """Bindings the block may mutate in place: assignment roots and method receivers."""
    out: set[int] = set()
    stack: list[object] = [block]
    while stack:
        n = stack.pop()
        root: A.Expr | None = None
        if isinstance(n, A.Assign) and not isinstance(n.target, A.Var):
            root = _root(n.target)
        elif isinstance(n, A.MethodCall):
            root = _root(n.obj)
        elif isinstance(n, A.Call) and n.args and isinstance(res.calls.get(id(n)), Builtin):
            root = _root(n.args[0])
        if isinstance(root, A.Var) and id(root) in res.bindings:
            out.add(res.bindings[id(root)].id)
        stack.extend(_children(n))
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


def generate(res: Resolution, init_order: list[int]) -> str:
    """Generate the WAT text of the script module for a resolved program.

    ``init_order`` lists the imported modules (indices into ``res.modules``)
    so that every module comes after the modules it imports; their top-level
    code runs in that order before the main script's.
    """
    mb = _ModuleBuilder(res)
    # script functions
    for mod in res.modules:
        for fn in mod.script.functions:
            params = res.params[id(fn)]
            f = _Fn(mb, mod.index)
            f.body(fn.body, params, 0)
            ref = FnRef(mod.index, fn.name, len(params))
            mb.funcs.append(f.finish(f"(func {ref.wasm_name} {_params(len(params))} (result i32 i64)"))
    # module initialisers and the main body
    inits: list[str] = []
    for mod in [res.modules[i] for i in init_order] + [res.modules[0]]:
        f = _Fn(mb, mod.index)
        f.body(mod.script.body)
        name = f"$init{mod.index}"
        inits.append(name)
        mb.funcs.append(f.finish(f"(func {name} (result i32 i64)"))
        for st in mod.script.body.stmts:
            if isinstance(st, A.Let) and id(st) in res.bindings:
                b = res.bindings[id(st)]
                if b.module_global is not None:
                    mb.globals.append(f"(global {b.module_global}t (mut i32) (i32.const 0))")
                    mb.globals.append(f"(global {b.module_global}p (mut i64) (i64.const 0))")
    # closures (they may create closures, so loop until all are emitted)
    emitted = 0
    while emitted < len(res.closure_order):
        c = res.closure_order[emitted]
        info = res.closures[id(c)]
        f = _Fn(mb, info.module)
        for j, b in enumerate(info.captures):
            cell = f.local(f"$c{b.id}", "i32")
            f.cells[b.id] = cell
            f.emit("local.get 0", f"i32.load offset={4 * j}", f"local.set {cell}")
        f.body(c.body, info.params, 1)
        mb.closure_arities.add(len(info.params))
        mb.funcs.append(f.finish(
            f"(func $closure{info.slot} (param i32) {_params(len(info.params))} (result i32 i64)"))
        emitted += 1
    return _assemble(mb, inits)


# value semantics: copy arrays and maps, pass everything else through (no rt call)
_COPY_FUNC = f"""  (func $copy (param i32 i64) (result i32 i64)
    local.get 0 i32.const {ARRAY} i32.sub i32.const 1 i32.le_u
    if local.get 0 local.get 1 call $rt_copy return end
    local.get 0 local.get 1)"""


def _assemble(mb: _ModuleBuilder, inits: list[str]) -> str:
    main = _Fn(mb, 0)
    main.locals = []
    main.emit("local.get 0", "local.get 1", f"call {mb.use('rt_begin')}", "if",
              f"call {mb.use('rt_output')}", "return", "end")
    if mb.data:
        main.emit(f"i32.const {len(mb.data)}", f"call {mb.use('rt_alloc')}", "global.set $strbase",
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
    parts.append(f'  (import "env" "__indirect_function_table" (table {CLOSURE_TABLE_BASE + nclosures} funcref))')
    parts.append('  (import "rt" "memory" (memory 0))')
    for name, (ps, rs) in mb.imports.items():
        p = f" (param {ps})" if ps else ""
        r = f" (result {rs})" if rs else ""
        parts.append(f'  (import "rt" "{name}" (func ${name}{p}{r}))')
    parts.append("  (global $strbase (mut i32) (i32.const 0))")
    if "rt_copy" in mb.imports:
        parts.append(_COPY_FUNC)
    parts.extend("  " + g for g in mb.globals)
    if mb.data:
        parts.append(f'  (data $strs "{_wat_bytes(bytes(mb.data))}")')
    if nclosures:
        names = " ".join(f"$closure{i}" for i in range(nclosures))
        parts.append(f"  (elem (i32.const {CLOSURE_TABLE_BASE}) func {names})")
    parts.extend("  " + f for f in mb.funcs)
    parts.append("  " + main_text)
    parts.append(")")
    return "\n".join(parts) + "\n"
