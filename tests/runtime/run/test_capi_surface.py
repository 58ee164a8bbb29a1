"""The raw wasmtime layer's contract with the pinned wasmtime-py (see the upgrade note in ``_capi``).

peerbox calls wasmtime's C API through wasmtime-py's private ctypes bindings
for speed. An upgrade that renames one or changes its signature must fail
here, by name, not deep in a run (or as a crash: ctypes passes whatever it is
given). The expected signatures below are written out by hand on purpose:
they are what ``_capi`` was written against.
"""

from __future__ import annotations

import ast
import ctypes
import re
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from wasmtime import _bindings, _ffi

import peerbox
from peerbox.run import _capi
from peerbox.run._capi import GuestTrap, RawLinker, RawStore
from peerbox.run._hostfns import RunState
from peerbox._errors import map_exceptions
from peerbox.run._traps import COMPILE_ERRORS, RunLimits, run_error

RUN = Path(_capi.__file__).parent
PACKAGES = [Path(peerbox.__file__).parent]


def _name(t: Any) -> str:
    """A ctypes type as text: ``*T`` for pointers, ``fn(args) -> result`` for function types."""
    if t is None:
        return "None"
    if hasattr(t, "_argtypes_") and hasattr(t, "_restype_"):
        return "fn(" + ", ".join(_name(a) for a in t._argtypes_) + ") -> " + _name(t._restype_)
    if isinstance(t, type) and issubclass(t, ctypes._Pointer):
        return "*" + _name(t._type_)
    return str(t.__name__)


#: name -> (argtypes, restype), as ``_capi`` calls them (c_ulong is size_t on 64-bit Linux).
EXPECTED: dict[str, tuple[list[str], str]] = {
    "_wasmtime_store_new": (
        ['*wasm_engine_t', 'c_void_p', 'fn(c_void_p) -> None'],
        '*wasmtime_store',
    ),
    "_wasmtime_store_context": (
        ['*wasmtime_store'],
        '*wasmtime_context',
    ),
    "_wasmtime_store_delete": (
        ['*wasmtime_store'],
        'None',
    ),
    "_wasmtime_store_limiter": (
        ['*wasmtime_store', 'c_long', 'c_long', 'c_long', 'c_long', 'c_long'],
        'None',
    ),
    "_wasmtime_context_set_fuel": (
        ['*wasmtime_context', 'c_ulong'],
        '*wasmtime_error',
    ),
    "_wasmtime_context_get_fuel": (
        ['*wasmtime_context', '*c_ulong'],
        '*wasmtime_error',
    ),
    "_wasmtime_context_set_epoch_deadline": (
        ['*wasmtime_context', 'c_ulong'],
        'None',
    ),
    "_wasmtime_table_new": (
        ['*wasmtime_context', '*wasm_tabletype_t', '*wasmtime_val', '*wasmtime_table'],
        '*wasmtime_error',
    ),
    "_wasmtime_linker_define": (
        ['*wasmtime_linker', '*wasmtime_context', '*c_char', 'c_ulong', '*c_char', 'c_ulong',
         '*wasmtime_extern'],
        '*wasmtime_error',
    ),
    "_wasmtime_linker_define_instance": (
        ['*wasmtime_linker', '*wasmtime_context', '*c_char', 'c_ulong', '*wasmtime_instance'],
        '*wasmtime_error',
    ),
    "_wasmtime_linker_instantiate": (
        ['*wasmtime_linker', '*wasmtime_context', '*wasmtime_module', '*wasmtime_instance', '**wasm_trap_t'],
        '*wasmtime_error',
    ),
    "_wasmtime_instance_export_get": (
        ['*wasmtime_context', '*wasmtime_instance', '*c_char', 'c_ulong', '*wasmtime_extern'],
        'c_bool',
    ),
    "_wasmtime_func_call": (
        ['*wasmtime_context', '*wasmtime_func', '*wasmtime_val', 'c_ulong', '*wasmtime_val', 'c_ulong',
         '**wasm_trap_t'],
        '*wasmtime_error',
    ),
    "_wasmtime_memory_data": (
        ['*wasmtime_context', '*wasmtime_memory'],
        '*c_ubyte',
    ),
    "_wasmtime_memory_data_size": (
        ['*wasmtime_context', '*wasmtime_memory'],
        'c_ulong',
    ),
    "_wasmtime_caller_context": (
        ['*wasmtime_caller'],
        '*wasmtime_context',
    ),
    "_wasmtime_caller_export_get": (
        ['*wasmtime_caller', '*c_char', 'c_ulong', '*wasmtime_extern'],
        'c_bool',
    ),
    "_wasmtime_trap_code": (
        ['*wasm_trap_t', '*c_ubyte'],
        'c_bool',
    ),
    "_wasm_trap_message": (
        ['*wasm_trap_t', '*wasm_byte_vec_t'],
        'None',
    ),
    "_wasm_trap_delete": (
        ['*wasm_trap_t'],
        'None',
    ),
    "_wasm_byte_vec_delete": (
        ['*wasm_byte_vec_t'],
        'None',
    ),
    "_wasmtime_linker_define_func_unchecked": (
        ['*wasmtime_linker', '*c_char', 'c_ulong', '*c_char', 'c_ulong', '*wasm_functype_t',
         'fn(c_void_p, *wasmtime_caller, *wasmtime_val_raw, c_ulong) -> c_ulong', 'c_void_p',
         'fn(c_void_p) -> None'],
        '*wasmtime_error',
    ),
    "_wasmtime_engine_clone": (
        ['*wasm_engine_t'],
        '*wasm_engine_t',
    ),
    "_wasm_engine_delete": (
        ['*wasm_engine_t'],
        'None',
    ),
    "_wasmtime_pooling_allocation_config_new": (
        [],
        '*wasmtime_pooling_allocation_config_t',
    ),
    "_wasmtime_pooling_allocation_config_delete": (
        ['*wasmtime_pooling_allocation_config_t'],
        'None',
    ),
    "_wasmtime_pooling_allocation_config_total_memories_set": (
        ['*wasmtime_pooling_allocation_config_t', 'c_uint'],
        'None',
    ),
    "_wasmtime_pooling_allocation_config_total_tables_set": (
        ['*wasmtime_pooling_allocation_config_t', 'c_uint'],
        'None',
    ),
    "_wasmtime_pooling_allocation_config_total_core_instances_set": (
        ['*wasmtime_pooling_allocation_config_t', 'c_uint'],
        'None',
    ),
    "_wasmtime_pooling_allocation_config_max_memory_size_set": (
        ['*wasmtime_pooling_allocation_config_t', 'c_ulong'],
        'None',
    ),
    "_wasmtime_pooling_allocation_config_table_elements_set": (
        ['*wasmtime_pooling_allocation_config_t', 'c_ulong'],
        'None',
    ),
    "_wasmtime_pooling_allocation_config_linear_memory_keep_resident_set": (
        ['*wasmtime_pooling_allocation_config_t', 'c_ulong'],
        'None',
    ),
    "_wasmtime_pooling_allocation_config_table_keep_resident_set": (
        ['*wasmtime_pooling_allocation_config_t', 'c_ulong'],
        'None',
    ),
    "_wasmtime_pooling_allocation_config_max_unused_warm_slots_set": (
        ['*wasmtime_pooling_allocation_config_t', 'c_uint'],
        'None',
    ),
    "_wasmtime_pooling_allocation_config_total_stacks_set": (
        ['*wasmtime_pooling_allocation_config_t', 'c_uint'],
        'None',
    ),
    "_wasmtime_pooling_allocation_strategy_set": (
        ['*wasm_config_t', '*wasmtime_pooling_allocation_config_t'],
        'None',
    ),
}


def test_every_private_binding_used_is_listed() -> None:
    used = set(re.findall(r"\b_c\.(_w\w+)", (RUN / "_capi.py").read_text()))
    assert used == set(_capi.PRIVATE_BINDINGS)
    assert set(EXPECTED) == set(_capi.PRIVATE_BINDINGS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_private_binding_has_the_expected_signature(name: str) -> None:
    fn = getattr(_bindings, name, None)
    assert fn is not None, f"wasmtime._bindings.{name} is gone (wasmtime {_capi.wasmtime_version()})"
    argtypes, restype = EXPECTED[name]
    assert [_name(a) for a in fn.argtypes or []] == argtypes, name
    assert _name(fn.restype) == restype, name


def test_unchecked_callback_type() -> None:
    assert _name(_bindings.wasmtime_func_unchecked_callback_t) == (
        "fn(c_void_p, *wasmtime_caller, *wasmtime_val_raw, c_ulong) -> c_ulong"
    )


def test_private_structs_constants_and_symbols() -> None:
    fields = {
        "wasmtime_val_t": ["kind", "of"],
        "wasmtime_extern_t": ["kind", "of"],
        "wasm_byte_vec_t": ["size", "data"],
        "wasmtime_instance_t": [],  # opaque to peerbox: created empty, passed by reference
        "wasmtime_table_t": [],
    }
    for struct, names in fields.items():
        declared = [f[0] for f in getattr(_ffi, struct)._fields_]
        assert all(n in declared for n in names), (struct, declared)
    assert {"i32", "i64"} <= {f[0] for f in _ffi.wasmtime_val_raw_t._fields_}
    assert {"i32"} <= {f[0] for f in _ffi.wasmtime_valunion_t._fields_}
    assert {"func", "memory", "table"} <= {f[0] for f in _ffi.wasmtime_extern_union._fields_}
    for const in ("WASMTIME_I32", "WASMTIME_FUNCREF", "WASMTIME_EXTERN_FUNC", "WASMTIME_EXTERN_MEMORY",
                  "WASMTIME_EXTERN_TABLE"):
        assert isinstance(getattr(_ffi, const), ctypes.c_uint8), const
    for ty in ("wasm_trap_t", "wasmtime_trap_code_t", "wasm_config_t"):
        assert hasattr(_ffi, ty) or hasattr(_bindings, ty), ty
    assert Path(str(_ffi.filename)).exists()
    for symbol in ("wasmtime_engine_increment_epoch", "wasmtime_config_async_stack_size_set"):
        assert _ffi.dll[symbol] is not None
    assert callable(wasmtime._func.maybe_raise_last_exn)
    assert callable(wasmtime.WasmtimeError._from_ptr)
    for code in ("OUT_OF_FUEL", "INTERRUPT", "STACK_OVERFLOW"):
        assert hasattr(wasmtime.TrapCode, code)


def test_no_other_module_reaches_into_wasmtime_internals() -> None:
    private = re.compile(r"wasmtime\._|from wasmtime import _|_from_ptr|maybe_raise_last_exn|_bindings|_ffi")
    offenders = []
    for package in PACKAGES:
        for path in package.rglob("*.py"):
            if path.resolve() == Path(_capi.__file__).resolve():
                continue
            code = "\n".join(
                line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")
            )
            tree = ast.parse(code)
            for node in ast.walk(tree):
                imports = isinstance(node, (ast.Import, ast.ImportFrom)) and private.search(ast.unparse(node))
                reaches = isinstance(node, ast.Attribute) and node.attr in ("_from_ptr", "_bindings", "_ffi")
                if imports or reaches:
                    offenders.append(f"{path}: {ast.unparse(node)}")
    assert offenders == []


def test_run_room_imports_only_public_names_from_capi() -> None:
    for path in RUN.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "_capi":
                names = [a.name for a in node.names]
                assert all(not n.startswith("_") for n in names), (path.name, names)
                assert all(n in _capi.__all__ for n in names), (path.name, names)


# -- the surface itself ------------------------------------------------------------


def test_raw_store_lifetime_and_memory_limit_text() -> None:
    """A Store's memory limit refusing an instantiation is classified "memory" (by wasmtime's text)."""
    engine = wasmtime.Engine()
    module = wasmtime.Module(engine, '(module (memory (export "memory") 4))')
    linker = RawLinker(engine)
    with RawStore(engine.ptr(), memory=2 << 16) as store, pytest.raises(GuestTrap) as info:
        store.instantiate(linker, module.ptr())
    assert info.value.kind == "memory"
    assert isinstance(info.value.__cause__, wasmtime.WasmtimeError)
    assert store.closed
    store.close()  # idempotent
    with pytest.raises(peerbox.Error, match="used after close"):
        store.set_epoch_deadline(1)


def test_raw_store_call_read_block_and_traps() -> None:
    engine = wasmtime.Engine()
    module = wasmtime.Module(engine, """(module
        (memory (export "memory") 1)
        (data (i32.const 16) "\\03\\00\\00\\00abc")
        (func (export "block") (result i32) (i32.const 16))
        (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
        (func (export "boom") (result i32) unreachable))""")
    linker = RawLinker(engine)
    with RawStore(engine.ptr(), memory=1 << 20) as store:
        inst = store.instantiate(linker, module.ptr())
        assert store.call(inst, b"add", 40, 2) == 42
        assert store.call(inst, b"add", 40, 2, release_gil=True) == 42
        assert store.read_block(inst, store.call(inst, b"block"), "block") == b"abc"
        assert store.memory_size(inst) == 1 << 16
        store.write(inst, 32, b"xyz", "test")
        with pytest.raises(peerbox.Error, match="outside guest memory"):
            store.read_block(inst, (1 << 16) - 2, "block")
        with pytest.raises(peerbox.Error, match="no export 'missing'"):
            store.call(inst, b"missing")
        with pytest.raises(GuestTrap) as info:
            store.call(inst, b"boom")
        assert info.value.kind is None and "unreachable" in info.value.message


def test_map_exceptions_keeps_the_cause() -> None:
    engine = wasmtime.Engine()
    with pytest.raises(peerbox.Error, match="invalid module") as info, map_exceptions(COMPILE_ERRORS):
        wasmtime.Module(engine, "(module (func (result i32)))")
    assert isinstance(info.value.__cause__, wasmtime.WasmtimeError)
    with pytest.raises(KeyError), map_exceptions(COMPILE_ERRORS):  # not in the table: passes unchanged
        raise KeyError("x")


@pytest.mark.parametrize(
    ("kind", "fault", "limit"),
    [("fuel", 0, "fuel"), ("timeout", 0, "timeout"), ("stack", 1, "stack"), ("memory", 0, "memory"),
     (None, 1, "memory")],
)
def test_run_error_table(kind: Any, fault: int, limit: str) -> None:
    err = run_error(GuestTrap(kind, "t"), fault=fault, state=None, log=["a"],
                    limits=RunLimits(1.5, 1 << 16, 7, 1 << 20))
    assert isinstance(err, peerbox.LimitExceeded) and err.limit == limit and err.log == ["a"]


def test_run_error_prefers_the_host_calls_reason() -> None:
    limits = RunLimits(None, 1 << 16, None, 1 << 20)
    state = RunState(None)
    state.stop = peerbox.LimitExceeded("hostcalls", "spent")
    err = run_error(GuestTrap(None, "rt stopped"), fault=2, state=state, log=["l"], limits=limits)
    assert err is state.stop and err.log == ["l"]
    state = RunState(None)
    state.trap = GuestTrap("fuel", "out of fuel")
    err = run_error(GuestTrap(None, "rt stopped"), fault=2, state=state, log=[], limits=limits)
    assert isinstance(err, peerbox.LimitExceeded) and err.limit == "fuel"
    err = run_error(GuestTrap(None, " odd "), fault=0, state=None, log=[], limits=limits)
    assert type(err) is peerbox.Error and "a bug in peerbox" in str(err) and str(err).endswith("odd")
