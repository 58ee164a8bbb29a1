"""Containment is sound against the matcher that enforces grants (issue 12, finding 5).

``pattern_within(child, parent)`` decides attenuation of capability grants;
``GrantSet`` (via ``compile_grants``) is what later allows or refuses each
request. If the first says "within", no path may be allowed by the child and
refused by the parent. Small alphabets make the patterns collide often.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from peerbox.policy import Grant, compile_grants, glob_problem, grants_within, is_canonical, pattern_within

SEGMENTS = ["a", "b", "*", "**", "?"]
PATH_SEGMENTS = ["a", "b", "ab", ""]
# every path of depth <= 4 over PATH_SEGMENTS; "" as the whole path is the storage root, and
# paths with an empty segment are not canonical (never reach a matcher): left out
PATHS = sorted({p for n in range(1, 5) for segs in itertools.product(PATH_SEGMENTS, repeat=n)
                if is_canonical(p := "/".join(segs))})


def enforcing_match(pattern: str, path: str) -> bool:
    """Whether a capability grant ``fs.read:PATTERN`` allows reading ``path``: the exact
    matcher :meth:`Policy.decide` consults for grants."""
    return compile_grants([Grant("fs.read", pattern)]).match("fs.read", path) is not None


patterns = st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=4).map("/".join).filter(
    lambda p: glob_problem(p) is None)


def test_the_path_universe_has_the_root_and_deep_paths() -> None:
    assert "" in PATHS and "ab/ab/ab/ab" in PATHS and "a//b" not in PATHS


@settings(max_examples=400, deadline=None)
@given(patterns, patterns)
def test_within_implies_every_path_the_child_allows_the_parent_allows(child: str, parent: str) -> None:
    if not pattern_within(child, parent):
        return
    for path in PATHS:
        if enforcing_match(child, path):
            assert enforcing_match(parent, path), (child, parent, path)


@settings(max_examples=200, deadline=None)
@given(patterns, patterns)
def test_a_path_only_the_child_matches_means_not_within(child: str, parent: str) -> None:
    """The converse on the sample: a witness path refutes containment (exactness, not just safety)."""
    if any(enforcing_match(child, p) and not enforcing_match(parent, p) for p in PATHS):
        assert not pattern_within(child, parent), (child, parent)


@settings(max_examples=200, deadline=None)
@given(st.lists(patterns, min_size=1, max_size=3), st.lists(patterns, min_size=1, max_size=3))
def test_grant_sets_within_are_sound(child: list[str], parent: list[str]) -> None:
    kids = [Grant("fs.list", p) for p in child]
    if grants_within(kids, [Grant("fs.list", p) for p in parent]) is not None:
        return
    allowed_by_parent = compile_grants([Grant("fs.list", p) for p in parent])
    allowed_by_child = compile_grants(kids)
    for path in PATHS:
        if allowed_by_child.match("fs.list", path) is not None:
            assert allowed_by_parent.match("fs.list", path) is not None, (child, parent, path)
