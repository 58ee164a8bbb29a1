"""The policy vocabulary and the value types a decision is made of.

Actions are ``exec`` (run a script at all), ``call`` (call one of the
peer's published functions, checked with its ``MODULE::FUNCTION`` name),
``fs.read``, ``fs.write`` (create or replace a file), ``fs.append`` (append
to a file), ``fs.mkdir`` (create directories), ``fs.delete``, ``fs.list``
(host calls on the peer's storage, checked at every call with the path it
names), ``module.import`` (checked with the
module's name: the bare name, and a layer-qualified one such as
``builtin:notes`` as written too), ``delegate`` (issue root capabilities)
``logic.read`` and ``logic.write`` (read, or install a version of, one of
the peer's logic modules remotely, checked with the module's name).
``"*"`` in a rule means all of them but the two ``logic`` ones, which a rule
must name (a peer's code is never shown or changed by a wildcard written for
something else; ``"logic.*"`` means both); ``"fs.*"`` means the six ``fs``
ones. ``db.read``, ``db.write`` and ``db.delete`` (the ``db::`` host calls on
the peer's records, checked with the collection's name; ``"db.*"`` means
the three) may be narrowed to some records by a rule's row filter
(:class:`RowFilter`). In a version 1 policy (or capability token) ``fs.write`` still means
what it meant before ``fs.append`` and ``fs.mkdir`` existed: all three
(:data:`LEGACY_WRITE`). Which action each host call needs is a column of the host-call
table (``peerbox.hostcalls.HOST_CALLS``, whose actions are names defined
here): an allowed ``exec`` grants no file access by itself.

Everything here is immutable and cheap: :class:`Decision` objects are built
once per rule when a policy is compiled, so deciding allocates nothing.
"""

from __future__ import annotations

import enum
import os
import time
from dataclasses import dataclass
from typing import Any, TypeVar

from peerbox._errors import Error

__all__ = [
    "ACTIONS",
    "FS_ACTIONS",
    "DB_ACTIONS",
    "CALLER",
    "RowFilter",
    "RESOURCE_ACTIONS",
    "ACTION_ALIASES",
    "LEGACY_WRITE",
    "POLICY_VERSIONS",
    "PolicyError",
    "Problem",
    "RuleRef",
    "Request",
    "Decision",
    "DenialCause",
    "Denied",
    "Grant",
    "PolicyLimits",
    "RateLimit",
    "shown_name",
    "show_resource",
]

_N = TypeVar("_N", int, float)

#: Every action a policy rule can name.
#: ``delegate``: the caller may issue root capabilities for this peer's resources.
#: ``logic.read``: the caller may list and read the peer's logic modules and their history remotely.
#: ``logic.write``: the caller may install versions of the peer's logic modules (``peerbox logic push``).
#: ``call``: the caller may call a published function (resource ``MODULE::FUNCTION``).
ACTIONS: tuple[str, ...] = (
    "exec", "call", "fs.read", "fs.write", "fs.append", "fs.mkdir", "fs.delete", "fs.list", "module.import",
    "delegate", "logic.read", "logic.write", "db.read", "db.write", "db.delete",
)
#: The actions on the peer's storage (what ``"fs.*"`` means).
FS_ACTIONS: tuple[str, ...] = ("fs.read", "fs.write", "fs.append", "fs.mkdir", "fs.delete", "fs.list")
#: The actions on the peer's records (what ``"db.*"`` means), checked with the collection's name:
#: ``db.read`` (``db::get``, ``db::query``, ``db::count``), ``db.write`` (``db::insert``,
#: ``db::update``), ``db.delete``. A rule allowing them may carry a row filter (:class:`RowFilter`).
DB_ACTIONS: tuple[str, ...] = ("db.read", "db.write", "db.delete")
#: The actions whose requests name a resource (a path, a module name, ``MODULE::FUNCTION`` or a
#: collection); ``exec`` and ``delegate`` name none.
RESOURCE_ACTIONS: frozenset[str] = frozenset(
    FS_ACTIONS + DB_ACTIONS + ("call", "module.import", "logic.read", "logic.write"))
#: What ``fs.write`` means in a version 1 policy or capability token: it was written before
#: appending and creating directories were actions of their own, and keeps allowing them.
LEGACY_WRITE: tuple[str, ...] = ("fs.write", "fs.append", "fs.mkdir")
#: The policy file versions this engine reads (``version = N``): 2 is current; in 1 ``fs.write``
#: means :data:`LEGACY_WRITE`.
POLICY_VERSIONS: tuple[int, ...] = (1, 2)
#: The actions on the peer's logic (what ``"logic.*"`` means); ``"*"`` includes neither.
LOGIC_ACTIONS: tuple[str, ...] = ("logic.read", "logic.write")
#: Wildcard action names and what they expand to.
ACTION_ALIASES: dict[str, tuple[str, ...]] = {
    "*": tuple(a for a in ACTIONS if a not in LOGIC_ACTIONS), "fs.*": FS_ACTIONS, "logic.*": LOGIC_ACTIONS,
    "db.*": DB_ACTIONS}
#: What a row filter's value may say instead of a literal: the caller's did.
CALLER = "$caller"


@dataclass(frozen=True, slots=True)
class RowFilter:
    """A rule's row filter (``where = { from = "$caller" }``): the records it allows are those
    whose every named field equals its value; ``"$caller"`` stands for the caller's did.
    ``fields``: (field, value) pairs in file order."""

    fields: tuple[tuple[str, str | int | bool], ...]

    def resolve(self, caller_did: str) -> dict[str, object]:
        """The filter for one caller: ``"$caller"`` replaced by ``caller_did``."""
        return {k: caller_did if v == CALLER else v for k, v in self.fields}

    def __str__(self) -> str:
        return " and ".join(f"{k} = {v if v == CALLER else repr(v)}" for k, v in self.fields)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a policy file: where (``file``, ``line`` or None) and what."""

    file: str
    line: int | None
    problem: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.problem}" if self.line else f"{self.file}: {self.problem}"


class PolicyError(Error):
    """A policy (or a capability grant) that does not load.

    ``file``, ``line`` (None when unknown) and ``problem`` describe the first
    problem; ``problems`` holds every one found (validation goes on after the
    first, so ``peerbox policy check`` can list them all). ``str()`` is one
    ``file:line: problem`` per line. CLI exit code 2, like a usage error:
    the fix is in a file the user wrote.
    """

    exit_code = 2

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        if not problems:
            raise ValueError("PolicyError needs at least one problem")
        self.problems: tuple[Problem, ...] = tuple(problems)
        first = self.problems[0]
        self.file: str = first.file
        self.line: int | None = first.line
        self.problem: str = first.problem
        super().__init__("\n".join(str(p) for p in self.problems))

    @classmethod
    def one(cls, file: str, line: int | None, problem: str) -> PolicyError:
        """A PolicyError with a single problem."""
        return cls([Problem(file, line, problem)])

    def shown(self) -> str:
        """The problems as ``str()`` gives them, but each file named by :func:`shown_name`
        (what a remote caller may be told: no host path)."""
        return "\n".join(str(Problem(shown_name(p.file), p.line, p.problem)) for p in self.problems)


def shown_name(file: str) -> str:
    """How decisions and remote errors name a policy file: its name relative to the peer's
    directory (the base name: ``/srv/peers/bob/policy.toml`` -> ``policy.toml``), never a
    host path. Names that are no path (``<policy>``) stay as they are."""
    return os.path.basename(file) or file


@dataclass(frozen=True, slots=True)
class RuleRef:
    """Which rule decided: its ``file`` (the policy file's name relative to the peer, as
    :func:`shown_name` gives it: decisions reach remote callers), the ``line`` of its
    ``[[rule]]`` header (None if unknown), its ``effect`` and its position ``index`` (0-based)
    in the file."""

    file: str
    line: int | None
    effect: str
    index: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else f"{self.file} (rule #{self.index + 1})"


@dataclass(slots=True)
class Request:
    """What is asked: ``caller_did`` (authenticated), ``caller_name`` (its local peer name, if
    it has one under the root), ``action``, ``resource`` (canonical relative path for ``fs.*``
    — ``""`` is the storage root — module name for ``module.import`` and ``logic.*``,
    ``MODULE::FUNCTION`` for ``call``; None for ``exec``),
    ``owner_did`` (the peer whose policy this is) and ``now`` (Unix seconds; None: the clock).

    Not frozen, for a cheap constructor (a request is built per host call); treat it as
    immutable.
    """

    caller_did: str
    caller_name: str | None
    action: str
    resource: str | None
    owner_did: str
    now: float | None = None

    def when(self) -> float:
        """``now``, or the current time when it is None."""
        return time.time() if self.now is None else self.now


class DenialCause(enum.StrEnum):
    """Why a request was denied, typed (what a reply's ``error.cause`` says, so no client parses text).

    ``rule``: a deny rule matched (:attr:`Denied.rule` names it); ``no_rule``: no rule (and no
    capability grant) allowed it; ``unknown_action``: the action is not one of :data:`ACTIONS`;
    ``bad_resource``: the resource is not a canonical relative path; ``policy_unavailable``: the
    target's policy does not load (it refuses everything); ``capability``: a capability token the
    request carries was refused (expired, revoked, widened...); ``not_permitted``: the request is
    refused by peerbox's own rule, not the policy (only an issuer or the subject may revoke a token).
    """

    RULE = "rule"
    NO_RULE = "no_rule"
    UNKNOWN_ACTION = "unknown_action"
    BAD_RESOURCE = "bad_resource"
    POLICY_UNAVAILABLE = "policy_unavailable"
    CAPABILITY = "capability"
    NOT_PERMITTED = "not_permitted"


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer: ``allowed``, the ``rule`` that decided (None for the default deny, a
    capability grant or a broken policy), a human ``reason`` (``"denied by the deny rule at
    policy.toml:8"``, ``"no rule allowed it"``...) and, for a denial, its ``cause``
    (None when allowed). :meth:`denial` makes the :class:`Denied` that reports it."""

    allowed: bool
    rule: RuleRef | None
    reason: str
    cause: DenialCause | None = None

    def __bool__(self) -> bool:
        return self.allowed

    def denial(self, action: str, resource: str | None) -> Denied:
        """This denial of ``action`` on ``resource`` (None for ``exec``, ``delegate``), as one
        :class:`Denied`. Raises ``ValueError`` for an allowing decision (a bug of the caller)."""
        if self.allowed:
            raise ValueError("an allowing decision is no denial")
        return Denied(action, resource, self.cause or DenialCause.NO_RULE, self.reason, self.rule)


#: Resources longer than this are shortened in messages.
_MAX_SHOWN = 120


def show_resource(resource: str) -> str:
    """``resource`` quoted for a message: Python ``repr`` (control characters escaped), shortened."""
    if len(resource) > _MAX_SHOWN:
        resource = resource[:_MAX_SHOWN] + "…"
    return repr(resource)


@dataclass(frozen=True, slots=True)
class Denied:
    """One denial, in the one shape every producer shows it (a signed reply's message and fields,
    ``peerbox send/call/handle`` stderr, ``policy explain``, a script's ``e.message``).

    ``action`` (``exec``, ``call``, ``fs.read``, ``logic.write``...), ``resource`` (None when
    the action names none), ``cause`` (:class:`DenialCause`), and EITHER the deciding ``rule``
    (a deny rule: ``str()`` says "denied by the deny rule at policy.toml:21") OR, when no rule
    decided, ``reason`` ("no rule allowed it", "the capability expired at ...") — never both.
    ``capability`` is the :attr:`peerbox.wire.CapabilityError.kind` of a refused capability
    (``expired``, ``revoked``...), else None.
    """

    action: str
    resource: str | None
    cause: DenialCause
    reason: str
    rule: RuleRef | None = None
    capability: str | None = None

    @property
    def what(self) -> str:
        """``"exec"``, ``"fs.read of 'diary.txt'"``: the action and its resource."""
        return self.action if self.resource is None else f"{self.action} of {show_resource(self.resource)}"

    def __str__(self) -> str:
        if self.rule is not None:
            return f"{self.what} denied by the {self.rule.effect} rule at {self.rule}"
        return f"{self.what} denied: {self.reason}"

    def fields(self) -> dict[str, Any]:
        """The ``error`` map of a signed denial: ``kind`` ``denied``, ``message`` (``str()``),
        ``rule`` (``file:line`` or None), ``action``, ``resource``, ``cause`` and, for a refused
        capability, ``capability`` (its kind)."""
        out: dict[str, Any] = {"kind": "denied", "message": str(self),
                               "rule": None if self.rule is None else str(self.rule),
                               "action": self.action, "resource": self.resource, "cause": str(self.cause)}
        if self.capability is not None:
            out["capability"] = self.capability
        return out


@dataclass(frozen=True, slots=True)
class Grant:
    """One grant of a capability, in the policy's vocabulary: ``action`` (an action, ``"*"`` or
    ``"fs.*"``) and ``pattern`` (a path glob or module-name pattern; None: every resource, and
    the only choice for ``exec``). Written ``"fs.write:inbox/**"``, ``"exec"``; see
    :func:`peerbox.policy.parse_grant`."""

    action: str
    pattern: str | None = None

    def __str__(self) -> str:
        return self.action if self.pattern is None else f"{self.action}:{self.pattern}"


@dataclass(frozen=True, slots=True)
class PolicyLimits:
    """Caps a policy sets on a run or a caller (None: no cap from the policy).

    On the run: ``fuel`` (wasm fuel units), ``timeout`` (seconds), ``memory`` (bytes of guest
    memory). On the caller: ``calls_per_minute`` and ``burst`` (its rate; ``burst`` is set
    whenever ``calls_per_minute`` is, by default one minute's worth), ``max_bytes`` and
    ``max_files`` (what its requests may keep in the peer's storage; files and directories
    both count as files).
    """

    fuel: int | None = None
    timeout: float | None = None
    memory: int | None = None
    calls_per_minute: float | None = None
    burst: int | None = None
    max_bytes: int | None = None
    max_files: int | None = None

    def tighten(self, other: PolicyLimits) -> PolicyLimits:
        """The field-by-field minimum of ``self`` and ``other`` (None counts as no cap)."""
        return PolicyLimits(
            fuel=_min(self.fuel, other.fuel),
            timeout=_min(self.timeout, other.timeout),
            memory=_min(self.memory, other.memory),
            calls_per_minute=_min(self.calls_per_minute, other.calls_per_minute),
            burst=_min(self.burst, other.burst),
            max_bytes=_min(self.max_bytes, other.max_bytes),
            max_files=_min(self.max_files, other.max_files),
        )

    def is_empty(self) -> bool:
        """True when no field caps anything."""
        return (self.fuel is None and self.timeout is None and self.memory is None
                and self.calls_per_minute is None and self.burst is None and self.max_bytes is None
                and self.max_files is None)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One rule's rate limit on a caller: at most ``burst`` calls at once, refilled at
    ``per_minute`` calls per minute (a GCRA bucket per caller and ``key``).

    ``key`` (``"INDEX@LINE"`` of the rule) is stable across the processes that load the same
    file; editing the file may change it (and so reset the buckets). ``rule`` is what a
    ``rate_limited`` reply names."""

    key: str
    rule: RuleRef
    per_minute: float
    burst: int

    def describe(self) -> str:
        """``"30 calls per minute, burst 5"``."""
        rate = int(self.per_minute) if float(self.per_minute).is_integer() else self.per_minute
        return f"{rate} calls per minute, burst {self.burst}"


def _min(a: _N | None, b: _N | None) -> _N | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a <= b else b
