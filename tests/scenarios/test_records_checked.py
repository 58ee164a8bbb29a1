"""Scripts compiled for a peer with a schema.toml are checked against it before they run: through
the CLI (`peerbox run --peer`), a peer context's compile (what exec requests use) and logic installs.
Scripts for a peer without one, or run without --peer, compile as before."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import peerbox
from peerbox.peer import LogicRefused, PeerLogic

from .conftest import PEERBOX

TYPO = """\
let k = db::insert("inbox", #{from: caller.id, text: "hi", sent: 1});
db::insert("inbox", #{form: caller.id, text: params.t, sent: 2})
"""


def _peerbox(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PEERBOX, *args, "--root", str(root)], capture_output=True, text=True, timeout=120)


@pytest.fixture
def bob_root(tmp_path: Path, schema_toml: str) -> Path:
    root = tmp_path / "root"
    store = peerbox.PeerStore(root)
    store.init("bob")
    store.init("carol")  # no schema.toml
    (store.get("bob").paths.dir / "schema.toml").write_text(schema_toml)
    return root


def test_peerbox_run_for_a_peer_refuses_a_misspelt_field_before_running(bob_root: Path, tmp_path: Path) -> None:
    script = tmp_path / "typo.rhai"
    script.write_text(TYPO)
    res = _peerbox(bob_root, "run", str(script), "--peer", "bob", "--param", "t=x")
    assert res.returncode == 3, res.stderr
    assert f"{script}:2:23: error: type Message has no field 'form'; did you mean 'from'?" in res.stderr
    assert "    db::insert(\"inbox\", #{form: caller.id" in res.stderr and "^^^^" in res.stderr
    with peerbox.Contexts(bob_root) as peers:  # nothing ran: the first insert was not made either
        bob = peers.get("bob")
        assert bob.run(bob.compile('db::count("inbox")')).value == 0
    fixed = tmp_path / "fixed.rhai"
    fixed.write_text(TYPO.replace("form:", "from:"))
    ok = _peerbox(bob_root, "run", str(fixed), "--peer", "bob", "--param", "t=x")
    assert (ok.returncode, ok.stdout.strip()) == (0, "2"), ok.stderr


def test_wrong_literal_and_unknown_collection_in_one_report(bob_root: Path, tmp_path: Path) -> None:
    script = tmp_path / "bad.rhai"
    script.write_text('db::insert("inbox", #{from: caller.id, text: 42, sent: 1});\ndb::count("inbx")\n')
    res = _peerbox(bob_root, "run", str(script), "--peer", "bob")
    assert res.returncode == 3
    assert f"{script}:1:46: error: field 'text' of type Message expects string, got int" in res.stderr
    assert f"{script}:2:11: error: db::count: unknown collection 'inbx'; did you mean 'inbox'?" in res.stderr


def test_without_a_schema_or_a_peer_the_script_compiles_as_before(bob_root: Path, tmp_path: Path) -> None:
    script = tmp_path / "typo.rhai"
    script.write_text('let m = #{}; try { db::get("inbx", 1).form } catch (e) { m = e.kind } m')
    carol = _peerbox(bob_root, "run", str(script), "--peer", "carol")  # no schema.toml: a run-time error
    assert (carol.returncode, carol.stdout.strip()) == (0, "unsupported"), carol.stderr
    alone = subprocess.run([*PEERBOX, "run", str(script)], capture_output=True, text=True, timeout=120)
    assert alone.returncode == 0, alone.stderr


def test_a_peer_context_compile_checks_and_follows_schema_changes(bob_root: Path, schema_toml: str) -> None:
    src = 'let m = db::get("inbox", 1); if m != () { m.text } else { "none" }'
    with peerbox.Contexts(bob_root) as peers:
        bob = peers.get("bob")
        assert bob.run(bob.compile(src, "job.rhai")).value == "none"
        path = bob.peer.paths.dir / "schema.toml"
        path.write_text(schema_toml.replace("text = {", "body = {"))
        with pytest.raises(peerbox.CompileError) as info:
            bob.compile(src, "job.rhai")
        assert (info.value.file, info.value.line, info.value.col) == ("job.rhai", 1, 45)
        assert info.value.message == "type Message has no field 'text'"


def test_a_logic_module_that_does_not_fit_the_schema_is_refused(bob_root: Path) -> None:
    store = peerbox.PeerStore(bob_root)
    logic = PeerLogic(store.get("bob"))
    with pytest.raises(LogicRefused) as info:
        logic.set("notes", 'fn add(t) { db::insert("inbox", #{from: caller.id, txt: t, sent: 0}) }')
    assert info.value.kind == "compile_error"
    assert "peer:notes:1:52: error: type Message has no field 'txt'; did you mean 'text'?" in str(info.value)
    logic.set("notes", 'fn add(t) { db::insert("inbox", #{from: caller.id, text: t, sent: 0}) }')
