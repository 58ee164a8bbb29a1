"""Host functions: the calls that leave the sandbox, such as ``fs::read(path)``.

They are called like module functions of built-in modules (``fs``) that need
no ``import``. Each compiles to ``rt_host_<arity>(op, args...)``; rt sends
the arguments to the host as one CBOR array and the host dispatches on
``op`` (see ``peerbox.hostcalls``). The op numbers are part of the ABI
between compiled modules and the host: never renumber one.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HostFn", "HOST_FUNCTIONS", "lookup_host", "host_modules"]


@dataclass(frozen=True, slots=True, kw_only=True)
class HostFn:
    module: str
    name: str
    arity: int
    op: int
    doc: str

    @property
    def qualname(self) -> str:
        return f"{self.module}::{self.name}"


def _h(module: str, name: str, arity: int, op: int, doc: str) -> HostFn:
    return HostFn(module=module, name=name, arity=arity, op=op, doc=doc)


HOST_FUNCTIONS: tuple[HostFn, ...] = (
    _h("fs", "read", 1, 1, "the text of a file (UTF-8)"),
    _h("fs", "write", 2, 2, "replace a file's content atomically with a string"),
    _h("fs", "append", 2, 3, "append a string to a file (created if missing)"),
    _h("fs", "list", 1, 4, 'sorted names in a directory ("" is the root)'),
    _h("fs", "exists", 1, 5, "true if the file or directory exists"),
    _h("fs", "delete", 1, 6, "delete a file or an empty directory"),
    _h("fs", "mkdir", 1, 7, "create a directory and its parents"),
    _h("fs", "stat", 1, 8, "#{size, is_dir, modified}"),
    _h("fs", "read_bytes", 1, 9, "the bytes of a file as a blob"),
    _h("fs", "write_bytes", 2, 10, "replace a file's content atomically with a blob"),
)

_BY_KEY = {(h.module, h.name, h.arity): h for h in HOST_FUNCTIONS}
_MODULES = frozenset(h.module for h in HOST_FUNCTIONS)


def lookup_host(module: str, name: str, arity: int) -> HostFn | None:
    """The host function ``module::name`` taking ``arity`` arguments, or None."""
    return _BY_KEY.get((module, name, arity))


def host_modules() -> frozenset[str]:
    """Names of the built-in host modules (``fs``)."""
    return _MODULES
