"""Generative test of CLI params: whatever ``--param``/``--params-json`` say, never exit 1.

Random JSON values and raw strings, nesting at and past the limit, sizes
around the limit: the exit code is 0 or a documented failure (2 usage, 3
compile, 4 runtime, 5 limit), never 1 ("a bug in peerbox"), and stderr never
holds a traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peerbox.cli._main import main
from peerbox.cli._input import MAX_JSON_DEPTH, MAX_PARAMS_BYTES

_DIR = Path(tempfile.mkdtemp(prefix="peerbox-params-fuzz-"))
_SCRIPT = _DIR / "p.rhai"
_SCRIPT.write_text("let n = 0;\nfor k in params.keys() { n += 1; }\n[n, params]\n", encoding="utf-8")

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _nested(depth: int, opener: str) -> str:
    if opener == "[":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


deep = st.builds(
    _nested,
    st.sampled_from([MAX_JSON_DEPTH - 2, MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1, 5_000]),
    st.sampled_from(["[", "{"]),
)
unbalanced = st.builds(lambda n, c: c * n, st.integers(1, 3_000), st.sampled_from(["[", "{", "]", "}"]))
huge = st.builds(lambda n: json.dumps("x" * n),
                 st.sampled_from([MAX_PARAMS_BYTES - 10, MAX_PARAMS_BYTES + 1, 2 * MAX_PARAMS_BYTES]))
big_int = st.builds(lambda n: "9" * n, st.sampled_from([18, 19, 20, 4_300, 5_000]))
raw_values = (
    st.builds(json.dumps, json_values)
    | st.text(max_size=30)
    | deep
    | unbalanced
    | huge
    | big_int
)
param_args = st.lists(
    st.builds(lambda k, v: f"{k}={v}", st.text(max_size=6), raw_values) | st.text(max_size=10),
    max_size=3,
)
params_json = (
    st.none()
    | st.builds(json.dumps, st.dictionaries(st.text(max_size=6), json_values, max_size=4))
    | st.builds(json.dumps, json_values)
    | deep
    | unbalanced
    | huge
    | st.text(max_size=20)
    | st.builds(lambda d: '{"a":' + d + "}", deep)
)


def _run(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params=param_args, whole=params_json, as_json=st.booleans())
def test_cli_params_never_exit_1(params: list[str], whole: str | None, as_json: bool) -> None:
    argv = ["run", str(_SCRIPT), "--timeout", "5"]
    for p in params:
        argv += ["--param", p]
    if whole is not None:
        argv += ["--params-json", whole]
    if as_json:
        argv.append("--json")
    code, err = _run(argv)
    assert code in {0, 2, 3, 4, 5}, (code, err[:2000])
    assert "Traceback" not in err and "internal error" not in err, err[:2000]
    assert len(err) < 20_000  # messages echo bounded excerpts of the params


def test_deep_params_past_the_limit_exit_2_at_the_limit_run() -> None:
    at = "a=" + _nested(MAX_JSON_DEPTH - 2, "[")
    code, err = _run(["run", str(_SCRIPT), "--param", at])
    assert code == 0, err
    for past in ("a=" + _nested(MAX_JSON_DEPTH + 1, "["), "a=" + _nested(100_000, "{")):
        code, err = _run(["run", str(_SCRIPT), "--param", past])
        assert code == 2 and "deeper than" in err, err[:500]
