"""A peer's ``schema.toml``: reading it (bounded), and the records it describes.

:func:`load_schema` reads ``peers/NAME/schema.toml`` the way ``policy.toml``
is read (never through a symlink, at most
:data:`~peerbox.hostcalls.MAX_SCHEMA_BYTES`, UTF-8, bounded TOML: nesting and
dotted keys capped before tomllib sees the text) and hands the parsed table
and its text to :func:`peerbox.hostcalls.check_schema`, which finds the
lines of every problem. Every refusal is a
:class:`~peerbox.hostcalls.SchemaError` (``file:line: problem``, exit 2).

:class:`PeerRecords` keeps one peer's :class:`~peerbox.hostcalls.Records`
open for the process and reopens them when ``schema.toml`` changes; it is
the ``records`` opener a run's :class:`~peerbox.hostcalls.Dispatch` is given.
What a script is told when the records cannot open never names a host path.
"""

from __future__ import annotations

import os
import re
import stat
import threading
import tomllib
from pathlib import Path

from .._atomic import read_bounded
from ..hostcalls import (MAX_SCHEMA_BYTES, RECORDS_FILE, HostCallError, Records, Schema, SchemaError,
                         check_schema)
from ..policy import TomlTooComplex, loads_bounded
from ._peers import Peer

__all__ = ["SCHEMA_FILE", "load_schema", "parse_schema_text", "schema_path", "PeerRecords"]

#: The schema's file name in a peer's directory.
SCHEMA_FILE = "schema.toml"
_Stamp = tuple[int, int, int, int]
_TOML_WHERE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


def schema_path(peer: Peer) -> Path:
    """Where ``peer``'s schema lives (it may not exist)."""
    return peer.paths.dir / SCHEMA_FILE


def _read(path: Path) -> tuple[str, _Stamp]:
    file = os.fspath(path)
    try:
        fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError as exc:
        raise SchemaError.one(file, None, "no schema.toml: the peer declares no collections") from exc
    except OSError as exc:
        raise SchemaError.one(file, None, f"cannot read it: {exc.strerror or exc}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SchemaError.one(file, None, "not a regular file")
        raw = read_bounded(fd, MAX_SCHEMA_BYTES)
    except OSError as exc:
        raise SchemaError.one(file, None, f"cannot read it: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if len(raw) > MAX_SCHEMA_BYTES:
        raise SchemaError.one(file, None, f"larger than {MAX_SCHEMA_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SchemaError.one(file, line, f"not UTF-8 text (byte {exc.start})") from exc
    return text, (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)


def parse_schema_text(text: str, file: str = SCHEMA_FILE) -> Schema:
    """Check the text of a schema file. Raises :class:`SchemaError` (every problem, with lines)."""
    try:
        data = loads_bounded(text)
    except tomllib.TOMLDecodeError as exc:  # TomlTooComplex too
        m = _TOML_WHERE.search(str(exc))
        line = int(m.group(1)) if m else (exc.line if isinstance(exc, TomlTooComplex) else None)
        msg = str(exc)[: m.start()] if m else str(exc)
        raise SchemaError.one(file, line, f"invalid TOML: {msg}") from exc
    return check_schema(data, text, file)


def load_schema(peer: Peer) -> Schema:
    """``peer``'s checked schema. Raises :class:`SchemaError` (``file:line: problem``) when it is
    missing, unreadable, too large, not UTF-8, not TOML or not a valid schema."""
    text, _ = _read(schema_path(peer))
    return parse_schema_text(text, os.fspath(schema_path(peer)))


class PeerRecords:
    """One peer's records for this process: opened on the first ``db::`` call, reopened when
    ``schema.toml`` changes. Call the object to get them (the Dispatch's ``records`` opener)."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self._lock = threading.Lock()
        self._open: Records | None = None
        self._stamp: _Stamp | None = None
        self._closed = False

    def __call__(self) -> Records:
        """The open records. Raises :class:`HostCallError` ``unsupported`` (no schema.toml, a schema
        that does not check: the message says to run ``peerbox schema check``) or ``io_error``."""
        path = schema_path(self.peer)
        with self._lock:
            if self._closed:
                raise HostCallError("unsupported", "the peer's records are closed")
            try:
                st = os.stat(path, follow_symlinks=False)
                stamp: _Stamp | None = (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)
            except OSError:
                stamp = None
            if self._open is not None and stamp == self._stamp:
                return self._open
            try:
                text, stamp = _read(path)
                schema = parse_schema_text(text, SCHEMA_FILE)
            except SchemaError as exc:
                missing = exc.line is None and "no schema.toml" in exc.problem
                raise HostCallError("unsupported", "this peer keeps no records: declare collections in its "
                                    "schema.toml" if missing else
                                    f"the peer's schema.toml does not check ({SCHEMA_FILE}:"
                                    f"{exc.line or '?'}); "
                                    f"see peerbox schema check {self.peer.name}") from exc
            if self._open is not None:
                self._open.close()
                self._open = None
            self._open = Records(self.peer.paths.dir / RECORDS_FILE, schema)
            self._stamp = stamp
            return self._open

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._open is not None:
                self._open.close()
                self._open = None
