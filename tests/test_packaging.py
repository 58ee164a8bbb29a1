"""The wheel: every file under peerbox/, nothing at the top level, and it works installed.

Builds a wheel from a copy of the source tree, checks its file list, installs
it into a fresh virtualenv (``--no-deps``; the dependencies come from the
test environment's site-packages through a path entry, so no network is
needed) and runs ``peerbox run`` on a script from outside the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CODE_DIRS = ("runtime", "wasm_guests", "hostcalls", "policy")

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("packaging")]
# xdist_group: the module-scoped fixture is set up once, on one pytest process (`--dist loadgroup`),
# not once on every process that gets one of these tests


def _has_modern_setuptools() -> bool:
    try:
        import setuptools  # type: ignore[import-untyped]  # no stubs installed; only its version is read

        return int(setuptools.__version__.split(".")[0]) >= 69
    except (ImportError, ValueError):
        return False


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for d in CODE_DIRS:
        shutil.copytree(REPO / d, src / d, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.tmp*"))
    out = tmp_path_factory.mktemp("dist")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)]
    if _has_modern_setuptools():
        cmd.insert(4, "--no-build-isolation")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = list(out.glob("peerbox-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


def test_wheel_file_list(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top <= {"peerbox", next(t for t in top if t.endswith(".dist-info"))}, top
    for required in [
        "peerbox/__init__.py",
        "peerbox/__main__.py",
        "peerbox/py.typed",
        "peerbox/cli/_main.py",
        "peerbox/run/_sandbox.py",
        "peerbox/_errors.py",
        "peerbox/wasm_guests/__init__.py",
        "peerbox/wasm_guests/py.typed",
        "peerbox/wasm_guests/rt/rt.wasm",
        "peerbox/wasm_guests/lib/inbox.rhai",
        "peerbox/wasm_guests/lib/notes.rhai",
        "peerbox/wasm_guests/lib/kv.rhai",
        "peerbox/peer/_logic.py",
        "peerbox/wasm_guests/lang/__init__.py",
        "peerbox/wasm_guests/lang/_parser.py",
        "peerbox/wasm_guests/lang/_codegen.py",
        "peerbox/hostcalls/__init__.py",
        "peerbox/policy/__init__.py",
    ]:
        assert required in names, required
    for bad in ("runtime/", "policy/", "wasm_guests/", "hostcalls/", "tests/", "bench/"):
        assert not any(n.startswith(bad) for n in names), bad
    rt = zipfile.ZipFile(wheel).read("peerbox/wasm_guests/rt/rt.wasm")
    assert rt == (REPO / "wasm_guests" / "rt" / "rt.wasm").read_bytes()
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "peerbox = peerbox.cli:console_main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_wheel_runs_a_script(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # Dependencies (wasmtime, cbor2, ...) from this test environment, as a plain path entry: .pth
    # files in that directory are not processed, so the editable peerbox there stays invisible.
    deps = sysconfig.get_paths()["purelib"]
    Path(purelib, "zz_test_deps.pth").write_text(deps + "\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "lib.rhai").write_text("fn twice(x) { x * 2 }\n")
    (work / "job.rhai").write_text('import "lib" as lib;\nprint("from the wheel");\nlib::twice(params.n)\n')
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["PEERBOX_CACHE_DIR"] = str(tmp_path / "cache")
    run = subprocess.run(
        [str(env_dir / "bin" / "peerbox"), "run", "job.rhai", "--param", "n=21", "--json"],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert (doc["value"], doc["log"]) == (42, ["from the wheel"])
    assert run.stderr == "from the wheel\n"
    # the built-in script library ships in the wheel: a peer imports it by name
    root = tmp_path / "root"
    subprocess.run([str(env_dir / "bin" / "peerbox"), "init", "p", "--root", str(root)], capture_output=True,
                   env=env, check=True, timeout=120)
    (work / "notes.rhai").unlink(missing_ok=True)
    (work / "use_lib.rhai").write_text('import "notes" as n;\nn::add("from the wheel");\nn::all()\n')
    lib = subprocess.run(
        [str(env_dir / "bin" / "peerbox"), "run", "use_lib.rhai", "--peer", "p", "--root", str(root), "--json"],
        capture_output=True, text=True, cwd=work, env=env, timeout=120)
    assert lib.returncode == 0, lib.stderr
    assert json.loads(lib.stdout)["value"] == ["from the wheel"]
    where = subprocess.run(
        [str(py), "-c", "import peerbox, peerbox.wasm_guests; print(peerbox.__file__)"],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
        check=True,
    ).stdout.strip()
    assert where.startswith(purelib), where
