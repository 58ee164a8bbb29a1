"""Local peers: their identities, on-disk layout and (placeholder) policy.

A peer is a directory ``<root>/peers/<NAME>/`` made by :meth:`PeerStore.init`::

    peer.key      the 32-byte Ed25519 secret seed as 64 hex digits; mode 0600,
                  created with O_EXCL so it is never readable by others, even briefly
    peer.toml     metadata: format, did, backend, created (written last: a peer
                  directory without it is an interrupted ``init``)
    policy.toml   the peer's policy; for now a default-deny placeholder that lets
                  the owner do everything (the format is the trust issue's)
    logic/        the peer's own script modules
    files/        its storage with the ``fs`` backend, or
    storage.sqlite  its database with the ``sqlite`` backend (created by the backend)

The storage backend is ``backend`` in ``peer.toml`` (what ``init`` writes),
or ``backend`` in an optional ``[storage]`` table, which also holds that
backend's settings (``[storage] backend = "s3"``, ``bucket = ...``: see
:mod:`peerbox.hostcalls._open`); a malformed table is a :class:`CorruptPeer`
naming the key.

The name is only a local alias (the directory's name); the peer's identity is
its ``did:key``. The root is ``--root``, else ``$PEERBOX_ROOT``, else
``./peerbox-data`` (see :func:`resolve_root`).

Every failure is a :class:`PeerError` (a :class:`~peerbox.UsageError`, CLI
exit 2) with a message naming the peer and the file.
"""

from __future__ import annotations

import errno
import os
import re
import threading
import shutil
import stat
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, UTC
from pathlib import Path
from typing import Any, Literal

from ..hostcalls import StorageConfigError, check_storage
from ..policy import Policy
from ..policy import load as load_policy
from ..policy import loads_bounded
from .._atomic import read_bounded
from .._errors import UsageError
from ..wire import IdentityError, KeyPair, public_key_from_did

__all__ = [
    "PeerStore",
    "Peer",
    "PeerPaths",
    "PeerError",
    "InvalidPeerName",
    "PeerExists",
    "PeerNotFound",
    "RootNotFound",
    "CorruptPeer",
    "InsecureKeyFile",
    "resolve_root",
    "validate_peer_name",
    "Backend",
    "BACKENDS",
    "ENV_ROOT",
    "DEFAULT_ROOT",
]

Backend = Literal["fs", "sqlite", "s3"]
#: The storage backends a peer can be created with (``init --backend``; s3 is configured in
#: ``peer.toml``'s ``[storage]`` table, as it needs settings).
BACKENDS: tuple[Backend, ...] = ("fs", "sqlite")
#: The environment variable naming the default root.
ENV_ROOT = "PEERBOX_ROOT"
#: The root used when neither ``--root`` nor ``$PEERBOX_ROOT`` is given (relative to the cwd).
DEFAULT_ROOT = "peerbox-data"

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_FORMAT = 1
_MAX_TEXT = 1 << 20  # peer.toml / policy.toml larger than this are refused
_KEY_FILE, _META_FILE, _POLICY_FILE = "peer.key", "peer.toml", "policy.toml"
_LOGIC_DIR, _FILES_DIR, _SQLITE_FILE = "logic", "files", "storage.sqlite"


# --------------------------------------------------------------------- errors


class PeerError(UsageError):
    """A problem with a peer or the peer root. ``peer`` names the peer when there is one."""

    def __init__(self, message: str, *, peer: str | None = None) -> None:
        super().__init__(message)
        self.peer = peer


class InvalidPeerName(PeerError):
    """A peer name outside ``[a-z0-9][a-z0-9_-]{0,62}``."""


class PeerExists(PeerError):
    """``init`` of a name that already exists under the root."""


class PeerNotFound(PeerError):
    """No peer of that name under the root."""


class RootNotFound(PeerError):
    """The peer root does not exist (or is not a directory)."""


class CorruptPeer(PeerError):
    """A peer directory that cannot be loaded: missing or malformed files, key not matching the did."""


class InsecureKeyFile(PeerError):
    """``peer.key`` is readable by group/others or owned by another user: refused until fixed."""


# ---------------------------------------------------------------- the model


@dataclass(frozen=True, slots=True)
class PeerPaths:
    """Where a peer's parts live (absolute paths; ``storage`` depends on the backend)."""

    dir: Path
    key: Path
    meta: Path
    policy: Path
    logic: Path
    storage: Path  # files/ (fs; unused by s3) or storage.sqlite (sqlite)

    @classmethod
    def of(cls, peer_dir: Path, backend: Backend) -> PeerPaths:
        """The layout of the peer directory ``peer_dir`` for ``backend``."""
        storage = _SQLITE_FILE if backend == "sqlite" else _FILES_DIR
        return cls(
            dir=peer_dir, key=peer_dir / _KEY_FILE, meta=peer_dir / _META_FILE,
            policy=peer_dir / _POLICY_FILE, logic=peer_dir / _LOGIC_DIR, storage=peer_dir / storage,
        )


@dataclass(frozen=True, slots=True)
class Peer:
    """A local peer: ``name`` (local alias), ``did`` (its id), ``public_key``, ``backend``, ``paths``.

    Loading a ``Peer`` never touches the secret key; :meth:`signing_key`
    does, and checks the key file's permissions first.
    """

    name: str
    did: str
    backend: Backend
    public_key: bytes = field(repr=False)
    created: str = field(repr=False)
    paths: PeerPaths = field(repr=False)

    def principal(self) -> dict[str, str]:
        """The ``#{id, name}`` map scripts see as ``caller``/``target`` for this peer."""
        return {"id": self.did, "name": self.name}

    def signing_key(self) -> KeyPair:
        """Load the peer's key pair from ``peer.key``.

        Raises :class:`InsecureKeyFile` when the file is readable or writable
        by group/others or owned by another user (like ssh, a secret key that
        others could read is treated as leaked), and :class:`CorruptPeer` when
        it is missing, a symlink, not a regular file, malformed, or does not
        match the did in ``peer.toml``. The error never includes key material.
        """
        path = self.paths.key
        flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            fd = os.open(path, flags)
        except FileNotFoundError as exc:
            raise CorruptPeer(f"peer {self.name!r} has no key file {path}", peer=self.name) from exc
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise CorruptPeer(f"{path} is a symlink; refusing to follow it", peer=self.name) from exc
            raise CorruptPeer(f"cannot read {path}: {exc.strerror or exc}", peer=self.name) from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise CorruptPeer(f"{path} is not a regular file", peer=self.name)
            if st.st_mode & 0o077:
                raise InsecureKeyFile(
                    f"{path} is accessible by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
                    f"the secret key must be private: run `chmod 600 {path}`",
                    peer=self.name,
                )
            if st.st_uid != os.geteuid():
                raise InsecureKeyFile(
                    f"{path} is owned by uid {st.st_uid}, not by you (uid {os.geteuid()})", peer=self.name
                )
            data = read_bounded(fd, 256)
        finally:
            os.close(fd)
        text = data[:-1] if data.endswith(b"\n") else data
        if len(text) != 64 or not re.fullmatch(rb"[0-9a-f]{64}", text):
            raise CorruptPeer(f"{path} is malformed (expected 64 lowercase hex digits)", peer=self.name)
        pair = KeyPair.from_seed(bytes.fromhex(text.decode("ascii")))
        if pair.public_key != self.public_key:
            raise CorruptPeer(
                f"{path} does not match the did in {self.paths.meta} ({self.did})", peer=self.name
            )
        return pair

    def read_meta(self) -> dict[str, Any]:
        """The table in ``peer.toml``, read again now (e.g. for its ``[quotas]``).

        Read like :meth:`PeerStore.get` reads it: never through a symlink, at
        most 1 MiB, nesting and dotted keys bounded. Raises
        :class:`CorruptPeer` naming the file, line and problem when it no
        longer reads or parses.
        """
        path = self.paths.meta
        _, data = _parse_toml(path, lambda msg, line, col: CorruptPeer(
            _at(path, line, col) + ": " + msg, peer=self.name))
        return data

    def load_policy(self) -> Policy:
        """This peer's compiled policy (see :mod:`peerbox.policy`).

        Raises :class:`peerbox.policy.PolicyError` naming the file, line and
        problem for a policy that does not load.
        """
        return load_policy(self.paths.policy)


# --------------------------------------------------------------- the store


def resolve_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The peer root: ``root`` if given, else ``$PEERBOX_ROOT`` if set and non-empty, else
    ``./peerbox-data``; made absolute against the current directory (symlinks kept)."""
    chosen: str | os.PathLike[str] = root if root is not None else (os.environ.get(ENV_ROOT) or DEFAULT_ROOT)
    if isinstance(chosen, str) and not chosen:
        raise UsageError("the peer root must not be an empty path")
    return Path(os.path.abspath(os.fspath(chosen)))


def validate_peer_name(name: object) -> str:
    """Return ``name`` if it is a valid peer name, else raise :class:`InvalidPeerName`.

    Names are 1-63 characters of lowercase ASCII letters, digits, ``_`` and
    ``-``, starting with a letter or digit: safe as a directory name on every
    filesystem, in a URL and in a policy file.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidPeerName(
            f"invalid peer name {name!r}: use 1-63 characters of a-z, 0-9, '_' and '-', "
            "starting with a letter or digit"
        )
    return name


class PeerStore:
    """The peers under one root: ``PeerStore(root).init(name)``, ``.get(name)``, ``.list()``."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root: Path = resolve_root(root)
        self.peers_dir: Path = self.root / "peers"
        self._index: dict[str, Peer] = {}
        self._index_sig: tuple[int, int] | None = None
        self._index_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PeerStore({str(self.root)!r})"

    def init(self, name: str, backend: str = "fs", *, key_pair: KeyPair | None = None) -> Peer:
        """Create peer ``name`` with a new key pair (or ``key_pair``) and return it.

        Creates the root and ``peers/`` if needed (mode 0700). Raises
        :class:`InvalidPeerName`, :class:`PeerExists` (also for a half-created
        directory left by an interrupted ``init``), :class:`UsageError` for an
        unknown backend, and :class:`PeerError` when the files cannot be
        written; on failure nothing of the new peer is left behind.
        """
        validate_peer_name(name)
        if backend not in BACKENDS:
            raise UsageError(f"unknown storage backend {backend!r} (choose from {', '.join(BACKENDS)})")
        chosen: Backend = "fs" if backend == "fs" else "sqlite"
        if self.root.exists() and not self.root.is_dir():
            raise RootNotFound(f"the peer root {self.root} is not a directory")
        try:
            os.makedirs(self.peers_dir, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise PeerError(f"cannot create {self.peers_dir}: {exc.strerror or exc}") from exc
        peer_dir = self.peers_dir / name
        try:
            os.mkdir(peer_dir, 0o700)  # the exclusive claim on the name
        except FileExistsError as exc:
            raise PeerExists(f"a peer named {name!r} already exists in {self.peers_dir}", peer=name) from exc
        except OSError as exc:
            raise PeerError(f"cannot create {peer_dir}: {exc.strerror or exc}", peer=name) from exc
        pair = key_pair if key_pair is not None else KeyPair.generate()
        created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        paths = PeerPaths.of(peer_dir, chosen)
        try:
            _write_new(paths.key, (pair.secret_seed().hex() + "\n").encode("ascii"), mode=0o600)
            _write_new(paths.policy, _policy_text(name, pair.did).encode("utf-8"), mode=0o644)
            os.mkdir(paths.logic, 0o700)
            if chosen == "fs":
                os.mkdir(paths.storage, 0o700)
            meta = _meta_text(pair.did, chosen, created).encode("utf-8")
            tmp = peer_dir / (".tmp-" + _META_FILE)
            _write_new(tmp, meta, mode=0o644)
            os.rename(tmp, paths.meta)  # peer.toml appears last and whole: the peer is complete
            _fsync_dir(peer_dir)
            _fsync_dir(self.peers_dir)
        except BaseException as exc:
            shutil.rmtree(peer_dir, ignore_errors=True)
            if isinstance(exc, OSError):
                raise PeerError(f"cannot create peer {name!r} in {peer_dir}: {exc.strerror or exc}",
                                peer=name) from exc
            raise
        return Peer(name=name, did=pair.did, backend=chosen, public_key=pair.public_key,
                    created=created, paths=paths)

    def get(self, name: str) -> Peer:
        """Load peer ``name``. Raises :class:`InvalidPeerName`, :class:`RootNotFound`,
        :class:`PeerNotFound` or :class:`CorruptPeer` (with the file and problem)."""
        validate_peer_name(name)
        self._require_root()
        peer_dir = self.peers_dir / name
        try:
            st = os.lstat(peer_dir)
        except FileNotFoundError as exc:
            raise PeerNotFound(f"no peer named {name!r} in {self.peers_dir}", peer=name) from exc
        except OSError as exc:
            raise PeerError(f"cannot read {peer_dir}: {exc.strerror or exc}", peer=name) from exc
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise CorruptPeer(f"{peer_dir} is not a directory (symlinks are not followed)", peer=name)
        meta_path = peer_dir / _META_FILE
        if not os.path.lexists(meta_path):
            raise CorruptPeer(
                f"peer {name!r} is incomplete ({meta_path} is missing; an interrupted `init`?): "
                f"remove {peer_dir} and create it again", peer=name,
            )
        _, data = _parse_toml(meta_path, lambda msg, line, col: CorruptPeer(
            _at(meta_path, line, col) + ": " + msg, peer=name))
        if type(data.get("format")) is not int or data.get("format") != _FORMAT:
            raise CorruptPeer(f"{meta_path}: unsupported format {data.get('format')!r} (expected {_FORMAT})",
                              peer=name)
        did, backend, created = data.get("did"), data.get("backend"), data.get("created")
        if not isinstance(did, str):
            raise CorruptPeer(f"{meta_path}: 'did' is missing or not a string", peer=name)
        try:
            public_key = public_key_from_did(did)
        except IdentityError as exc:
            raise CorruptPeer(f"{meta_path}: {exc}", peer=name) from exc
        table = data.get("storage")
        if table is not None:
            if not isinstance(table, dict):
                raise CorruptPeer(f"{meta_path}: 'storage' must be a table ([storage])", peer=name)
            try:
                backend = check_storage(table)[0].kind
            except StorageConfigError as exc:
                raise CorruptPeer(f"{meta_path}: {exc}", peer=name) from exc
        elif backend not in BACKENDS:
            raise CorruptPeer(f"{meta_path}: 'backend' must be one of {', '.join(BACKENDS)}, "
                              f"got {backend!r}", peer=name)
        chosen: Backend = "fs" if backend == "fs" else "sqlite" if backend == "sqlite" else "s3"
        return Peer(name=name, did=did, backend=chosen, public_key=public_key,
                    created=str(created) if created is not None else "",
                    paths=PeerPaths.of(peer_dir, chosen))

    def scan(self) -> tuple[list[Peer], list[PeerError]]:
        """Every peer under the root, sorted by name, and the errors of those that do not load.

        Entries of ``peers/`` that are not valid peer names (temporary or
        hidden files) are ignored. Raises :class:`RootNotFound` for a missing
        root; a root without ``peers/`` has no peers.
        """
        self._require_root()
        try:
            names = sorted(e.name for e in os.scandir(self.peers_dir))
        except FileNotFoundError:
            return [], []
        except OSError as exc:
            raise PeerError(f"cannot list {self.peers_dir}: {exc.strerror or exc}") from exc
        peers: list[Peer] = []
        errors: list[PeerError] = []
        for name in names:
            if not _NAME.fullmatch(name):
                continue
            try:
                peers.append(self.get(name))
            except PeerNotFound:
                continue  # removed while listing
            except PeerError as exc:
                errors.append(exc)
        return peers, errors

    def list(self) -> list[Peer]:
        """The peers that load, sorted by name (see :meth:`scan` for the ones that do not)."""
        return self.scan()[0]

    def by_did(self, did: str) -> Peer | None:
        """The local peer whose id is ``did``, or ``None``."""
        return self.index().get(did)

    def index(self) -> dict[str, Peer]:
        """Every local peer by did: one shared, cached map, re-read when ``peers/`` changes.

        Reading every ``peer.toml`` costs ~0.1 ms a peer, too much per request
        on a worker hosting many peers. A new or removed peer changes the
        directory's mtime, which invalidates the map.
        """
        try:
            st = os.stat(self.peers_dir)
            sig: tuple[int, int] | None = (st.st_mtime_ns, st.st_ino)
        except OSError:
            sig = None
        with self._index_lock:
            if sig is None or sig != self._index_sig:
                self._index = {p.did: p for p in self.list()}
                self._index_sig = sig
            return self._index

    def _require_root(self) -> None:
        if not self.root.is_dir():
            raise RootNotFound(
                f"no peer root at {self.root} (create a peer with `peerbox init NAME`, "
                f"or choose the root with --root or ${ENV_ROOT})"
            )


# ------------------------------------------------------------ file helpers


def _write_new(path: Path, data: bytes, *, mode: int) -> None:
    """Create ``path`` exclusively (O_EXCL, never through a symlink) with ``mode``, write, fsync.

    ``mode`` is given to open(2), so the file never exists with wider
    permissions; fchmod then undoes a umask that would have narrowed it.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _at(path: Path, line: int | None, col: int | None) -> str:
    return str(path) + (f":{line}" if line else "") + (f":{col}" if line and col else "")


_TOML_WHERE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


_ErrorMaker = Callable[[str, int | None, int | None], PeerError]


def _parse_toml(path: Path, error: _ErrorMaker) -> tuple[str, dict[str, Any]]:
    """Read and parse a small TOML file (never through a symlink); return its text and table.

    At most ``_MAX_TEXT`` bytes are read, and the text is parsed by
    :func:`peerbox.policy.loads_bounded` (nesting and dotted keys
    bounded, so no input makes the parser recurse or work without bound).
    Problems (missing, not a regular file, too large, not UTF-8, not TOML,
    nested too deeply) become ``error(message, line, column)``, raised.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError as exc:
        raise error("file is missing", None, None) from exc
    except OSError as exc:
        raise error(f"cannot read it: {exc.strerror or exc}", None, None) from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise error("not a regular file", None, None)
        raw = read_bounded(fd, _MAX_TEXT)
    finally:
        os.close(fd)
    if len(raw) > _MAX_TEXT:
        raise error(f"larger than {_MAX_TEXT} bytes", None, None)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise error(f"not UTF-8 text (byte {exc.start})", line, None) from exc
    try:
        return text, loads_bounded(text)
    except tomllib.TOMLDecodeError as exc:  # TomlTooComplex (too deep, too many key parts) too
        msg = str(exc)
        m = _TOML_WHERE.search(msg)
        if m is None:
            if msg.endswith("(at end of document)"):  # point at the last line
                last = max(1, len(text.splitlines()))
                problem = f"invalid TOML: {msg[:-21].rstrip()} at the end of the file"
                raise error(problem, last, None) from exc
            raise error(f"invalid TOML: {msg}", None, None) from exc
        raise error(f"invalid TOML: {msg[: m.start()]}", int(m.group(1)), int(m.group(2))) from exc


# ----------------------------------------------------- metadata and policy


def _meta_text(did: str, backend: Backend, created: str) -> str:
    return (
        "# peerbox peer metadata, written by `peerbox init`. The secret key is in peer.key;\n"
        "# the peer's name is the name of this directory.\n"
        f"format = {_FORMAT}\n"
        f'did = "{did}"\n'
        f'backend = "{backend}"\n'
        f'created = "{created}"\n'
    )


_POLICY_TEMPLATE = """\
# Policy of peer "{name}" ({did}).
#
# Deny by default: a request is allowed only when an `allow` rule matches it
# and no `deny` rule does (a deny always beats an allow).
#
# Each [[rule]] names
#   who       "owner" (this peer itself), a did:key, a local peer name,
#             "group:NAME", or "*" for any authenticated peer
#   actions   "exec", "call" (call a published function), "fs.read",
#             "fs.write" (create or replace a file), "fs.append",
#             "fs.mkdir", "fs.delete", "fs.list", "module.import",
#             "delegate" (issue capabilities), or "*" for all of these
#             ("fs.*": the six fs ones); "logic.read" and "logic.write"
#             (read or install the peer's logic modules remotely,
#             `peerbox logic ... --from`) are never part of "*": name them,
#             or "logic.*" for both
#   effect    "allow" or "deny"
#   resources (optional) path globs such as "inbox/**" for fs.* actions,
#             module names for module.import and logic.*, MODULE::FUNCTION
#             for call ("inbox::deliver", "inbox::*"); all resources when
#             left out
#
# Optional per rule: limits = {{ fuel = N, timeout = SECONDS, memory = BYTES,
# calls_per_minute = N, burst = N, max_bytes = BYTES, max_files = N }}
# (allow rules with exec or call: caps on the run, the caller's rate, and
# what the caller's requests may keep in storage) and
# expires = 2030-01-01T00:00:00Z.
# Groups: a [groups] table, NAME = ["did:key:...", "peer-name", ...].
# Check with `peerbox policy check {name}`; try requests with
# `peerbox policy explain {name} --caller WHO --action ACTION [--path P]`.

version = 2

[[rule]]
who = "owner"
actions = ["*", "logic.*"]
effect = "allow"
"""


def _policy_text(name: str, did: str) -> str:
    return _POLICY_TEMPLATE.format(name=name, did=did)


