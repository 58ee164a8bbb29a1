"""Word count: split a text param on whitespace, count each word (lower-cased)
in a dict, then find the most frequent one (the first in key order on a tie)."""

from typing import Any


def main(params: dict[str, Any]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    words = 0
    for w in params["text"].split():
        w = w.lower()
        counts[w] = counts.get(w, 0) + 1
        words += 1
    top, top_count = "", 0
    for w in sorted(counts):
        if counts[w] > top_count:
            top, top_count = w, counts[w]
    return {"words": words, "distinct": len(counts), "top": top, "top_count": top_count}
