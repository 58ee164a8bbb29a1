"""Static facts about resolved function bodies that code generation relies on.

* :func:`changed_in_place`: the bindings a block may mutate in place
  (assignment roots such as ``a`` in ``a[i] = x``, method receivers,
  writeback builtins' first arguments). Arrays and maps are mutated through
  their headers, so a parameter in this set is marked shared on function
  entry (copy-on-write: the caller's value never changes).
* :func:`int_specializable`: whether a function is worth an all-int clone
  (small, parameters never reassigned, captured or changed in place).
* :func:`may_allocate`: whether a loop may allocate (only then is its
  back-edge a safe point that polls the collector).
* :func:`reaches_gc`: the functions whose call may reach a collection, and
  whether any closure's may.
* :func:`children`: the child nodes of an AST node, for the walks above.

Every walk is iterative and linear in the nodes it visits.
"""

from __future__ import annotations

from . import _ast as A
from ._builtins import Builtin
from ._resolver import FnRef, Resolution

__all__ = ["children", "changed_in_place", "int_specializable", "may_allocate", "reaches_gc",
           "MAX_CLONED_NODES"]


def children(node: object) -> list[object]:
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


def changed_in_place(block: A.Block, res: Resolution) -> set[int]:
    """Bindings the block may mutate in place: assignment roots and method receivers.

    Nested closures are not searched: a binding of this block that a closure
    uses is ``captured`` (and treated as changed by every caller of this), and
    skipping them keeps the cost linear however deeply closures nest.
    """
    out: set[int] = set()
    stack: list[object] = [block]
    while stack:
        n = stack.pop()
        if isinstance(n, A.Closure):
            continue
        root: A.Expr | None = None
        if isinstance(n, A.Assign) and not isinstance(n.target, A.Var):
            root = _root(n.target)
        elif isinstance(n, A.MethodCall):
            root = _root(n.obj)
        elif isinstance(n, A.Call) and n.args and isinstance(res.calls.get(id(n)), Builtin):
            root = _root(n.args[0])
        if isinstance(root, A.Var) and id(root) in res.bindings:
            out.add(res.bindings[id(root)].id)
        stack.extend(children(n))
    return out


#: Largest function body (AST nodes) that gets an all-int clone.
MAX_CLONED_NODES = 25


def int_specializable(fn: A.FnDef, res: Resolution) -> bool:
    """Worth an all-int clone: parameters never reassigned, captured or changed in place.

    In the clone each parameter is known to hold an int for the whole body,
    so arithmetic and comparisons on them need no tag tests.
    """
    params = res.params[id(fn)]
    if not params or len(params) > 4 or any(b.captured for b in params):
        return False
    ids = {b.id for b in params}
    stack: list[object] = [fn.body]
    size = 0
    while stack:
        n = stack.pop()
        size += 1
        if size > MAX_CLONED_NODES:  # a clone doubles the code: only where calls dominate
            return False
        if isinstance(n, A.Assign) and isinstance(n.target, A.Var):
            b = res.bindings.get(id(n.target))
            if b is not None and b.id in ids:
                return False
        stack.extend(children(n))
    return not ids & changed_in_place(fn.body, res)  # small bodies only: walked after the size test


# nodes that never allocate by themselves (`+` may concatenate strings, so it is not here)
_NO_ALLOC = (A.Int, A.Bool, A.Float, A.Unit, A.Var, A.Unary, A.Logical, A.If, A.BlockExpr, A.Block,
             A.While, A.Loop, A.For, A.Range, A.Break, A.Continue, A.Let, A.ExprStmt, A.Assign)
_NO_ALLOC_OPS = frozenset({"-", "*", "/", "%", "&", "|", "^", "<<", ">>", "==", "!=", "<", "<=", ">", ">="})


def may_allocate(loop: A.Stmt) -> bool:
    """Whether running ``loop`` may allocate: anything but arithmetic other than ``+``,
    comparisons, assignments to variables, control flow and ``for`` over a range may
    (conservative). Linear in its nodes."""
    stack: list[object] = [loop]
    while stack:
        n = stack.pop()
        if isinstance(n, A.For) and not isinstance(n.iterable, A.Range):
            return True
        if isinstance(n, A.Binary):
            if n.op not in _NO_ALLOC_OPS:
                return True
        elif isinstance(n, A.Assign):
            if not isinstance(n.target, A.Var) or (n.op is not None and n.op not in _NO_ALLOC_OPS):
                return True
        elif not isinstance(n, _NO_ALLOC):
            return True
        stack.extend(children(n))
    return False


_CLOSURE = "<closure>"  # the call graph's node for "some closure"


def reaches_gc(functions: list[tuple[str, A.FnDef]], closures: list[A.Closure],
               res: Resolution) -> tuple[set[str], bool]:
    """The functions (by wasm name) a call to which may reach a collection, and whether
    a closure call may.

    A body reaches one if it has a loop (whose back-edge may poll) or calls
    something that reaches one: a function, or any closure (one node stands
    for all closures). Solved backwards over the call graph, so each node is
    visited once: linear in the program. Nested closures are separate
    bodies: creating one runs nothing.
    """
    callers: dict[str, set[str]] = {}
    may: set[str] = set()
    bodies = [(name, fn.body) for name, fn in functions] + [(_CLOSURE, c.body) for c in closures]
    for name, body in bodies:
        stack: list[object] = [body]
        while stack:
            n = stack.pop()
            if isinstance(n, A.Closure):
                continue
            if isinstance(n, (A.While, A.Loop, A.For)):
                may.add(name)
            elif isinstance(n, A.Call) and isinstance(target := res.calls.get(id(n)), FnRef):
                callers.setdefault(target.wasm_name, set()).add(name)
            elif isinstance(n, A.MethodCall) and not isinstance(res.methods.get(id(n)), Builtin):
                callers.setdefault(_CLOSURE, set()).add(name)
            stack.extend(children(n))
    work = list(may)
    while work:
        for caller in callers.get(work.pop(), ()):
            if caller not in may:
                may.add(caller)
                work.append(caller)
    return may - {_CLOSURE}, _CLOSURE in may
