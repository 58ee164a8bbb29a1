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
    "DirectoryError", "HistoryError", "EnvelopeError", "CapabilityError", "PolicyError",
    "HostCallError", "BudgetExceeded",
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


def _every_error_class() -> set[type[peerbox.Error]]:
    """Every subclass of ``peerbox.Error`` defined in peerbox, after importing every module."""
    import importlib
    import pkgutil

    for info in pkgutil.walk_packages(peerbox.__path__, "peerbox."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    found: set[type[peerbox.Error]] = set()
    todo: list[type[peerbox.Error]] = [peerbox.Error]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return {cls for cls in found if cls.__module__.startswith("peerbox.")}


def test_every_error_is_exported_from_peerbox_errors() -> None:
    import peerbox.errors

    exported = {getattr(peerbox.errors, name) for name in peerbox.errors.__all__}
    missing = {f"{cls.__module__}.{cls.__qualname__}" for cls in _every_error_class() - exported}
    assert not missing, f"errors defined but not exported from peerbox.errors: {sorted(missing)}"
    assert len(set(peerbox.errors.__all__)) == len(peerbox.errors.__all__)
    for name in peerbox.errors.__all__:
        cls = getattr(peerbox.errors, name)
        assert cls.__name__ == name
        assert issubclass(cls, peerbox.Error), name


def test_errors_on_the_facade_are_the_same_classes() -> None:
    import peerbox.errors

    for name in peerbox.__all__:
        value = getattr(peerbox, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            assert issubclass(value, peerbox.Error), name
            assert getattr(peerbox.errors, name) is value, name


def test_the_named_errors_of_public_calls_are_on_the_facade() -> None:
    for name in ("EnvelopeError", "CapabilityError", "HostCallError", "DirectoryError"):
        assert name in peerbox.__all__
        assert issubclass(getattr(peerbox, name), peerbox.Error)


def test_peerbox_errors_all_matches_what_it_loads() -> None:
    import peerbox.errors

    assert set(peerbox.errors.__all__) == set(dir(peerbox.errors)) & set(peerbox.errors.__all__)
    exported = [n for names in peerbox.errors._EXPORTS.values() for n in names]
    assert sorted(peerbox.errors.__all__) == sorted(exported)
