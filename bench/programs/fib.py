"""Recursive Fibonacci: function calls and integer arithmetic."""


def fib(n: int) -> int:
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


def main(params: dict[str, int]) -> int:
    return fib(params["n"])
