"""The cost of peerbox's hand-written Prometheus metrics next to ``prometheus-client`` (issue 17).

``.venv/bin/python bench/metrics_bench.py`` times one request's metric update
(an ``ok`` answer: its outcome counter, the seconds and fuel histograms) and
one scrape (rendering the text exposition with six outcomes counted), both
ways, with the same families and buckets. Needs ``prometheus-client`` (in the
test extras).
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from peerbox.net._metrics import Metrics
from peerbox.trust import Handled, Outcome, Usage

UPDATES, SCRAPES = 200_000, 5_000
OUTCOMES = ("denied", "script_error", "limit", "rejected", "busy")


def main() -> None:
    handled = Handled(outcome=Outcome.OK, body=b"", usage=Usage(fuel=12345, wall_ms=3, peak_memory=1000))
    ours = Metrics()
    t = time.perf_counter()
    for _ in range(UPDATES):
        ours.answered(handled, 0.004)
    ours_update = (time.perf_counter() - t) / UPDATES

    reg = CollectorRegistry()
    requests = Counter("peerbox_requests", "Exec requests answered, by outcome.", ["outcome"], registry=reg)
    Counter("peerbox_denials", "Policy denials, by action.", ["action"], registry=reg)
    fuel = Histogram("peerbox_run_fuel", "Fuel used by script runs.",
                     buckets=(1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9), registry=reg)
    seconds = Histogram("peerbox_run_seconds", "Wall time of handled requests.", registry=reg,
                        buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
    Gauge("peerbox_runs_in_flight", "Runs executing now.", registry=reg)
    Gauge("peerbox_runs_queued", "Runs waiting for a slot.", registry=reg)
    t = time.perf_counter()
    for _ in range(UPDATES):
        requests.labels("ok").inc()
        seconds.observe(0.004)
        fuel.observe(12345)
    theirs_update = (time.perf_counter() - t) / UPDATES

    for outcome in OUTCOMES:
        ours.requests[outcome] += 1
        requests.labels(outcome).inc()
    t = time.perf_counter()
    for _ in range(SCRAPES):
        ours.render()
    ours_scrape = (time.perf_counter() - t) / SCRAPES
    t = time.perf_counter()
    for _ in range(SCRAPES):
        generate_latest(reg)
    theirs_scrape = (time.perf_counter() - t) / SCRAPES
    print(f"update per request: hand-written {ours_update * 1e6:.2f} µs, prometheus-client "
          f"{theirs_update * 1e6:.2f} µs")
    print(f"scrape: hand-written {ours_scrape * 1e6:.1f} µs, prometheus-client {theirs_scrape * 1e6:.1f} µs")


if __name__ == "__main__":
    main()
