"""Quotas (per peer, on what is stored) and budgets (per run, on host-call work).

* :class:`Quotas` bound what a peer may *keep*: total bytes, number of
  entries, size of one file. Backends check them before changing anything,
  so going over is a catchable ``quota_exceeded`` refusal that leaves the
  storage exactly as it was.
* :class:`Budget` bounds what one *run* may *do* through host calls: number
  of calls, bytes read, bytes written. Fuel and epoch deadlines stop counting
  while the host runs a call, so without this a script could keep a worker
  busy for ever with cheap-looking ``fs::read`` calls. Going over raises
  :class:`BudgetExceeded`, which is not catchable: the run stops.
* :class:`Usage` is the running tally a backend keeps of its own contents.
"""

from __future__ import annotations

from dataclasses import dataclass

from peerbox._errors import UsageError

from ._errors import BudgetExceeded, HostCallError, show

__all__ = ["Quotas", "Budget", "Usage"]

MiB = 1 << 20


def _check_limit(name: str, value: object, minimum: int) -> None:
    if type(value) is not int or value < minimum:
        raise UsageError(f"{name} must be an int >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class Quotas:
    """Per-peer storage quotas.

    ``max_total_bytes``: sum of the sizes of all files (default 100 MiB).
    ``max_files``: number of entries, files *and* directories, the root not
    counted (default 10 000); directories count because each costs an inode
    or a row, and otherwise ``fs::mkdir`` in a loop would be unbounded.
    ``max_file_size``: size of one file (default 16 MiB); also the most a
    read will ever load.

    Raises :class:`peerbox.UsageError` if a value is not an int (``bool``
    is refused too) or is negative (``max_files``/``max_file_size`` may be 0:
    a read-only peer).
    """

    max_total_bytes: int = 100 * MiB
    max_files: int = 10_000
    max_file_size: int = 16 * MiB

    def __post_init__(self) -> None:
        _check_limit("max_total_bytes", self.max_total_bytes, 0)
        _check_limit("max_files", self.max_files, 0)
        _check_limit("max_file_size", self.max_file_size, 0)

    def check_file(self, usage: Usage, path: str, old_size: int | None, new_size: int) -> None:
        """Refuse a write that would make ``path`` ``new_size`` bytes long.

        ``old_size`` is the current size of ``path`` (``None`` if it does not
        exist yet, so the write adds an entry). Raises
        ``HostCallError("quota_exceeded")`` naming the quota; changes nothing.
        """
        if new_size > self.max_file_size:
            raise HostCallError(
                "quota_exceeded",
                f"writing {show(path)}: {new_size} bytes is over the {self.max_file_size}-byte "
                "limit on one file",
            )
        total = usage.bytes - (old_size or 0) + new_size
        if total > self.max_total_bytes:
            raise HostCallError(
                "quota_exceeded",
                f"writing {show(path)}: the peer's files would take {total} bytes, over its "
                f"{self.max_total_bytes}-byte quota",
            )
        if old_size is None:
            self.check_entries(usage, path, 1)

    def check_entries(self, usage: Usage, path: str, added: int) -> None:
        """Refuse creating ``added`` new entries (files or directories) for ``path``."""
        if added > 0 and usage.files + added > self.max_files:
            raise HostCallError(
                "quota_exceeded",
                f"creating {show(path)}: the peer would have {usage.files + added} files and "
                f"directories, over its quota of {self.max_files}",
            )


@dataclass
class Usage:
    """What a backend currently stores: ``bytes`` of file data in ``files`` entries."""

    bytes: int = 0
    files: int = 0


class Budget:
    """The host-call budget of one run: calls, bytes read, bytes written.

    Defaults: 10 000 calls, 64 MiB read, 64 MiB written. A Budget belongs to
    one run, which makes its host calls one at a time, so it takes no lock.
    Each ``charge_*`` method raises :class:`BudgetExceeded` (``resource``
    ``"calls"``, ``"bytes_read"`` or ``"bytes_written"``) when the run goes
    over; :class:`peerbox.UsageError` for a limit that is not an int >= 0.
    """

    __slots__ = ("max_calls", "max_bytes_read", "max_bytes_written", "calls", "bytes_read", "bytes_written")

    def __init__(
        self,
        max_calls: int = 10_000,
        max_bytes_read: int = 64 * MiB,
        max_bytes_written: int = 64 * MiB,
    ) -> None:
        _check_limit("max_calls", max_calls, 0)
        _check_limit("max_bytes_read", max_bytes_read, 0)
        _check_limit("max_bytes_written", max_bytes_written, 0)
        self.max_calls = max_calls
        self.max_bytes_read = max_bytes_read
        self.max_bytes_written = max_bytes_written
        self.calls = 0
        self.bytes_read = 0
        self.bytes_written = 0

    def __repr__(self) -> str:
        return (
            f"Budget(calls={self.calls}/{self.max_calls}, bytes_read={self.bytes_read}/"
            f"{self.max_bytes_read}, bytes_written={self.bytes_written}/{self.max_bytes_written})"
        )

    def charge_call(self) -> None:
        """Count one host call; raise once the run has made more than ``max_calls``."""
        self.calls += 1
        if self.calls > self.max_calls:
            raise BudgetExceeded(
                "calls", f"script made more than {self.max_calls} host calls (its per-run budget)"
            )

    def charge_read(self, n: int) -> None:
        """Count ``n`` bytes read (after the read: its size is known only then)."""
        self.bytes_read += n
        if self.bytes_read > self.max_bytes_read:
            raise BudgetExceeded(
                "bytes_read",
                f"script read more than {self.max_bytes_read} bytes through host calls (its per-run budget)",
            )

    def charge_write(self, n: int) -> None:
        """Count ``n`` bytes about to be written; raise *before* the write if over."""
        if self.bytes_written + n > self.max_bytes_written:
            self.bytes_written += n
            raise BudgetExceeded(
                "bytes_written",
                f"script wrote more than {self.max_bytes_written} bytes through host calls "
                "(its per-run budget)",
            )
        self.bytes_written += n
