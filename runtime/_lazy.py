"""Lazy package attributes (PEP 562): a package names what it exports, a module loads on first use.

peerbox's facade and each of its rooms (``peerbox.wire``, ``peerbox.run``...)
export names that live in private modules. Importing a package runs only its
``__init__``; the module holding a name is imported when the name is first
looked up (``peerbox.compile``, ``from peerbox.peer import PeerStore``). So
``import peerbox.policy`` or ``peerbox --version`` loads no wasmtime, trio or
h2: the layers hold at import time, not only in the source.

Each package keeps a ``TYPE_CHECKING`` block importing the same names, which
is what type checkers and readers see; :func:`attach` builds the
``__getattr__`` and ``__dir__`` that do the loading at run time.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping

__all__ = ["attach"]


def attach(package: str,
           exports: Mapping[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, whose ``exports`` map a public name to the
    module that defines it, relative to the package (``"._peers"``), or ``"._cbor_strict:dumps"``
    for a name exported under another name.

    The returned ``__getattr__`` raises :class:`AttributeError` for a name not in ``exports``
    (as a module without one would) and whatever importing the module raises.
    """

    def __getattr__(name: str) -> object:
        spec = exports.get(name)
        if spec is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attr = spec.partition(":")
        return getattr(importlib.import_module(module, package), attr or name)

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
