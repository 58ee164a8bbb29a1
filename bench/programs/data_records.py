"""Records: build n dicts, keep those with age >= 30, group them by city
(count and sum of amount per city), and sum the amounts."""

from typing import Any


def main(params: dict[str, Any]) -> dict[str, Any]:
    cities = ["Lyon", "Oslo", "Kyiv", "Lima", "Pune", "Accra", "Quito"]
    recs: list[dict[str, Any]] = [
        {"id": i, "name": f"user{i}", "city": cities[i % len(cities)],
         "age": 18 + (i * 7) % 60, "amount": (i * 37) % 1000}
        for i in range(params["n"])
    ]
    adults = [r for r in recs if r["age"] >= 30]
    groups: dict[str, dict[str, int]] = {}
    total = 0
    for r in adults:
        g = groups.get(r["city"])
        if g is None:
            groups[r["city"]] = {"count": 1, "amount": r["amount"]}
        else:
            g["count"] += 1
            g["amount"] += r["amount"]
        total += r["amount"]
    return {"records": len(recs), "adults": len(adults), "by_city": groups, "total": total}
