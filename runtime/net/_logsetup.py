"""How a serving process logs: ``--log-level``, ``--log-format``, the audit log's rotation.

:class:`LogOptions` is what ``peerbox serve`` was asked for; it configures the
standard :mod:`logging` module of the process it runs in (:meth:`LogOptions.configure`:
one handler on the ``peerbox`` logger, writing one line per record to stderr
from a thread of its own, through a bounded queue that drops rather than
blocks: :mod:`peerbox.net._logqueue`)
and hands itself on to every process that serves (:meth:`LogOptions.argv`: the
worker processes of ``--workers N`` and isolated mode's children parse the same
options with :func:`add_log_arguments`). Nothing is configured at import:
only the entry points (the CLI, a child's ``main``) call ``configure``.

Loggers: ``peerbox.access`` (one line per request, :mod:`peerbox.net._access`),
``peerbox.worker`` (processes starting, dying, restarting; internal errors),
``peerbox.policy`` (a policy that does not load), ``peerbox.audit`` (an audit
log that cannot be written), ``peerbox.h2server`` (connection-level events).

``--log-queue`` bounds the records waiting for that thread: what does not fit
is dropped and counted (``peerbox_log_records_dropped_total`` in ``/metrics``),
so a stderr nobody reads never stalls serving.

Two formats: ``text`` (``TIME LEVEL LOGGER message key=value...``) and
``json`` (one object per line: ``time``, ``level``, ``logger``, ``message``,
then the record's fields: see :data:`FIELDS_ATTR`).
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from ..peer import Rotation
from ._logqueue import FIELDS_ATTR, QUEUE_RECORDS, DroppingQueueHandler, LazyFields

__all__ = ["LogOptions", "LogLevel", "LogFormat", "add_log_arguments", "FIELDS_ATTR", "LazyFields",
           "JsonFormatter", "TextFormatter"]


class LogLevel(enum.StrEnum):
    """``--log-level``: the least severe records written."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def number(self) -> int:
        """The :mod:`logging` level number."""
        return int(getattr(logging, self.name))


class LogFormat(enum.StrEnum):
    """``--log-format``: ``text`` for people, ``json`` (one object per line) for machines."""

    TEXT = "text"
    JSON = "json"


def _time(record: logging.LogRecord) -> str:
    t = record.created
    secs = int(t)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{int((t - secs) * 1000):03d}Z"


def _fields(record: logging.LogRecord) -> Mapping[str, Any] | None:
    fields = getattr(record, FIELDS_ATTR, None)
    return fields if isinstance(fields, Mapping) else None


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ms), ``level``, ``logger``, ``message``, the
    record's fields, and ``exception`` (its traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {"time": _time(record), "level": record.levelname.lower(),
                               "logger": record.name, "message": record.getMessage()}
        fields = _fields(record)
        if fields:
            doc.update(fields)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), default=str)


def _logfmt(value: object) -> str:
    text = "-" if value is None else str(value)
    if not text or any(c in text for c in ' "=\n\\'):
        return json.dumps(text, ensure_ascii=False)
    return text


class TextFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER message key=value...`` on one line (values with spaces quoted; a
    traceback, if any, follows on its own lines)."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_time(record)} {record.levelname} {record.name} {record.getMessage()}"
        fields = _fields(record)
        if fields:
            line += " " + " ".join(f"{k}={_logfmt(v)}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


@dataclasses.dataclass(frozen=True)
class LogOptions:
    """What a serving process logs and how (see the module docstring). ``audit`` None: no audit log;
    ``queue``: the records the log queue holds before it drops (``--log-queue``)."""

    level: LogLevel = LogLevel.INFO
    format: LogFormat = LogFormat.TEXT
    audit: Rotation | None = Rotation()
    queue: int = QUEUE_RECORDS

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> LogOptions:
        """The options :func:`add_log_arguments` parsed."""
        audit = None if args.no_audit else Rotation(max_bytes=args.audit_max_bytes, keep=args.audit_keep)
        return cls(LogLevel(args.log_level), LogFormat(args.log_format), audit, args.log_queue)

    def argv(self) -> list[str]:
        """The same options as command-line arguments (for a process this one starts)."""
        out = ["--log-level", str(self.level), "--log-format", str(self.format),
               "--log-queue", str(self.queue)]
        if self.audit is None:
            return [*out, "--no-audit"]
        return [*out, "--audit-max-bytes", str(self.audit.max_bytes), "--audit-keep", str(self.audit.keep)]

    def configure(self, stream: TextIO | None = None) -> None:
        """Send the ``peerbox`` loggers' records at :attr:`level` and above to ``stream`` (default:
        stderr), one line each in :attr:`format`, written by a thread of their own through a queue
        of :attr:`queue` records that drops what does not fit
        (:class:`~peerbox.net._logqueue.DroppingQueueHandler`); replaces (and closes, flushing it)
        a handler an earlier call added."""
        logger = logging.getLogger("peerbox")
        for old in list(logger.handlers):
            if getattr(old, "peerbox_serve", False):
                logger.removeHandler(old)
                old.close()
        handler = DroppingQueueHandler(stream if stream is not None else sys.stderr, self.queue)
        handler.setFormatter(JsonFormatter() if self.format is LogFormat.JSON else TextFormatter())
        handler.peerbox_serve = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(self.level.number)
        logger.propagate = False


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from exc
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _size(text: str) -> int:
    """A size in bytes, with an optional K/M/G suffix (powers of 1024); at least 1 KiB."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    scale = units.get(t[-1:], 1)
    digits = t[:-1] if t[-1:] in units else t
    if not digits.isdigit():
        raise argparse.ArgumentTypeError(f"not a size (bytes, or with K, M, G): {text!r}")
    value = int(digits) * scale
    if value < 1024:
        raise argparse.ArgumentTypeError("must be at least 1K")
    return value


def add_log_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--log-level``, ``--log-format``, ``--log-queue``, ``--audit-max-bytes``, ``--audit-keep`` and
    ``--no-audit`` to ``parser`` (``peerbox serve`` and the processes it starts)."""
    default = Rotation()
    parser.add_argument("--log-level", choices=[str(v) for v in LogLevel], default=str(LogLevel.INFO),
                        help="the least severe log records written to stderr (default info: one access "
                        "line per request; debug adds request params, size-capped)")
    parser.add_argument("--log-format", choices=[str(v) for v in LogFormat], default=str(LogFormat.TEXT),
                        help="text (default) or json: one JSON object per line")
    parser.add_argument("--log-queue", type=_positive, default=QUEUE_RECORDS, metavar="RECORDS",
                        help="log records waiting to be written before new ones are dropped (and counted in "
                        "/metrics), so that a stderr nobody reads never stalls serving "
                        f"(default {QUEUE_RECORDS})")
    parser.add_argument("--audit-max-bytes", type=_size, default=default.max_bytes, metavar="SIZE",
                        help="rotate a peer's audit.log past this size (default 10M; K, M, G suffixes)")
    parser.add_argument("--audit-keep", type=_non_negative, default=default.keep, metavar="K",
                        help=f"rotated audit files kept: audit.log.1 .. audit.log.K (default {default.keep})")
    parser.add_argument("--no-audit", action="store_true", help="write no audit log")
