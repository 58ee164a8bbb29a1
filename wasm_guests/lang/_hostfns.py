"""Host functions: the calls that leave the sandbox, such as ``fs::read(path)``.

They are called like module functions of built-in modules (``fs``) that need
no ``import``. Each compiles to ``rt_host_<arity>(op, args...)``; rt sends
the arguments to the host as one CBOR array and the host dispatches on
``op``.

The compiler keeps no list of them: the host hands its table to
``compile_to_wat(..., host_calls=...)`` (peerbox passes
``peerbox.hostcalls.HOST_CALLS``, the one written form of the ABI), as it
hands over its module resolver. This module defines only what the compiler
reads from a row (:class:`HostCallSpec`) and the index the resolver looks
calls up in (:class:`HostFunctions`). Without a table a script has no host
functions: ``fs::read(p)`` is an unknown module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["HostCallSpec", "HostFn", "HostFunctions", "MAX_HOST_ARITY", "NO_HOST_FUNCTIONS"]

#: rt exports ``rt_host_0`` … ``rt_host_3``: no host function takes more arguments.
MAX_HOST_ARITY = 3

_NAME = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)::([A-Za-z_][A-Za-z0-9_]*)")


class HostCallSpec(Protocol):
    """What the compiler reads from one row of the host's table.

    ``op``: the number sent to the host (``i32``); ``name``: what scripts
    call, ``module::function``; ``params``: one entry per argument (only
    their number matters to the compiler).
    """

    @property
    def op(self) -> int: ...

    @property
    def name(self) -> str: ...

    @property
    def params(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class HostFn:
    """A resolved host-function call target: ``module::name`` of ``arity`` arguments, sent as ``op``."""

    module: str
    name: str
    arity: int
    op: int

    @property
    def qualname(self) -> str:
        """``module::name``, as scripts write it."""
        return f"{self.module}::{self.name}"


class HostFunctions:
    """The host functions of one compilation, indexed by ``(module, name, arity)``.

    Built from the host's table (any iterable of :class:`HostCallSpec`).
    Raises ``ValueError`` for a table the compiler cannot honour: a name
    that is not ``module::function``, an ``op`` outside ``0 … 2**31-1``, more
    than :data:`MAX_HOST_ARITY` parameters, or two rows with the same op or
    the same name and arity. These are mistakes in the host's code, so they
    are refused at once rather than compiled into modules that call the
    wrong thing.
    """

    __slots__ = ("_by_key", "_modules", "functions")

    def __init__(self, table: Iterable[HostCallSpec] = ()) -> None:
        by_key: dict[tuple[str, str, int], HostFn] = {}
        ops: set[int] = set()
        for row in table:
            m = _NAME.fullmatch(row.name) if isinstance(row.name, str) else None
            if m is None:
                raise ValueError(f"host function name {row.name!r} is not 'module::function'")
            op, arity = row.op, len(row.params)
            if not isinstance(op, int) or isinstance(op, bool) or not 0 <= op < 2**31:
                raise ValueError(f"host function {row.name}: op {op!r} is not an i32 >= 0")
            if arity > MAX_HOST_ARITY:
                raise ValueError(f"host function {row.name}: {arity} parameters, at most {MAX_HOST_ARITY}")
            fn = HostFn(module=m[1], name=m[2], arity=arity, op=int(op))
            key = (fn.module, fn.name, arity)
            if key in by_key or op in ops:
                raise ValueError(f"host function {row.name}/{arity} (op {op}) is listed twice")
            by_key[key] = fn
            ops.add(op)
        self._by_key = by_key
        self._modules = frozenset(fn.module for fn in by_key.values())
        #: Every host function, in table order.
        self.functions: tuple[HostFn, ...] = tuple(by_key.values())

    def lookup(self, module: str, name: str, arity: int) -> HostFn | None:
        """The host function ``module::name`` taking ``arity`` arguments, or None."""
        return self._by_key.get((module, name, arity))

    def modules(self) -> frozenset[str]:
        """Names of the built-in host modules (``fs``)."""
        return self._modules


#: A compilation without host functions (the default when no table is given).
NO_HOST_FUNCTIONS = HostFunctions()
