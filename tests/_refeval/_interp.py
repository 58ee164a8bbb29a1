"""The reference evaluator's interpreter: scopes, places, functions, closures.

Scopes are dicts ``name -> cell`` (a cell is ``[value, is_const]``). A
closure captures the cells of the variables its body names, so it shares them
with the scope that created it (Rhai's capture); a script function sees only
its parameters (Rhai's functions are pure). Value semantics come from
:func:`~._collections.copy` at every store: ``let``, ``=``, a parameter, an
element or property, a loop variable, the array a ``for`` iterates.

Evaluation order (Rhai's, and peerbox's): the right side of an assignment and
a method's arguments are evaluated before the place they change. A mutating
builtin called as a method on a place (``a.push(x)``, ``m.k[0].remove(1)``,
``s.replace(a, b)``) changes the value in that place; on any other receiver it
changes a copy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._collections import (
    ARITY, MUTATING, Closure, RefError, Unspecified, builtin, check_size, copy, display, index_get,
    index_set, prop_get, prop_set, type_name,
)
from ._lexer import Unsupported
from ._semantics import binary, unary
from ._syntax import Function, is_place, parse_program

#: Deeper calls than this are out of the evaluator's scope (peerbox has its own stack limit).
MAX_CALL_DEPTH = 40


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _Return(Exception):
    def __init__(self, value: Any) -> None:
        super().__init__("return")
        self.value = value


def _names(node: Any, out: set[str]) -> set[str]:
    """Every variable name ``node`` reads or assigns (nested closures included)."""
    if isinstance(node, tuple):
        if len(node) == 2 and node[0] == "var" and isinstance(node[1], str):
            out.add(node[1])
        else:
            for x in node:
                _names(x, out)
    return out


def _want_bool(v: Any) -> bool:
    if type(v) is not bool:
        raise RefError("type_mismatch", f"expected a bool, found {type_name(v)}")
    return v


#: f(old value) -> (result, new value)
Updater = Callable[[Any], tuple[Any, Any]]


class Interp:
    def __init__(self, fns: dict[str, Function], max_steps: int) -> None:
        self.fns = fns
        self.scopes: list[dict[str, list[Any]]] = [{}]
        self.steps = 0
        self.max_steps = max_steps
        self.depth = 0

    def lookup(self, name: str) -> list[Any]:
        for s in reversed(self.scopes):
            if name in s:
                cell: list[Any] = s[name]
                return cell
        raise Unsupported(f"undefined variable {name}")

    def tick(self) -> None:
        self.steps += 1
        if self.steps > self.max_steps:
            raise Unsupported("too many steps")

    # -- statements ------------------------------------------------------------------

    def block(self, node: tuple[Any, ...], new_scope: bool = True) -> Any:
        _, stmts, tail = node
        if new_scope:
            self.scopes.append({})
        try:
            for s in stmts:
                self.stmt(s)
            return self.expr(tail) if tail is not None else None
        finally:
            if new_scope:
                self.scopes.pop()

    def stmt(self, s: tuple[Any, ...]) -> None:
        self.tick()
        k = s[0]
        if k == "let":
            _, name, value, is_const = s
            v = check_size(copy(self.expr(value))) if value is not None else None
            self.scopes[-1][name] = [v, is_const]
        elif k == "assign":
            _, place, op, value = s
            v = self.expr(value)
            if op == "=":
                self.update(place, lambda old: (None, check_size(copy(v))))
            else:
                self.update(place, lambda old: (None, check_size(copy(binary(op[:-1], old, v)))))
        elif k == "while":
            while _want_bool(self.expr(s[1])):
                self.tick()
                try:
                    self.block(s[2])
                except _Break:
                    break
                except _Continue:
                    continue
        elif k == "for":
            self.for_loop(s[1], s[2], s[3])
        elif k == "expr":
            self.expr(s[1])
        elif k == "try":
            try:
                self.block(s[1])
            except RefError:  # what ran before the error stays done, as in Rhai
                self.block(s[2])
        elif k == "break":
            raise _Break()
        elif k == "continue":
            raise _Continue()
        elif k == "return":
            raise _Return(self.expr(s[1]) if s[1] is not None else None)
        else:
            raise Unsupported(k)

    def for_loop(self, name: str, it: tuple[Any, ...], body: tuple[Any, ...]) -> None:
        items: Any
        if it[0] == "range":
            a, b = self.expr(it[1]), self.expr(it[2])
            if type(a) is not int or type(b) is not int:
                raise Unsupported("range over non-ints")
            items = range(a, b + 1 if it[3] else b)
        else:
            v = self.expr(it)
            if type(v) is list:
                items = copy(v)  # the loop runs over the array as it was
            elif type(v) is str:
                raise Unsupported("iterating a string (chars)")
            else:
                raise RefError("type_mismatch", f"cannot iterate over {type_name(v)}")
        for x in items:
            self.tick()
            self.scopes.append({name: [copy(x), False]})
            try:
                self.block(body)
            except _Break:
                break
            except _Continue:
                continue
            finally:
                self.scopes.pop()

    # -- places ----------------------------------------------------------------------

    def update(self, place: tuple[Any, ...], f: Updater) -> Any:
        """Apply ``f`` to the value in ``place`` (stored back); ``f``'s result."""
        k = place[0]
        if k == "var":
            cell = self.lookup(place[1])
            if cell[1]:
                raise Unsupported("changing a constant")
            res, cell[0] = f(cell[0])
            return res
        if k == "index":
            i = self.expr(place[2])

            def at_index(obj: Any) -> tuple[Any, Any]:
                res, new = f(index_get(obj, i))
                index_set(obj, i, new)
                return res, obj

            return self.update(place[1], at_index)
        if k == "prop":
            name = place[2]

            def at_prop(obj: Any) -> tuple[Any, Any]:
                res, new = f(prop_get(obj, name))
                prop_set(obj, name, new)
                return res, obj

            return self.update(place[1], at_prop)
        raise Unsupported("not a place")

    # -- calls ---------------------------------------------------------------------

    def _enter(self, scopes: list[dict[str, list[Any]]], body: tuple[Any, ...]) -> Any:
        self.tick()
        if self.depth >= MAX_CALL_DEPTH:
            raise Unsupported("calls nested too deep")
        saved, self.scopes = self.scopes, scopes
        self.depth += 1
        try:
            return self.block(body) if body[0] == "block" else self.expr(body)
        except _Return as r:
            return r.value
        except (_Break, _Continue):
            raise Unsupported("break outside a loop") from None
        finally:
            self.depth -= 1
            self.scopes = saved

    def call_fn(self, name: str, argv: list[Any]) -> Any:
        if name not in self.fns:
            if name == "len" and len(argv) == 1:
                return builtin("len", (argv[0],))[0]
            raise Unsupported(f"undefined function {name}")
        params, body = self.fns[name]
        if len(params) != len(argv):
            raise Unsupported("wrong argument count (a compile error)")
        return self._enter([{p: [copy(v), False] for p, v in zip(params, argv, strict=True)}], body)

    def call_closure(self, f: Any, argv: list[Any]) -> Any:
        if type(f) is not Closure:
            raise RefError("not_found", f"function not found: call({type_name(f)}, ...)")
        if len(f.params) != len(argv):
            raise RefError("arity", f"closure expects {len(f.params)} arguments, got {len(argv)}")
        params = {p: [copy(v), False] for p, v in zip(f.params, argv, strict=True)}
        return self._enter([dict(f.cells), params], f.body)

    def method(self, obj: tuple[Any, ...], name: str, args: tuple[Any, ...]) -> Any:
        if name == "call":
            f = self.expr(obj)
            return self.call_closure(f, [self.expr(a) for a in args])
        if name not in ARITY or len(args) + 1 not in ARITY[name]:
            raise Unsupported(f"method {name}/{len(args)}")
        argv = tuple(self.expr(a) for a in args)
        if name in MUTATING and is_place(obj):
            return self.update(obj, lambda old: builtin(name, (old, *argv)))
        return builtin(name, (copy(self.expr(obj)), *argv))[0]

    # -- expressions -------------------------------------------------------------------

    def expr(self, e: tuple[Any, ...]) -> Any:
        k = e[0]
        if k == "lit":
            return e[1]
        if k == "var":
            return self.lookup(e[1])[0]
        if k == "unary":
            return unary(e[1], self.expr(e[2]))
        if k == "bin":
            a = self.expr(e[2])
            b = self.expr(e[3])
            return binary(e[1], a, b)
        if k == "logic":
            a = _want_bool(self.expr(e[2]))
            if (e[1] == "&&" and not a) or (e[1] == "||" and a):
                return a
            return _want_bool(self.expr(e[3]))
        if k == "if":
            self.tick()
            if _want_bool(self.expr(e[1])):
                return self.block(e[2])
            if e[3] is None:
                return None
            return self.expr(e[3]) if e[3][0] == "if" else self.block(e[3])
        if k == "array":
            return check_size([copy(self.expr(x)) for x in e[1]])
        if k == "map":
            return check_size({key: copy(self.expr(x)) for key, x in e[1]})
        if k == "tmpl":
            return check_size("".join(p if isinstance(p, str) else display(self.expr(p)) for p in e[1]))
        if k == "index":
            obj = self.expr(e[1])
            return index_get(obj, self.expr(e[2]))
        if k == "prop":
            return prop_get(self.expr(e[1]), e[2])
        if k == "method":
            return self.method(e[1], e[2], e[3])
        if k == "call":
            return self.call_fn(e[1], [self.expr(a) for a in e[2]])
        if k == "closure":
            names = _names(e[2], set()) - set(e[1])
            cells = {}
            for n in names:
                try:
                    cells[n] = self.lookup(n)
                except Unsupported:
                    pass  # not a variable here: the body declares it (or it is undefined)
            return Closure(e[1], e[2], cells)
        if k == "blockexpr":
            return self.block(e[1])
        if k == "block":
            return self.block(e)
        raise Unsupported(k)


def _check_result(v: Any) -> Any:
    t = type(v)
    if t is Closure:
        raise Unspecified("a closure as the script's value")
    if t is list:
        for x in v:
            _check_result(x)
    elif t is dict:
        for x in v.values():
            _check_result(x)
    return v


def evaluate(src: str, *, max_steps: int = 100_000) -> Any:
    """Evaluate ``src``; its value, or ``("error", kind)`` for a runtime error."""
    tree, fns = parse_program(src)
    try:
        interp = Interp(fns, max_steps)
        try:
            value = interp.block(tree, new_scope=False)
        except _Return as r:
            value = r.value
        except (_Break, _Continue):
            raise Unsupported("break outside a loop") from None
        return _check_result(value)
    except RefError as e:
        return ("error", e.kind)
