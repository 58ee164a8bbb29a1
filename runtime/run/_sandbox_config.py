"""A Sandbox's options and run limits: their ranges and their validation.

wasmtime's C API turns an Engine configuration it refuses into a Rust panic
that aborts the process, and takes run limits as raw C integers (a negative
memory limit means "none"), so every value is checked here first and an
out-of-range one raises :class:`~peerbox.UsageError` naming the range.
"""

from __future__ import annotations

import math
import os

from .._errors import UsageError

__all__ = [
    "MIN_WASM_STACK", "MAX_WASM_STACK", "MAX_MEMORY", "MAX_FUEL", "MAX_TIMEOUT", "MAX_CONCURRENT_RUNS",
    "MAX_TABLE_SIZE", "DEFAULT_ASYNC_STACK", "KEEP_RESIDENT", "check_options", "check_run_limits", "round_up",
    "address_space_unlimited",
]

#: Smallest and largest ``max_wasm_stack`` a Sandbox accepts (bytes).
MIN_WASM_STACK = 64 << 10
MAX_WASM_STACK = 64 << 20
#: wasmtime's own default ``async_stack_size``: the most a wasmtime without the
#: C function to raise it can honour.
DEFAULT_ASYNC_STACK = 2 << 20
#: Largest memory limit a run may have: wasm32 cannot address more.
MAX_MEMORY = 4 << 30
#: Largest fuel budget and epoch deadline (ticks) a run may have.
MAX_FUEL = 1 << 62
#: Longest timeout a run may have (seconds).
MAX_TIMEOUT = 24 * 3600.0
#: Most runs one Sandbox may execute at the same time.
MAX_CONCURRENT_RUNS = 4096
#: Bytes of each pooled linear memory kept resident (reset with memset) between runs.
KEEP_RESIDENT = 1 << 20
#: Largest function table a script may need (64 + its closures).
MAX_TABLE_SIZE = 1 << 16


def _is_number(x: object) -> bool:
    return type(x) is int or type(x) is float


def check_run_limits(timeout: float | None, memory: int, fuel: int | None) -> None:
    """Raise :class:`~peerbox.UsageError` unless the run limits are in range.

    An unchecked value would reach wasmtime's C API, where a negative memory
    limit means "none" and a value past 64 bits is a ctypes error.
    """
    if timeout is not None and (
        not _is_number(timeout) or not math.isfinite(timeout) or not 0 < timeout <= MAX_TIMEOUT
    ):
        raise UsageError(f"timeout must be None or seconds in (0, {MAX_TIMEOUT:.0f}], got {timeout!r}")
    if type(memory) is not int or not 0 <= memory <= MAX_MEMORY:
        raise UsageError(f"memory must be an int number of bytes in [0, {MAX_MEMORY}], got {memory!r}")
    if fuel is not None and (type(fuel) is not int or not 0 <= fuel <= MAX_FUEL):
        raise UsageError(f"fuel must be None or an int in [0, {MAX_FUEL}], got {fuel!r}")


def round_up(n: int, unit: int = 64 << 10) -> int:
    return -(-n // unit) * unit


def check_options(
    max_wasm_stack: object,
    cache_dir: object,
    disk_cache: object,
    memory_cache_size: object,
    max_concurrent_runs: object,
    pooling: object,
    metered: object,
) -> None:
    """Raise :class:`~peerbox.UsageError` unless every Sandbox option is in range.

    Called before wasmtime sees any of them (it would panic on some).
    """
    if type(max_wasm_stack) is not int or not MIN_WASM_STACK <= max_wasm_stack <= MAX_WASM_STACK:
        raise UsageError(
            f"max_wasm_stack must be an int between {MIN_WASM_STACK} and {MAX_WASM_STACK} bytes "
            f"(at most {MAX_WASM_STACK >> 20} MiB), got {max_wasm_stack!r}"
        )
    if type(max_concurrent_runs) is not int or not 1 <= max_concurrent_runs <= MAX_CONCURRENT_RUNS:
        raise UsageError(
            f"max_concurrent_runs must be an int in [1, {MAX_CONCURRENT_RUNS}], got {max_concurrent_runs!r}"
        )
    if type(memory_cache_size) is not int or not 0 <= memory_cache_size <= 1 << 20:
        raise UsageError(f"memory_cache_size must be an int in [0, {1 << 20}], got {memory_cache_size!r}")
    if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
        raise UsageError(f"cache_dir must be a path or None, got {cache_dir!r}")
    for name, value in (("disk_cache", disk_cache), ("metered", metered)):
        if type(value) is not bool:
            raise UsageError(f"{name} must be True or False, got {value!r}")
    if pooling is not None and type(pooling) is not bool:
        raise UsageError(f"pooling must be True, False or None, got {pooling!r}")


def address_space_unlimited() -> bool:
    try:
        import resource  # optional: POSIX only

        soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
        return soft == resource.RLIM_INFINITY
    except (ImportError, OSError, ValueError):  # pragma: no cover - not on Linux
        return False
