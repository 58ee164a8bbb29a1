"""The compiled-module cache: compile a script once, run it many times.

A script's cache key is a SHA-256 over the compiler version (peerbox's
version plus :data:`CODEGEN_VERSION`), the SHA-256 of ``rt.wasm``, the
script's filename and its source. The modules a script imports are not in
the key (finding them needs the resolver); instead each entry carries a
*manifest*: for every import the compiler resolved, the import name, the
importing file, the file it resolved to and the SHA-256 of that file's
source. A lookup re-resolves every import (reading files, never parsing) and
only hits if every hash still matches, so editing an imported module
invalidates every script that uses it.

Two levels:

* in memory, per :class:`~peerbox.Sandbox`: a bounded LRU of ready
  ``Program`` objects (a hit costs a dict lookup plus the manifest check);
* on disk, shared by every process of the user: serialized wasmtime modules
  in ``$PEERBOX_CACHE_DIR`` (default ``~/.cache/peerbox/modules``), written
  atomically (temporary file + rename). Each file carries a SHA-256 of its
  contents: a corrupt, truncated or foreign file is ignored, deleted and
  rewritten, never trusted. (Deserializing a wasmtime module runs native
  code compiled earlier, so the directory must be as trusted as the user's
  own home; it is created with mode 0700.)
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

__all__ = [
    "CODEGEN_VERSION",
    "ImportRecord",
    "DiskEntry",
    "ModuleCache",
    "LRU",
    "cache_key",
    "source_sha256",
    "default_cache_dir",
    "manifest_is_current",
]

#: Bumped when generated code changes in a way peerbox's version does not capture.
CODEGEN_VERSION = "1"

_MAGIC = b"PEERBOX-MODULE1\n"
_DIGEST = 32
_U32 = struct.Struct("<I")

V = TypeVar("V")


def source_sha256(source: str) -> str:
    """Hex SHA-256 of a source text (UTF-8; lone surrogates kept, never raising)."""
    return hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()


def cache_key(*, compiler_version: str, rt_sha256: str, filename: str, source: str) -> str:
    """The cache key of a script: hex SHA-256 over its length-prefixed parts."""
    h = hashlib.sha256()
    for part in (compiler_version, CODEGEN_VERSION, rt_sha256, filename, source):
        data = part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def default_cache_dir() -> Path:
    """``$PEERBOX_CACHE_DIR`` if set, else ``~/.cache/peerbox/modules``."""
    env = os.environ.get("PEERBOX_CACHE_DIR")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "peerbox" / "modules"


@dataclass(frozen=True, slots=True)
class ImportRecord:
    """One import the compiler resolved: ``resolver(name, importer)`` gave ``file``."""

    name: str
    importer: str
    file: str
    sha256: str


def manifest_is_current(manifest: Sequence[ImportRecord], resolver: Callable[[str, str], Any] | None) -> bool:
    """True if every import in ``manifest`` still resolves to the same source.

    ``resolver`` is called as the compiler would call it and must return an
    object with ``file`` and ``source`` attributes, or ``None``. Any
    exception from it counts as a mismatch (the caller then recompiles,
    and the compiler reports the problem properly).
    """
    if not manifest:
        return True
    if resolver is None:
        return False
    for rec in manifest:
        try:
            found = resolver(rec.name, rec.importer)
        except Exception:
            return False
        if found is None or found.file != rec.file or source_sha256(found.source) != rec.sha256:
            return False
    return True


class LRU(Generic[V]):
    """A small thread-safe least-recently-used map with a fixed capacity."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(0, capacity)
        self._items: OrderedDict[str, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: str, item: V) -> None:
        if self.capacity == 0:
            return
        with self._lock:
            self._items[key] = item
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def discard(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True, slots=True)
class DiskEntry:
    """What the disk cache keeps for one compiled script."""

    files: tuple[str, ...]
    manifest: tuple[ImportRecord, ...]
    wat_z: bytes  # the WAT, zlib-compressed
    module: bytes  # wasmtime's Module.serialize()

    @property
    def wat(self) -> str:
        return zlib.decompress(self.wat_z).decode("utf-8")


class ModuleCache:
    """The on-disk cache (best effort: I/O errors only ever cause a miss).

    ``directory=None`` disables the disk level entirely.
    """

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._made_dir = False

    # -- generic blobs --------------------------------------------------------

    def _path(self, name: str) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / f"{name}.pbm"

    def load_blob(self, name: str) -> bytes | None:
        """The payload stored under ``name``, or None (missing or corrupt)."""
        path = self._path(name)
        if path is None:
            return None
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if (
            len(data) < len(_MAGIC) + _DIGEST
            or not data.startswith(_MAGIC)
            or hashlib.sha256(data[len(_MAGIC) + _DIGEST :]).digest()
            != data[len(_MAGIC) : len(_MAGIC) + _DIGEST]
        ):
            self.remove(name)
            return None
        return data[len(_MAGIC) + _DIGEST :]

    def save_blob(self, name: str, payload: bytes) -> None:
        """Store ``payload`` under ``name`` atomically; errors are ignored."""
        path = self._path(name)
        if path is None:
            return
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            if not self._made_dir:
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._made_dir = True
            with open(tmp, "wb") as f:
                f.write(_MAGIC)
                f.write(hashlib.sha256(payload).digest())
                f.write(payload)
            os.replace(tmp, path)
        except OSError:
            try:
                tmp.unlink()
            except OSError:
                pass

    def remove(self, name: str) -> None:
        """Delete the entry ``name`` if it exists (errors ignored)."""
        path = self._path(name)
        if path is not None:
            try:
                path.unlink()
            except OSError:
                pass

    # -- compiled scripts -----------------------------------------------------

    def load(self, key: str) -> DiskEntry | None:
        """The entry for ``key``, or None if absent, corrupt or foreign."""
        payload = self.load_blob(key)
        if payload is None:
            return None
        try:
            pos = 0
            (meta_len,) = _U32.unpack_from(payload, pos)
            pos += 4
            meta = json.loads(payload[pos : pos + meta_len].decode("utf-8"))
            pos += meta_len
            (wat_len,) = _U32.unpack_from(payload, pos)
            pos += 4
            wat_z = payload[pos : pos + wat_len]
            pos += wat_len
            if meta["key"] != key or len(wat_z) != wat_len:
                raise ValueError("entry does not belong to this key")
            entry = DiskEntry(
                files=tuple(str(f) for f in meta["files"]),
                manifest=tuple(ImportRecord(*(str(x) for x in rec)) for rec in meta["manifest"]),
                wat_z=bytes(wat_z),
                module=bytes(payload[pos:]),
            )
        except (ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError):
            self.remove(key)
            return None
        return entry

    def save(self, key: str, entry: DiskEntry) -> None:
        """Store ``entry`` under ``key`` (atomically; errors are ignored)."""
        if self.directory is None:
            return
        meta = json.dumps(
            {
                "key": key,
                "files": list(entry.files),
                "manifest": [[r.name, r.importer, r.file, r.sha256] for r in entry.manifest],
            }
        ).encode("utf-8", "surrogatepass")
        payload = b"".join(
            (_U32.pack(len(meta)), meta, _U32.pack(len(entry.wat_z)), entry.wat_z, entry.module)
        )
        self.save_blob(key, payload)
