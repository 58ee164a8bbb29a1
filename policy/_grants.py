"""Capability grants: parsing them, and compiling them to what :meth:`Policy.decide` checks.

A grant is written ``ACTION`` or ``ACTION:PATTERN`` (``"fs.write:inbox/**"``,
``"exec"``). Two grammars, one meaning:

* :func:`parse_grant` takes anything a policy can say: an action of
  :data:`~._model.ACTIONS` or a wildcard (``"*"``, ``"fs.*"``, ``"logic.*"``),
  with no pattern meaning every resource;
* :func:`parse_capability_grant` is what a capability token may carry: one
  concrete action of :data:`CAPABILITY_ACTIONS`, ``exec`` alone, every other
  action with a pattern (so a token always says which resources it opens).

Patterns are normalised (:func:`~._glob.normalize`) as request paths are,
and are matched by :class:`GrantSet` with the policy's own compiled globs;
:mod:`._contain` decides whether one set of grants is within another on the
same semantics.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

from ._glob import Matcher, compile_globs, glob_problem, normalize
from ._model import ACTION_ALIASES, ACTIONS, LEGACY_WRITE, Decision, Grant, PolicyError

__all__ = ["GrantSet", "compile_grants", "parse_grant", "parse_capability_grant", "CAPABILITY_ACTIONS",
           "expand_legacy"]

#: The actions a capability token may grant: every action but ``delegate`` (issuing roots is
#: for those the subject's policy names), and no wildcards.
CAPABILITY_ACTIONS: tuple[str, ...] = tuple(a for a in ACTIONS if a != "delegate")


class GrantSet:
    """Compiled capability grants: what they allow, by action. Made by :func:`compile_grants`.

    Raises :class:`PolicyError` for an invalid grant."""

    __slots__ = ("grants", "_by_action")

    def __init__(self, grants: Sequence[Grant]) -> None:
        self.grants: tuple[Grant, ...] = tuple(grants)
        by_action: dict[str, list[tuple[Matcher | None, Decision]]] = {}
        for g in self.grants:
            problem = _grant_problem(g)
            if problem is not None:
                raise PolicyError.one("<capability>", None, f"grant {str(g)!r}: {problem}")
            matcher = compile_globs([g.pattern]) if g.pattern is not None else None
            decision = Decision(True, None, f"allowed by capability grant {g}")
            for action in ACTION_ALIASES.get(g.action, (g.action,)):
                by_action.setdefault(action, []).append((matcher, decision))
        self._by_action = {a: tuple(v) for a, v in by_action.items()}

    def match(self, action: str, resource: str | None) -> Decision | None:
        """The allow decision of the first grant covering ``action`` on ``resource`` (canonical
        and normalised, as :meth:`Policy.decide` passes it), or None."""
        entries = self._by_action.get(action)
        if entries is None:
            return None
        for matcher, decision in entries:
            if matcher is None or (resource is not None and matcher(resource)):
                return decision
        return None


def _grant_problem(g: Grant) -> str | None:
    if g.action not in ACTIONS and g.action not in ACTION_ALIASES:
        return f"unknown action {g.action!r}"
    if g.pattern is None:
        return None
    if g.action in ("exec", "delegate"):
        return f"{g.action} names no resource: write just '{g.action}'"
    return glob_problem(g.pattern)


def _split(text: object) -> Grant:
    if not isinstance(text, str):
        raise PolicyError.one("<capability>", None, f"a grant is a string, not {type(text).__name__}")
    action, sep, pattern = text.partition(":")
    return Grant(action, normalize(pattern) if sep else None)


def parse_grant(text: str) -> Grant:
    """``"fs.write:inbox/**"`` -> ``Grant("fs.write", "inbox/**")``; ``"exec"`` -> ``Grant("exec")``;
    the pattern normalised as request paths are.

    Raises :class:`PolicyError` for an unknown action or a bad pattern.
    """
    grant = _split(text)
    problem = _grant_problem(grant)
    if problem is not None:
        raise PolicyError.one("<capability>", None, f"grant {text!r}: {problem}")
    return grant


def parse_capability_grant(text: object) -> Grant:
    """A grant as a capability token may carry it: ``"exec"`` or ``"ACTION:PATTERN"`` with
    ACTION one of :data:`CAPABILITY_ACTIONS`; the pattern normalised as request paths are.

    Raises :class:`PolicyError` saying what is wrong (not a string, an unknown or wildcard
    action, ``delegate``, a resource on ``exec``, a missing or bad pattern).
    """
    grant = _split(text)
    action = grant.action
    problem: str | None
    if action not in CAPABILITY_ACTIONS:
        problem = (f"unknown action {action!r} (one of {', '.join(CAPABILITY_ACTIONS)}; a capability "
                   "names each action, without wildcards or 'delegate')")
    elif action == "exec":
        problem = "'exec' takes no resource" if grant.pattern is not None else None
    elif grant.pattern is None:
        problem = f"it needs a resource: {action}:PATTERN (e.g. {action}:inbox/**)"
    else:
        problem = glob_problem(grant.pattern)
    if problem is not None:
        raise PolicyError.one("<capability>", None, f"grant {text!r}: {problem}")
    return grant


@functools.lru_cache(maxsize=256)
def _compile_cached(grants: tuple[Grant, ...]) -> GrantSet:
    return GrantSet(grants)


def compile_grants(grants: Sequence[Grant]) -> GrantSet:
    """Compile (and cache) ``grants``. Raises :class:`PolicyError` for an invalid grant."""
    return _compile_cached(tuple(grants))


def expand_legacy(grants: Iterable[Grant]) -> tuple[Grant, ...]:
    """What version 1 grants mean today: each ``fs.write`` grant becomes one grant per action of
    :data:`~._model.LEGACY_WRITE` on the same pattern (``fs.write:P`` -> ``fs.write:P``,
    ``fs.append:P``, ``fs.mkdir:P``); every other grant stays. Order kept, duplicates dropped.
    Raises nothing (the grants are not validated here)."""
    out: dict[Grant, None] = {}
    for g in grants:
        if g.action == "fs.write":
            for action in LEGACY_WRITE:
                out.setdefault(Grant(action, g.pattern), None)
        else:
            out.setdefault(g, None)
    return tuple(out)
