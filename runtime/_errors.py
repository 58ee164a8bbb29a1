"""The one error tree of peerbox.

Every failure peerbox reports to a user is an instance of :class:`Error`.
Each kind of failure has its own subclass carrying structured fields, and the
CLI maps each subclass to a documented exit code. Exceptions from the
libraries underneath (wasmtime, cbor2, trio, h2) are translated into these at
exactly one boundary per library and never escape raw.

Each boundary translates with :func:`map_exceptions` and a table of its
own (``{ForeignError: make_peerbox_error}``, in the style of httpcore's
``_exceptions.py``), so "what may escape from this library, and as what" is
written once, next to the one place the library is called. The cause is
kept (``raise ... from exc``).

This module imports nothing from peerbox, so every layer may use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

__all__ = [
    "map_exceptions",
    "ExceptionMapping",
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


#: A boundary's table: a foreign exception class (matched with ``isinstance``, first match in
#: the table's order wins) to the function making the peerbox error that replaces it.
ExceptionMapping = Mapping[type[BaseException], Callable[[BaseException], BaseException]]


@contextmanager
def map_exceptions(mapping: ExceptionMapping) -> Iterator[None]:
    """Translate foreign exceptions raised inside the ``with`` block through ``mapping``.

    An exception that is an instance of a key is replaced by ``mapping[key](exc)``,
    raised ``from exc`` so the cause stays in the traceback. A peerbox :class:`Error`
    passes through untouched (it is already translated, e.g. raised by a hook the
    foreign library called back), and so does anything matching no key: an
    exception nobody expected is a bug to see, not to rename.
    """
    try:
        yield
    except Error:
        raise
    except Exception as exc:
        for foreign, make in mapping.items():
            if isinstance(exc, foreign):
                raise make(exc) from exc
        raise


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
