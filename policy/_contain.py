"""Containment: whether one grant only allows what another allows (attenuation).

A delegated capability may only narrow its parent. That is decided here, on
the policy's own pattern semantics: both patterns are turned into automata
from the same :func:`~._glob.pieces` that :func:`~._glob.glob_regex` (the
regex every grant is enforced with) is rendered from, and
:func:`pattern_within` searches their product for a canonical path (the root
``""`` included; never an empty, ``.`` or ``..`` segment) that the child
matches and the parent does not. If there is none, the child is within the
parent; the answer is exact, not an approximation.

The search is bounded (:data:`CONTAINMENT_WORK` automaton states per check,
or per :class:`WorkBudget` shared by several checks): a pattern contrived to
make it explode is refused (``False``: attenuation fails closed), never
waited for.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from ._glob import compile_globs, pieces
from ._model import ACTION_ALIASES, Grant

__all__ = ["pattern_within", "grants_within", "WorkBudget", "CONTAINMENT_WORK"]

#: Automaton states one containment check may visit by default (about 0.1 s at worst).
CONTAINMENT_WORK = 200_000

# Edge labels: a literal character, _NSL (any one character but "/"), _ANY (any character)
# or None (an epsilon move). Literals are single characters, so neither sentinel is one.
_NSL = ""
_ANY = "**"
# Stands for every character neither pattern names (patterns never hold control characters).
_OTHER = "\0"
# Where a path is, for "canonical paths only": 0 the root "" (nothing read), 1 in a proper
# segment, 2 just after "/", 3 dead (not canonical, whatever follows), 4 in a segment "."
# so far, 5 in a segment ".." so far. A path may end in state 0 or 1 only.
_DEAD = 3
_ENDS = (0, 1)


class WorkBudget:
    """How many more automaton states containment checks may visit: pass one to several
    :func:`grants_within` calls to bound them together (a whole capability chain, say)."""

    __slots__ = ("left",)

    def __init__(self, work: int = CONTAINMENT_WORK) -> None:
        self.left = work


class _TooHard(Exception):
    """The search ran out of budget (caught here: never escapes the module)."""


@dataclass(frozen=True, slots=True)
class _Nfa:
    edges: tuple[tuple[tuple[str | None, int], ...], ...]
    accept: int
    literal: str | None  # the one path it matches, when it has no wildcard at all


@lru_cache(maxsize=1024)
def _nfa(pattern: str) -> _Nfa:
    """The automaton of ``pattern`` (Thompson construction over its pieces; ValueError if invalid)."""
    ps = pieces(pattern)
    edges: list[list[tuple[str | None, int]]] = [[]]

    def new() -> int:
        edges.append([])
        return len(edges) - 1

    def loop(state: int, label: str) -> int:  # a fresh state with a self-loop, reached by epsilon
        hub = new()
        edges[state].append((None, hub))
        edges[hub].append((label, hub))
        return hub

    state = 0
    for kind, ch in ps:
        if kind in ("lit", "one"):
            nxt = new()
            edges[state].append((ch if kind == "lit" else _NSL, nxt))
            state = nxt
        elif kind == "any":
            state = loop(state, _NSL)
        elif kind == "all":
            state = loop(state, _ANY)
        elif kind == "seg":
            nxt = new()
            edges[state].append((_NSL, nxt))
            edges[nxt].append((_NSL, nxt))
            state = nxt
        else:  # "lead": (SEGMENT "/")*, "trail": ("/" SEGMENT)*
            hub = new()
            edges[state].append((None, hub))
            first, second = new(), new()
            if kind == "lead":
                edges[hub].append((_NSL, first))
                edges[first].append((_NSL, first))
                edges[first].append(("/", second))
            else:
                edges[hub].append(("/", first))
                edges[first].append((_NSL, second))
                edges[second].append((_NSL, second))
            edges[second].append((None, hub))
            state = hub
    literal = "".join(ch for _, ch in ps) if all(kind == "lit" for kind, _ in ps) else None
    return _Nfa(tuple(tuple(e) for e in edges), state, literal)


def _closure(nfa: _Nfa, states: Iterable[int]) -> frozenset[int]:
    seen = set(states)
    todo = list(seen)
    while todo:
        for label, nxt in nfa.edges[todo.pop()]:
            if label is None and nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return frozenset(seen)


def _step(nfa: _Nfa, states: frozenset[int], ch: str) -> frozenset[int]:
    slash = ch == "/"
    out = [nxt for s in states for label, nxt in nfa.edges[s]
           if label in (ch, _ANY) or (label == _NSL and not slash)]
    return _closure(nfa, out) if out else frozenset()


def _where(d: int, ch: str) -> int:
    """The canonical-path state after reading ``ch`` in state ``d`` (see ``_DEAD``)."""
    if d == _DEAD:
        return _DEAD
    if ch == "/":
        return 2 if d == 1 else _DEAD
    if ch == ".":
        return 4 if d in (0, 2) else 5 if d == 4 else 1
    return 1


_known: dict[tuple[str, str], bool] = {}


def _within(child: str, parent: str, budget: WorkBudget) -> bool:
    if child == parent:
        return True
    c = _nfa(child)
    p = _nfa(parent)  # both parsed (and validated) before any shortcut
    if c.literal is not None:  # one path: decide with the very matcher that enforces grants
        return bool(compile_globs([parent])(c.literal))
    key = (child, parent)
    known = _known.get(key)
    if known is not None:
        return known
    alphabet = sorted({ch for nfa in (c, p) for edges in nfa.edges for ch, _ in edges
                       if ch is not None and len(ch) == 1} | {"/", ".", _OTHER})
    start = (_closure(c, [0]), 0, _closure(p, [0]))
    seen, todo, result = {start}, [start], True
    while todo and result:
        cs, d, ps = todo.pop()
        budget.left -= len(cs) + len(ps) + 1  # about what expanding this node costs
        if budget.left < 0:
            raise _TooHard
        if d in _ENDS and c.accept in cs and p.accept not in ps:
            result = False  # a canonical path the child matches and the parent does not
            break
        for ch in alphabet:
            nd = _where(d, ch)
            if nd == _DEAD:
                continue
            ncs = _step(c, cs, ch)
            if ncs and (node := (ncs, nd, _step(p, ps, ch))) not in seen:
                seen.add(node)
                todo.append(node)
    if len(_known) >= 4096:
        _known.clear()
    _known[key] = result
    return result


def pattern_within(child: str, parent: str, *, work: int = CONTAINMENT_WORK) -> bool:
    """Whether every canonical path (the root ``""`` included) that pattern ``child`` matches
    is matched by pattern ``parent``, exactly as grants are enforced (:func:`~._glob.glob_regex`,
    after the same Unicode normalisation). ``False`` when deciding would take more than
    ``work`` steps (only contrived patterns do): attenuation fails closed.

    Raises ``ValueError`` for an invalid pattern (see :func:`~._glob.glob_problem`).
    """
    try:
        return _within(child, parent, WorkBudget(work))
    except _TooHard:
        return False


def _expand(action: str) -> tuple[str, ...]:
    return ACTION_ALIASES.get(action, (action,))


def _covers(parent: Grant, action: str, pattern: str | None, budget: WorkBudget) -> bool:
    if action not in _expand(parent.action):
        return False
    if parent.pattern is None:
        return True  # every resource (and requests that name none)
    return pattern is not None and _within(pattern, parent.pattern, budget)


def grants_within(child: Iterable[Grant], parent: Iterable[Grant], *,
                  budget: WorkBudget | None = None) -> Grant | None:
    """The first ``child`` grant that the ``parent`` grants do not cover, or None if all are.

    A grant is covered when, for each action it names (``"*"`` and ``"fs.*"`` expanded), one
    parent grant names that action too with a pattern that contains its pattern
    (:func:`pattern_within`; no pattern means every resource and is covered only by no
    pattern). ``budget`` bounds the work of the whole call (default: a fresh
    :data:`CONTAINMENT_WORK`); past it the grant being checked counts as not covered.
    Raises ``ValueError`` for an invalid pattern.
    """
    budget = WorkBudget() if budget is None else budget
    parents = list(parent)
    for g in child:
        try:
            if not all(any(_covers(p, action, g.pattern, budget) for p in parents)
                       for action in _expand(g.action)):
                return g
        except _TooHard:
            return g
    return None
