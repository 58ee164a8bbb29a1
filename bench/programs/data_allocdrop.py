"""A long-running loop that allocates a short string per step and drops it:
what it keeps is constant, what it allocates in total grows with n."""

from typing import Any


def main(params: dict[str, Any]) -> int:
    total = 0
    for i in range(params["n"]):
        s = f"item-{i}"
        total += len(s)
    return total
