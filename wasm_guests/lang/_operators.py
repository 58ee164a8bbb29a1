"""Code generation of operators: arithmetic, comparisons, ``in``, unary operators and conditions.

:class:`OperatorCompiler` is the part of the function compiler
(:class:`~._codegen.FunctionCompiler` derives from it) that turns operators
into WAT. The hot integer cases are inlined behind a tag test, with checked
arithmetic (an overflow raises ``integer_overflow``), and operands known to
be ints (literals, locals proven int, all-int clones' parameters) skip the
test: ``x + 1`` in a loop over ints never leaves the script module. Every
other combination of types calls the generic rt operation (``rt_add``,
``rt_lt``, ...), which never traps: a type error is an ``EXC`` value.

Conditions (``if``, ``while``, ``&&``, ``||``, ``!``) are evaluated to a
plain ``i32`` rather than a boxed BOOL where they are consumed at once.
"""

from __future__ import annotations

from . import _ast as A
from ._emitter import BINOPS, BOOL, COMPARE, I64_MAX, I64_MIN, INT, Emitter, Operand

__all__ = ["OperatorCompiler"]


class OperatorCompiler(Emitter):
    """Operators and conditions; the subclass supplies :meth:`expr` for their operands."""

    def expr(self, e: A.Expr) -> None:
        """Evaluate ``e``, leaving its value on the stack (implemented by the function compiler)."""
        raise NotImplementedError

    def operand(self, e: A.Expr) -> Operand:
        """Evaluate ``e`` to an operand, avoiding temps for constants and locals."""
        if isinstance(e, A.Int):
            return Operand(f"i32.const {INT}", f"i64.const {e.value}", int_const=e.value)
        if isinstance(e, A.Var) and id(e) in self.res.bindings:
            op = self.operand_of(self.res.bindings[id(e)])
            if op is not None:
                return op
        self.expr(e)
        known = self.last_int
        op = self.to_temp()
        op.is_int = known
        return op

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
        elif isinstance(e, A.Binary) and e.op in COMPARE:
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
            self.last_int = False
            return
        # a simple right operand cannot change the left one: read locals in place
        simple_right = isinstance(e.right, (A.Int, A.Var, A.Str, A.Bool, A.Float))
        if simple_right and isinstance(e.left, A.Var) or isinstance(e.left, A.Int):
            left = self.operand(e.left)
        else:
            self.expr(e.left)
            known = self.last_int
            left = self.to_temp()
            left.is_int = known
        right = self.operand(e.right)
        self.binop(e.op, left, right, e.span)
        self.release(left, right)

    def _both_ints(self, left: Operand, right: Operand) -> None:
        """Push i32: are both operands ints? (constant-folds known int literals)"""
        tests = [op.tag for op in (left, right) if op.int_const is None and not op.is_int]
        if not tests:
            self.emit("i32.const 1")
            return
        self.emit(tests[0], f"i32.const {INT}", "i32.eq")
        if len(tests) == 2:
            self.emit(tests[1], f"i32.const {INT}", "i32.eq", "i32.and")

    def compare(self, op: str, left: Operand, right: Operand, *, as_i32: bool) -> None:
        """``left op right`` as an i32 (``as_i32``) or a BOOL value; rt comparisons never fail."""
        if _static_int(left) and _static_int(right):
            if not as_i32:
                self.emit(f"i32.const {BOOL}")
            self.emit(left.payload, right.payload, COMPARE[op])
            if not as_i32:
                self.emit("i64.extend_i32_u")
            return
        self._both_ints(left, right)
        self.emit("if (result i32)" if as_i32 else "if (result i32 i64)")
        if not as_i32:
            self.emit(f"i32.const {BOOL}")
        self.emit(left.payload, right.payload, COMPARE[op])
        if not as_i32:
            self.emit("i64.extend_i32_u")
        self.emit("else")
        self.push(left)
        self.push(right)
        self.emit(f"call {self.mb.use(BINOPS[op])}")
        if as_i32:
            self.bool_i32()  # rt comparisons return BOOL, never EXC
        self.emit("end")

    def binop(self, op: str, left: Operand, right: Operand, span: A.Span) -> None:
        """``left op right`` on the stack; sets ``last_int`` when both are surely ints."""
        self.last_int = False
        if op in COMPARE:
            self.compare(op, left, right, as_i32=False)
            return
        fast = self._fast_int(op, left, right, span)
        if fast is None:
            self.push(left)
            self.push(right)
            self.call(BINOPS[op], span)
            return
        if _static_int(left) and _static_int(right):
            self.emit(*fast)  # both statically ints: no tag test, no generic path
            self.last_int = True
            return
        self._both_ints(left, right)
        self.emit("if (result i32 i64)")
        self.emit(*fast)
        self.emit("else")
        self.push(left)
        self.push(right)
        self.call(BINOPS[op], span)
        self.emit("end")

    def _fast_int(self, op: str, left: Operand, right: Operand, span: A.Span) -> list[str] | None:
        """Instructions computing ``left op right`` for two ints (checked), or None."""
        a, b = left.payload, right.payload
        saved, self.out = self.out, []
        if op in ("+", "-") and right.int_const is not None and right.int_const not in (0, I64_MIN):
            # x ± c overflows iff x is beyond the bound c leaves: one comparison
            c = right.int_const if op == "+" else -right.int_const
            bound, test = (I64_MAX - c, "i64.gt_s") if c > 0 else (I64_MIN - c, "i64.lt_s")
            self.emit(a, f"i64.const {bound}", test)
            self.fail_if(span, overflow=True)
            self.emit(f"i32.const {INT}", a, f"i64.const {c}", "i64.add")
        elif op in ("+", "-"):
            r = self.scratch("i64")  # used by these few instructions only: free again at once
            self.free("i64", r)
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
            self.call(BINOPS[op], span)
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


def _static_int(op: Operand) -> bool:
    return op.is_int or op.int_const is not None
