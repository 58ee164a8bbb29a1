"""Everything that becomes or runs inside a guest: the language and the runtime.

``peerbox.wasm_guests.lang`` compiles scripts to WebAssembly text. The guest
runtime support code ("rt": allocator, strings, arrays, maps, operators,
builtins, CBOR in/out) is C in ``wasm_guests/rt/`` compiled once by clang to
``rt/rt.wasm``, which is committed and shipped in the wheel; the host
instantiates it next to every script module (see ``ABI.md``).
"""

from __future__ import annotations

import functools
import pathlib
from importlib import resources

__all__ = ["RT_ABI_VERSION", "rt_wasm_path", "rt_wasm_bytes", "builtin_library_path"]

#: Version of the rt <-> compiler <-> host contract described in ABI.md.
#: Bump it whenever rt.wasm changes incompatibly, so caches keyed on it are invalidated.
RT_ABI_VERSION = 1


def rt_wasm_path() -> pathlib.Path:
    """The path of the committed ``rt.wasm`` inside this package.

    Raises FileNotFoundError if the file is missing (a broken install or a
    checkout where ``make rt`` has not been run).
    """
    path = pathlib.Path(__file__).resolve().parent / "rt" / "rt.wasm"
    if not path.is_file():
        raise FileNotFoundError(f"guest runtime not found at {path}; run `make rt`")
    return path


def rt_wasm_bytes() -> bytes:
    """The bytes of ``rt.wasm``, read through importlib.resources (works from a wheel or zip).

    Raises FileNotFoundError if the file is missing.
    """
    return resources.files(__name__).joinpath("rt").joinpath("rt.wasm").read_bytes()


@functools.cache
def builtin_library_path() -> pathlib.Path:
    """The directory of peerbox's built-in script library (``lib/*.rhai``).

    The lowest of the three logic layers a peer's scripts import from (see
    ``peerbox._logic``): modules such as ``inbox``, ``notes`` and ``kv``
    that a worker's shared modules or a peer's own override by name.
    Computed once per process (every compile asks for it).
    """
    return pathlib.Path(__file__).resolve().parent / "lib"
