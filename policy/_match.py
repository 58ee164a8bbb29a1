"""The compiled matcher: :class:`Policy` and its :meth:`Policy.decide`.

Compilation indexes the rules by action (each action's deny rules, then its
allow rules, in file order), expands groups into one set of ids per rule,
turns each rule's resource patterns into one compiled regex, and builds every
:class:`Decision` a rule can produce up front. A decision is then a couple of
dict lookups and a short loop with no allocation: a few µs at most for a
realistic policy (``bench/policy_bench.py``).

Semantics (as in Cedar): deny by default; a request is allowed when an
unexpired allow rule (or a capability grant) matches it and no unexpired
deny rule does. A rule matches when the caller is among its ``who``, the
action among its ``actions`` and, if it lists ``resources``, the request
names a resource one of them matches (so a rule with resources never
matches ``exec``, which names none). The decision names the first deny rule
that matched (file order), else the first allow rule.

A decision travels to the remote caller (signed denials, errors a script can
catch), so it names its rule by the file's name relative to the peer
(``policy.toml:26``, :func:`shown_name`), never by a host path;
:attr:`Policy.file` keeps the full path for the local operator. Resources
that are not ASCII are normalised (:data:`~._glob.NORMAL_FORM`) before
matching, as the patterns were at load time.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence

from ._glob import Matcher, compile_globs, is_canonical, normalize
from ._grants import GrantSet, compile_grants
from ._model import (ACTIONS, Decision, DenialCause, Grant, PolicyError, PolicyLimits, Problem, RateLimit,
                     Request, RuleRef, shown_name)
from ._parse import PolicySpec, RuleSpec, parse_text, read_policy_file

__all__ = ["Policy", "load", "loads", "NOTHING_ALLOWED", "POLICY_UNAVAILABLE"]

#: The reason of a default deny.
NOTHING_ALLOWED = "no rule allowed it"
#: The reason a peer whose policy does not load gives its callers (no path, no excerpt of the file).
POLICY_UNAVAILABLE = "the target's policy could not be loaded"
_INF = float("inf")
_DEFAULT_DENY = Decision(False, None, NOTHING_ALLOWED, DenialCause.NO_RULE)


class _Rule:
    """One rule, compiled (slots for fast attribute access in the hot loop)."""

    __slots__ = ("any", "owner", "ids", "res", "expires", "decision", "limits", "spec", "rate")

    def __init__(self, spec: RuleSpec, name: str) -> None:
        self.spec = spec
        self.any = spec.who.any
        self.owner = spec.who.owner
        self.ids = spec.who.ids
        self.res: Matcher | None = compile_globs(spec.resources) if spec.resources is not None else None
        self.expires = spec.expires if spec.expires is not None else _INF
        self.limits = spec.limits
        ref = RuleRef(file=name, line=spec.line, effect=spec.effect, index=spec.index)
        allow = spec.effect == "allow"
        verb = "allowed" if allow else "denied"
        self.decision = Decision(allow, ref, f"{verb} by the {spec.effect} rule at {ref}",
                                 None if allow else DenialCause.RULE)
        lim = spec.limits
        self.rate: RateLimit | None = None
        if lim is not None and lim.calls_per_minute is not None:
            burst = lim.burst if lim.burst is not None else max(1, math.ceil(lim.calls_per_minute))
            self.rate = RateLimit(key=f"{spec.index}@{spec.line}", rule=ref, per_minute=lim.calls_per_minute,
                                  burst=burst)


class Policy:
    """A compiled policy: :meth:`decide` answers requests, :meth:`limits_for` caps runs and
    callers, :meth:`rates_for` gives a caller's rate limits, :meth:`rules_for` who a rule lets
    do what (for listings).

    Make one with :func:`load` (a file), :func:`loads` (text) or
    :meth:`deny_all` (a peer whose policy is broken). Immutable, thread-safe.
    ``file``: where it came from (for the local operator); ``name``: its name as decisions show
    it (:func:`shown_name`: the base name, never a host path); ``rules``: the validated rules in
    file order; ``warnings``: what loaded but deserves a look (patterns the Unicode
    normalisation changed); ``error``: why everything is refused (``deny_all`` only), else None;
    ``version``: the file's ``version`` (its rules are already expanded to its meaning);
    ``load_error``: the :class:`PolicyError` that made it a ``deny_all`` (file, line, problem: for
    the local operator, never sent to a caller), else None.
    """

    __slots__ = ("file", "name", "rules", "groups", "warnings", "error", "version", "_deny", "_allow",
                 "_broken", "load_error")

    def __init__(self, spec: PolicySpec) -> None:
        self.file: str = spec.file
        self.version: int = spec.version
        self.name: str = shown_name(spec.file)
        self.rules: tuple[RuleSpec, ...] = spec.rules
        self.groups: dict[str, tuple[str, ...]] = spec.groups
        self.warnings: tuple[Problem, ...] = spec.warnings
        self.error: str | None = None
        self.load_error: PolicyError | None = None
        self._broken: Decision | None = None
        compiled = [_Rule(r, self.name) for r in spec.rules]
        self._deny: dict[str, tuple[_Rule, ...]] = {}
        self._allow: dict[str, tuple[_Rule, ...]] = {}
        for action in ACTIONS:
            self._deny[action] = tuple(r for r in compiled
                                       if r.spec.effect == "deny" and action in r.spec.actions)
            self._allow[action] = tuple(r for r in compiled
                                        if r.spec.effect == "allow" and action in r.spec.actions)

    @classmethod
    def deny_all(cls, reason: str = POLICY_UNAVAILABLE, file: str = "<policy>", *,
                 error: PolicyError | None = None) -> Policy:
        """A policy that refuses every request with ``reason`` (cause ``policy_unavailable``);
        ``error`` (kept as :attr:`load_error`) is why the real one did not load. The reason
        reaches remote callers: by default :data:`POLICY_UNAVAILABLE`, which names no file."""
        policy = cls(PolicySpec(file=file, rules=(), groups={}))
        policy.error = reason
        policy.load_error = error
        policy._broken = Decision(False, None, reason, DenialCause.POLICY_UNAVAILABLE)
        return policy

    def __repr__(self) -> str:
        state = f"broken: {self.error}" if self.error is not None else f"{len(self.rules)} rules"
        return f"Policy({self.file!r}, {state})"

    def decide(self, request: Request, grants: GrantSet | Sequence[Grant] | None = None) -> Decision:
        """Decide ``request``; ``grants`` (from a verified capability chain) allow what they name
        but never override a deny rule. Never raises for any request: an unknown action or a
        resource that is not a canonical path is denied with the reason."""
        if self._broken is not None:
            return self._broken
        action = request.action
        denies = self._deny.get(action)
        if denies is None:
            return Decision(False, None, "unknown action", DenialCause.UNKNOWN_ACTION)
        resource = request.resource
        if resource is not None:
            if not resource.isascii():
                resource = normalize(resource)
            if not is_canonical(resource):
                return Decision(False, None, "not a canonical relative path",
                                DenialCause.BAD_RESOURCE)
        now = request.now
        if now is None:
            now = request.when()
        did = request.caller_did
        name = request.caller_name
        is_owner = did == request.owner_did
        ids: frozenset[str]
        for rules in (denies, self._allow[action]):  # a matching deny beats any allow
            for r in rules:
                if r.expires <= now:
                    continue
                ids = r.ids
                if not (r.any or (is_owner and r.owner) or did in ids or (name is not None and name in ids)):
                    continue
                if r.res is not None and (resource is None or not r.res(resource)):
                    continue
                return r.decision
        if grants:
            gs = grants if isinstance(grants, GrantSet) else compile_grants(grants)
            decision = gs.match(action, resource)
            if decision is not None:
                return decision
        return _DEFAULT_DENY

    def matching_rules(self, request: Request) -> list[RuleSpec]:
        """Every unexpired rule (deny and allow, file order) that matches ``request`` (for explain)."""
        if self._broken is not None or request.action not in self._deny:
            return []
        resource = request.resource
        if resource is not None:
            resource = normalize(resource)
            if not is_canonical(resource):
                return []
        now = request.when()
        probe = Request(request.caller_did, request.caller_name, request.action, resource,
                        request.owner_did, now)
        out = [r for r in self._deny[request.action] + self._allow[request.action]
               if _matches(r, probe, now)]
        return sorted((r.spec for r in out), key=lambda s: s.index)

    def _limited(self, request: Request) -> tuple[list[_Rule], Request, float]:
        """The unexpired allow rules matching ``request`` as a run or a call (an action other than
        ``call`` is taken to be ``exec``, with no resource), the probe used, and its time."""
        now = request.when()
        if request.action == "call":
            resource = request.resource
            if resource is not None and not resource.isascii():
                resource = normalize(resource)
            probe = Request(request.caller_did, request.caller_name, "call", resource, request.owner_did, now)
        else:
            probe = Request(request.caller_did, request.caller_name, "exec", None, request.owner_did, now)
        if self._broken is not None:
            return [], probe, now
        return [r for r in self._allow[probe.action] if _matches(r, probe, now)], probe, now

    def limits_for(self, request: Request) -> PolicyLimits | None:
        """The tightest limits among the unexpired allow rules that match ``request`` as ``exec``
        (any action but ``call`` is taken to be ``exec``) or as ``call`` of its resource:
        field-by-field minimum, None fields uncapped. None when no allow rule matches (the
        request is allowed, if at all, by a capability grant). Call it after :meth:`decide`
        allowed the request; it does not look at deny rules."""
        found: PolicyLimits | None = None
        for r in self._limited(request)[0]:
            lim = r.limits if r.limits is not None else PolicyLimits()
            found = lim if found is None else found.tighten(lim)
        return found

    def rates_for(self, request: Request) -> tuple[RateLimit, ...]:
        """The rate limits on ``request``'s caller: one per unexpired allow rule that matches it
        (as :meth:`limits_for` matches) and sets ``calls_per_minute``, in file order. A request
        must stay within every one of them. Empty when none does (no rate limit)."""
        return tuple(r.rate for r in self._limited(request)[0] if r.rate is not None)

    def row_filters(self, request: Request) -> tuple[dict[str, object], ...] | None:
        """The rows a ``db.*`` request may touch, for a request :meth:`decide` allowed: None for
        every row (an unexpired allow rule without a row filter matches it, or only a capability
        grant allowed it), else one field -> value map per matching rule's filter (``"$caller"``
        resolved to the caller's did); a record is allowed when it matches any of them."""
        if self._broken is not None or request.action not in self._allow:
            return None
        resource = request.resource
        if resource is not None and not resource.isascii():
            resource = normalize(resource)
        now = request.when()
        probe = Request(request.caller_did, request.caller_name, request.action, resource,
                        request.owner_did, now)
        out: list[dict[str, object]] = []
        for r in self._allow[request.action]:
            if _matches(r, probe, now):
                if r.spec.where is None:
                    return None
                out.append(r.spec.where.resolve(request.caller_did))
        return tuple(out) if out else None

    def rules_for(self, action: str, resource: str | None, now: float | None = None) -> list[RuleSpec]:
        """Every unexpired rule, allow or deny, in file order, that names ``action`` and either
        lists no resources or has one matching ``resource`` — whoever it is for (``who`` is not
        looked at). What ``peerbox logic list`` shows as who may call a function. Empty for an
        unknown action or a broken policy."""
        if self._broken is not None or action not in self._deny:
            return []
        when = time.time() if now is None else now
        if resource is not None:
            resource = normalize(resource)
            if not is_canonical(resource):
                return []
        out = [r for r in self._deny[action] + self._allow[action]
               if r.expires > when and (r.res is None or (resource is not None and bool(r.res(resource))))]
        return sorted((r.spec for r in out), key=lambda s: s.index)


def _matches(r: _Rule, request: Request, now: float) -> bool:
    if r.expires <= now:
        return False
    did, name = request.caller_did, request.caller_name
    if not (r.any or (r.owner and did == request.owner_did) or did in r.ids
            or (name is not None and name in r.ids)):
        return False
    resource = request.resource
    return r.res is None or (resource is not None and bool(r.res(resource)))


def loads(text: str, file: str = "<policy>") -> Policy:
    """Compile the text of a policy file. Raises :class:`PolicyError` (every problem, with lines)."""
    return Policy(parse_text(text, file))


def load(path: str | os.PathLike[str]) -> Policy:
    """Read and compile a policy file (never through a symlink). Raises :class:`PolicyError`
    for a missing, unreadable, oversized, non-UTF-8, invalid TOML or invalid policy file."""
    text, _ = read_policy_file(path)
    return loads(text, os.fspath(path))
