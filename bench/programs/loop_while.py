"""Sum 0..n with a while loop and two counters."""


def main(params: dict[str, int]) -> int:
    n = params["n"]
    s = 0
    i = 0
    while i < n:
        s += i
        i += 1
    return s
