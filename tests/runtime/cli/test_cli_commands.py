"""The ``peerbox`` command table: lazy loading of command modules, and no drift from what they register."""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import textwrap

import pytest

from peerbox.cli._args import Parser
from peerbox.cli._main import COMMANDS, build_parser, main

HEAVY = ("wasmtime", "trio", "h2", "nacl", "cbor2")
MODULES = sorted({c.module for c in COMMANDS})


def _registered(module: str) -> dict[str, str | None]:
    """The commands ``module``'s ``add_parsers`` registers, each with its one-line help."""
    staging = Parser(prog="peerbox").add_subparsers(parser_class=Parser)
    importlib.import_module(module, "peerbox.cli").add_parsers(staging)
    return {action.dest: action.help for action in staging._get_subactions()}


@pytest.mark.parametrize("module", MODULES)
def test_the_table_is_what_each_module_registers(module: str) -> None:
    expected = {c.name: c.help for c in COMMANDS if c.module == module}
    assert _registered(module) == expected
    # and the module's own list of its commands says the same
    assert tuple(importlib.import_module(module, "peerbox.cli").COMMANDS) == tuple(expected)


def test_every_command_is_listed_once() -> None:
    names = [c.name for c in COMMANDS]
    assert len(names) == len(set(names))
    parser = build_parser()
    help_text = parser.format_help()
    for command in COMMANDS:
        assert f"    {command.name} " in help_text or f"    {command.name}\n" in help_text


def _loaded_after(args: list[str]) -> dict[str, list[str]]:
    """Run ``peerbox ARGS`` in a fresh interpreter; which heavy libraries and command modules it loaded."""
    code = textwrap.dedent(f"""
        import contextlib, io, json, sys
        from peerbox.cli import main
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                main({args!r})
            except SystemExit:
                pass
        roots = {{m.split(".")[0] for m in sys.modules}}
        print(json.dumps({{"heavy": sorted(r for r in roots if r in {HEAVY!r}),
                           "commands": sorted(m for m in sys.modules if m.startswith("peerbox.cli.")
                                              and m not in ("peerbox.cli._main", "peerbox.cli._args",
                                                            "peerbox.cli._input", "peerbox.cli._report"))}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    loaded: dict[str, list[str]] = json.loads(out)
    return loaded


@pytest.mark.slow
@pytest.mark.parametrize("args", [["--version"], ["--help"], []])
def test_version_and_help_load_no_command_and_no_heavy_library(args: list[str]) -> None:
    assert _loaded_after(args) == {"heavy": [], "commands": []}


@pytest.mark.slow
def test_a_commands_help_loads_only_its_module() -> None:
    loaded = _loaded_after(["serve", "--help"])
    assert loaded["commands"] == ["peerbox.cli._serve"]
    assert "trio" not in loaded["heavy"] and "wasmtime" not in loaded["heavy"]


def test_a_chosen_command_gets_its_real_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["cache", "stats", "--help"])
    assert info.value.code == 0
    assert "usage: peerbox cache stats [-h] [--dir DIR] [--json]" in capsys.readouterr().out


def test_an_unknown_command_is_a_usage_error_naming_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nosuch"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nosuch' (choose from " + ", ".join(repr(c.name) for c in COMMANDS) + ")" in err


def test_each_module_loads_once_per_parser() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    before = sub.choices["run"]
    parser.parse_args(["run", "x.rhai"])
    loaded = sub.choices["run"]
    assert loaded is not before
    parser.parse_args(["compile", "x.rhai"])  # same module: not registered again
    assert sub.choices["run"] is loaded


@pytest.mark.slow
def test_call_is_registered_lazily_and_its_help_loads_no_network_or_sandbox() -> None:
    loaded = _loaded_after(["call", "--help"])
    assert "peerbox.cli._call" in loaded["commands"]
    assert not {"peerbox.cli._serve", "peerbox.cli._logic", "peerbox.cli._run"} & set(loaded["commands"])
    assert "trio" not in loaded["heavy"] and "wasmtime" not in loaded["heavy"]


def test_call_help_shows_its_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["call", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "MODULE::FUNCTION" in out and "--arg K=V" in out and "--args-json JSON" in out
    assert "9 rate limited" in out
