"""Insert n string keys into a map, then read every one back."""


def main(params: dict[str, int]) -> int:
    n = params["n"]
    m: dict[str, int] = {}
    i = 0
    while i < n:
        m["k" + str(i)] = i
        i += 1
    total = 0
    i = 0
    while i < n:
        total += m["k" + str(i)]
        i += 1
    return total + len(m)
