"""`peerbox completion bash|zsh|fish`: the scripts load in real shells and complete real commands."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from peerbox import PeerStore

pytestmark = pytest.mark.slow  # real shells, and `peerbox` run once per completion

BIN = Path(sys.executable).parent


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}


def _script(shell: str) -> str:
    proc = subprocess.run([str(BIN / "peerbox"), "completion", shell], capture_output=True, text=True,
                          env=_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _bash_complete(line: str) -> list[str]:
    """What TAB offers at the end of ``line``, by the function `peerbox completion bash` registers."""
    words = line.split(" ")
    driver = (
        'source <(peerbox completion bash)\n'
        'fn=$(complete -p peerbox | sed -E "s/.*-F ([^ ]+) .*/\\1/")\n'
        'COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}\n'
        'read -r -a COMP_WORDS <<< "$1"; [[ "$1" == *" " ]] && COMP_WORDS+=("")\n'
        'COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))\n'
        '"$fn" peerbox "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    proc = subprocess.run(["bash", "-c", driver, "bash", line], capture_output=True, text=True, env=_env(),
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert words[0] == "peerbox"
    return [w.strip() for w in proc.stdout.splitlines() if w.strip()]


def test_bash_completes_commands_and_options_of_lazily_loaded_commands() -> None:
    assert _bash_complete("peerbox se") == ["send", "serve"]
    assert _bash_complete("peerbox serve --mo") == ["--mode"]
    assert "--params-json" in _bash_complete("peerbox send --")
    assert _bash_complete("peerbox directory re") == ["remove"]


def test_bash_completes_peer_names_from_the_root(tmp_path: Path) -> None:
    store = PeerStore(tmp_path)
    store.init("alice")
    store.init("bob")
    assert _bash_complete(f"peerbox send --root {tmp_path} --to ") == ["alice", "bob"]
    assert _bash_complete(f"peerbox peers show --root {tmp_path} b") == ["bob"]
    assert _bash_complete(f"peerbox serve --root {tmp_path} --peers alice,") == ["alice,alice", "alice,bob"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_each_shell_s_script_is_generated_and_parses(shell: str) -> None:
    script = _script(shell)
    assert "peerbox" in script and len(script) > 200
    if shutil.which(shell) is None:
        pytest.skip(f"no {shell} here to syntax-check the script (make sysdeps installs it)")
    proc = subprocess.run([shell, "-n"], input=script, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_an_unknown_shell_is_a_usage_error() -> None:
    proc = subprocess.run([str(BIN / "peerbox"), "completion", "tcsh"], capture_output=True, text=True,
                          env=_env(), timeout=60)
    assert proc.returncode == 2 and "invalid choice: 'tcsh'" in proc.stderr


def test_fish_completes_commands_and_options(tmp_path: Path) -> None:
    if shutil.which("fish") is None:
        pytest.skip("no fish here (make sysdeps installs it)")
    script = tmp_path / "peerbox.fish"
    script.write_text(_script("fish"))
    proc = subprocess.run(["fish", "-c", f"source {script}; complete -C 'peerbox se'; "
                           "complete -C 'peerbox serve --mo'"], capture_output=True, text=True, env=_env(),
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    offered = [line.split("\t")[0] for line in proc.stdout.splitlines()]
    assert offered == ["send", "serve", "--mode"]
