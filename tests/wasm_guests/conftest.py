"""A small harness that runs rt.wasm alone under wasmtime, for the rt tests.

:class:`RtHarness` instantiates rt in a fresh Store with a memory limit, a
128-entry funcref table as ``env.__indirect_function_table`` and Python
versions of the ``peerbox_rt`` host imports. It converts Python values to rt
values by calling rt's own constructors (and back through ``rt_finish``'s
CBOR), and can put Python callables into the table as closures.
"""

from __future__ import annotations

import math
import pathlib
import struct
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import cbor2
import pytest
import wasmtime

from peerbox.wasm_guests import rt_wasm_bytes
from peerbox.wasm_guests.lang._emitter import key_hash

UNIT, BOOL, INT, FLOAT, STR, ARRAY, MAP, FN, BLOB, EXC = 0, 1, 2, 3, 4, 5, 6, 7, 8, 255
CLOSURE_TABLE_BASE = 64
TABLE_SIZE = 128

RtVal = tuple[int, int]

#: An Engine and rt.wasm compiled in it (the ``rt_wasm`` fixture).
RtWasm = tuple[wasmtime.Engine, wasmtime.Module]


def _i64(u: int) -> int:
    """An unsigned 64-bit pattern as the signed int wasmtime expects."""
    u &= (1 << 64) - 1
    return u - (1 << 64) if u >= 1 << 63 else u


#: rt exports taking a property name's hash after the name (computed by the compiler).
_HASHED = frozenset({"rt_prop_get", "rt_prop_set", "rt_prop_own", "rt_map_set"})


class RtError(Exception):
    """An rt function returned EXC; carries what rt_exc_take gave."""

    def __init__(self, caught: Any) -> None:
        super().__init__(caught)
        self.caught = caught
        self.kind: str | None = caught.get("kind") if isinstance(caught, dict) else "throw"
        self.message: str | None = caught.get("message") if isinstance(caught, dict) else None


V = tuple[int, int]
_V2 = [wasmtime.ValType.i32(), wasmtime.ValType.i64()]


class RtHarness:
    """One rt instance in its own Store."""

    def __init__(self, wasm: RtWasm, memory: int = 64 << 20) -> None:
        engine, module = wasm
        self.store = wasmtime.Store(engine)
        self.store.set_limits(memory_size=memory)
        self.table = wasmtime.Table(
            self.store,
            wasmtime.TableType(wasmtime.ValType.funcref(), wasmtime.Limits(TABLE_SIZE, None)),
            None,
        )
        self.next_closure = 0
        self.host_calls: list[str] = []
        linker = wasmtime.Linker(engine)
        i32, f64 = wasmtime.ValType.i32(), wasmtime.ValType.f64()

        def parse_f64(ptr: int, n: int, out: int) -> int:
            self.host_calls.append("parse_f64")
            text = self.memory.read(self.store, ptr, ptr + n).decode()
            try:
                value = float(text)
            except ValueError:
                return 0
            self.memory.write(self.store, struct.pack("<d", value), out)
            return 1

        def pow_f64(a: float, b: float) -> float:
            self.host_calls.append("pow_f64")
            try:
                return math.pow(a, b)
            except OverflowError:
                return math.inf
            except ValueError:
                return math.nan

        linker.define(
            self.store,
            "peerbox_rt",
            "parse_f64",
            wasmtime.Func(self.store, wasmtime.FuncType([i32, i32, i32], [i32]), parse_f64),
        )
        linker.define(
            self.store,
            "peerbox_rt",
            "pow_f64",
            wasmtime.Func(self.store, wasmtime.FuncType([f64, f64], [f64]), pow_f64),
        )
        # peerbox.call: by default echo [op, args]; a test may set host_reply
        # (return a reply dict, or None to answer 0: "stop the run")
        self.host_reply: Callable[[int, list[Any]], Any] = lambda op, args: {"ok": [op, args]}

        def host_call(op: int, ptr: int, n: int) -> int:
            args = cbor2.loads(self.read(ptr, n))
            reply = self.host_reply(op, args)
            if reply is None:
                return 0
            data = cbor2.dumps(reply)
            out = int(self.fn("rt_alloc")(self.store, len(data))) & 0xFFFFFFFF
            self.memory.write(self.store, data, out)
            return (len(data) << 32) | out

        linker.define(
            self.store,
            "peerbox",
            "call",
            wasmtime.Func(
                self.store, wasmtime.FuncType([i32, i32, i32], [wasmtime.ValType.i64()]), host_call
            ),
        )
        linker.define(self.store, "env", "__indirect_function_table", self.table)
        self.instance = linker.instantiate(self.store, module)
        self.exports = self.instance.exports(self.store)
        mem = self.exports["memory"]
        assert isinstance(mem, wasmtime.Memory)
        self.memory = mem

    # -- raw calls ----------------------------------------------------------------

    def fn(self, name: str) -> wasmtime.Func:
        f = self.exports[name]
        assert isinstance(f, wasmtime.Func)
        return f

    def raw(self, name: str, *args: Any) -> Any:
        """Call export ``name``; each arg is an int or an rt value pair (flattened)."""
        flat: list[int] = []
        for a in args:
            if isinstance(a, tuple):
                flat.extend((a[0], _i64(a[1])))
            else:
                flat.append(a)
        result = self.fn(name)(self.store, *flat)
        if isinstance(result, list):
            return (result[0], result[1])
        return result

    def call(self, name: str, *args: Any) -> RtVal:
        """Call an export taking values (Python values are converted); raise RtError on EXC.

        ``rt_prop_*`` get the name's hash after the name, as compiled code passes it."""
        vals: list[Any] = [a if isinstance(a, tuple) else self.val(a) for a in args]
        if name in _HASHED:
            vals.insert(2, key_hash(self.py(vals[1])) if vals[1][0] == STR else 0)
        r: RtVal = self.raw(name, *vals)
        if r[0] == EXC:
            raise RtError(self.py(self.raw("rt_exc_take")))
        return r

    def run(self, name: str, *args: Any) -> Any:
        """:meth:`call` and convert the result to Python."""
        return self.py(self.call(name, *args))

    def err(self, name: str, *args: Any) -> RtError:
        """Call and expect an error; returns it."""
        with pytest.raises(RtError) as info:
            self.call(name, *args)
        return info.value

    # -- memory -----------------------------------------------------------------------

    def alloc(self, n: int) -> int:
        return int(self.raw("rt_alloc", n))

    def write(self, data: bytes) -> int:
        ptr = self.alloc(len(data))
        if data:
            self.memory.write(self.store, data, ptr)
        return ptr

    def read(self, ptr: int, n: int) -> bytes:
        return bytes(self.memory.read(self.store, ptr, ptr + n))

    def read_frame(self, ptr: int) -> bytes:
        """A ``{u32 len, bytes}`` output frame."""
        (n,) = struct.unpack("<I", self.read(ptr, 4))
        return self.read(ptr + 4, n)

    # -- values -----------------------------------------------------------------------

    def sval(self, s: str) -> RtVal:
        data = s.encode()
        return (STR, (len(data) << 32) | self.write(data))

    def val(self, x: Any) -> RtVal:
        """A Python value as a fresh rt value."""
        if x is None:
            return (UNIT, 0)
        if isinstance(x, bool):
            return (BOOL, int(x))
        if isinstance(x, int):
            return (INT, x)
        if isinstance(x, float):
            return (FLOAT, struct.unpack("<q", struct.pack("<d", x))[0])
        if isinstance(x, str):
            return self.sval(x)
        if isinstance(x, bytes):
            data = self.write(x)
            hdr = self.write(struct.pack("<III", len(x), len(x), data))
            return (BLOB, hdr)
        if isinstance(x, list):
            arr: RtVal = self.raw("rt_array_new", len(x))
            for item in x:
                self.raw("rt_array_push", arr, self.val(item))
            return arr
        if isinstance(x, dict):
            m: RtVal = self.raw("rt_map_new", 0)
            for k, v in x.items():
                self.raw("rt_map_set", m, self.sval(k), key_hash(k), self.val(v))
            return m
        if isinstance(x, tuple):
            return x
        raise TypeError(type(x))

    def closure(self, fn: Callable[..., Any], nparams: int, *, raw: bool = False) -> RtVal:
        """A closure calling the Python ``fn``: with Python values (its result is
        converted) or, with raw=True, with rt value pairs (it returns a pair)."""
        ty = wasmtime.FuncType([wasmtime.ValType.i32()] + _V2 * nparams, _V2)

        def body(env: int, *flat: int) -> list[int]:
            pairs = [(flat[2 * i], flat[2 * i + 1]) for i in range(nparams)]
            if raw:
                t, p = fn(*pairs)
            else:
                t, p = self.val(fn(*(self.py(v) for v in pairs)))
            return [t, _i64(p)]

        index = CLOSURE_TABLE_BASE + self.next_closure
        self.next_closure += 1
        self.table.set(self.store, index, wasmtime.Func(self.store, ty, body))
        ptr = self.write(struct.pack("<III", index, nparams, 0))
        return (FN, ptr)

    def finish(self, v: RtVal) -> dict[str, Any]:
        out = self.raw("rt_finish", v)
        return dict(cbor2.loads(self.read_frame(out)))

    def finish_bytes(self, v: RtVal) -> bytes:
        return self.read_frame(self.raw("rt_finish", v))

    def py(self, v: RtVal) -> Any:
        """An rt value as Python (through rt_finish's CBOR)."""
        if v[0] == FN:
            return "<closure>"
        res = self.finish(v)
        assert res["ok"], res
        return res["value"]

    def begin(self, doc: Any = None, *, raw: bytes | None = None) -> int:
        data = raw if raw is not None else cbor2.dumps(doc)
        ptr = self.write(data)
        return int(self.raw("rt_begin", ptr, len(data)))

    def output(self) -> dict[str, Any]:
        return dict(cbor2.loads(self.read_frame(self.raw("rt_output"))))

    def log(self) -> list[str]:
        return list(cbor2.loads(self.read_frame(self.raw("rt_log_out"))))

    def array_header(self, v: RtVal) -> tuple[int, int, int]:
        return struct.unpack("<III", self.read(v[1] & 0xFFFFFFFF, 12))


def same(got: Any, expected: Any) -> bool:
    """Equal with the same types, recursively (so 1 != 1.0 != True); NaN equals NaN."""
    if type(got) is not type(expected):
        return False
    if isinstance(got, float):
        if math.isnan(got) or math.isnan(expected):
            return math.isnan(got) and math.isnan(expected)
        return got == expected and math.copysign(1.0, got) == math.copysign(1.0, expected)
    if isinstance(got, list):
        return len(got) == len(expected) and all(same(a, b) for a, b in zip(got, expected, strict=True))
    if isinstance(got, dict):
        return list(got) == list(expected) and all(same(got[k], expected[k]) for k in got)
    return bool(got == expected)


@pytest.fixture(name="same")
def same_fixture() -> Callable[[Any, Any], bool]:
    """The strict equality :func:`same`."""
    return same


@pytest.fixture(scope="session")
def rt_wasm() -> RtWasm:
    """One Engine and rt.wasm compiled in it, shared by the session's rt instances.

    Made at first use, not at import: wasmtime installs its signal handlers
    when the first Engine is made, and they must come after pytest's
    faulthandler (which would otherwise turn a wasm trap such as
    ``unreachable`` into a fatal SIGILL). Released when the session ends, not
    at interpreter shutdown (where wasmtime's finalizers fail).
    """
    engine = wasmtime.Engine()
    return engine, wasmtime.Module(engine, rt_wasm_bytes())


@pytest.fixture
def rt(rt_wasm: RtWasm) -> Iterator[RtHarness]:
    """A fresh rt instance (64 MiB memory limit) that has seen rt_begin({})."""
    h = RtHarness(rt_wasm)
    assert h.begin({"params": {}}) == 0
    yield h


@pytest.fixture
def make_rt(rt_wasm: RtWasm) -> Callable[..., RtHarness]:
    """Factory: make_rt(memory=bytes) -> a fresh RtHarness (no rt_begin yet)."""
    return partial(RtHarness, rt_wasm)


# -- helpers the test_rt_* files import ---------------------------------------------

UNIT, BOOL, INT, FLOAT, STR, ARRAY, MAP, FN, BLOB, EXC = 0, 1, 2, 3, 4, 5, 6, 7, 8, 255
I64_MIN, I64_MAX = -(2**63), 2**63 - 1
REPO = pathlib.Path(__file__).resolve().parents[2]


def s_len(v: tuple[int, int]) -> int:
    return (v[1] >> 32) & 0xFFFFFFFF


def kind_of(rt: RtHarness, name: str, *args: Any) -> tuple[str | None, str | None]:
    e = rt.err(name, *args)
    return e.kind, e.message
