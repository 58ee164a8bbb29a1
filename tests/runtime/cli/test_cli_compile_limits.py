"""``peerbox run`` / ``peerbox compile`` of a script past a compile limit: exit 3, the limit named.

Issue 12 (findings 1 and 8): ordinary input used to end as "a bug in peerbox"
(exit 1) when a function had more parameters or variables than wasm allows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

Script = Callable[[str, str], str]
Cli = Callable[..., Any]

_PARAMS = ", ".join(f"p{i}" for i in range(600))


@pytest.mark.parametrize(("source", "limit"), [
    (f"fn f({_PARAMS}) {{ p0 }}\n1", "params"),
    (f"let c = |{_PARAMS}| p0;\n1", "params"),
    ("let c = || 1;\nc.call(" + ", ".join("1" for _ in range(600)) + ")", "params"),
    ("(" * 5000 + "1" + ")" * 5000, "depth"),
    ("".join(f"let v{i} = {i};\n" for i in range(12_000)) + "v0", "locals"),
])
@pytest.mark.parametrize("command", ["run", "compile"])
def test_a_script_past_a_compile_limit_exits_3_naming_it(cli: Cli, script: Script, source: str, limit: str,
                                                          command: str) -> None:
    r = cli(command, script("big.rhai", source))
    assert r.code == 3, (r.code, r.err[-500:])
    assert f"compile limit '{limit}'" in r.err
    assert "big.rhai:" in r.err  # the position
    assert "bug in peerbox" not in r.err


def test_a_limit_failure_in_json_mode_is_a_compile_error(cli: Cli, script: Script) -> None:
    import json

    r = cli("run", script("p.rhai", f"fn f({_PARAMS}) {{ p0 }}\n1"), "--json")
    assert r.code == 3
    info = json.loads(r.out)["error"]
    assert info["type"] == "compile" and info["exit_code"] == 3
    assert info["diagnostics"][0]["message"] == "too many parameters (compile limit 'params' is 128)"
    assert (info["diagnostics"][0]["line"], info["diagnostics"][0]["col"]) == (1, 664)  # p128, the 129th
