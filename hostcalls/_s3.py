"""The S3 backend: a peer's files are objects under one key prefix of an S3 bucket.

Layout, for the prefix ``P`` (default: the peer's did and a ``/``):

* the file ``a/b.txt`` is the object ``P/a/b.txt``, its content the object's
  bytes; each component is stored with ``%`` and ``\\`` percent-encoded
  (``%25``, ``%5C``: SeaweedFS takes a backslash for a separator, and the
  path rules make it an ordinary character);
* the directory ``a`` is the object ``P/a/.peerbox-tmp-dir`` (empty), the
  root is ``P/.peerbox-tmp-dir``. S3 has no directories, and an explicit
  marker is what gives ``fs::mkdir`` the file system's meaning: an empty
  directory exists, and a write into a missing one is refused. The marker's
  name carries the reserved prefix of :mod:`peerbox.hostcalls._paths`, so no
  script can name it or see it in a listing.

Semantics, error kinds and messages are those of the file system backend
(the conformance suite runs against all three), with these S3 specifics:

* **writes** are one PUT: atomic, as S3 replaces an object whole;
* **appends** are read-modify-write with a conditional PUT (``If-Match`` on
  the ETag read, ``If-None-Match: *`` when creating), retried on ``412``:
  concurrent appends from other processes or machines are never lost (a
  PUT only lands on the version it extended). SeaweedFS (4.x) honours both
  preconditions; the alternative, one object per appended segment, would
  make every read a listing;
* **listing** follows S3's continuation tokens (every page); a common
  prefix counts as a directory only if its marker exists (SeaweedFS keeps an
  emptied folder visible for a while after its last object is deleted);
* a **directory's modified time** is the newest of its marker's and its
  files' (the marker is rewritten when an entry is deleted or a
  subdirectory made), so it follows its entries as on a file system;
* **quotas**: the usage tally (bytes, entries) is a
  :class:`~peerbox.hostcalls._accounts.Tally`. By default it is counted from
  a full listing of the prefix the first time the backend is used, then kept
  by this process and updated by each change under the backend's lock (so
  several processes sharing one prefix each check against their own count).
  A worker with shared state (``peerbox serve --state``) passes a tally kept
  in JetStream for the storage location (:attr:`StorageSite.accounts`): the
  first worker counts the listing, and every change *reserves* what it adds
  (the quota check and the addition in one compare-and-set) before its PUT,
  gives it back if the PUT fails, and a delete takes its size off after, so
  the peer's ``[quotas]`` hold across every worker. The per-caller shares
  are the peer's ledger's, as for every backend.

Nothing is contacted when the backend is made: the first operation creates
the root marker and counts the usage, so an S3 service that is down when a
peer starts gives the scripts ``io_error`` ("the storage service is
unavailable"), not a failed start, and the backend recovers when the
service returns. Every client failure is translated at one boundary,
:mod:`peerbox.hostcalls._s3store`.
"""

from __future__ import annotations

import functools
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from ._accounts import LocalTally, Tally
from ._backend import Backend, Stat, StorageConfigError, StorageSite
from ._errors import (
    HostCallError,
    io_error,
    is_a_directory,
    no_such_directory,
    no_such_entry,
    no_such_file,
    not_a_directory,
    not_empty,
    too_large_to_read,
)
from ._limits import Quotas, Usage
from ._paths import TEMP_PREFIX, is_visible_name, join, parse_path
from ._s3migrate import S3Schemas
from ._s3records import STALE_AFTER, S3Records
from ._s3store import ObjectStore
from ._schema import Schema

__all__ = ["S3Backend", "open_s3", "DIR_MARKER"]

#: The object that makes a directory exist: ``<dir>/.peerbox-tmp-dir``.
DIR_MARKER = TEMP_PREFIX + "dir"
#: How many times an append re-reads and retries after another writer changed the file.
_APPEND_ATTEMPTS = 16
#: Between those tries, a random pause of up to this many seconds, doubled each time up to
#: :data:`_BACKOFF_CAP` (full jitter: two writers that keep colliding fall out of step instead of
#: one of them losing every race while the other appends in a tight loop).
_BACKOFF_BASE = 0.004
_BACKOFF_CAP = 0.25
_DEFAULT_REGION = "us-east-1"
_ENCODE = re.compile(r"[%\\]")
_DECODE = re.compile(r"%(25|5C)")


def _enc(name: str) -> str:
    return _ENCODE.sub(lambda m: "%25" if m.group() == "%" else "%5C", name)


def _dec(name: str) -> str:
    return _DECODE.sub(lambda m: "%" if m.group(1) == "25" else "\\", name)


class S3Backend(Backend):
    """A peer's storage under ``prefix`` in the bucket ``store`` serves.

    ``prefix`` is ``""`` (the whole bucket) or ends with ``/``. Thread-safe:
    changes are serialised by one lock per backend (the usage tally and the
    check-then-PUT of each change are one step in this process); reads take
    no lock. Every method raises :class:`HostCallError`.
    """

    kind = "s3"
    keeps_records = True

    def __init__(self, store: ObjectStore, prefix: str, quotas: Quotas | None = None, *,
                 tally: Tally | None = None) -> None:
        super().__init__(quotas)
        self._store = store
        self._prefix = prefix
        self._lock = threading.Lock()
        #: the peer-wide count: this process's own, or one shared by the workers (``tally``)
        self._tally: Tally = tally if tally is not None else LocalTally()
        self._started = False  # counted on first use (see _ready)
        self._closed = False

    def __repr__(self) -> str:
        return f"S3Backend(bucket={self._store.bucket!r}, prefix={self._prefix!r})"

    def close(self) -> None:
        """Forget the client; later calls refuse with ``io_error``. Idempotent."""
        self._closed = True

    def records(self, schema: Schema, text: str | None = None, *,
                stale_after: float = STALE_AFTER) -> S3Records:
        """The peer's records (``db::``) under this prefix, in the same bucket
        (:mod:`peerbox.hostcalls._s3records`). Raises ``unsupported`` (another schema is applied)
        or ``io_error``."""
        self._check_open()
        return S3Records(self._store, self._prefix, schema, text=text, stale_after=stale_after)

    def schemas(self) -> S3Schemas:
        """The applied schema of the records under this prefix, and its migrations
        (:mod:`peerbox.hostcalls._s3migrate`)."""
        self._check_open()
        return S3Schemas(self._store, self._prefix)

    # -- keys ------------------------------------------------------------------------------

    def _key(self, parts: tuple[str, ...]) -> str:
        """The object of the file ``parts``."""
        return self._prefix + "/".join(map(_enc, parts))

    def _dir_key(self, parts: tuple[str, ...]) -> str | None:
        """The key prefix (no trailing ``/``) whose children are the directory ``parts``' entries,
        ``None`` for the top of the bucket."""
        key = self._key(parts) if parts else self._prefix.rstrip("/")
        return key or None

    def _marker(self, parts: tuple[str, ...]) -> str:
        """The marker object of the directory ``parts``."""
        base = self._dir_key(parts)
        return DIR_MARKER if base is None else base + "/" + DIR_MARKER

    # -- state -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise HostCallError("io_error", "the peer's storage is closed")

    def _ready(self, path: str) -> Tally:
        """The usage tally; on first use, create the root marker and make sure the tally has a
        count (a shared one that has none, or the local one: count the prefix, one listing page
        by page). Under ``self._lock``. Raises ``io_error`` (then the next call tries again)."""
        self._check_open()
        if not self._started:
            if self._store.head(self._marker(()), path) is None:
                self._store.put(self._marker(()), path, b"")
            self._tally.start(lambda: self._count(path))
            self._started = True
        return self._tally

    def _count(self, path: str) -> Usage:
        usage = Usage()
        root_marker = self._marker(())
        for meta in self._store.walk(self._dir_key(()), path):
            if meta.key == root_marker:
                continue
            usage.files += 1
            if not meta.key.endswith("/" + DIR_MARKER):
                usage.bytes += meta.size
        return usage

    @contextmanager
    def _changing(self, path: str) -> Iterator[Tally]:
        """Hold the backend for one change: the lock and the tally."""
        with self._lock:
            yield self._ready(path)

    @contextmanager
    def _reserved(self, tally: Tally, check: Callable[[Usage], None], add_bytes: int,
                  add_entries: int) -> Iterator[None]:
        """Reserve ``(add_bytes, add_entries)`` in ``tally`` after ``check`` (``quota_exceeded``
        refuses: nothing reserved) for the change in the block; given back if the block raises."""
        tally.reserve(check, add_bytes, add_entries)
        try:
            yield
        except BaseException:
            tally.adjust(-add_bytes, -add_entries)
            raise

    def _check_file(self, usage: Usage, *, p: str, old: int | None, new: int) -> None:
        self.quotas.check_file(usage, p, old, new)

    def _ensure_root(self, path: str) -> None:
        """Reads need the root marker too (``stat("")``); made by the first change or here."""
        self._check_open()
        if not self._started:
            with self._lock:
                self._ready(path)

    # -- the tree --------------------------------------------------------------------------

    def _is_dir(self, parts: tuple[str, ...], path: str) -> bool:
        return not parts or self._store.head(self._marker(parts), path) is not None

    def _walk(self, parts: tuple[str, ...], upto: int) -> None:
        """Check that ``parts[:upto]`` is a directory, with the file system backend's errors."""
        if upto == 0 or self._is_dir(parts[:upto], join(parts[:upto])):
            return  # every ancestor of a directory is a directory (made by mkdir, parents first)
        for i in range(1, upto + 1):
            prefix = join(parts[:i])
            if self._is_dir(parts[:i], prefix):
                continue
            if self._store.head(self._key(parts[:i]), prefix) is not None:
                raise not_a_directory(prefix)
            raise no_such_directory(prefix)

    def _touch(self, parts: tuple[str, ...], path: str) -> None:
        """Rewrite the marker of directory ``parts``: its modified time becomes now."""
        self._store.put(self._marker(parts), path, b"")

    def _refuse_missing(self, parts: tuple[str, ...], p: str) -> HostCallError:
        """Why the file ``parts`` could not be found: its parent's error, a directory, or none."""
        self._walk(parts, len(parts) - 1)
        return is_a_directory(p) if self._is_dir(parts, p) else no_such_file(p)

    # -- the operations --------------------------------------------------------------------

    def read_bytes(self, path: str) -> bytes:
        parts = parse_path(path)
        p = join(parts)
        if not parts:
            raise is_a_directory(p)
        self._check_open()
        limit = self.quotas.max_file_size
        blob = self._store.get(self._key(parts), p, limit)
        if blob is None:
            raise self._refuse_missing(parts, p)
        if blob.data is None:
            raise too_large_to_read(p, limit)
        return blob.data

    def write_bytes(self, path: str, data: bytes) -> None:
        parts = parse_path(path)
        p = join(parts)
        if not parts:
            raise is_a_directory(p)
        data = bytes(data)
        with self._changing(p) as tally:
            self._walk(parts, len(parts) - 1)
            meta = self._store.head(self._key(parts), p)
            if meta is None and self._is_dir(parts, p):
                raise is_a_directory(p)
            old = None if meta is None else meta.size
            with self._reserved(tally, lambda u: self.quotas.check_file(u, p, old, len(data)),
                                len(data) - (old or 0), int(old is None)):
                self._store.put(self._key(parts), p, data)

    def append_bytes(self, path: str, data: bytes) -> int:
        parts = parse_path(path)
        p = join(parts)
        if not parts:
            raise is_a_directory(p)
        key, limit = self._key(parts), self.quotas.max_file_size
        with self._changing(p) as tally:
            self._walk(parts, len(parts) - 1)
            for attempt in range(_APPEND_ATTEMPTS):
                if attempt:
                    time.sleep(random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** attempt)))
                blob = self._store.get(key, p, limit)
                if blob is None:
                    if self._is_dir(parts, p):
                        raise is_a_directory(p)
                    old, content = None, bytes(data)
                elif blob.data is None:
                    raise too_large_to_read(p, limit)
                else:
                    old, content = len(blob.data), blob.data + bytes(data)
                etag = None if blob is None else blob.meta.etag
                added = (len(content) - (old or 0), int(old is None))
                check = functools.partial(self._check_file, p=p, old=old, new=len(content))
                with self._reserved(tally, check, *added):
                    stored = self._store.put(key, p, content, if_match=etag, create=blob is None)
                if stored:
                    return len(content)
                tally.adjust(-added[0], -added[1])  # another writer changed it: give back, read again
            raise io_error(p, "the file kept changing under concurrent appends; try again")

    def list_dir(self, path: str) -> list[str]:
        parts = parse_path(path)
        p = join(parts)
        self._ensure_root(p)
        self._walk(parts, len(parts))
        objects, prefixes = self._store.children(self._dir_key(parts), p)
        names = [_dec(m.key.rsplit("/", 1)[-1]) for m in objects]
        for sub in prefixes:  # a folder is a directory only with its marker (see the docstring)
            if self._store.head(sub + "/" + DIR_MARKER, p) is not None:
                names.append(_dec(sub.rsplit("/", 1)[-1]))
        return sorted(name for name in names if is_visible_name(name))

    def exists(self, path: str) -> bool:
        parts = parse_path(path)
        if not parts:
            return True
        p = join(parts)
        self._check_open()
        return self._store.head(self._key(parts), p) is not None or self._is_dir(parts, p)

    def delete(self, path: str) -> None:
        parts = parse_path(path)
        p = join(parts)
        if not parts:
            raise HostCallError("invalid_path", "cannot delete the peer root")
        with self._changing(p) as tally:
            self._walk(parts, len(parts) - 1)
            meta = self._store.head(self._key(parts), p)
            if meta is not None:
                self._store.delete(self._key(parts), p)
                tally.adjust(-meta.size, -1)
            elif self._is_dir(parts, p):
                if self._has_entries(parts, p):
                    raise not_empty(p)
                self._store.delete(self._marker(parts), p)
                tally.adjust(0, -1)
            else:
                raise no_such_entry(p)
            self._touch(parts[:-1], p)

    def _has_entries(self, parts: tuple[str, ...], p: str) -> bool:
        objects, prefixes = self._store.children(self._dir_key(parts), p)
        if any(not m.key.endswith("/" + DIR_MARKER) for m in objects):
            return True
        return any(self._store.head(sub + "/" + DIR_MARKER, p) is not None for sub in prefixes)

    def mkdir(self, path: str) -> None:
        parts = parse_path(path)
        if not parts:
            return
        p = join(parts)
        with self._changing(p) as tally:
            i = 0
            while i < len(parts):  # descend through what exists
                here = join(parts[: i + 1])
                if not self._is_dir(parts[: i + 1], here):
                    if self._store.head(self._key(parts[: i + 1]), here) is not None:
                        raise not_a_directory(here)
                    break
                i += 1
            if i == len(parts):
                return
            adding = len(parts) - i
            tally.reserve(lambda u: self.quotas.check_entries(u, p, adding), 0, adding)
            made = 0
            try:
                for j in range(i, len(parts)):  # parents first: a marker's ancestors always have theirs
                    self._store.put(self._marker(parts[: j + 1]), join(parts[: j + 1]), b"")
                    made += 1
            finally:
                if made < adding:
                    tally.adjust(0, made - adding)  # give back what was not made
            self._touch(parts[:i], p)

    def stat(self, path: str) -> Stat:
        parts = parse_path(path)
        p = join(parts)
        self._ensure_root(p)
        if parts:
            meta = self._store.head(self._key(parts), p)
            if meta is not None:
                return Stat(meta.size, False, meta.modified)
            self._walk(parts, len(parts) - 1)
        marker = self._store.head(self._marker(parts), p)
        if marker is None:
            raise no_such_entry(p)
        objects, _ = self._store.children(self._dir_key(parts), p)
        return Stat(0, True, max([marker.modified, *(m.modified for m in objects)]))

    def usage(self) -> tuple[int, int]:
        """``(bytes, entries)`` as the tally counts them (see the module docstring)."""
        with self._lock:
            u = self._ready("").current()
            return u.bytes, u.files


def _setting(options: Mapping[str, object], key: str, default: str | None = None) -> str | None:
    value = options.get(key, default)
    return value if isinstance(value, str) else default


def open_s3(options: Mapping[str, object], site: StorageSite, quotas: Quotas,
            environ: Mapping[str, str]) -> S3Backend:
    """The s3 backend a checked ``[storage]`` table configures (keys: bucket, prefix, endpoint,
    region, access_key_env, secret_key_env), with credentials from ``environ``.

    Contacts nothing. Raises :class:`StorageConfigError` naming the key or the
    environment variable: no ``bucket``, a malformed ``prefix`` or
    ``endpoint``, a credential variable that is not set.
    """
    bucket = _setting(options, "bucket")
    if not bucket:
        raise StorageConfigError("[storage] backend = \"s3\" needs 'bucket' (the S3 bucket's name)")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
        raise StorageConfigError(f"[storage] 'bucket': {bucket!r} is not an S3 bucket name "
                                 "(3-63 characters of a-z, 0-9, '.' and '-')")
    raw_prefix = _setting(options, "prefix", site.name + "/" if site.name else "")
    assert raw_prefix is not None
    prefix = raw_prefix.strip("/")
    if prefix:
        try:
            prefix = "/".join(map(_enc, parse_path(prefix))) + "/"
        except HostCallError as exc:
            raise StorageConfigError(f"[storage] 'prefix': {exc.message}") from exc
    endpoint = _setting(options, "endpoint")
    if endpoint is not None and not re.fullmatch(r"https?://[^\s/]+/?", endpoint):
        raise StorageConfigError(f"[storage] 'endpoint': {endpoint!r} is not an http:// or https:// "
                                 "URL of a host (and port)")
    credentials = []
    for key, default in (("access_key_env", "AWS_ACCESS_KEY_ID"),
                         ("secret_key_env", "AWS_SECRET_ACCESS_KEY")):
        var = _setting(options, key, default)
        assert var is not None
        value = environ.get(var)
        if not value:
            named = f" (named by [storage] {key!r})" if key in options else ""
            raise StorageConfigError(
                f"the s3 backend's credentials: the environment variable {var}{named} is not set"
            )
        credentials.append(value)
    store = ObjectStore(bucket=bucket, endpoint=endpoint, region=_setting(options, "region", _DEFAULT_REGION)
                        or _DEFAULT_REGION, access_key=credentials[0], secret_key=credentials[1])
    tally = None
    if site.accounts is not None:  # shared by the deployment's workers: one count per storage location
        where = endpoint.rstrip("/") if endpoint else "aws"
        tally = site.accounts.tally(site.name, f"s3://{where}/{bucket}/{prefix}")
    return S3Backend(store, prefix, quotas, tally=tally)
