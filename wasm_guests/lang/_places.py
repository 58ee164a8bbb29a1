"""Places and values: assignment, copy-on-write along a place's path, what a function returns.

Arrays, maps and blobs have value semantics by copy-on-write (ABI.md,
"Values"): a value stored in one more place is marked shared (:meth:`value`,
``rt_copy``); a place about to be changed in place is made private along its
path first (:meth:`place_ref`: ``rt_own``, ``rt_index_own``,
``rt_prop_own``, each private copy written back into its place). As in Rhai,
the right side of an assignment and a method's arguments are evaluated
before the place (:meth:`place_parts` evaluates what the place depends on,
in order), so an argument that shares the receiver (``a.push(a)``) is seen
and copied. A function's result is its caller's alone unless another place
may still hold it (:meth:`result`), so storing a call's result copies
nothing.
"""

from __future__ import annotations

from . import _ast as A
from ._builtins import Builtin
from ._emitter import ARRAY, ARRAY_FLAGS, BLOB_TAG, FRESH, MAP, MAP_FLAGS, Operand, key_hash
from ._operators import OperatorCompiler
from ._resolver import FnRef

__all__ = ["PlaceCompiler"]


class PlaceCompiler(OperatorCompiler):
    """Assignments, places and stored values; the subclass supplies :meth:`expr`."""

    def assign(self, st: A.Assign) -> None:
        target = st.target
        if isinstance(target, A.Var) and st.op is None:
            self.value(st.value)
            self.store(self.res.bindings[id(target)], known_int=self.last_int)
            return
        was, self.safe = self.safe, False  # operands are held while others are evaluated
        self._assign(st)
        self.safe = was

    def _assign(self, st: A.Assign) -> None:
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
            self.store(b, known_int=self.last_int)
            return
        # a[i] = v / m.k = v, possibly compound. Rhai's order: the right side, then the
        # indices along the place, then the place is made private and changed
        assert isinstance(target, (A.Index, A.Prop))
        if st.op is None:
            self.value(st.value)
        else:
            self.expr(st.value)
        known = self.last_int
        rhs = self.to_temp()
        rhs.is_int = known
        parts = self.place_parts(target)
        self.place_ref(target.obj, parts)
        obj = self.to_temp()
        hashed: tuple[str, ...] = ()  # a property's name is a constant: rt gets its hash too
        if isinstance(target, A.Index):
            key = parts.pop(id(target))
        else:
            self.str_const(target.name)
            key = self.to_temp()
            hashed = (f"i32.const {key_hash(target.name)}",)
        getter, setter = ("rt_index_get", "rt_index_set") if isinstance(target, A.Index) else (
            "rt_prop_get", "rt_prop_set")
        val = rhs
        if st.op is not None:
            self.push(obj)
            self.push(key)
            self.emit(*hashed)
            self.call(getter, target.span)
            left = self.to_temp()
            self.binop(st.op, left, rhs, st.span)
            self.release(left, rhs)
            val = self.to_temp()
        self.push(obj)
        self.push(key)
        self.emit(*hashed)
        self.push(val)
        self.call(setter, st.span)
        self.emit("drop", "drop")
        self.release(obj, key, val, *parts.values())

    def place_parts(self, e: A.Expr) -> dict[int, Operand]:
        """Evaluate, in order, what the place ``e`` depends on: a root that is not a
        variable (a call's result) and the index of every ``[]`` along it, each to a temp."""
        parts: dict[int, Operand] = {}
        path: list[A.Expr] = []
        while isinstance(e, (A.Index, A.Prop)):
            path.append(e)
            e = e.obj
        if not (isinstance(e, A.Var) and id(e) in self.res.bindings):
            self.expr(e)
            parts[id(e)] = self.to_temp()
        for node in reversed(path):
            if isinstance(node, A.Index):
                self.expr(node.index)
                parts[id(node)] = self.to_temp()
        return parts

    def place_ref(self, e: A.Expr, parts: dict[int, Operand]) -> None:
        """Leave the place ``e``, about to be changed in place, as a private value.

        Along the path (``a``, ``a[i]``, ``a[i].k``) each shared container is
        replaced by a private copy written back into its place, so the change
        is seen through this place only (copy-on-write). A root that is not a
        variable (a call's result) gets a private copy if it is shared. What
        :meth:`place_parts` evaluated is read from ``parts``.
        """
        if isinstance(e, A.Var) and id(e) in self.res.bindings:
            b = self.res.bindings[id(e)]
            self.load(b)
            self.own_top()
            if not b.const:
                self.store(b)
                self.load(b)
        elif isinstance(e, A.Index):
            self.place_ref(e.obj, parts)
            self.push(parts[id(e)])
            self.call("rt_index_own", e.span)
        elif isinstance(e, A.Prop):
            self.place_ref(e.obj, parts)
            self.prop_name(e.name)
            self.call("rt_prop_own", e.span)
        else:
            self.push(parts[id(e)])
            self.own_top()

    def own_top(self) -> None:
        """Make the value on the stack private if it is a shared array, map or blob
        (``rt_own``): the shared flag is tested inline, so a private value costs no call."""
        self.emit("local.set $xp", "local.tee $xt", f"i32.const {MAP}", "i32.eq", "if (result i32)",
                  "local.get $xp", "i32.wrap_i64", f"i32.load offset={MAP_FLAGS}", "else",
                  "local.get $xt", f"i32.const {ARRAY}", "i32.eq", "local.get $xt", f"i32.const {BLOB_TAG}",
                  "i32.eq", "i32.or", "if (result i32)", "local.get $xp", "i32.wrap_i64",
                  f"i32.load offset={ARRAY_FLAGS}", "else", "i32.const 0", "end", "end",
                  "i32.const 1", "i32.and", "if", "local.get $xt", "local.get $xp",
                  f"call {self.mb.use('rt_own')}", "local.set $xp", "local.set $xt", "end",
                  "local.get $xt", "local.get $xp")

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
            parts = self.place_parts(place)
            self.place_ref(place.obj, parts)
            if isinstance(place, A.Index):
                self.push(parts.pop(id(place)))
                setter = "rt_index_set"
            else:
                self.prop_name(place.name)
                setter = "rt_prop_set"
            self.push(val)
            self.call(setter, place.span)
            self.emit("drop", "drop")
            self.release(val, *parts.values())
            return True
        self.emit("drop", "drop")
        return False

    # -- expressions ----------------------------------------------------------------

    def value(self, e: A.Expr) -> None:
        """Evaluate ``e`` for storing: shared unless the value is fresh (a literal, an
        operator's result, a function's result: see :meth:`result`)."""
        self.expr(e)
        if not isinstance(e, FRESH) and not self.script_call(e):
            self.share_top(known_int=self.last_int)

    def result(self, e: A.Expr) -> None:
        """Evaluate what a function returns: its caller becomes the value's only holder
        (so a call's result needs no sharing where it is stored), unless another place
        may still hold it (a parameter, a captured variable, an element): then shared."""
        self.expr(e)
        last = self.last_int
        if not (isinstance(e, FRESH) or self.script_call(e) or self.local_variable(e)):
            self.share_top(known_int=last)
        self.last_int = last

    def script_call(self, e: A.Expr) -> bool:
        """A call of a script function or closure (whose result its caller alone holds)."""
        if isinstance(e, A.Call):
            return isinstance(self.res.calls.get(id(e)), FnRef)
        return isinstance(e, A.MethodCall) and not isinstance(self.res.methods.get(id(e)), Builtin)

    def local_variable(self, e: A.Expr) -> bool:
        """A variable of this function that dies with it: not a parameter, captured or global."""
        b = self.res.bindings.get(id(e)) if isinstance(e, A.Var) else None
        return b is not None and not b.captured and b.module_global is None and b.id not in self.param_ids
