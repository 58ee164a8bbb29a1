"""The one error tree of peerbox.

Every failure peerbox reports to a user is an instance of :class:`Error`.
Each kind of failure has its own subclass carrying structured fields, and the
CLI maps each subclass to a documented exit code. Exceptions from the
libraries underneath (wasmtime, cbor2, trio, h2) are translated into these at
exactly one boundary per library and never escape raw.

This module imports nothing from peerbox, so every layer may use it.
"""

from __future__ import annotations

__all__ = [
    "Error",
    "UsageError",
    "ScriptError",
    "LimitExceeded",
    "ValueConversionError",
]


class Error(Exception):
    """Base class of every error peerbox raises on purpose.

    ``exit_code`` is what ``peerbox`` exits with when this error ends a
    command (1 is reserved for bugs in peerbox itself).
    """

    exit_code: int = 1


class UsageError(Error):
    """A command or API was called with arguments that make no sense."""

    exit_code = 2


class ValueConversionError(UsageError):
    """A Python value cannot cross into a script (or a result cannot come out).

    Raised for params holding types the language has no equivalent for,
    integers outside the i64 range, or map keys that are not strings.
    ``path`` names where in the value the problem is, e.g. ``params.a[2]``.
    """

    def __init__(self, message: str, *, path: str = "params") -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.reason = message


class ScriptError(Error):
    """A script failed at run time and did not catch the error.

    ``kind`` is one of the runtime error kinds (``division_by_zero``,
    ``integer_overflow``, ``index_out_of_range``, ``type_mismatch``,
    ``not_found``, ``arity``, ``invalid_argument``, ``too_deep``, ``throw``);
    ``file`` and ``line`` locate the failing operation; ``value`` is the thrown
    value for ``throw``; ``log`` holds what the script printed before failing.
    """

    exit_code = 4

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        value: object = None,
        log: list[str] | None = None,
    ) -> None:
        where = f"{file}:{line}: " if file is not None and line else ""
        super().__init__(f"{where}runtime error: {message}")
        self.kind = kind
        self.message = message
        self.file = file
        self.line = line
        self.value = value
        self.log = log if log is not None else []


class LimitExceeded(Error):
    """A run hit one of its resource limits and was stopped.

    ``limit`` is ``"fuel"``, ``"timeout"``, ``"memory"``, ``"stack"`` or
    ``"hostcalls"`` (the run's budget of host calls and bytes they move).
    Exceeding a limit is never catchable by the script itself.
    """

    exit_code = 5

    def __init__(self, limit: str, message: str, *, log: list[str] | None = None) -> None:
        super().__init__(message)
        self.limit = limit
        self.log = log if log is not None else []
