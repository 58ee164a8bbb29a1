"""Sort records (a param) by a key function: score descending, then name
ascending (a stable sort keeps ties in input order); return the top five ids
and a checksum of the whole order."""

from typing import Any


def main(params: dict[str, Any]) -> dict[str, Any]:
    recs = sorted(params["records"], key=lambda r: (-r["score"], r["name"]))
    top = [r["id"] for r in recs[:5]]
    h = 0
    for r in recs:
        h = (h * 31 + r["id"]) % 1000000007
    return {"top": top, "checksum": h, "n": len(recs)}
