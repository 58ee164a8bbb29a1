"""The layers hold at import time: a low package loads nothing of the layers above it.

Each check runs in a fresh interpreter (the test process has imported everything already) and
looks at ``sys.modules`` afterwards. ``peerbox`` and its rooms are lazy (PEP 562), so importing
the policy engine, the compiler or the host-call layer, or asking ``peerbox --version``, must
not load wasmtime, trio, h2 or (below the wire format) PyNaCl.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Each test starts an interpreter (a second or less): slow by the suite's rule, not in `make test-fast`.
pytestmark = pytest.mark.slow

HEAVY = ("wasmtime", "trio", "h2", "nacl")


def _loaded_after(code: str) -> set[str]:
    """The top-level names of the modules a fresh interpreter has loaded after running ``code``."""
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.splitlines()[-1]))


def _peerbox_modules_after(code: str) -> set[str]:
    probe = (code + "\nimport json, sys\n"
             "print(json.dumps(sorted(m for m in sys.modules if m.startswith('peerbox'))))\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.splitlines()[-1]))


@pytest.mark.parametrize("package", ["peerbox.policy", "peerbox.wasm_guests.lang", "peerbox.hostcalls"])
def test_a_low_package_loads_no_sandbox_network_or_crypto(package: str) -> None:
    loaded = _loaded_after(f"import {package}")
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_importing_the_facade_loads_no_room() -> None:
    mods = _peerbox_modules_after("import peerbox")
    assert mods <= {"peerbox", "peerbox._lazy", "peerbox._version"}, sorted(mods)
    assert not _loaded_after("import peerbox") & set(HEAVY)


def test_a_facade_name_loads_only_what_it_needs() -> None:
    # a peer store is keys and files: no sandbox, no network
    loaded = _loaded_after("import peerbox\npeerbox.PeerStore")
    assert not loaded & {"wasmtime", "trio", "h2"}, sorted(loaded & {"wasmtime", "trio", "h2"})
    assert "wasmtime" in _loaded_after("import peerbox\npeerbox.compile")


def test_version_loads_no_sandbox_or_network() -> None:
    code = (
        "import sys\n"
        "sys.argv = ['peerbox', '--version']\n"
        "from peerbox.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
    )
    loaded = _loaded_after(code)
    assert not loaded & {"wasmtime", "trio", "h2"}, sorted(loaded & {"wasmtime", "trio", "h2"})


def test_every_room_exports_what_its_all_names() -> None:
    code = (
        "import importlib\n"
        "for room in ('wire', 'run', 'peer', 'trust', 'net', 'cli'):\n"
        "    mod = importlib.import_module('peerbox.' + room)\n"
        "    for name in mod.__all__:\n"
        "        assert getattr(mod, name) is not None, (room, name)\n"
        "    assert set(mod.__all__) <= set(dir(mod)), room\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_an_unknown_name_is_an_attribute_error() -> None:
    import peerbox.wire

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        peerbox.wire.nope  # noqa: B018
