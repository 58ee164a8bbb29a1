"""Token buckets for what unauthenticated senders may cost a server (sans-IO: the clock is passed in).

A request refused before its sender was authenticated (a bad signature, an
envelope that does not parse, no usable signer key) cost the server real
work: receiving up to a 1 MiB body, an Ed25519 verification over it. Honest
clients almost never cause one, so the HTTP/2 server
(:mod:`peerbox.net._h2server`) charges each to two buckets, one of the
connection and one of its remote address (:class:`AddressBudgets`, shared by
all the connections of a server), and stops serving whoever runs dry: a flood
of junk then costs at most the refill rate of those buckets, however fast it
is sent. Valid requests are never charged, so a client sharing an address
with an attacker keeps its established connections.

:class:`SlidingRate` is the server's other counter: RST_STREAM, PING and
SETTINGS frames per second on one connection (the rapid-reset and ping
flood limits of :class:`~peerbox.net._http.ServerLimits`).
"""

from __future__ import annotations

from collections import OrderedDict, deque

__all__ = ["TokenBucket", "AddressBudgets", "SlidingRate", "address_of"]


class SlidingRate:
    """Counts events in a sliding one-second window; :meth:`hit` says "more than ``limit``".

    The HTTP/2 server's flood detectors (RST_STREAM, PING and SETTINGS per
    second). Memory is bounded by ``limit + 1`` timestamps: the first hit over
    the limit is reported, and the caller closes the connection.
    """

    __slots__ = ("limit", "times")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.times: deque[float] = deque()

    def hit(self, now: float) -> bool:
        """Record one event at ``now``; ``True`` if the last second now holds more than ``limit``."""
        times = self.times
        times.append(now)
        while times and times[0] <= now - 1.0:
            times.popleft()
        return len(times) > self.limit


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second; may go ``burst`` tokens into debt.

    :meth:`charge` takes a token even when there is none left (the work was
    already done), so a burst of pipelined failures is paid for by a longer
    wait; :meth:`available` says whether the holder may be served now.
    """

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, burst: float, rate: float, now: float) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = max(self.stamp, now)

    def charge(self, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens; ``False`` if the bucket was already empty (over budget)."""
        self._refill(now)
        ok = self.tokens >= cost
        self.tokens = max(-self.burst, self.tokens - cost)
        return ok

    def available(self, now: float) -> bool:
        """Whether at least one token is there (the holder may be served)."""
        self._refill(now)
        return self.tokens >= 1.0

    def full(self, now: float) -> bool:
        """Whether the bucket is full again (its state is then the same as a fresh one)."""
        self._refill(now)
        return self.tokens >= self.burst


def address_of(client: str) -> str:
    """The host part of ``"HOST:PORT"`` (``"1.2.3.4"``, ``"::1"``): what a per-address budget is keyed by."""
    host, sep, _ = client.rpartition(":")
    return host if sep else client


class AddressBudgets:
    """One :class:`TokenBucket` per remote address, for at most ``max_tracked`` addresses.

    Memory is bounded: beyond ``max_tracked`` addresses the least recently
    charged bucket is forgotten. An address with no bucket is in budget.
    """

    def __init__(self, burst: float, rate: float, max_tracked: int = 4096) -> None:
        self.burst, self.rate, self.max_tracked = burst, rate, max(1, max_tracked)
        self.buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def charge(self, address: str, now: float, cost: float = 1.0) -> bool:
        """Charge one refused request to ``address``; ``False`` once it is over budget."""
        bucket = self.buckets.get(address)
        if bucket is None:
            while len(self.buckets) >= self.max_tracked:
                self.buckets.popitem(last=False)
            bucket = self.buckets[address] = TokenBucket(self.burst, self.rate, now)
        else:
            self.buckets.move_to_end(address)
        return bucket.charge(now, cost)

    def available(self, address: str, now: float) -> bool:
        """Whether ``address`` may open a connection (be served) now."""
        bucket = self.buckets.get(address)
        return bucket is None or bucket.available(now)
