"""Open logic end to end: a real `peerbox serve`, the `peerbox` CLI and `peerbox.Client`, both modes.

One root per mode with peers bob, alice and carol; bob's policy lets alice
and carol exec, read and write under inbox/** and notes/**, and import the
modules inbox, notes and greet (not kv). One server per mode serves every
test of that mode (started by the first test that needs it, stopped with
SIGTERM at the end of the module; see ``live``).

- override, extend, compose: the shared layer's ``notes`` extends
  ``builtin:notes``; bob's own ``inbox`` extends ``builtin:inbox`` and uses
  the shared ``notes``; alice's ``import "inbox"`` gets bob's behaviour;
- remote updates (``peerbox logic push``): by the owner (the next message
  is handled by the new version, same server process), by another peer
  (denied, nothing changes), by a capability holder (only for the module
  granted), and a broken update (refused with the compiler's position, the
  old version keeps serving);
- a policy that does not allow ``module.import`` of kv;
- ``peerbox logic verify`` finding a history line edited by hand.

Each test installs its own baseline version of bob's inbox first, so the
tests do not depend on their order.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import peerbox

from .conftest import PEERBOX

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("open-logic")]  # a real `peerbox serve` and the CLI as subprocesses
# xdist_group: the module-scoped fixture is set up once, on one pytest process (`--dist loadgroup`),
# not once on every process that gets one of these tests



BOB_POLICY = """
version = 1

[[rule]]
effect = "allow"
who = "owner"
actions = ["*", "logic.*"]

[[rule]]
effect = "allow"
who = ["alice", "carol"]
actions = ["exec"]
limits = { timeout = 10.0 }

[[rule]]
effect = "allow"
who = ["alice", "carol"]
actions = ["fs.write", "fs.list", "fs.read"]
resources = ["inbox/**", "notes/**"]

[[rule]]
effect = "allow"
who = ["alice", "carol"]
actions = ["module.import"]
resources = ["inbox", "notes", "greet"]
"""

# the worker's shared layer: notes that extends the built-in one
SHARED_NOTES = """\
import "builtin:notes" as base;

// Every note the worker's peers take is marked as going through the shared layer.
fn add(text) { base::add(`[shared] ${text}`) }
fn get(n) { base::get(n) }
fn count() { base::count() }
"""

DELIVER = 'import "inbox" as i; i::deliver("hi")'


def bob_inbox(tag: str) -> str:
    """Bob's own inbox: extends builtin:inbox (a tag on every message) and composes with `notes`."""
    return f"""\
import "builtin:inbox" as base;
import "notes" as n;

fn deliver(text) {{
    let path = base::deliver(`[{tag}] ${{text}}`);
    n::add(`delivered ${{path}}`);
    path
}}

fn count() {{ base::count() }}
"""


def run_cli(*args: str | Path, root: Path) -> subprocess.CompletedProcess[str]:
    """``peerbox ARGS --root ROOT`` as a subprocess."""
    return subprocess.run([*PEERBOX, *map(str, args), "--root", str(root)], capture_output=True, text=True,
                          timeout=60)


def ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    return done


@dataclass
class World:
    """A root with bob, alice and carol, and (once ``live``) a server in ``mode`` hosting them."""

    root: Path
    mode: str
    stack: ExitStack = field(default_factory=ExitStack)
    proc: subprocess.Popen[bytes] | None = None
    clients: dict[str, peerbox.Client] = field(default_factory=dict)

    def cli(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, root=self.root)

    @property
    def bob(self) -> Path:
        return self.root / "peers" / "bob"

    @property
    def inbox_file(self) -> Path:
        return self.bob / "logic" / "inbox.rhai"

    def file(self, path: str) -> str:
        """A file in bob's storage."""
        return (self.bob / "files" / path).read_text()

    def notes(self) -> list[str]:
        d = self.bob / "files" / "notes"
        return [p.read_text() for p in d.iterdir()] if d.is_dir() else []

    def history(self) -> list[str]:
        return ok(self.cli("logic", "history", "bob", "inbox")).stdout.splitlines()

    def source(self, name: str, text: str) -> Path:
        path = self.root.parent / f"{name}.rhai"
        path.write_text(text)
        return path

    def set_inbox(self, tag: str) -> str:
        """The owner installs a known version locally (`peerbox logic set`); returns its source."""
        text = bob_inbox(tag)
        ok(self.cli("logic", "set", "bob", "inbox", self.source(f"set-{tag}", text)))
        assert self.inbox_file.read_text() == text
        return text

    def client(self, sender: str) -> peerbox.Client:
        if sender not in self.clients:
            key = peerbox.PeerStore(self.root).get(sender).signing_key()
            self.clients[sender] = self.stack.enter_context(peerbox.Client(key, peerbox.Directory(self.root)))
        return self.clients[sender]

    def exec(self, script: str, sender: str = "alice") -> Any:
        return self.client(sender).exec("bob", script, timeout=20.0)

    def message(self, text: str = "hi", sender: str = "alice") -> str:
        """``sender`` delivers ``text`` with bob's inbox; returns what lands in bob's storage."""
        reply = self.exec(f'import "inbox" as i; i::deliver("{text}")', sender)
        assert reply.ok, reply.error
        return self.file(reply.value)


def make_world(root: Path, mode: str) -> World:
    root.mkdir(parents=True)
    for name in ("bob", "alice", "carol"):
        ok(run_cli("init", name, root=root))
    (root / "peers" / "bob" / "policy.toml").write_text(BOB_POLICY)
    ok(run_cli("policy", "check", "bob", root=root))
    (root / "logic").mkdir()
    (root / "logic" / "notes.rhai").write_text(SHARED_NOTES)
    return World(root, mode)


@pytest.fixture(scope="module", params=["shared", "isolated"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = make_world(tmp_path_factory.mktemp(f"open-logic-{request.param}") / "root", request.param)
    with w.stack:  # stops the clients, then the server (which must exit 0 on SIGTERM)
        yield w


@pytest.fixture
def live(world: World, serving: Any) -> World:
    """The mode's world with its server running: started once, by the first test that asks."""
    if world.proc is None:
        port, proc = world.stack.enter_context(serving(world.root, "--all", "--mode", world.mode))
        bob_did = peerbox.PeerStore(world.root).get("bob").did
        ok(world.cli("directory", "add", "bob", bob_did, f"http://127.0.0.1:{port}"))
        world.proc = proc
    assert world.proc.poll() is None, "the server is gone"
    return world


def test_override_extend_and_compose_across_three_layers(live: World) -> None:
    w = live
    text = w.set_inbox("bob v1")
    listing = {(m["layer"], m["module"]): m
               for m in json.loads(ok(w.cli("logic", "list", "bob", "--json")).stdout)}
    own = listing[("peer", "inbox")]
    assert own["active"] and own["overrides"] == ["builtin:inbox"]
    assert own["imports"] == ["builtin:inbox", "notes"]
    assert listing[("shared", "notes")]["active"]
    assert listing[("shared", "notes")]["overrides"] == ["builtin:notes"]
    assert not listing[("builtin", "inbox")]["active"] and not listing[("builtin", "notes")]["active"]
    assert ok(w.cli("logic", "show", "bob", "inbox")).stdout == text

    # alice's script, sent with `peerbox send`, imports "inbox" and gets bob's (which extends the built-in)
    script = w.source("deliver", DELIVER)
    done = ok(w.cli("send", "--from", "alice", "--to", "bob", script))
    path = done.stdout.strip()
    assert re.fullmatch(r"inbox/\d+\.txt", path), done.stdout
    # the built-in's format (sender from the caller), bob's tag, in bob's storage
    assert w.file(path) == "from alice: [bob v1] hi"
    # bob's inbox composed with the shared notes (which extends the built-in notes)
    assert f"[shared] delivered {path}" in w.notes()

    # a script importing "notes" gets the shared one
    reply = w.exec('import "notes" as n; let k = n::add("plain"); [k, n::get(k)]')
    assert reply.ok, reply.error
    k, note = reply.value
    assert note == "[shared] plain" and w.file(f"notes/{k}.txt") == "[shared] plain"

    # a peer's override is what every importer gets: carol too
    assert w.message("yo", sender="carol") == "from carol: [bob v1] yo"


def test_owner_pushes_an_update_remotely_next_message_uses_it(live: World) -> None:
    w = live
    w.set_inbox("bob v1")
    assert w.message() == "from alice: [bob v1] hi"
    before = w.history()
    pid = w.proc.pid if w.proc else None
    v2 = bob_inbox("bob v2")
    done = w.cli("logic", "push", "--from", "bob", "--to", "bob", "inbox", w.source("v2", v2))
    assert done.returncode == 0, done.stderr
    assert f"is now version {len(before) + 1}" in done.stderr
    assert w.inbox_file.read_text() == v2
    # alice's next message is handled by v2: the same server process, not restarted
    assert w.message() == "from alice: [bob v2] hi"
    assert w.proc is not None and w.proc.pid == pid and w.proc.poll() is None

    after = w.history()
    assert after[:-1] == before and len(after) == len(before) + 1
    bob_did = peerbox.PeerStore(w.root).get("bob").did
    last = after[-1]
    assert last.split()[0] == str(len(after))
    assert hashlib.sha256(v2.encode()).hexdigest()[:12] in last and f"by {bob_did}" in last
    verify = w.cli("logic", "verify", "bob")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert f"ok   inbox: {len(after)} versions verified" in verify.stdout


def test_push_by_a_peer_without_rights_is_denied_and_changes_nothing(live: World) -> None:
    w = live
    w.set_inbox("bob v1")
    before_bytes, before_history = w.inbox_file.read_bytes(), w.history()
    done = w.cli("logic", "push", "--from", "alice", "--to", "bob", "inbox",
                 w.source("evil", bob_inbox("alice was here")))
    assert done.returncode == 6, done.stdout + done.stderr
    assert "denied" in done.stderr and "logic.write" in done.stderr and "inbox" in done.stderr
    assert w.inbox_file.read_bytes() == before_bytes
    assert w.history() == before_history
    assert w.message() == "from alice: [bob v1] hi"


def test_capability_holder_may_update_only_the_module_granted(live: World) -> None:
    w = live
    w.set_inbox("bob v1")
    carol_v = w.source("carol", bob_inbox("carol's"))
    # without a capability carol may not
    done = w.cli("logic", "push", "--from", "carol", "--to", "bob", "inbox", carol_v)
    assert done.returncode == 6 and "denied" in done.stderr, done.stderr
    assert w.message() == "from alice: [bob v1] hi"

    cap = w.root.parent / f"cap-{w.mode}.cose"
    ok(w.cli("cap", "grant", "--from", "bob", "--to", "carol", "--allow", "logic.write:inbox",
             "--expires", "1h", "-o", cap))
    done = w.cli("logic", "push", "--from", "carol", "--to", "bob", "inbox", carol_v, "--cap", cap)
    assert done.returncode == 0, done.stderr
    assert w.message() == "from alice: [carol's] hi"
    carol_did = peerbox.PeerStore(w.root).get("carol").did
    assert w.history()[-1].endswith(f"by {carol_did} with a capability")

    # the same capability does not reach notes: denied, and bob still has no notes of his own
    done = w.cli("logic", "push", "--from", "carol", "--to", "bob", "notes",
                 w.source("carol-notes", 'fn add(text) { "hijacked" }'), "--cap", cap)
    assert done.returncode == 6, done.stdout + done.stderr
    assert "denied" in done.stderr and "notes" in done.stderr
    assert not (w.bob / "logic" / "notes.rhai").exists()
    reply = w.exec('import "notes" as n; n::get(n::add("still shared"))')
    assert reply.ok and reply.value == "[shared] still shared", reply

    verify = w.cli("logic", "verify", "bob")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "FAIL" not in verify.stdout


def test_broken_update_is_refused_and_the_old_version_keeps_serving(live: World) -> None:
    w = live
    w.set_inbox("bob v1")
    before_bytes, before_history = w.inbox_file.read_bytes(), w.history()
    broken = w.source("broken", "fn deliver(text) {\n    let x = ;\n    x\n}\n")
    done = w.cli("logic", "push", "--from", "bob", "--to", "bob", "inbox", broken)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "compile_error" in done.stderr and "nothing changed" in done.stderr
    assert "peer:inbox:2:13: error:" in done.stderr, done.stderr
    assert w.inbox_file.read_bytes() == before_bytes
    assert w.history() == before_history
    assert w.message() == "from alice: [bob v1] hi"
    assert ok(w.cli("logic", "verify", "bob")).returncode == 0


def test_policy_without_module_import_of_kv(live: World) -> None:
    w = live
    w.set_inbox("bob v1")
    kv = w.source("kv", 'import "kv" as kv; kv::keys()')
    done = w.cli("send", "--from", "alice", "--to", "bob", kv)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "module 'kv' not found" in done.stderr
    # by the name written: builtin:notes is not in the allowed list either, though notes is
    reply = w.exec('import "builtin:notes" as n; n::count()')
    assert not reply.ok and "module 'builtin:notes' not found" in reply.error["message"]
    # what alice may import works
    done = ok(w.cli("send", "--from", "alice", "--to", "bob", w.source("deliver", DELIVER)))
    assert w.file(done.stdout.strip()) == "from alice: [bob v1] hi"
    # kv exists: the owner, whom the policy allows everything, imports it
    reply = w.exec('import "kv" as kv; kv::set("k", "v"); kv::get("k")', sender="bob")
    assert reply.ok and reply.value == "v", reply


def test_verify_detects_a_history_line_edited_by_hand(tmp_path: Path) -> None:
    root = tmp_path / "root"
    ok(run_cli("init", "bob", root=root))
    for tag in ("v1", "v2", "v3"):
        src = tmp_path / f"{tag}.rhai"
        src.write_text(f'import "builtin:inbox" as base;\n'
                       f'fn deliver(text) {{ base::deliver("{tag} " + text) }}\n')
        ok(run_cli("logic", "set", "bob", "inbox", src, root=root))
    assert "ok   inbox: 3 versions verified" in ok(run_cli("logic", "verify", "bob", root=root)).stdout

    log = root / "peers" / "bob" / "logic-history" / "log" / "inbox.jsonl"
    original = log.read_text()
    lines = original.splitlines(keepends=True)
    assert len(lines) == 3
    edited, n = re.subn(r'"time": (\d+)', lambda m: f'"time": {int(m.group(1)) - 3600}', lines[1])
    assert n == 1
    log.write_text(lines[0] + edited + lines[2])
    done = run_cli("logic", "verify", "bob", root=root)
    assert done.returncode == 8, done.stdout + done.stderr
    assert re.search(r"^FAIL inbox: version 2\b", done.stdout, re.M), done.stdout
    # the original line back: it verifies again (the edit, nothing else, was found)
    log.write_text(original)
    assert ok(run_cli("logic", "verify", "bob", root=root)).returncode == 0


def test_owner_reads_logic_remotely_and_others_only_what_they_are_granted(live: World) -> None:
    w = live
    text = w.set_inbox("read")
    assert ok(w.cli("logic", "show", "bob", "inbox", "--from", "bob")).stdout == text
    listing = json.loads(ok(w.cli("logic", "list", "bob", "--from", "bob", "--json")).stdout)
    assert {"peer:inbox", "shared:notes", "builtin:notes", "builtin:kv"} <= {d["file"] for d in listing}
    assert ok(w.cli("logic", "history", "bob", "inbox", "--from", "bob")).stdout.splitlines() == w.history()
    denied = w.cli("logic", "show", "bob", "inbox", "--from", "alice")
    assert denied.returncode == 6
    assert denied.stderr == "bob: logic.read of 'inbox' denied: no rule allowed it\n"
    assert json.loads(ok(w.cli("logic", "list", "bob", "--from", "alice", "--json")).stdout) == []
