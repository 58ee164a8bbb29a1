"""The worker's Prometheus metrics: counters by outcome, denied action and rejection kind.

:class:`Metrics` is fed typed answers (:class:`~peerbox.trust._handled.Handled`:
its :class:`~peerbox.trust._outcome.Outcome`, ``denied_action``, ``usage``),
never messages or signed bodies, and renders the text exposition format
(version 0.0.4) that ``GET /metrics`` serves. The shared worker and the
isolated-mode router each keep one, updated on their trio thread only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Literal

from ..trust import Handled

__all__ = ["Metrics", "Histogram", "Unhandled"]

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
        out = [f"# TYPE {name} histogram"]
        for b, c in zip(self.buckets, self.counts, strict=True):
            out.append(f'{name}_bucket{{le="{_fmt(b)}"}} {c}')
        out.append(f'{name}_bucket{{le="+Inf"}} {self.count}')
        out.append(f"{name}_sum {_fmt(self.sum)}")
        out.append(f"{name}_count {self.count}")
        return out


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
        self.in_flight = 0
        self.queued = 0

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

    def render(self) -> str:
        """The text exposition format (version 0.0.4)."""
        lines = ["# HELP peerbox_requests_total Exec requests answered, by outcome.",
                 "# TYPE peerbox_requests_total counter"]
        lines += [f'peerbox_requests_total{{outcome="{k}"}} {v}' for k, v in sorted(self.requests.items())]
        lines += ["# HELP peerbox_denials_total Policy denials, by action.",
                  "# TYPE peerbox_denials_total counter"]
        lines += [f'peerbox_denials_total{{action="{k}"}} {v}' for k, v in sorted(self.denials.items())]
        lines += ["# HELP peerbox_rejections_total Envelopes refused before authentication, by kind.",
                  "# TYPE peerbox_rejections_total counter"]
        lines += [f'peerbox_rejections_total{{kind="{k}"}} {v}' for k, v in sorted(self.rejections.items())]
        lines += ["# HELP peerbox_run_fuel Fuel used by script runs."] + self.fuel.render("peerbox_run_fuel")
        lines += ["# HELP peerbox_run_seconds Wall time of handled requests on worker threads."]
        lines += self.seconds.render("peerbox_run_seconds")
        lines += ["# HELP peerbox_runs_in_flight Runs executing now.", "# TYPE peerbox_runs_in_flight gauge",
                  f"peerbox_runs_in_flight {self.in_flight}",
                  "# HELP peerbox_runs_queued Runs waiting for a slot.", "# TYPE peerbox_runs_queued gauge",
                  f"peerbox_runs_queued {self.queued}"]
        return "\n".join(lines) + "\n"
