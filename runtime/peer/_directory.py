"""Where peers are reachable, and who they are: the directory ``<root>/peers.toml``.

A small TOML file mapping a peer's local name to its did and the URL of the
worker that hosts it::

    # peerbox directory: where peers are reachable (peerbox directory add NAME DID [URL])
    [peers.bob]
    did = "did:key:z6Mk..."
    url = "http://127.0.0.1:7700"

    [peers.carol]                   # no URL: a peer that only calls us (known by name, never called)
    did = "did:key:z6Mk..."

A worker names its callers from the same file (``caller.name``, ``who =
"carol"`` in a policy; see :mod:`._names`), so whoever may edit it decides
who a name is: protect it like ``policy.toml``.

Several peers may share a URL (a shared-mode worker hosts many); the client
reuses one connection per URL origin. The name is a local alias, exactly like
a local peer's name; the did is the identity the client checks every reply
against, so a wrong or hostile URL can make a call fail but never make a
forged reply look genuine.

Writes are atomic (a temporary file, fsync, rename) and serialized with an
advisory lock, so concurrent ``add`` calls never lose an entry or leave a
half-written file. They change only the entry concerned: comments, blank
lines and the order of the file stay as written (:mod:`._toml_edit`).
Every failure is a :class:`DirectoryError` (a :class:`~peerbox.UsageError`,
CLI exit 2) naming the file and the problem.
"""

from __future__ import annotations

import fcntl
import os
import stat
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .._atomic import read_bounded, write_atomic
from .._errors import UsageError
from ..wire import IdentityError, public_key_from_did
from ._peers import InvalidPeerName, resolve_root, validate_peer_name
from ..policy import loads_bounded
from ._toml_edit import EditFailed, remove_entry, set_entry

__all__ = [
    "Directory",
    "Entry",
    "DirectoryError",
    "UnknownPeer",
    "InvalidEntry",
    "EntryExists",
    "CorruptDirectory",
    "validate_url",
    "DIRECTORY_FILE",
]

#: The directory's file name under the peer root.
DIRECTORY_FILE = "peers.toml"
_MAX_SIZE = 4 << 20
_MAX_URL = 2048


class DirectoryError(UsageError):
    """A problem with the directory file or one of its entries."""


class UnknownPeer(DirectoryError):
    """No entry with that name or did."""


class InvalidEntry(DirectoryError):
    """An entry that cannot be added: bad name, did or URL."""


class EntryExists(DirectoryError):
    """``add`` of a name already in the directory (pass ``replace=True`` to change it)."""


class CorruptDirectory(DirectoryError):
    """``peers.toml`` exists but cannot be read or parsed (the message says where)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One known peer: local ``name``, ``did``, its Ed25519 ``public_key`` and worker ``url``
    (None: a peer known only as a caller, which cannot be sent to)."""

    name: str
    did: str
    public_key: bytes = field(repr=False)
    url: str | None = None


def _read_bounded(path: Path, limit: int) -> tuple[bytes, tuple[int, int, int]]:
    """At most ``limit + 1`` bytes of the regular file ``path`` and its ``(inode, mtime_ns, size)``.

    Opened non-blocking, so a FIFO swapped in for the file cannot hang the
    reader (it is refused as not a regular file, like a device or a
    directory). Raises :class:`OSError` (``FileNotFoundError`` when missing)
    and :class:`CorruptDirectory` for something that is not a regular file.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CorruptDirectory(f"{path} is not a regular file")
        data = read_bounded(fd, limit)
    finally:
        os.close(fd)
    return data, (st.st_ino, st.st_mtime_ns, st.st_size)


#: The URL schemes a directory entry may name (the transports a client can pick from).
_SCHEMES = frozenset({"http", "https", "ws", "wss", "nats"})


def validate_url(url: object) -> str:
    """Return ``url`` normalized (no trailing ``/``) if it is a worker URL, else raise :class:`InvalidEntry`.

    Accepted: ``http://``, ``https://`` (HTTP/2), ``ws://``, ``wss://`` (WebSocket) or
    ``nats://`` (NATS) followed by ``HOST[:PORT]`` (IPv6 hosts in brackets) with at
    most a trailing ``/``: no user info, path, query or
    fragment, printable ASCII only. The client adds ``/v1/exec`` itself.
    """
    if not isinstance(url, str):
        raise InvalidEntry(f"a URL must be a string, not {type(url).__name__}")
    shown = url if len(url) <= 80 else url[:80] + "…"
    if len(url) > _MAX_URL or not url.isascii() or not url.isprintable() or any(
            c in url for c in ' "\\'):
        raise InvalidEntry(f"invalid URL {shown!r}: printable ASCII without spaces, quotes or "
                           "backslashes, at most 2048 characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidEntry(f"invalid URL {shown!r}: {exc}") from exc
    if parts.scheme not in _SCHEMES:
        raise InvalidEntry(f"invalid URL {shown!r}: the scheme must be http:// (h2c), https:// (TLS), "
                           "ws:// or wss:// (WebSocket) or nats:// (NATS)")
    if not parts.hostname:
        raise InvalidEntry(f"invalid URL {shown!r}: no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidEntry(f"invalid URL {shown!r}: user info is not allowed")
    if parts.path not in ("", "/") or parts.query or parts.fragment or url.endswith(("?", "#")):
        raise InvalidEntry(f"invalid URL {shown!r}: give only scheme://host:port (no path, query or "
                           "fragment)")
    if port == 0:
        raise InvalidEntry(f"invalid URL {shown!r}: port 0")
    return url.rstrip("/")


def _check_did(did: object) -> bytes:
    if not isinstance(did, str):
        raise InvalidEntry(f"a did must be a string, not {type(did).__name__}")
    try:
        return public_key_from_did(did)
    except IdentityError as exc:
        raise InvalidEntry(str(exc)) from exc


class Directory:
    """The directory of one peer root: ``Directory(root).add(...)``, ``.resolve(x)``, ``.list()``.

    ``root`` is the peer root (``--root``; default ``$PEERBOX_ROOT``, else
    ``./peerbox-data``); the file is ``<root>/peers.toml``. A path ending in
    ``.toml`` is taken as the file itself. The file is checked on every call
    (re-parsed when its inode, mtime or size changed), so edits by another
    process apply at once.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        if root is not None and os.fspath(root).endswith(".toml"):
            self.path: Path = Path(os.path.abspath(os.fspath(root)))
        else:
            self.path = resolve_root(root) / DIRECTORY_FILE
        # The parsed entries and the (inode, mtime, size) they were read at: a client resolves
        # a target on every call, and re-parsing an unchanged file each time is wasted work.
        self._cache: tuple[tuple[int, int, int], tuple[Entry, ...]] | None = None

    def __repr__(self) -> str:
        return f"Directory({str(self.path)!r})"

    # ----------------------------------------------------------------- reading

    def list(self) -> list[Entry]:
        """Every entry, sorted by name. A missing file is an empty directory.

        Raises :class:`CorruptDirectory` for a file that does not parse or
        holds an invalid entry (with the entry's name and the problem).
        """
        return list(self.entries())

    def entries(self) -> tuple[Entry, ...]:
        """Every entry, sorted by name, as :meth:`list`; the same tuple object
        for as long as the file is unchanged, so a caller may cache what it
        derives from it and compare by identity. Raises :class:`CorruptDirectory`.
        """
        try:
            st = os.stat(self.path)
            if self._cache is not None and self._cache[0] == (st.st_ino, st.st_mtime_ns, st.st_size):
                return self._cache[1]
            data, stamp = _read_bounded(self.path, _MAX_SIZE)
        except FileNotFoundError:
            self._cache = None
            return ()
        except OSError as exc:
            raise CorruptDirectory(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        if len(data) > _MAX_SIZE:
            raise CorruptDirectory(f"{self.path} is larger than {_MAX_SIZE} bytes")
        try:
            doc = loads_bounded(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise CorruptDirectory(f"{self.path}: not UTF-8 ({exc.reason} at byte {exc.start})") from exc
        except tomllib.TOMLDecodeError as exc:  # TomlTooComplex (too deep, too many key parts) too
            raise CorruptDirectory(f"{self.path}: {exc}") from exc
        unknown = set(doc) - {"peers"}
        if unknown:
            raise CorruptDirectory(f"{self.path}: unknown top-level keys {sorted(unknown)!r}")
        peers = doc.get("peers", {})
        if not isinstance(peers, dict):
            raise CorruptDirectory(f"{self.path}: 'peers' must be a table")
        out: list[Entry] = []
        for name, item in peers.items():
            where = f"{self.path}: [peers.{name}]"
            if not isinstance(item, dict) or "did" not in item or not set(item) <= {"did", "url"}:
                raise CorruptDirectory(f"{where} must have 'did' and may have 'url', nothing else")
            try:
                validate_peer_name(name)
                key = _check_did(item["did"])
                url = validate_url(item["url"]) if "url" in item else None
            except (InvalidEntry, InvalidPeerName) as exc:
                raise CorruptDirectory(f"{where}: {exc}") from exc
            out.append(Entry(name=name, did=item["did"], public_key=key, url=url))
        out.sort(key=lambda e: e.name)
        entries = tuple(out)
        self._cache = (stamp, entries)
        return entries

    def get(self, name: str) -> Entry:
        """The entry named ``name``. Raises :class:`UnknownPeer` (or :class:`CorruptDirectory`)."""
        for entry in self.list():
            if entry.name == name:
                return entry
        raise UnknownPeer(f"no peer named {name!r} in {self.path} "
                          f"(add it with `peerbox directory add {name} DID [URL]`)")

    def resolve(self, name_or_did: str) -> Entry:
        """The entry for a name, or for a ``did:key`` (the first entry with that did, by name).

        Raises :class:`InvalidEntry` for a malformed did, :class:`UnknownPeer`
        when nothing matches, :class:`CorruptDirectory` for a broken file.
        """
        if not isinstance(name_or_did, str) or not name_or_did:
            raise UnknownPeer("a target must be a peer name or a did:key")
        if name_or_did.startswith("did:"):
            key = _check_did(name_or_did)
            for entry in self.list():
                if entry.public_key == key:
                    return entry
            raise UnknownPeer(f"{name_or_did} is not in {self.path} (no known URL for it; add it with "
                              f"`peerbox directory add NAME {name_or_did} URL`)")
        return self.get(name_or_did)

    # ----------------------------------------------------------------- writing

    def add(self, name: str, did: str, url: str | None = None, *, replace: bool = False) -> Entry:
        """Add (or with ``replace=True`` update) the entry ``name`` -> ``did`` at ``url``
        (None: a peer known only as a caller).

        Raises :class:`InvalidEntry` (bad name, did or URL), :class:`EntryExists`,
        :class:`CorruptDirectory` (the existing file is broken: fix it first,
        nothing is overwritten) or :class:`DirectoryError` when the file
        cannot be written. Creates the root if needed.
        """
        try:
            validate_peer_name(name)
        except InvalidPeerName as exc:
            raise InvalidEntry(str(exc)) from exc
        key = _check_did(did)
        url = None if url is None else validate_url(url)
        entry = Entry(name=name, did=did, public_key=key, url=url)
        with self._locked():
            entries = {e.name: e for e in self.list()}
            if name in entries and not replace and entries[name] != entry:
                old = entries[name]
                at = f" at {old.url}" if old.url is not None else ""
                raise EntryExists(f"{name!r} is already in {self.path} ({old.did}{at}); "
                                  "use --replace to change it")
            if entries.get(name) != entry:
                self._edit(lambda text: set_entry(text, name, did, url))
        return entry

    def remove(self, name: str) -> Entry:
        """Remove the entry ``name`` and return it (the rest of the file stays as written).

        Raises :class:`UnknownPeer` when there is no such entry,
        :class:`CorruptDirectory` for a broken file, :class:`DirectoryError`
        when the file cannot be written.
        """
        with self._locked():
            entries = {e.name: e for e in self.list()}
            if name not in entries:
                listed = ", ".join(sorted(entries)) or "none"
                raise UnknownPeer(f"no peer named {name!r} in {self.path} (listed: {listed})")
            self._edit(lambda text: remove_entry(text, name))
        return entries[name]

    @contextmanager
    def _locked(self) -> Iterator[None]:
        lock_path = self.path.with_name("." + self.path.name + ".lock")
        try:
            os.makedirs(self.path.parent, mode=0o700, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise DirectoryError(f"cannot lock {lock_path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _edit(self, change: Callable[[str], str]) -> None:
        """Rewrite the file (atomically) as ``change`` makes its text; called under the lock,
        after :meth:`list` has checked the file. Raises :class:`DirectoryError`."""
        try:
            data, _ = _read_bounded(self.path, _MAX_SIZE)
            text = data.decode("utf-8")
        except FileNotFoundError:
            text = ""
        except (OSError, UnicodeDecodeError) as exc:
            raise CorruptDirectory(f"cannot read {self.path}: {exc}") from exc
        try:
            new = change(text)
        except EditFailed as exc:
            raise DirectoryError(f"{self.path}: {exc}; edit the file by hand") from exc
        try:
            write_atomic(self.path, new.encode("utf-8"))
        except OSError as exc:
            raise DirectoryError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
