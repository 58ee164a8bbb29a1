"""Where ``import "name"`` finds a module: the logic layers, as the compiler's resolver.

The layers, highest first::

    peer     <root>/peers/NAME/logic/     a peer's own modules
    shared   <root>/logic/                the worker's shared modules
    builtin  peerbox's library            (inbox, notes, kv; shipped in the package)

plus, for a local run, ``extra`` directories (``-I``) searched after the
peer layer. :class:`LogicLayers` is callable as the compiler's resolver; it
reads files only, so it lives with the compile and needs no peer: a peer's
layers come from :meth:`LogicLayers.of` (anything with ``paths.logic`` and
``paths.dir``, as :class:`peerbox.Peer` has). The owner's tools to change a
peer's modules are in :mod:`peerbox.peer` (``PeerLogic``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..wasm_guests import builtin_library_path
from ..wasm_guests.lang import ModuleSource

__all__ = ["LAYERS", "MAX_MODULE_SIZE", "MODULE_SUFFIX", "LogicLayers", "ModuleRef", "PeerPaths",
           "read_module", "shared_logic_dir", "split_module_name"]

#: The layers, highest first; also the qualifiers ``import "LAYER:name"`` accepts.
LAYERS = ("peer", "shared", "builtin")
#: The file name suffix of a module.
MODULE_SUFFIX = ".rhai"
_NAME = re.compile(r"[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*")
_MAX_NAME = 200
#: The largest module source ``set``/``push`` accept, in bytes.
MAX_MODULE_SIZE = 512 << 10


class _Paths(Protocol):
    @property
    def logic(self) -> Path: ...

    @property
    def dir(self) -> Path: ...


class PeerPaths(Protocol):
    """What :meth:`LogicLayers.of` needs of a peer: its ``paths.logic`` and ``paths.dir``."""

    @property
    def paths(self) -> _Paths: ...


def split_module_name(name: object) -> tuple[str | None, str] | None:
    """``"shared:notes"`` -> ``("shared", "notes")``, ``"notes"`` -> ``(None, "notes")``; None if invalid.

    A name is ``/``-separated components of ``[A-Za-z0-9_-]`` (at most 200
    characters): no ``..``, no absolute paths, nothing that could leave a layer.
    """
    if type(name) is not str or len(name) > _MAX_NAME + 8:
        return None
    layer, sep, rest = name.partition(":")
    if not sep:
        layer, rest = "", name
    elif layer not in LAYERS:
        return None
    if len(rest) > _MAX_NAME or _NAME.fullmatch(rest) is None:
        return None
    return (layer or None), rest


def shared_logic_dir(root: Path) -> Path:
    """The worker's shared layer under a peerbox root."""
    return root / "logic"


@dataclass(frozen=True, slots=True)
class ModuleRef:
    """Where a module was found: its ``layer``, ``name`` and ``path`` (``file`` is ``layer:name``)."""

    layer: str
    name: str
    path: Path

    @property
    def file(self) -> str:
        return f"{self.layer}:{self.name}"


class LogicLayers:
    """The layer directories one peer's scripts import from; callable as the compiler's resolver.

    ``extra`` directories (a local run's ``-I``) are searched after the peer
    layer and before the shared one; their modules are named by their path.
    ``overlay`` maps ``(layer, name)`` to a source that stands in for the
    file, or to None to hide it (to check an install or a removal before it
    happens).
    """

    def __init__(self, *, peer: Path | None, shared: Path | None, builtin: Path | None = None,
                 extra: Sequence[str | os.PathLike[str]] = (),
                 overlay: Mapping[tuple[str, str], str | None] | None = None) -> None:
        self.dirs: dict[str, Path | None] = {
            "peer": peer, "shared": shared,
            "builtin": builtin if builtin is not None else builtin_library_path()}
        self.extra = tuple(Path(d) for d in extra)
        self.overlay = dict(overlay or {})

    @classmethod
    def of(cls, peer: PeerPaths, *, extra: Sequence[str | os.PathLike[str]] = ()) -> LogicLayers:
        """The layers of a peer under its root (``peers/NAME`` -> the root's ``logic/``)."""
        return cls(peer=peer.paths.logic, shared=shared_logic_dir(peer.paths.dir.parent.parent), extra=extra)

    def with_overlay(self, layer: str, name: str, source: str | None) -> LogicLayers:
        """These layers, with ``source`` standing in for ``layer:name`` (None: without it)."""
        return LogicLayers(peer=self.dirs["peer"], shared=self.dirs["shared"], builtin=self.dirs["builtin"],
                           extra=self.extra, overlay={**self.overlay, (layer, name): source})

    def _read(self, layer: str, name: str) -> ModuleSource | None:
        if (layer, name) in self.overlay:
            text = self.overlay[(layer, name)]
            return None if text is None else ModuleSource(file=f"{layer}:{name}", source=text)
        d = self.dirs[layer]
        if d is None:
            return None
        text = read_module(d / (name + MODULE_SUFFIX))
        return None if text is None else ModuleSource(file=f"{layer}:{name}", source=text)

    def __call__(self, name: str, importer: str) -> ModuleSource | None:
        """The module ``import "name"`` means (``importer`` does not matter), or None."""
        parsed = split_module_name(name)
        if parsed is None:
            return None
        layer, bare = parsed
        if layer is not None:
            return self._read(layer, bare)
        found = self._read("peer", bare)
        if found is not None:
            return found
        for d in self.extra:
            path = d / (bare + MODULE_SUFFIX)
            text = read_module(path)
            if text is not None:
                return ModuleSource(file=os.fspath(path), source=text)
        return self._read("shared", bare) or self._read("builtin", bare)

    def modules(self) -> list[ModuleRef]:
        """Every module file in the three layers, by name then layer (highest first)."""
        found: list[ModuleRef] = []
        for layer in LAYERS:
            d = self.dirs[layer]
            if d is None or not d.is_dir():
                continue
            for path in d.rglob("*" + MODULE_SUFFIX):
                name = path.relative_to(d).as_posix()[: -len(MODULE_SUFFIX)]
                if split_module_name(name) is not None and path.is_file():
                    found.append(ModuleRef(layer, name, path))
        return sorted(found, key=lambda r: (r.name, LAYERS.index(r.layer)))


def read_module(path: Path) -> str | None:
    """A module file's text; None when missing, unreadable, not UTF-8 or oversized."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_MODULE_SIZE + 1)
        return None if len(data) > MAX_MODULE_SIZE else data.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
