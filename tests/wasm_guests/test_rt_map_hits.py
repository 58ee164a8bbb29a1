"""rt remembers the last map entry it found by key (``map.c``: ``if w in m { m[w] += 1 }``
finds one entry three times); whatever moves entries must make it forget.

Random sequences of map operations on two maps and a small set of keys
(reads, writes, ``in``, ``remove``, ``clear``, ``keys``, whole-map copies,
keys made fresh by slicing so equal keys are different slices) run as one
script and against a Python dict model; every read must agree.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import peerbox

KEYS = ["a", "bb", "a2", "k9", "zz", "q", "r", "s", "t", "u", "v", "w"]  # more than 8: hashed maps too
MAPS = ["m", "n"]

OP = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(MAPS), st.sampled_from(KEYS), st.integers(0, 99)),
    st.tuples(st.just("add"), st.sampled_from(MAPS), st.sampled_from(KEYS)),
    st.tuples(st.just("get"), st.sampled_from(MAPS), st.sampled_from(KEYS)),
    st.tuples(st.just("in"), st.sampled_from(MAPS), st.sampled_from(KEYS)),
    st.tuples(st.just("remove"), st.sampled_from(MAPS), st.sampled_from(KEYS)),
    st.tuples(st.just("clear"), st.sampled_from(MAPS)),
    st.tuples(st.just("keys"), st.sampled_from(MAPS)),
    st.tuples(st.just("copy"), st.sampled_from(MAPS)),
)


def fresh(k: str) -> str:
    """The key as a new slice of a longer string (equal bytes, another slice)."""
    return f'("<{k}>".sub_string(1, {len(k)}))'


def script_and_model(ops: list[tuple[Any, ...]]) -> tuple[str, list[Any]]:
    lines = ["let m = #{}; let n = #{}; let out = [];"]
    model: dict[str, dict[str, int]] = {"m": {}, "n": {}}
    expected: list[Any] = []
    for i, op in enumerate(ops):
        kind, name = op[0], op[1]
        d = model[name]
        key = op[2] if len(op) > 2 else ""
        k = fresh(key) if i % 3 == 2 else f'"{key}"'  # mostly the literal's own slice
        if kind == "set":
            lines.append(f"{name}[{k}] = {op[3]};")
            d[key] = op[3]
        elif kind == "add":
            lines.append(f"if {k} in {name} {{ {name}[{k}] += 1; }} else {{ {name}[{k}] = 1; }}")
            d[key] = d.get(key, 0) + 1
        elif kind == "get":
            lines.append(f"out.push({name}[{k}]);")
            expected.append(d.get(key))
        elif kind == "in":
            lines.append(f"out.push({k} in {name});")
            expected.append(key in d)
        elif kind == "remove":
            lines.append(f"out.push({name}.remove({k}));")
            expected.append(d.pop(key, None))
        elif kind == "clear":
            lines.append(f"{name}.clear();")
            d.clear()
        elif kind == "keys":
            lines.append(f"out.push({name}.keys());")
            expected.append(sorted(d))
        else:  # copy the other map over this one
            other = "n" if name == "m" else "m"
            lines.append(f"{name} = {other};")
            model[name] = dict(model[other])
    lines.append("out.push(m); out.push(n); out")
    expected += [model["m"], model["n"]]
    return "\n".join(lines), expected


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OP, max_size=60))
def test_map_operations_match_a_dict(ops: list[tuple[Any, ...]]) -> None:
    src, expected = script_and_model(ops)
    assert peerbox.compile(src).run().value == expected


@pytest.mark.parametrize(("moves", "then"), [
    ('m.remove("a");', [None, False]),        # the last entry moves into the hole
    ('m.keys();', [1, True]),                  # entries sorted in place
    ('m.clear(); m["c"] = 3;', [None, False]),  # other keys at the same places
    ('m.clear(); m["c"] = 3; m["d"] = 4;', [None, False]),
])
def test_what_moves_entries_makes_rt_forget(moves: str, then: list[Any]) -> None:
    """Find "a" (remembered), move entries, find "a" by the same slice again."""
    keys = "".join(f'm["{k}"] = 0;' for k in "efghijkl")  # hashed (more than 8 entries) too
    for extra in ("", keys):
        src = f'''let m = #{{}}; m["b"] = 2; m["a"] = 1; {extra}
let k = "a"; let first = m[k]; {moves}
[first, m[k], k in m]'''
        assert peerbox.compile(src).run().value == [1, *then], (moves, extra)
