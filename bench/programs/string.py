"""Build a string of n parts with `s += ...` (interpolated part per step)."""


def main(params: dict[str, int]) -> int:
    n = params["n"]
    s = ""
    i = 0
    while i < n:
        s += f"<{i}>"
        i += 1
    return len(s)
