"""What the conformance modules share: the case type and the test of a program's value.

Each ``test_conformance_*.py`` holds tables of ``(case id, source, expected)``
in a ``CONFORMANCE`` map and imports :func:`test_program_value`, which pytest
collects in that module; ``tests/scenarios/conftest.py`` parametrizes it with
the module's tables.
"""

from __future__ import annotations

from typing import Any

ConformanceCase = tuple[str, str, Any]  # (case id, source, expected value)


def test_program_value(compile_and_run: Any, same: Any, source: str, expected: Any) -> None:
    """One case of the module's ``CONFORMANCE`` (parametrized by the conftest): the program's value."""
    res = compile_and_run(source)
    assert same(res.value, expected), f"program:\n{source}\nexpected {expected!r}, got {res.value!r}"
