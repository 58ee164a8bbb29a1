"""The guest runtime rt.wasm, run alone under wasmtime (see conftest.py): the module itself
(exports, reproducible build), the CBOR entry protocol, runtime errors and throws, memory
faults and host calls. Values and builtins: test_rt_values.py, test_rt_builtins.py.
"""

from __future__ import annotations

import math
import pathlib
import re
import shutil
import struct
import subprocess
from typing import Any

import cbor2
import pytest
import wasmtime

from peerbox.wasm_guests import RT_ABI_VERSION, rt_wasm_bytes, rt_wasm_path
from peerbox.wasm_guests.lang._builtins import BUILTINS
from .conftest import (  # shared by the test_rt_* files
    EXC, I64_MAX, I64_MIN, INT, REPO, STR, UNIT, RtHarness,
)


# ---- the module itself ---------------------------------------------------------------


def test_facade() -> None:
    assert rt_wasm_path().read_bytes() == rt_wasm_bytes()
    assert rt_wasm_bytes()[:4] == b"\0asm"
    assert isinstance(RT_ABI_VERSION, int)


def test_exports_match_abi_and_builtins() -> None:
    module = wasmtime.Module(wasmtime.Engine(), rt_wasm_bytes())
    exports = {e.name for e in module.exports}
    abi = (REPO / "wasm_guests" / "ABI.md").read_text()
    table = [line for line in abi.splitlines() if line.startswith("| `")]
    wanted = set()
    for line in table:
        wanted.update(re.findall(r"`((?:rt_\w+)|memory)`", line.split("|")[1]))
    assert len(wanted) > 40
    missing = wanted - exports
    assert not missing, missing
    for b in BUILTINS:
        assert b.export in exports, b.export
    imports = {(i.module, i.name) for i in module.imports}
    assert imports == {
        ("peerbox_rt", "parse_f64"),
        ("peerbox_rt", "pow_f64"),
        ("peerbox", "call"),
        ("env", "__indirect_function_table"),
    }


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("clang") is None, reason="clang not installed")
def test_build_sh_reproduces_committed_wasm(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "rt.wasm"
    subprocess.run(
        ["bash", str(REPO / "wasm_guests" / "rt" / "build.sh"), str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert out.read_bytes() == rt_wasm_path().read_bytes(), "rt.wasm is stale: run `make rt` and commit it"


@pytest.mark.slow
def test_build_sh_fails_loudly(tmp_path: pathlib.Path) -> None:
    proc = subprocess.run(
        ["bash", str(REPO / "wasm_guests" / "rt" / "build.sh"), str(tmp_path / "no" / "x.wasm")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "does not exist" in proc.stderr




# ---- the entry protocol ------------------------------------------------------------------------------


def test_cbor_round_trip(rt: RtHarness) -> None:
    params = {
        "int": [0, 1, -1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, I64_MAX, I64_MIN, -25],
        "f": [0.0, -0.0, 1.5, 1e300, math.inf],
        "s": ["", "é✓", "x" * 300],
        "b": b"\x00\xff" * 200,
        "n": None,
        "t": True,
        "nested": {"a": [{"b": [[]]}]},
        "m": {},
    }
    assert rt.begin({"params": params, "caller": "alice", "target": [1, 2]}) == 0
    assert rt.py(rt.raw("rt_global", 0)) == params
    assert rt.py(rt.raw("rt_global", 1)) == "alice"
    assert rt.py(rt.raw("rt_global", 2)) == [1, 2]
    assert rt.raw("rt_global", 9) == (UNIT, 0)
    res = rt.finish(rt.raw("rt_global", 0))
    assert res == {"ok": True, "value": params, "log": []}


def test_cbor_output_is_deterministic_and_canonical(rt: RtHarness) -> None:
    # keys of one length per map: bytewise order == cbor2's canonical (length-first) order
    value = {
        "bb": [1, -1, 1000, -1000, 2**40, None, True, False, "s", b"by"],
        "aa": {"x": {"y": []}, "a": 1},
        "cc": "x" * 30,
    }
    assert rt.begin({"params": {"v": value}}) == 0
    v = rt.call("rt_prop_get", rt.raw("rt_global", 0), rt.sval("v"))
    out = rt.finish_bytes(v)
    expected = cbor2.dumps({"log": [], "ok": True, "value": value}, canonical=True)
    assert out == expected
    assert rt.finish_bytes(v) == out


def test_cbor_floats_take_their_shortest_exact_form(rt: RtHarness) -> None:
    # deterministic CBOR (RFC 8949 4.2.1), as peerbox.wire's strict encoder writes it (was: always f64)
    out = rt.finish_bytes(rt.val(1.0))
    assert out.endswith(b"\xf9\x3c\x00")
    assert cbor2.loads(out)["value"] == 1.0
    assert rt.finish_bytes(rt.val(0.1)).endswith(b"\xfb" + struct.pack(">d", 0.1))


def test_cbor_output_keys_in_the_order_of_their_encodings(rt: RtHarness) -> None:
    # shorter keys first, then bytewise (was: bytewise, the order a script iterates in)
    keys = ["b", "aa", "a", "é", "ab"]
    out = cbor2.loads(rt.finish_bytes(rt.val({k: 0 for k in keys})))
    assert list(out["value"]) == sorted(keys, key=lambda k: (len(k.encode()), k.encode()))


def test_cbor_input_half_and_single_floats(rt: RtHarness) -> None:
    def doc(item: bytes) -> bytes:
        return b"\xa1\x66params\xa1\x61x" + item

    cases = [
        (b"\xf9\x3c\x00", 1.0),
        (b"\xf9\x7c\x00", math.inf),
        (b"\xf9\x00\x01", 2**-24),
        (b"\xf9\xc0\x00", -2.0),
        (b"\xf9\x7b\xff", 65504.0),
        (b"\xfa\x3f\xc0\x00\x00", 1.5),
        (b"\xfb" + struct.pack(">d", 0.1), 0.1),
    ]
    for item, want in cases:
        assert rt.begin(raw=doc(item)) == 0, item
        assert rt.run("rt_prop_get", rt.raw("rt_global", 0), "x") == want
    assert rt.begin(raw=doc(b"\xf9\x7e\x00")) == 0
    assert math.isnan(rt.run("rt_prop_get", rt.raw("rt_global", 0), "x"))


def test_cbor_input_defaults(make_rt: Any) -> None:
    h = make_rt()
    assert h.begin({}) == 0
    assert h.py(h.raw("rt_global", 0)) == {}
    assert h.raw("rt_global", 1) == (UNIT, 0)
    assert h.begin({"params": {"a": 1}, "extra": 5}) == 0


def _nest(n: int) -> Any:
    v: Any = 0
    for _ in range(n):
        v = [v]
    return v


@pytest.mark.parametrize(
    ("label", "data"),
    [
        ("tag", cbor2.dumps({"params": {"d": cbor2.CBORTag(1, 0)}})),
        ("indefinite array", b"\xa1\x66params\xa1\x61x\x9f\x01\xff"),
        ("indefinite text", b"\xa1\x66params\xa1\x61x\x7f\x61a\xff"),
        ("indefinite map", b"\xbf\x66params\xa0\xff"),
        ("int key", b"\xa1\x66params\xa1\x01\x02"),
        ("top int key", b"\xa1\x01\x02"),
        ("too deep", cbor2.dumps({"params": {"x": _nest(128)}})),
        ("int too big", cbor2.dumps({"params": {"x": 2**63}})),
        ("int too small", cbor2.dumps({"params": {"x": -(2**63) - 1}})),
        ("bad utf8", b"\xa1\x66params\xa1\x61x\x62\xff\xfe"),
        ("surrogate", b"\xa1\x66params\xa1\x61x\x63\xed\xa0\x80"),
        ("overlong", b"\xa1\x66params\xa1\x61x\x62\xc0\xaf"),
        ("undefined", b"\xa1\x66params\xa1\x61x\xf7"),
        ("simple value", b"\xa1\x66params\xa1\x61x\xf0"),
        ("truncated", b"\xa1\x66params\xa1\x61x\x19\x01"),
        ("huge length", b"\xa1\x66params\xa1\x61x\x9b\xff\xff\xff\xff\xff\xff\xff\xff"),
        ("trailing", cbor2.dumps({"params": {}}) + b"\x00"),
        ("not a map", cbor2.dumps([1])),
        ("params not a map", cbor2.dumps({"params": [1]})),
        ("empty", b""),
    ],
)
def test_cbor_input_rejections(make_rt: Any, label: str, data: bytes) -> None:
    h = make_rt()
    assert h.begin(raw=data) != 0, label
    out = h.output()
    assert out["ok"] is False
    assert out["error"]["kind"] == "invalid_argument"
    assert out["error"]["message"].startswith("invalid input: ")
    assert out["log"] == []


def test_cbor_input_depth_limit_is_128(make_rt: Any) -> None:
    h = make_rt()
    assert h.begin({"params": {"x": _nest(127)}}) == 0  # params map + 127 arrays = 128 levels
    v = h.raw("rt_global", 0)
    assert h.finish(v)["ok"] is True
    assert h.begin({"params": {"x": _nest(128)}}) != 0


def test_finish_too_deep(rt: RtHarness) -> None:
    deep = rt.val(_nest(128))
    outer = rt.raw("rt_array_new", 1)
    rt.raw("rt_array_push", outer, deep)
    res = rt.finish(outer)
    assert res["ok"] is False and res["error"]["kind"] == "too_deep"


def test_runtime_error_output_and_lines(rt: RtHarness) -> None:
    assert rt.raw("rt_div", (INT, 1), (INT, 0)) == (EXC, 0)
    rt.raw("rt_set_line", (2 << 24) | 17)
    rt.raw("rt_set_line", 99)  # only the first call after the raise counts
    res = rt.finish((EXC, 0))
    assert res == {
        "ok": False,
        "log": [],
        "error": {"kind": "division_by_zero", "message": "division by zero", "line": 17, "file": 2},
    }


def test_throw_output(rt: RtHarness) -> None:
    rt.call("f_print_1", "before")
    v = rt.val({"code": 7, "why": "bad"})
    assert rt.raw("rt_throw", v) == (EXC, 0)
    rt.raw("rt_set_line", 5)
    res = rt.finish((EXC, 0))
    assert res["ok"] is False
    assert res["error"] == {
        "kind": "throw",
        "message": '#{"code": 7, "why": "bad"}',
        "line": 5,
        "file": 0,
        "value": {"code": 7, "why": "bad"},
    }
    assert res["log"] == ["before"]


def test_exc_take(rt: RtHarness) -> None:
    assert rt.raw("rt_exc_take") == (UNIT, 0)
    rt.raw("rt_throw", rt.sval("oops"))
    rt.raw("rt_set_line", 3)
    assert rt.py(rt.raw("rt_exc_take")) == "oops"
    assert rt.raw("rt_exc_take") == (UNIT, 0)
    rt.raw("rt_index_get", rt.val([1]), (INT, 4))
    rt.raw("rt_set_line", (1 << 24) | 12)
    assert rt.py(rt.raw("rt_exc_take")) == {
        "kind": "index_out_of_range",
        "message": "index 4 out of range for array of length 1",
        "line": 12,
    }
    # the line is cleared with the error: the next error gets its own line
    rt.raw("rt_neg", (STR, 0))
    rt.raw("rt_set_line", 40)
    assert rt.py(rt.raw("rt_exc_take"))["line"] == 40
    rt.raw("rt_set_line", 41)  # no error pending: ignored
    rt.raw("rt_not", (INT, 1))
    assert rt.py(rt.raw("rt_exc_take"))["line"] == 0


def test_bare_rethrow_keeps_the_runtime_error_kind(rt: RtHarness) -> None:
    rt.raw("rt_div", (INT, 1), (INT, 0))
    rt.raw("rt_set_line", 2)
    caught = rt.raw("rt_exc_take")
    assert rt.raw("rt_rethrow", caught) == (EXC, 0)  # `throw;` passes the map rt_exc_take made
    rt.raw("rt_set_line", 4)
    res = rt.finish((EXC, 0))
    assert res["error"] == {"kind": "division_by_zero", "message": "division by zero", "line": 4, "file": 0}
    # thrown as a value (`catch (e) { throw e }`) it is an ordinary thrown value
    rt.raw("rt_div", (INT, 1), (INT, 0))
    copied = rt.call("rt_copy", rt.raw("rt_exc_take"))
    rt.raw("rt_throw", copied)
    assert rt.finish((EXC, 0))["error"]["kind"] == "throw"


# ---- memory --------------------------------------------------------------------------------------------


def test_rt_alloc_is_aligned_and_zeroed(rt: RtHarness) -> None:
    sizes = (1, 3, 8, 17, 100_000, 5)
    ptrs = [rt.alloc(n) for n in sizes]
    assert all(p % 8 == 0 for p in ptrs)
    spans = sorted(zip(ptrs, sizes))
    assert all(a + n <= b for (a, n), (b, _) in zip(spans, spans[1:]))  # no two overlap
    assert rt.read(ptrs[4], 100_000) == bytes(100_000)


def test_out_of_memory_faults(make_rt: Any) -> None:
    h = make_rt(memory=2 << 20)
    assert h.begin({"params": {}}) == 0
    assert h.raw("rt_fault") == 0
    h.call("f_print_1", "still here")
    with pytest.raises(wasmtime.Trap):
        h.raw("rt_alloc", 4 << 20)
    assert h.raw("rt_fault") == 1
    assert h.log() == ["still here"]


def test_out_of_memory_in_string_growth(make_rt: Any) -> None:
    h = make_rt(memory=2 << 20)
    assert h.begin({"params": {}}) == 0
    s = h.val("x" * 1000)
    with pytest.raises(wasmtime.Trap):
        for _ in range(40):
            s = h.call("rt_add", s, s)
    assert h.raw("rt_fault") == 1


@pytest.mark.parametrize(
    "call",
    [
        ("rt_array_new", 0x7FFFFFFF),
        ("rt_alloc", 0x7FFFFFFF),
        ("rt_alloc", -8),
    ],
)
def test_hostile_sizes_fault_instead_of_wrapping(make_rt: Any, call: tuple[str, int]) -> None:
    h = make_rt(memory=16 << 20)
    assert h.begin({"params": {}}) == 0
    with pytest.raises(wasmtime.Trap):
        h.raw(*call)
    assert h.raw("rt_fault") == 1


def test_small_runs_stay_small(make_rt: Any) -> None:
    h = make_rt()
    assert h.begin({"params": {"a": 1}}) == 0
    h.finish(h.val([1, "two", {"three": 3.0}]))
    assert h.memory.size(h.store) <= 16, "a trivial run should not grow memory much past the 5 initial pages"


# -- host calls ------------------------------------------------------------------


def test_host_call_sends_args_as_one_cbor_array_and_decodes_the_reply(make_rt: Any) -> None:
    h = make_rt()
    assert h.begin({"params": {}}) == 0
    args = ("notes/a.txt", [1, {"k": b"\x00\xff"}])
    got = h.py(h.raw("rt_host_2", 7, h.val(args[0]), h.val(args[1])))
    assert got == [7, list(args)]
    assert h.py(h.raw("rt_host_0", 3)) == [3, []]
    h.host_reply = lambda op, args: {"ok": {"size": 5, "is_dir": False}}
    assert h.py(h.raw("rt_host_1", 8, h.val("x"))) == {"size": 5, "is_dir": False}


def test_host_call_refusal_is_a_catchable_error_of_the_hosts_kind(make_rt: Any) -> None:
    h = make_rt()
    assert h.begin({"params": {}}) == 0
    h.host_reply = lambda op, args: {"err": ["invalid_path", "path escapes the peer root: ../x"]}
    assert h.raw("rt_host_1", 1, h.val("../x"))[0] == EXC
    caught = h.py(h.call("rt_exc_take"))
    assert caught == {"kind": "invalid_path", "message": "path escapes the peer root: ../x", "line": 0}


@pytest.mark.parametrize("reply", [{"neither": 1}, {"err": ["only-kind"]}, {"err": [1, 2]}, [1, 2]])
def test_malformed_host_reply_is_an_error_not_a_crash(make_rt: Any, reply: Any) -> None:
    h = make_rt()
    assert h.begin({"params": {}}) == 0
    h.host_reply = lambda op, args: reply
    assert h.raw("rt_host_0", 1)[0] == EXC
    assert h.py(h.call("rt_exc_take"))["kind"] == "invalid_argument"


def test_host_stop_traps_with_fault_2(make_rt: Any) -> None:
    h = make_rt()
    assert h.begin({"params": {}}) == 0
    h.host_reply = lambda op, args: None
    with pytest.raises(wasmtime.Trap):
        h.raw("rt_host_0", 1)
    assert h.raw("rt_fault") == 2
