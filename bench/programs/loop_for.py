"""Sum 0..n with a for loop over a range."""


def main(params: dict[str, int]) -> int:
    n = params["n"]
    s = 0
    for i in range(n):
        s += i
    return s
