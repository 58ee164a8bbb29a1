"""Inputs of the data-work programs (``data_*.rhai`` / ``data_*.py``), made deterministically.

Each function returns the ``params`` of one program for a size; the
benchmark (``bench/data_bench.py``) and the tests
(``tests/scenarios/test_data_work.py``) call the same function, so both
sides of a comparison and every test see the same input. Pure Python, no
imports from peerbox or the benchmark. The pseudo-random numbers come from
an LCG, so the inputs are the same on every machine and every run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

WORDS = (  # noqa: SIM905 - a paragraph of words reads better than 200 quoted ones
    "the of and to in is that it for was on are as with his they at be this from have or by one had "
    "not but what all were when we there can an your which their said if do will each about how up out "
    "them then she many some so these would other into has more her two like him see time could no make "
    "than first been its who now people my made over did down only way find use may water long little "
    "very after words called just where most know get through back much before go good new write our "
    "used me man too any day same right look think also around another came come work three word must "
    "because does part even place well such here take why things help put years different away again "
    "off went old number great tell men say small every found still between name should home big give "
    "air line set own under read last never us left end along while might next sound below saw something "
    "error warning request peer script sandbox record value timeout memory string array"
).split()

CITIES = ("Lyon", "Oslo", "Kyiv", "Lima", "Pune", "Accra", "Quito", "Perth", "Riga", "Cork")


def _lcg(seed: int) -> Iterator[int]:
    """An endless stream of 31-bit pseudo-random ints (the C library's LCG constants)."""
    x = seed
    while True:
        x = (x * 1103515245 + 12345) % 2147483648
        yield x >> 8


def text(n_bytes: int, seed: int = 1) -> str:
    """About ``n_bytes`` of ASCII prose: words from :data:`WORDS`, skewed towards
    the first ones, ~12 words a line, and sometimes a double space or a capital."""
    rnd = _lcg(seed)
    parts: list[str] = []
    size = 0
    col = 0
    while size < n_bytes:
        r = next(rnd)
        # the product of two uniform indices: frequent words are frequent (Zipf-like)
        w = WORDS[(r % len(WORDS)) * ((r >> 9) % len(WORDS)) // len(WORDS)]
        if r % 17 == 0:
            w = w.capitalize()
        col += 1
        sep = "\n" if col % 12 == 0 else ("  " if r % 23 == 0 else " ")
        parts.append(w + sep)
        size += len(w) + len(sep)
    return "".join(parts)


def wordcount(n_bytes: int) -> dict[str, Any]:
    """``{"text": ...}`` of about ``n_bytes``."""
    return {"text": text(n_bytes)}


def replace(n_bytes: int) -> dict[str, Any]:
    """``{"text": ..., "find": "time", "with": "moment"}`` of about ``n_bytes``."""
    return {"text": text(n_bytes, seed=7), "find": "time", "with": "moment"}


def count(n: int) -> dict[str, Any]:
    """``{"n": n}``: the programs that make their own data."""
    return {"n": n}


def orders(n: int) -> dict[str, Any]:
    """``{"orders": [...]}``: ``n`` JSON-like orders, each a customer map, 1-4 item
    maps (prices in cents) and a list of tags."""
    rnd = _lcg(3)
    out: list[dict[str, Any]] = []
    for i in range(n):
        r = next(rnd)
        items = [
            {"sku": f"SKU-{next(rnd) % 500:04d}", "qty": 1 + next(rnd) % 5, "price": 99 + next(rnd) % 9900}
            for _ in range(1 + r % 4)
        ]
        out.append({
            "id": i,
            "customer": {"name": f"customer {r % 997}", "country": CITIES[r % len(CITIES)]},
            "items": items,
            "tags": ["gift"] if r % 5 == 0 else (["rush", "b2b"] if r % 7 == 0 else []),
            "paid": r % 11 != 0,
        })
    return {"orders": out}


def records(n: int) -> dict[str, Any]:
    """``{"records": [...]}``: ``n`` flat records (id, name, score 0-999, city)."""
    rnd = _lcg(5)
    recs: list[dict[str, Any]] = []
    for i in range(n):
        r = next(rnd)
        recs.append({"id": i, "name": f"user{r % 10007}", "score": r % 1000, "city": CITIES[r % len(CITIES)]})
    return {"records": recs}
