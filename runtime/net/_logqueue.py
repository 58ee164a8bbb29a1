"""Log records written by a thread of their own: logging never blocks the event loop.

A serving process's log lines go to stderr, which may be a pipe nobody
drains, a slow terminal or a journald that pushes back. A ``write(2)`` there
blocks once the pipe's buffer is full; done on the trio thread, that would stop
every request of the process. :class:`DroppingQueueHandler` is the one handler
:meth:`~peerbox.net._logsetup.LogOptions.configure` puts on the ``peerbox``
logger: ``emit`` only puts the record on a bounded queue (a lock, a
``getMessage``, an append: no formatting, no I/O), and one writer thread
formats and writes each record through the real handler (a
:class:`logging.StreamHandler`), the way nginx's and hypercorn's access logs
never hold up a request.

When the queue is full the record is dropped, never waited for, and counted:
:attr:`DroppingQueueHandler.dropped` (every drop of the process, for
``peerbox_log_records_dropped_total`` in ``/metrics``, see :func:`dropped_records`),
and, once the writer has caught up (its queue empty again), one ``warning``
line on ``peerbox.worker``: ``dropped N log lines``, N being the drops since
the last such line (at most one such line per :data:`REPORT_SECONDS`).
:meth:`DroppingQueueHandler.close` (called by :func:`logging.shutdown` at
exit, or by a later ``configure``) lets the writer
write what is queued, waiting at most :data:`FLUSH_SECONDS`: a stderr that
does not move cannot hold up a process that stops.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TextIO


__all__ = ["DroppingQueueHandler", "QUEUE_RECORDS", "FLUSH_SECONDS", "BATCH", "dropped_records",
           "DROPPED_LOGGER", "DROPPED_MESSAGE", "REPORT_SECONDS", "FIELDS_ATTR", "LazyFields"]

#: The attribute of a :class:`logging.LogRecord` (set with ``extra=``) holding its structured fields:
#: a mapping of field names to values (a ``dict``, or :class:`LazyFields`).
FIELDS_ATTR = "peerbox_fields"


class LazyFields(Mapping[str, Any]):
    """A record's fields built by ``build`` when first read: by the writer thread, as the line is
    formatted, not by the thread that logged it (nor at all for a record the queue dropped).
    ``build`` must depend only on what does not change after the call (an access line's are the
    request, its answer and the note of a finished request)."""

    __slots__ = ("_build", "_fields")

    def __init__(self, build: Callable[[], dict[str, Any]]) -> None:
        self._build: Callable[[], dict[str, Any]] | None = build
        self._fields: dict[str, Any] | None = None

    def _get(self) -> dict[str, Any]:
        fields = self._fields
        if fields is None:
            build = self._build
            fields = self._fields = build() if build is not None else {}
            self._build = None
        return fields

    def __getitem__(self, key: str) -> Any:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

#: Records a process's log queue holds by default (``--log-queue``): about a second of access lines
#: at several thousand requests/s, a few MB at most.
QUEUE_RECORDS = 4096
#: How long closing the handler waits for the writer to write what is queued.
FLUSH_SECONDS = 2.0
#: The warning line's message (``%d``: how many lines were dropped since the last one).
DROPPED_MESSAGE = "dropped %d log lines (stderr was not read fast enough)"
#: At most this many queued records are written with one ``write``.
BATCH = 64
#: The least time between two "dropped N log lines" warnings.
REPORT_SECONDS = 1.0
#: The logger the "dropped N log lines" warning is written as.
DROPPED_LOGGER = "peerbox.worker"

_STOP = object()
_current: DroppingQueueHandler | None = None
_closed_drops = 0  # drops of handlers this process closed already (a re-configure keeps the total)
_count_lock = threading.Lock()


def dropped_records() -> int:
    """Log records this process dropped because its log queue was full (all handlers, ever)."""
    with _count_lock:
        current = _current
        return _closed_drops + (current.dropped if current is not None else 0)


class DroppingQueueHandler(logging.Handler):
    """Writes records to ``stream`` on a writer thread through a queue of ``capacity`` records;
    drops (and counts) a record that does not fit; :meth:`close` waits ``flush_seconds`` at
    most for the writer to write what is queued. See the module docstring.

    The writer formats with this handler's formatter and writes what is queued (up to
    :data:`BATCH` lines at once) with ``os.write`` on a duplicate of ``stream``'s
    descriptor (a stream without one, such as a ``StringIO``, is written to directly): a
    write blocked on a full pipe holds no lock that anything else in the process
    (``sys.stderr``'s buffer, :func:`logging.shutdown`) could wait for.
    """

    def __init__(self, stream: TextIO, capacity: int = QUEUE_RECORDS, *,
                 flush_seconds: float = FLUSH_SECONDS) -> None:
        super().__init__()
        if capacity < 1:
            raise ValueError("a log queue holds at least one record")
        self.capacity = capacity
        self.flush_seconds = flush_seconds
        #: Records dropped since this handler was made: the queue was full, or the write failed.
        self.dropped = 0
        self._unreported = 0  # drops not yet told in a warning line
        self._stream = stream
        self._fd: int | None = None
        try:
            stream.flush()
            self._fd = os.dup(stream.fileno())
        except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is both
            pass
        self._queue: queue.Queue[object] = queue.Queue(maxsize=capacity)
        self._stopping = False
        self._reported_at = -REPORT_SECONDS
        self._thread = threading.Thread(target=self._write_all, name="peerbox-log-writer", daemon=True)
        self._thread.start()
        global _current
        with _count_lock:
            _current = self

    def emit(self, record: logging.LogRecord) -> None:
        """Queue ``record`` (its message merged with its args now, so that nothing it refers to
        can change before it is written), or drop and count it when the queue is full."""
        try:
            record.msg = record.getMessage()
            record.args = None
            self._queue.put_nowait(record)
        except queue.Full:
            self._count_drop()
        except Exception:  # a message that does not format: as logging does for any handler
            self.handleError(record)

    def _count_drop(self) -> None:
        with _count_lock:
            self.dropped += 1
            self._unreported += 1

    def _write(self, text: str) -> None:
        if self._fd is None:
            self._stream.write(text)
            self._stream.flush()
            return
        data = text.encode("utf-8", "backslashreplace")
        while data:
            data = data[os.write(self._fd, data):]

    def _write_records(self, records: list[logging.LogRecord]) -> None:
        """Format ``records`` and write them with one write (a batch: fewer system calls, fewer
        wake-ups than a line at a time when many are queued)."""
        lines = []
        for record in records:
            try:
                lines.append(self.format(record) + "\n")
            except Exception:  # a formatter's bug: reported as logging reports it
                self.handleError(record)
        try:
            self._write("".join(lines))
        except OSError:  # nobody reads stderr anymore (EPIPE) or it is full of errors: the lines are lost
            for _ in lines:
                self._count_drop()

    def _report(self) -> None:
        """Write one warning line for the drops not told yet, if any (on the writer thread)."""
        with _count_lock:
            count, self._unreported = self._unreported, 0
        if count:
            self._reported_at = time.monotonic()
            record = logging.LogRecord(DROPPED_LOGGER, logging.WARNING, __file__, 0, DROPPED_MESSAGE,
                                       (count,), None)
            setattr(record, FIELDS_ATTR, {"dropped": count})
            self._write_records([record])

    def _next(self) -> object:
        """The next queued item; :data:`_STOP` when stopping and none is left."""
        q = self._queue
        while True:
            if self._stopping and q.empty():
                return _STOP
            if not self._unreported:
                return q.get()
            try:  # drops to tell: told once caught up (the queue empty) and REPORT_SECONDS after the last
                return q.get(timeout=max(0.0, self._reported_at + REPORT_SECONDS - time.monotonic()))
            except queue.Empty:
                self._report()

    def _write_all(self) -> None:
        stop = False
        while not stop:
            item = self._next()
            batch: list[logging.LogRecord] = []
            while item is not _STOP:
                assert isinstance(item, logging.LogRecord)
                batch.append(item)
                if len(batch) >= BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            else:
                stop = True
            if batch:
                self._write_records(batch)
        self._report()

    def close(self) -> None:
        """Stop the writer after what is queued, waiting at most ``flush_seconds`` (a stderr
        that does not move cannot hold up a process that stops; the lines left are lost)."""
        global _current, _closed_drops
        with _count_lock:
            if self._stopping:
                return
            self._stopping = True
        try:
            self._queue.put_nowait(_STOP)
        except queue.Full:  # the writer sees _stopping once it has emptied the queue
            pass
        self._thread.join(self.flush_seconds)
        with _count_lock:
            if _current is self:
                _current = None
            _closed_drops += self.dropped
        if self._fd is not None and not self._thread.is_alive():
            os.close(self._fd)
            self._fd = None
        super().close()
