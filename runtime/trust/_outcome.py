"""What a request came to, typed: :class:`Outcome`, the error kinds, :class:`Usage`, exit codes.

Every reader of an answer — the worker's metrics and HTTP statuses, the
isolated-mode router, ``peerbox handle``, ``send`` and ``logic push`` —
reads these types instead of re-parsing strings:

* :class:`Outcome` — ``ok``, ``script_error``, ``limit``, ``denied``,
  ``rate_limited`` (all signed replies) or ``rejected`` (the envelope was
  refused unsigned). A
  ``StrEnum``: its members equal, format and count as the strings the
  metrics and messages have always shown.
* :data:`LimitKind` — the error kinds of a run stopped by a limit (a closed
  set: one per :attr:`peerbox.LimitExceeded.limit`).
* :class:`Usage` — what a run used (fuel, wall-clock ms, peak guest memory),
  carried by :class:`~peerbox.trust._handled.Handled` so that nothing has
  to decode a signed reply to learn it.
* :func:`outcome_of` — the one place a reply's ``ok`` and error ``kind``
  (ours or a remote peer's) become an :class:`Outcome`.
* :func:`exit_code` — the one table from an outcome (and the error kind) to
  the exit code of the command that reported it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

__all__ = ["Outcome", "LimitKind", "LIMIT_KINDS", "LogicRefusalKind", "CallRefusalKind", "RevokeRefusalKind",
           "Via", "Usage", "outcome_of", "exit_code", "EXIT_CODES"]


class Outcome(enum.StrEnum):
    """What handling one request came to (see the module docstring)."""

    OK = "ok"
    SCRIPT_ERROR = "script_error"
    LIMIT = "limit"
    DENIED = "denied"
    RATE_LIMITED = "rate_limited"
    REJECTED = "rejected"

    @property
    def signed(self) -> bool:
        """Whether the answer is a reply signed by the target (all but ``rejected``)."""
        return self is not Outcome.REJECTED

    @property
    def ran(self) -> bool:
        """Whether a script (or an install) ran, so the answer reports a :class:`Usage`."""
        return self in (Outcome.OK, Outcome.SCRIPT_ERROR, Outcome.LIMIT)


#: The error kind of a reply to a run a limit stopped: ``limit_`` + :attr:`peerbox.LimitExceeded.limit`.
LimitKind = Literal["limit_fuel", "limit_timeout", "limit_memory", "limit_stack", "limit_hostcalls"]
LIMIT_KINDS: frozenset[str] = frozenset(get_args(LimitKind))

#: The kinds of a refused logic change that mean "it does not compile" (exit 3).
LogicRefusalKind = Literal["compile_error", "breaks_dependent"]

#: The command reporting an outcome: ``handle`` (a local envelope; ``logic=True`` for a logic
#: update), ``send`` (a remote exec reply), ``push`` (a remote ``logic`` reply), ``call`` (a
#: published function's reply: ``peerbox call``, or ``handle`` of a call), ``revoke`` (a worker's
#: answer to a revocation: ``cap revoke --notify``, or ``handle`` of a revocation).
Via = Literal["handle", "send", "push", "call", "revoke"]

#: ``call``: the caller named no published function or gave arguments that do not match it (exit 2).
CallRefusalKind = Literal["bad_arguments", "no_such_function"]
#: ``revoke``: what was sent is not a token, or not one about the target (exit 2).
RevokeRefusalKind = Literal["bad_token", "wrong_subject"]


@dataclass(frozen=True, slots=True)
class Usage:
    """What a run used: ``fuel`` (0 when unmetered), ``wall_ms``, ``peak_memory`` (bytes)."""

    fuel: int = 0
    wall_ms: int = 0
    peak_memory: int = 0

    def as_map(self) -> dict[str, int]:
        """The ``usage`` map of a reply."""
        return {"fuel": self.fuel, "wall_ms": self.wall_ms, "peak_memory": self.peak_memory}

    @classmethod
    def from_map(cls, usage: object) -> Usage | None:
        """The usage a reply reports (``None`` if it reports none, or not as integers)."""
        if not isinstance(usage, Mapping):
            return None
        values = [usage.get(k, 0) for k in ("fuel", "wall_ms", "peak_memory")]
        if not all(type(v) is int for v in values):
            return None
        return cls(*values)


def outcome_of(ok: bool, kind: str | None, *, logic: bool = False) -> Outcome:
    """The outcome of a signed reply from its ``ok`` flag and its error ``kind``.

    ``denied`` is a denial, ``rate_limited`` a refusal by a rate limit (nothing
    ran), a ``limit…`` kind a limit (a remote peer of a
    newer version may have limits this one does not name: any kind starting
    with ``limit`` counts, as it always has), anything else a script error.
    A reply to a ``logic`` request (``logic=True``) runs no script, so it
    knows no limits: only ``denied`` or a script error (a refused change).
    """
    if ok:
        return Outcome.OK
    kind = kind or ""
    if kind == "denied":
        return Outcome.DENIED
    if kind == "rate_limited":
        return Outcome.RATE_LIMITED
    if not logic and (kind in LIMIT_KINDS or kind.startswith("limit")):
        return Outcome.LIMIT
    return Outcome.SCRIPT_ERROR


#: Exit code per outcome, before the kind-specific cases of :func:`exit_code`.
EXIT_CODES: Mapping[Outcome, int] = {
    Outcome.OK: 0,
    Outcome.SCRIPT_ERROR: 4,
    Outcome.LIMIT: 5,
    Outcome.DENIED: 6,
    Outcome.RATE_LIMITED: 9,
    Outcome.REJECTED: 2,
}
_REFUSED: frozenset[str] = frozenset(get_args(LogicRefusalKind))
#: ``logic push``: a remote refusal that is the caller's mistake (2) or a history that does not check out (8).
_PUSH_KINDS: Mapping[str, int] = {"not_found": 2, "history_mismatch": 8}
#: The script-error kinds that are the caller's mistake (2), per command.
_USAGE_KINDS: Mapping[str, frozenset[str]] = {"call": frozenset(get_args(CallRefusalKind)),
                                              "revoke": frozenset(get_args(RevokeRefusalKind))}


def exit_code(outcome: Outcome, kind: str | None = None, *, via: Via, logic: bool = False) -> int:
    """The exit code of a command that reports ``outcome`` (whose error has ``kind``).

    0 ok, 4 script error, 5 limit, 6 denied, 9 rate limited, 2 rejected
    envelope (see :data:`EXIT_CODES`), and by kind: ``call`` says 2 for
    ``bad_arguments`` and ``no_such_function``, ``revoke`` 2 for
    ``bad_token`` and ``wrong_subject`` (the caller's mistake); a logic change that does not compile
    (``compile_error``, ``breaks_dependent``) is 3 (``push``; ``handle`` of a
    logic update); ``send`` says 3 for an exec compile error too (``handle``
    of an exec request keeps 4, as documented); ``push`` says 2 for
    ``not_found`` and 8 for ``history_mismatch``. Never raises.
    """
    if outcome is Outcome.SCRIPT_ERROR and kind is not None:
        if via == "send" and kind == "compile_error":
            return 3
        if (via == "push" or (via == "handle" and logic)) and kind in _REFUSED:
            return 3
        if via == "push" and kind in _PUSH_KINDS:
            return _PUSH_KINDS[kind]
        if kind in _USAGE_KINDS.get(via, frozenset()):
            return 2
    return EXIT_CODES[outcome]
