"""String search and counting in rt against Python, on random text (issue 14: 8 bytes at a time).

rt scans 8 bytes at a time for the first byte of a pattern, counts UTF-8
characters by counting continuation bytes a word at a time and skips ASCII
runs when it looks for a char index; these compare each builtin with the
same operation in Python on random strings mixing ASCII, 2-, 3- and 4-byte
characters, with patterns at word boundaries and past them.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import peerbox

ALPHABET = "ab \n\té✓😀xyzAB"
texts = st.text(alphabet=ALPHABET, max_size=70)
patterns = st.text(alphabet=ALPHABET, min_size=1, max_size=12)

SCRIPT = peerbox.compile("""
let s = params.s; let t = params.t; let u = s;
u.replace(t, "<>");
[s.len(), s.contains(t), s.index_of(t), s.split(t), u, s.to_lower(), s.to_upper(),
 if s.len() > 3 { s.sub_string(3) } else { "" }, if s.len() > 9 { s.sub_string(9, 5) } else { "" }]
""")


def python(s: str, t: str) -> list[Any]:
    return [len(s), t in s, s.find(t), s.split(t), s.replace(t, "<>"),
            "".join(c.lower() if c.isascii() else c for c in s),
            "".join(c.upper() if c.isascii() else c for c in s),
            s[3:] if len(s) > 3 else "", s[9:14] if len(s) > 9 else ""]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts, patterns)
def test_string_builtins_match_python(s: str, t: str) -> None:
    assert SCRIPT.run(params={"s": s, "t": t}).value == python(s, t)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet="ab", max_size=90), st.text(alphabet="ab", min_size=2, max_size=10))
def test_near_misses_crowded_in_a_word(s: str, t: str) -> None:
    """Two letters: many places in one 8-byte window start and end like the pattern
    (the word-at-a-time filter's candidates) without being it, before the real one."""
    assert SCRIPT.run(params={"s": s, "t": t}).value == python(s, t)


@pytest.mark.parametrize("needle", ["ab", "abcdefgh", "abcdefghij"])
@pytest.mark.parametrize("at", [0, 1, 7, 8, 9, 15, 16, 17, 60])
def test_a_pattern_found_at_every_offset_of_a_word(at: int, needle: str) -> None:
    """Needles shorter than, as long as and longer than a word, near the end too."""
    for tail in (0, 3, 9):
        s = "x" * at + needle[:-1] + "x" + needle + "x" * tail
        assert SCRIPT.run(params={"s": s, "t": needle}).value == python(s, needle)


def test_a_long_text_is_searched_and_counted_whole() -> None:
    s = ("lorem ipsum é dolor ✓ sit amet " * 4000) + "needle" + " tail"
    res = SCRIPT.run(params={"s": s, "t": "needle"}).value
    assert res == python(s, "needle")
