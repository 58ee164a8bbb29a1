"""A JSON-like transform: nested orders (a customer dict, a list of item dicts,
a list of tags) come in as a param; out go one flat summary dict per order
and the totals per country."""

from typing import Any


def main(params: dict[str, Any]) -> dict[str, Any]:
    summaries: list[dict[str, Any]] = []
    by_country: dict[str, dict[str, int]] = {}
    for o in params["orders"]:
        total = 0
        units = 0
        for it in o["items"]:
            total += it["qty"] * it["price"]
            units += it["qty"]
        country = o["customer"]["country"]
        c = by_country.setdefault(country, {"orders": 0, "revenue": 0, "due": 0})
        c["orders"] += 1
        if o["paid"]:
            c["revenue"] += total
        else:
            c["due"] += total
        summaries.append({
            "id": o["id"],
            "customer": o["customer"]["name"],
            "country": country,
            "total": total,
            "units": units,
            "lines": [f"{it['qty']} x {it['sku']}" for it in o["items"]],
            "rush": "rush" in o["tags"],
            "status": "paid" if o["paid"] else "due",
        })
    return {"orders": summaries, "by_country": by_country}
