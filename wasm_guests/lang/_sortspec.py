"""Comparators that only compare properties: ``a.sort(|x, y| ...)`` sorted by keys in rt.

A sort comparator such as ``|a, b| if a.score != b.score { b.score - a.score }
else if a.name < b.name { -1 } else { 1 }`` reads properties of its two
arguments and nothing else. :func:`comparator_spec` describes such a closure
as a short string that ``rt_sort_keyed`` (``rt/sort_keyed.c``) evaluates on
keys it read from each element once, instead of calling the closure for
every comparison. rt falls back to calling the closure whenever the answer
could differ (an element that is not a map, a missing key, floats, mixed
kinds, a difference that could overflow), so the language does not change.

The recognised body: a block with no statements whose value is a *tree*:

- an integer constant (``0``, ``-1``, ``1``...);
- ``P - Q`` where ``P`` and ``Q`` are properties ``x.name`` of a parameter;
- ``if P op Q { tree } else { tree }`` (``else if`` chains too) with ``op``
  one of ``< > <= >= == !=``.

The spec grammar is documented in ``rt/sort_keyed.c``.
"""

from __future__ import annotations

from . import _ast as A

__all__ = ["comparator_spec", "MAX_KEYS", "MAX_NODES"]

MAX_KEYS = 3     # rt's limits (sort_keyed.c)
MAX_NODES = 64
_OPS = {"<": "<", ">": ">", "<=": "l", ">=": "g", "==": "=", "!=": "!"}
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


class _NotAKeyComparator(Exception):
    """The closure is not of the recognised shape (internal to this module)."""


class _Builder:
    def __init__(self, params: tuple[str, str]) -> None:
        self.params = params
        self.keys: list[str] = []
        self.nodes = 0
        self.out: list[str] = []

    def key(self, e: A.Expr) -> str:
        """``key side`` of a property ``x.name`` of a parameter."""
        if not (isinstance(e, A.Prop) and isinstance(e.obj, A.Var) and e.obj.name in self.params):
            raise _NotAKeyComparator
        name = e.name
        size = len(name.encode("utf-8", "surrogatepass"))
        if not 1 <= size <= 127:
            raise _NotAKeyComparator
        if name not in self.keys:
            if len(self.keys) == MAX_KEYS:
                raise _NotAKeyComparator
            self.keys.append(name)
        return f"{self.keys.index(name)}{'ab'[self.params.index(e.obj.name)]}"

    def tail(self, b: A.Block) -> A.Expr:
        if b.stmts or b.tail is None:
            raise _NotAKeyComparator
        return b.tail

    def tree(self, e: A.Expr) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _NotAKeyComparator
        while isinstance(e, A.BlockExpr):
            e = self.tail(e.block)
        const = _int_const(e)
        if const is not None:
            self.out.append(f"k{const};")
        elif isinstance(e, A.Binary) and e.op == "-":
            self.out.append("d" + self.key(e.left) + self.key(e.right))
        elif isinstance(e, A.If) and e.else_ is not None:
            c = e.cond
            if not (isinstance(c, A.Binary) and c.op in _OPS):
                raise _NotAKeyComparator
            self.out.append("?" + _OPS[c.op] + self.key(c.left) + self.key(c.right))
            self.tree(self.tail(e.then))
            self.tree(e.else_ if isinstance(e.else_, A.If) else self.tail(e.else_))
        else:
            raise _NotAKeyComparator


def _int_const(e: A.Expr) -> int | None:
    if isinstance(e, A.Int):
        return e.value
    if isinstance(e, A.Unary) and e.op == "-" and isinstance(e.operand, A.Int):
        v = -e.operand.value
        return v if _I64_MIN <= v <= _I64_MAX else None
    return None


def comparator_spec(closure: A.Closure) -> str | None:
    """The spec string ``rt_sort_keyed`` reads for a two-parameter comparator closure
    of the recognised shape, or None (then the sort calls the closure). Raises nothing."""
    if len(closure.params) != 2 or closure.params[0] == closure.params[1]:
        return None
    b = _Builder((closure.params[0], closure.params[1]))
    try:
        b.tree(b.tail(closure.body))
    except _NotAKeyComparator:
        return None
    head = str(len(b.keys)) + "".join(chr(len(k.encode("utf-8", "surrogatepass"))) + k for k in b.keys)
    return head + "".join(b.out)
