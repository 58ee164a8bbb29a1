"""The worker's Prometheus metrics: counters by outcome, denied action and rejection kind.

:class:`Metrics` is fed typed answers (:class:`~peerbox.trust._handled.Handled`:
its :class:`~peerbox.trust._outcome.Outcome`, ``denied_action``, ``usage``),
never messages or signed bodies, and renders the text exposition format
(version 0.0.4) that ``GET /metrics`` serves. The shared worker and the
isolated-mode router each keep one, updated on their trio thread only.

With ``peerbox serve --workers N`` a scrape lands on one of N processes, so
each publishes a :meth:`Metrics.snapshot` (plain JSON-able data) to a file
its supervisor owns (:mod:`peerbox.net._supervisor`), and any of them renders
every process's series with a ``process`` label (:func:`render_processes`):
counters of a restarted process start again from zero under the same label,
which Prometheus reads as a counter reset, as it should.

Many workers hosting the same peers (several machines on one NATS server, see
"Many workers, one peer" in the README) are told apart by a ``worker`` label
on every series: ``peerbox serve --name NAME``, by default ``HOSTNAME:PID`` (of
the supervisor, with ``--workers N``), so one Prometheus can scrape them all
and sum by peer-wide totals without series colliding.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from ..trust import Handled
from ._logqueue import dropped_records

__all__ = ["Metrics", "Histogram", "Unhandled", "render_processes"]

#: Answers no request handler gave (counted in ``peerbox_requests_total`` beside the outcomes):
#: the worker was saturated or draining (``busy``), a peer's files could not be opened
#: (``unavailable``), not an envelope (``unsupported_media_type``), a bug (``internal_error``),
#: a child's answer the isolated router could not read (``unreadable``).
Unhandled = Literal["busy", "unavailable", "unsupported_media_type", "internal_error", "unreadable"]

_FUEL_BUCKETS = (1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9)
_SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Histogram:
    """A Prometheus histogram with fixed upper bounds (``buckets``, ascending)."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * len(self.buckets)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation in every bucket whose bound is at least ``value``."""
        self.count += 1
        self.sum += value
        for i, b in enumerate(self.buckets):
            if value <= b:
                self.counts[i] += 1

    def render(self, name: str) -> list[str]:
        """The exposition lines of this histogram under ``name`` (cumulative buckets, sum, count)."""
        return [f"# TYPE {name} histogram", *self.series(name)]

    def series(self, name: str, label: str = "") -> list[str]:
        """The sample lines alone; ``label`` (``'process="0"'``) is added to each one's labels."""
        lead = f"{label}," if label else ""
        tail = f"{{{label}}}" if label else ""
        out = [f'{name}_bucket{{{lead}le="{_fmt(b)}"}} {c}'
               for b, c in zip(self.buckets, self.counts, strict=True)]
        out.append(f'{name}_bucket{{{lead}le="+Inf"}} {self.count}')
        out.append(f"{name}_sum{tail} {_fmt(self.sum)}")
        out.append(f"{name}_count{tail} {self.count}")
        return out

    def snapshot(self) -> dict[str, Any]:
        """The histogram as plain data (for :meth:`restore`)."""
        return {"counts": list(self.counts), "count": self.count, "sum": self.sum}

    def restore(self, data: Mapping[str, Any]) -> None:
        """Take the counts of a :meth:`snapshot` (of a histogram with the same buckets).

        Raises ``ValueError`` (or ``TypeError``/``KeyError``) for data of another shape.
        """
        counts = [int(c) for c in data["counts"]]
        if len(counts) != len(self.buckets):
            raise ValueError("a histogram snapshot with other buckets")
        self.counts, self.count, self.sum = counts, int(data["count"]), float(data["sum"])


def _escape(value: str) -> str:
    """``value`` as the inside of a label value (backslash, double quote and newline escaped)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _fmt(x: float) -> str:
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(float(x))


class Metrics:
    """Prometheus counters of one worker (updated on the trio thread only).

    ``requests`` also counts answers that are no :class:`Handled`
    (:data:`Unhandled`, through :meth:`unhandled`).
    """

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.denials: Counter[str] = Counter()
        self.rejections: Counter[str] = Counter()
        self.fuel = Histogram(_FUEL_BUCKETS)
        self.seconds = Histogram(_SECONDS_BUCKETS)
        self._in_flight = 0
        self._queued = 0
        self._log_dropped: int | None = None  # None: this process's own count, read live
        #: Where the gauges are read live, if set: ``() -> (runs in flight, runs queued)`` (a worker's
        #: admission, changed by its run threads; otherwise the values last set are shown).
        self.live: Callable[[], tuple[int, int]] | None = None

    @property
    def in_flight(self) -> int:
        """Runs executing now."""
        return self.live()[0] if self.live is not None else self._in_flight

    @in_flight.setter
    def in_flight(self, value: int) -> None:
        self._in_flight = value

    @property
    def queued(self) -> int:
        """Runs waiting for a slot."""
        return self.live()[1] if self.live is not None else self._queued

    @queued.setter
    def queued(self, value: int) -> None:
        self._queued = value

    @property
    def log_dropped(self) -> int:
        """Log records dropped because the log queue was full (:mod:`peerbox.net._logqueue`): this
        process's own count, or the one a :meth:`snapshot` of another process held."""
        return dropped_records() if self._log_dropped is None else self._log_dropped

    def record(self, handled: Handled) -> None:
        """Count one answered request by outcome, denied action and rejection kind."""
        self.requests[str(handled.outcome)] += 1
        if handled.denied_action is not None:  # a denial, or a run that ended on a refused host call
            self.denials[handled.denied_action] += 1
        elif not handled.outcome.signed:
            self.rejections[handled.kind or "unknown"] += 1

    def unhandled(self, what: Unhandled) -> None:
        """Count one answer no handler gave (see :data:`Unhandled`)."""
        self.requests[what] += 1

    def answered(self, handled: Handled, seconds: float) -> None:
        """Count one answered request (:meth:`record`), the seconds it took and the fuel its run used."""
        self.record(handled)
        self.seconds.observe(seconds)
        if handled.usage is not None and handled.outcome.ran:
            self.fuel.observe(handled.usage.fuel)

    def render(self, worker: str = "") -> str:
        """The text exposition format (version 0.0.4); ``worker`` (non-empty) labels every series."""
        return render_processes({"": self}, worker=worker)

    def snapshot(self) -> dict[str, Any]:
        """Every counter, histogram and gauge as plain JSON-able data (for :meth:`from_snapshot`)."""
        return {"requests": dict(self.requests), "denials": dict(self.denials),
                "rejections": dict(self.rejections), "fuel": self.fuel.snapshot(),
                "seconds": self.seconds.snapshot(), "in_flight": self.in_flight, "queued": self.queued,
                "log_dropped": self.log_dropped}

    @classmethod
    def from_snapshot(cls, data: Mapping[str, Any]) -> Metrics:
        """The metrics a :meth:`snapshot` holds. Raises ``ValueError``, ``TypeError`` or
        ``KeyError`` for data of another shape (a file another program wrote)."""
        m = cls()
        for name in ("requests", "denials", "rejections"):
            getattr(m, name).update({str(k): int(v) for k, v in dict(data[name]).items()})
        m.fuel.restore(data["fuel"])
        m.seconds.restore(data["seconds"])
        m.in_flight, m.queued = int(data["in_flight"]), int(data["queued"])
        m._log_dropped = int(data.get("log_dropped", 0))
        return m


def render_processes(processes: Mapping[str, Metrics], *, worker: str = "") -> str:
    """The exposition text of several processes' metrics, each series labelled ``process="KEY"``
    and, when ``worker`` is not empty, ``worker="WORKER"`` (which worker of many hosting a peer).

    One process under the key ``""`` renders without the ``process`` label (a single-process
    worker's text). Each family's ``HELP``/``TYPE`` lines appear once, as the format requires.
    """
    keys = sorted(processes, key=lambda k: (len(k), k))  # "2" before "10"
    named = f'worker="{_escape(worker)}"' if worker else ""
    label = {k: ",".join(x for x in (f'process="{k}"' if k else "", named) if x) for k in keys}

    def counter(family: str, key: str, attr: str) -> list[str]:
        lines = []
        for k in keys:
            extra = f",{label[k]}" if label[k] else ""
            counts: Counter[str] = getattr(processes[k], attr)
            lines += [f'{family}{{{key}="{v}"{extra}}} {n}' for v, n in sorted(counts.items())]
        return lines

    def gauge(family: str, attr: str) -> list[str]:
        return [f"{family}{{{label[k]}}} {getattr(processes[k], attr)}" if label[k]
                else f"{family} {getattr(processes[k], attr)}" for k in keys]

    lines = ["# HELP peerbox_requests_total Exec requests answered, by outcome.",
             "# TYPE peerbox_requests_total counter",
             *counter("peerbox_requests_total", "outcome", "requests"),
             "# HELP peerbox_denials_total Policy denials, by action.",
             "# TYPE peerbox_denials_total counter", *counter("peerbox_denials_total", "action", "denials"),
             "# HELP peerbox_rejections_total Envelopes refused before authentication, by kind.",
             "# TYPE peerbox_rejections_total counter",
             *counter("peerbox_rejections_total", "kind", "rejections"),
             "# HELP peerbox_run_fuel Fuel used by script runs.", "# TYPE peerbox_run_fuel histogram"]
    for k in keys:
        lines += processes[k].fuel.series("peerbox_run_fuel", label[k])
    lines += ["# HELP peerbox_run_seconds Wall time of handled requests on worker threads.",
              "# TYPE peerbox_run_seconds histogram"]
    for k in keys:
        lines += processes[k].seconds.series("peerbox_run_seconds", label[k])
    lines += ["# HELP peerbox_runs_in_flight Runs executing now.", "# TYPE peerbox_runs_in_flight gauge",
              *gauge("peerbox_runs_in_flight", "in_flight"),
              "# HELP peerbox_runs_queued Runs waiting for a slot.", "# TYPE peerbox_runs_queued gauge",
              *gauge("peerbox_runs_queued", "queued"),
              "# HELP peerbox_log_records_dropped_total Log lines dropped: stderr was not read fast enough.",
              "# TYPE peerbox_log_records_dropped_total counter",
              *gauge("peerbox_log_records_dropped_total", "log_dropped")]
    return "\n".join(lines) + "\n"
