"""Generate n pseudo-random ints with an LCG, then sort them."""


def main(params: dict[str, int]) -> int:
    n = params["n"]
    a: list[int] = []
    x = 12345
    i = 0
    while i < n:
        x = (x * 1103515245 + 12345) % 2147483648
        a.append(x)
        i += 1
    a.sort()
    return a[0] + a[n // 2] + a[n - 1]
