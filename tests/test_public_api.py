"""The public API of ``peerbox``: exactly these names, each resolving."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

import peerbox

EXPECTED = {
    "__version__",
    "compile",
    "Program",
    "Result",
    "Limits",
    "CompileLimits",
    "Sandbox",
    "Error",
    "UsageError",
    "CompileError",
    "ScriptError",
    "LimitExceeded",
    "ValueConversionError",
    "Peer",
    "PeerStore",
    "PeerError",
    "PeerContext",
    "Contexts",
    "KeyPair",
    "IdentityError",
    "Client",
    "AsyncClient",
    "ClientError",
    "TransportError",
    "VerificationError",
    "RemoteRejected",
    "Directory",
    "PeerLogic", "LogicError", "LogicRefused",
}


def test_all_is_exactly_the_public_api() -> None:
    assert set(peerbox.__all__) == EXPECTED
    assert len(peerbox.__all__) == len(EXPECTED)


def test_every_name_resolves() -> None:
    for name in peerbox.__all__:
        assert getattr(peerbox, name) is not None, name


def test_error_tree_and_exit_codes() -> None:
    assert issubclass(peerbox.UsageError, peerbox.Error)
    assert issubclass(peerbox.ValueConversionError, peerbox.UsageError)
    for cls, code in [
        (peerbox.UsageError, 2),
        (peerbox.CompileError, 3),
        (peerbox.ScriptError, 4),
        (peerbox.LimitExceeded, 5),
    ]:
        assert issubclass(cls, peerbox.Error)
        assert cls.exit_code == code


def test_version_matches_the_distribution() -> None:
    assert peerbox.__version__ == importlib.metadata.version("peerbox")


@pytest.mark.slow
def test_no_generic_top_level_names_are_importable() -> None:
    # the four code folders install under peerbox.*, never as top-level packages
    code = (
        "import importlib.util, sys\n"
        "sys.path = [p for p in sys.path if p not in ('', '.')]\n"
        "names = ('runtime', 'policy', 'hostcalls', 'wasm_guests')\n"
        "bad = [n for n in names if importlib.util.find_spec(n)]\n"
        "print(','.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", check=True)
    assert proc.stdout.strip() == ""
