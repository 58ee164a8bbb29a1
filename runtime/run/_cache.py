"""The compiled-module cache: compile a script once, run it many times.

A script's cache key is a SHA-256 over the compiler version (peerbox's
version plus :data:`CODEGEN_VERSION`), the SHA-256 of ``rt.wasm``, the
script's filename, its source and (compiled for a peer with a schema) the
schema's digest. The modules a script imports are not in the key (finding
them needs the resolver); instead each entry carries a
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

The disk level is bounded: at most ``max_bytes`` of entries (default 256 MiB,
``$PEERBOX_CACHE_MAX_BYTES`` or ``ModuleCache(directory, max_bytes=...)``),
least recently used first out. A hit sets the entry's mtime to now, so the
mtime is its recency; after each save the directory is scanned and the
oldest entries are deleted until the total fits. Eviction holds an
``flock`` on ``.evict.lock`` so processes sharing the directory take turns;
it only ever considers complete entries (``*.pbm``, which appear by an
atomic rename), never another process's temporary file, and an entry
another process deleted first is simply gone. Temporary files left by a
crashed process are swept once they are an hour old.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import struct
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from .._errors import UsageError

__all__ = [
    "CODEGEN_VERSION",
    "ImportRecord",
    "DiskEntry",
    "CacheStats",
    "ModuleCache",
    "DEFAULT_MAX_BYTES",
    "max_bytes_from_env",
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
_SUFFIX = ".pbm"
_LOCK_NAME = ".evict.lock"
#: A temporary file this old was left by a process that died mid-write.
_STALE_TMP = 3600.0

#: The default size cap of the disk cache, in bytes.
DEFAULT_MAX_BYTES = 256 << 20
_SIZE = re.compile(r"(?i)\s*([0-9]+)\s*(k|kb|kib|m|mb|mib|g|gb|gib)?\s*")
_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}

V = TypeVar("V")


def source_sha256(source: str) -> str:
    """Hex SHA-256 of a source text (UTF-8; lone surrogates kept, never raising)."""
    return hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()


def cache_key(*, compiler_version: str, rt_sha256: str, filename: str, source: str, schema: str = "") -> str:
    """The cache key of a script: hex SHA-256 over its length-prefixed parts.

    ``schema`` is the digest of the record schema the script was checked against ("" for
    none: the key is then what it was before schemas existed)."""
    h = hashlib.sha256()
    parts = (compiler_version, CODEGEN_VERSION, rt_sha256, filename, source) + ((schema,) if schema else ())
    for part in parts:
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


def max_bytes_from_env() -> int:
    """``$PEERBOX_CACHE_MAX_BYTES`` (``65536``, ``64M``, ``1G``: binary units) or the default.

    Raises :class:`peerbox.UsageError` if the variable is set to something
    that is not a size, rather than silently running with another cap.
    """
    text = os.environ.get("PEERBOX_CACHE_MAX_BYTES")
    if text is None or not text.strip():
        return DEFAULT_MAX_BYTES
    m = _SIZE.fullmatch(text)
    if m is None or len(m.group(1)) > 30:
        raise UsageError(f"$PEERBOX_CACHE_MAX_BYTES is not a size in bytes: {text[:40]!r} "
                         "(examples: 65536, 64M, 1G)")
    return int(m.group(1)) * _UNITS.get((m.group(2) or "")[:1].lower(), 1)


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


@dataclass(frozen=True, slots=True)
class CacheStats:
    """What the disk cache holds: ``entries`` files of ``bytes`` in all, under a cap of ``max_bytes``."""

    directory: str | None
    entries: int
    bytes: int
    max_bytes: int

    def doc(self) -> dict[str, Any]:
        """The stats as a JSON object."""
        return {"directory": self.directory, "entries": self.entries, "bytes": self.bytes,
                "max_bytes": self.max_bytes}


class ModuleCache:
    """The on-disk cache (best effort: I/O errors only ever cause a miss).

    ``directory=None`` disables the disk level entirely. ``max_bytes``
    bounds the total size of the entries (None: ``$PEERBOX_CACHE_MAX_BYTES``,
    else 256 MiB; 0 stores nothing); the least recently used entries are
    evicted first. Raises :class:`peerbox.UsageError` for a ``max_bytes``
    that is not an int >= 0, or an environment variable that is not a size.
    """

    def __init__(self, directory: Path | None, max_bytes: int | None = None) -> None:
        if max_bytes is None:
            max_bytes = max_bytes_from_env()
        if type(max_bytes) is not int or max_bytes < 0:
            raise UsageError(f"max_bytes must be an int >= 0, got {max_bytes!r}")
        self.directory = directory
        self.max_bytes = max_bytes
        self._made_dir = False

    # -- generic blobs --------------------------------------------------------

    def _path(self, name: str) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / f"{name}{_SUFFIX}"

    def load_blob(self, name: str) -> bytes | None:
        """The payload stored under ``name``, or None (missing or corrupt)."""
        path = self._path(name)
        if path is None:
            return None
        try:
            data = path.read_bytes()
        except OSError:
            return None
        try:
            os.utime(path)  # recency for the LRU eviction
        except OSError:
            pass  # evicted meanwhile by another process: the bytes read are still whole
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
        """Store ``payload`` under ``name`` atomically, then evict down to the cap; errors are
        ignored. A payload larger than the whole cap is not stored."""
        path = self._path(name)
        if path is None or len(_MAGIC) + _DIGEST + len(payload) > self.max_bytes:
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
            return
        self.evict(keep=path.name)

    def remove(self, name: str) -> None:
        """Delete the entry ``name`` if it exists (errors ignored)."""
        path = self._path(name)
        if path is not None:
            try:
                path.unlink()
            except OSError:
                pass

    # -- size: listing, eviction, clearing ---------------------------------------

    def _scan(self) -> list[tuple[float, int, str]]:
        """``(mtime, size, file name)`` of every complete entry; sweeps stale temporary files."""
        if self.directory is None:
            return []
        out = []
        now = time.time()
        try:
            with os.scandir(self.directory) as it:
                for e in it:
                    try:
                        if e.name.endswith(_SUFFIX) and not e.name.startswith("."):
                            st = e.stat(follow_symlinks=False)
                            out.append((st.st_mtime, st.st_size, e.name))
                        elif (e.name.endswith(".tmp") and e.name.startswith(".")
                              and now - e.stat(follow_symlinks=False).st_mtime > _STALE_TMP):
                            os.unlink(e.path)
                    except OSError:
                        continue  # deleted meanwhile (another process evicting): not there
        except OSError:
            return []
        return out

    @contextlib.contextmanager
    def _evict_lock(self) -> Iterator[bool]:
        """Hold the directory's eviction lock (across processes); yields False if it cannot."""
        assert self.directory is not None
        try:
            fd = os.open(self.directory / _LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            yield False
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield True
        finally:
            os.close(fd)

    def evict(self, *, keep: str | None = None) -> int:
        """Delete least recently used entries until the total is at most ``max_bytes``.

        ``keep`` (a file name) goes last: the entry just written. Returns how
        many entries this call deleted. Best effort, never raises.
        """
        if self.directory is None:
            return 0
        with self._evict_lock() as locked:
            if not locked:
                return 0
            entries = self._scan()
            total = sum(size for _, size, _ in entries)
            if total <= self.max_bytes:
                return 0
            entries.sort(key=lambda e: (e[2] == keep, e[0], e[2]))
            removed = 0
            for _, size, name in entries:
                if total <= self.max_bytes:
                    break
                try:
                    os.unlink(self.directory / name)
                    removed += 1
                except FileNotFoundError:
                    pass  # another process (clear, a corrupt entry) was first: gone anyway
                except OSError:
                    continue
                total -= size
            return removed

    def stats(self) -> CacheStats:
        """How many entries the directory holds and their total size, with the cap."""
        entries = self._scan()
        return CacheStats(None if self.directory is None else str(self.directory), len(entries),
                          sum(size for _, size, _ in entries), self.max_bytes)

    def clear(self) -> int:
        """Delete every entry (and stale temporary files); returns how many were deleted.

        Safe while other processes use the cache: they miss and recompile.
        """
        if self.directory is None:
            return 0
        removed = 0
        with self._evict_lock():
            for _, _, name in self._scan():
                try:
                    os.unlink(self.directory / name)
                    removed += 1
                except OSError:
                    pass
        return removed

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
