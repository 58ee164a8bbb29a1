"""``peerbox logic list|show|set|history|rollback|verify|push``, run in-process (``peerbox.cli._main.main``).

Exit codes (runtime/_cli_logic.py): 0 ok, 2 usage, 3 does not compile
(nothing changed), 7 no verified reply to a push, 8 ``verify`` found a
problem. Every command's stderr is checked for a Python traceback.
"""

# ruff: noqa: E501  (scripts and expected messages read best on one line)

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from peerbox.peer._directory import Directory
from peerbox.peer._peers import Peer, PeerStore

from ..conftest import CliResult

GOOD = 'import "builtin:inbox" as base;\n\n// Deliver shouting.\nfn deliver(text) { base::deliver(text.to_upper()) }\nfn count() { base::count() }\n'
GOOD2 = 'fn deliver(text) { `v2: ${text}` }\nfn count() { 0 }\n'
BROKEN = 'fn deliver(text) {\n    let x = ;\n}\n'


@dataclass
class Env:
    root: Path
    bob: Peer
    run: Callable[..., CliResult]

    def file(self, name: str, text: str) -> str:
        path = self.root.parent / name
        path.write_text(text, encoding="utf-8")
        return str(path)

    @property
    def log(self) -> Path:
        return self.bob.paths.dir / "logic-history" / "log" / "inbox.jsonl"

    def live(self, module: str = "inbox") -> str | None:
        path = self.bob.paths.logic / f"{module}.rhai"
        return path.read_text() if path.exists() else None


@pytest.fixture
def env(tmp_path: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch) -> Env:
    monkeypatch.delenv("PEERBOX_ROOT", raising=False)
    root = tmp_path / "root"
    bob = PeerStore(root).init("bob")

    def run(*argv: str) -> CliResult:
        res = cli("logic", *argv, "--root", str(root))
        assert "Traceback" not in res.err and "internal error" not in res.err, res.err
        return res

    return Env(root=root, bob=bob, run=run)


def _installed(env: Env, *sources: str) -> None:
    for i, source in enumerate(sources):
        res = env.run("set", "bob", "inbox", env.file(f"v{i}.rhai", source))
        assert res.code == 0, res.err


# ------------------------------------------------------------------ list


def test_list_shows_layers_overrides_and_functions(env: Env) -> None:
    (env.root / "logic").mkdir()
    (env.root / "logic" / "notes.rhai").write_text('import "builtin:notes" as b;\nfn count() { b::count() }\nfn first(n, m) { b::get(1) }\n')
    _installed(env, GOOD)
    res = env.run("list", "bob")
    assert res.code == 0
    lines = res.out.splitlines()
    assert "peer:inbox  overrides builtin:inbox" in lines
    assert "builtin:inbox  (overridden by peer:inbox)" in lines
    assert "shared:notes  overrides builtin:notes" in lines
    assert "builtin:notes  (overridden by shared:notes)" in lines
    assert "builtin:kv" in lines
    at = lines.index("shared:notes  overrides builtin:notes")
    assert lines[at + 1:at + 4] == ["    fn count()", "    fn first(n, m)", "    imports builtin:notes"]
    at = lines.index("peer:inbox  overrides builtin:inbox")
    assert lines[at + 1:at + 3] == ["    fn deliver(text)", "    fn count()"]


def test_list_json(env: Env) -> None:
    _installed(env, GOOD)
    res = env.run("list", "bob", "--json")
    assert res.code == 0
    docs = {d["file"]: d for d in json.loads(res.out)}
    assert set(docs) == {"peer:inbox", "builtin:inbox", "builtin:kv", "builtin:notes"}
    mine = docs["peer:inbox"]
    assert (mine["module"], mine["layer"], mine["active"], mine["overrides"]) == ("inbox", "peer", True, ["builtin:inbox"])
    assert mine["functions"] == [{"name": "deliver", "params": ["text"]}, {"name": "count", "params": []}]
    assert mine["imports"] == ["builtin:inbox"] and mine["error"] is None
    base = docs["builtin:inbox"]
    assert base["active"] is False and base["overrides"] == []
    assert {"name": "messages", "params": []} in base["functions"]
    assert {"name": "set", "params": ["key", "value"]} in docs["builtin:kv"]["functions"]


def test_list_reports_a_module_that_does_not_parse(env: Env) -> None:
    (env.bob.paths.logic / "broken.rhai").write_text("fn f( {\n")
    res = env.run("list", "bob")
    assert res.code == 0
    lines = res.out.splitlines()
    at = lines.index("peer:broken")
    assert lines[at + 1].startswith("    does not parse: peer:broken:1:")
    doc = next(d for d in json.loads(env.run("list", "bob", "--json").out) if d["module"] == "broken")
    assert doc["functions"] == [] and "peer:broken:1:" in doc["error"]


def test_list_of_an_unknown_peer_is_a_usage_error(env: Env) -> None:
    res = env.run("list", "nobody")
    assert res.code == 2 and "nobody" in res.err and res.out == ""


# ------------------------------------------------------------------ show


def test_show_prints_the_source_the_peer_sees(env: Env) -> None:
    res = env.run("show", "bob", "inbox")
    assert res.code == 0 and "fn deliver(text)" in res.out and "built-in `inbox`" in res.out
    _installed(env, GOOD)
    assert env.run("show", "bob", "inbox").out == GOOD
    assert env.run("show", "bob", "peer:inbox").out == GOOD
    # the layer below is still there, by its qualified name
    assert "built-in `inbox`" in env.run("show", "bob", "builtin:inbox").out


def test_show_wat_prints_webassembly_text(env: Env) -> None:
    _installed(env, GOOD)
    res = env.run("show", "bob", "inbox", "--wat")
    assert res.code == 0 and res.out.startswith("(module")
    assert res.out != env.run("show", "bob", "notes", "--wat").out


def test_show_wat_of_a_broken_module_exits_3_with_the_position(env: Env) -> None:
    (env.bob.paths.logic / "broken.rhai").write_text("fn f( {\n")
    res = env.run("show", "bob", "broken", "--wat")
    assert res.code == 3 and "peer:broken:1:" in res.err and "^" in res.err and res.out == ""


def test_show_an_unknown_module_exits_2(env: Env) -> None:
    res = env.run("show", "bob", "nope")
    assert res.code == 2 and "peer 'bob' has no module 'nope'" in res.err and res.out == ""
    res = env.run("show", "bob", "shared:inbox")  # the worker has no shared inbox
    assert res.code == 2 and "shared:inbox" in res.err


@pytest.mark.parametrize("name", ["../x", "../../peer.key", "/etc/passwd", "shared:../x", "elsewhere:inbox", "a//b", "inbox.rhai"])
def test_show_a_hostile_name_exits_2(env: Env, name: str) -> None:
    res = env.run("show", "bob", name)
    assert res.code == 2 and "is not a module name" in res.err and res.out == ""


# ------------------------------------------------------------------ set


def test_set_installs_and_records_a_version(env: Env) -> None:
    res = env.run("set", "bob", "inbox", env.file("good.rhai", GOOD))
    assert res.code == 0 and res.out == ""
    assert res.err.startswith("bob: peer:inbox is now version 1 (sha256 ")
    assert env.live() == GOOD
    assert len(env.log.read_text().splitlines()) == 1


def test_set_json(env: Env) -> None:
    _installed(env, GOOD)
    res = env.run("set", "bob", "inbox", env.file("good2.rhai", GOOD2), "--json")
    assert res.code == 0
    doc = json.loads(res.out)
    assert (doc["version"], doc["module"], doc["action"], doc["by"], doc["capability"]) == (2, "inbox", "set", env.bob.did, False)
    assert doc["size"] == len(GOOD2.encode()) and len(doc["sha256"]) == 64 and len(doc["prev"]) == 64
    assert "seal" not in doc and "statement" not in doc


def test_set_a_broken_source_exits_3_and_changes_nothing(env: Env) -> None:
    _installed(env, GOOD)
    before = env.log.read_bytes()
    res = env.run("set", "bob", "inbox", env.file("bad.rhai", BROKEN))
    assert res.code == 3 and res.out == ""
    assert "peer:inbox does not compile" in res.err and "peer:inbox:2:" in res.err
    assert "    let x = ;\n" in res.err and "^" in res.err
    assert env.live() == GOOD and env.log.read_bytes() == before


def test_set_a_broken_source_json_says_so_on_stdout(env: Env) -> None:
    res = env.run("set", "bob", "inbox", env.file("bad.rhai", BROKEN), "--json")
    assert res.code == 3
    doc = json.loads(res.out)
    assert doc["error"]["exit_code"] == 3 and "does not compile" in doc["error"]["message"]
    assert env.live() is None and not env.log.exists()


def test_set_that_breaks_a_dependent_exits_3_naming_it(env: Env) -> None:
    assert env.run("set", "bob", "helper", env.file("h.rhai", "fn f() { 1 }\n")).code == 0
    assert env.run("set", "bob", "user", env.file("u.rhai", 'import "helper" as h;\nfn g() { h::f() }\n')).code == 0
    res = env.run("set", "bob", "helper", env.file("h2.rhai", "fn other() { 1 }\n"))
    assert res.code == 3 and "would break peer:user" in res.err and "^" in res.err
    assert env.live("helper") == "fn f() { 1 }\n"


@pytest.mark.parametrize("module", ["shared:inbox", "builtin:inbox", "../inbox"])
def test_set_refuses_a_module_that_is_not_the_peers_own(env: Env, module: str) -> None:
    res = env.run("set", "bob", module, env.file("good.rhai", GOOD))
    assert res.code == 2 and "not a name of one of the peer's own modules" in res.err
    assert env.live() is None and not (env.root / "logic").exists()


def test_set_from_an_unreadable_file_exits_2(env: Env) -> None:
    res = env.run("set", "bob", "inbox", str(env.root / "missing.rhai"))
    assert res.code == 2 and "missing.rhai" in res.err and env.live() is None
    (env.root / "latin1.rhai").write_bytes(b"// caf\xe9\nfn f() { 1 }\n")
    res = env.run("set", "bob", "inbox", str(env.root / "latin1.rhai"))
    assert res.code == 2 and "not UTF-8" in res.err and env.live() is None


# ------------------------------------------------------------------ history and rollback


def test_history_text_and_json(env: Env) -> None:
    res = env.run("history", "bob", "inbox")
    assert res.code == 0 and res.out == "" and "no recorded versions of 'inbox'" in res.err
    _installed(env, GOOD, GOOD2)
    res = env.run("history", "bob", "inbox")
    rows = res.out.splitlines()
    assert res.code == 0 and len(rows) == 2
    assert rows[0].split()[0] == "1" and rows[1].split()[0] == "2"
    assert all(f"set             by {env.bob.did}" in r for r in rows)
    assert f"{len(GOOD.encode())} B" in rows[0]
    docs = json.loads(env.run("history", "bob", "inbox", "--json").out)
    assert [d["version"] for d in docs] == [1, 2]
    assert docs[0]["prev"] == "" and docs[1]["prev"] != ""
    assert docs[0]["sha256"] != docs[1]["sha256"] and docs[0]["sha256"][:12] in rows[0]


def test_history_of_a_hostile_name_exits_2(env: Env) -> None:
    res = env.run("history", "bob", "../../peer")
    assert res.code == 2 and res.out == ""


def test_rollback_reinstalls_an_old_version_as_a_new_one(env: Env) -> None:
    _installed(env, GOOD, GOOD2)
    res = env.run("rollback", "bob", "inbox", "1")
    assert res.code == 0 and "peer:inbox is now version 3" in res.err
    assert env.live() == GOOD
    rows = env.run("history", "bob", "inbox").out.splitlines()
    assert len(rows) == 3 and "rollback to 1" in rows[2]
    doc = json.loads(env.run("rollback", "bob", "inbox", "2", "--json").out)
    assert (doc["version"], doc["action"], doc["restores"]) == (4, "rollback", 2)
    assert env.live() == GOOD2
    assert env.run("verify", "bob").code == 0


def test_rollback_to_an_unknown_version_exits_2(env: Env) -> None:
    _installed(env, GOOD)
    res = env.run("rollback", "bob", "inbox", "7")
    assert res.code == 2 and "has no version 7 (recorded: 1..1)" in res.err
    res = env.run("rollback", "bob", "notes", "1")
    assert res.code == 2 and "(recorded: none)" in res.err
    assert env.live() == GOOD and len(env.log.read_text().splitlines()) == 1


def test_rollback_of_a_version_that_is_not_a_number_exits_2(env: Env) -> None:
    res = env.run("rollback", "bob", "inbox", "latest")
    assert res.code == 2 and "invalid int value" in res.err


# ------------------------------------------------------------------ verify


def test_verify_passes_on_an_untouched_history(env: Env) -> None:
    _installed(env, GOOD, GOOD2)
    res = env.run("verify", "bob")
    assert res.code == 0 and res.out == "ok   inbox: 2 versions verified\n"
    doc = json.loads(env.run("verify", "bob", "--json").out)
    assert doc == {"peer": "bob", "ok": True, "modules": {"inbox": []}}


def test_verify_of_a_peer_without_modules(env: Env) -> None:
    res = env.run("verify", "bob")
    assert res.code == 0 and res.out == "bob has no modules of its own\n"


def test_verify_detects_a_history_line_edited_by_hand(env: Env) -> None:
    _installed(env, GOOD, GOOD2)
    lines = env.log.read_text().splitlines()
    first = json.loads(lines[0])
    first["time"] -= 3600  # backdate version 1
    env.log.write_text("\n".join([json.dumps(first, sort_keys=True), *lines[1:]]) + "\n")
    res = env.run("verify", "bob")
    assert res.code == 8
    fails = [line for line in res.out.splitlines() if line.startswith("FAIL")]
    assert fails and any("inbox: version 1: the peer's seal does not match" in f for f in fails)
    doc = json.loads(env.run("verify", "bob", "--json").out)
    assert doc["ok"] is False and doc["modules"]["inbox"]
    assert env.run("verify", "bob", "--json").code == 8


def test_verify_detects_a_removed_version(env: Env) -> None:
    _installed(env, GOOD, GOOD2, GOOD)
    lines = env.log.read_text().splitlines()
    env.log.write_text("\n".join([lines[0], lines[2]]) + "\n")
    res = env.run("verify", "bob")
    assert res.code == 8 and "does not follow the version before it" in res.out


def test_verify_detects_a_live_file_changed_by_hand(env: Env) -> None:
    _installed(env, GOOD)
    (env.bob.paths.logic / "inbox.rhai").write_text(GOOD2)
    res = env.run("verify", "bob")
    assert res.code == 8 and "FAIL inbox: the live file differs from version 1 (changed outside peerbox)" in res.out


def test_set_refuses_over_a_live_file_edited_by_hand_until_forced(env: Env) -> None:
    _installed(env, GOOD)
    hand = 'fn deliver(text) { "by hand" }\nfn count() { 1 }\n'
    (env.bob.paths.logic / "inbox.rhai").write_text(hand)
    assert env.run("verify", "bob").code == 8
    res = env.run("set", "bob", "inbox", env.file("v2.rhai", GOOD2))
    assert res.code == 8, res.err
    assert "the live file differs from version 1" in res.err and "peerbox logic verify bob" in res.err
    assert "--force" in res.err
    assert env.live() == hand  # nothing changed
    assert len(env.log.read_text().splitlines()) == 1
    assert env.run("verify", "bob").code == 8  # still reported, not papered over
    res = env.run("set", "bob", "inbox", env.file("v2.rhai", GOOD2), "--force", "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["action"] == "force"
    assert env.live() == GOOD2
    res = env.run("verify", "bob")
    assert res.code == 0 and "ok   inbox: 2 versions verified" in res.out
    history = env.run("history", "bob", "inbox").out.splitlines()
    assert "set" in history[0] and "force" in history[1]
    assert env.run("set", "bob", "inbox", env.file("v3.rhai", GOOD)).code == 0  # back to normal


@pytest.mark.parametrize("how", ["deleted", "added", "after_remove"])
def test_set_refuses_other_live_changes_made_by_hand(env: Env, how: str) -> None:
    live = env.bob.paths.logic / "inbox.rhai"
    if how == "deleted":
        _installed(env, GOOD)
        live.unlink()
    elif how == "added":
        live.write_text(GOOD2)
    else:
        _installed(env, GOOD)
        assert env.run("remove", "bob", "inbox").code == 0
        live.write_text(GOOD2)
    res = env.run("set", "bob", "inbox", env.file("new.rhai", GOOD))
    assert res.code == 8 and "logic verify" in res.err, res.err
    assert env.run("set", "bob", "inbox", env.file("new.rhai", GOOD), "--force").code == 0
    assert env.run("verify", "bob").code == 0


def test_set_refuses_when_the_history_itself_does_not_check_out(env: Env) -> None:
    _installed(env, GOOD, GOOD2)
    lines = env.log.read_text().splitlines()
    env.log.write_text(lines[0] + "\n")  # the last version cut off the end
    res = env.run("set", "bob", "inbox", env.file("v3.rhai", GOOD), "--force")
    assert res.code == 8 and "logic verify" in res.err, res.err
    assert env.run("verify", "bob", "--reseal").code == 8
    assert env.run("set", "bob", "inbox", env.file("v3.rhai", GOOD), "--force").code == 0


# ------------------------------------------------------------------ push


def test_push_to_an_unreachable_worker_exits_7(env: Env) -> None:
    Directory(env.root).add("bob", env.bob.did, "http://127.0.0.1:1")
    src = env.file("good.rhai", GOOD)
    res = env.run("push", "--from", "bob", "--to", "bob", "inbox", src, "--timeout", "10")
    assert res.code == 7 and "127.0.0.1:1" in res.err and res.out == ""
    res = env.run("push", "--from", "bob", "--to", "bob", "inbox", src, "--json", "--timeout", "10")
    assert res.code == 7
    err = json.loads(res.out)["error"]
    assert err["exit_code"] == 7 and err["type"] == "transport"
    assert env.live() is None  # nothing installed locally either


def test_push_usage_errors_exit_2(env: Env) -> None:
    Directory(env.root).add("bob", env.bob.did, "http://127.0.0.1:1")
    src = env.file("good.rhai", GOOD)
    res = env.run("push", "--from", "bob", "--to", "nobody", "inbox", src)
    assert res.code == 2 and "no peer named 'nobody'" in res.err
    res = env.run("push", "--from", "bob", "--to", "bob", "inbox", src, "--timeout", "0")
    assert res.code == 2 and "--timeout" in res.err
    res = env.run("push", "--from", "ghost", "--to", "bob", "inbox", src)
    assert res.code == 2 and "ghost" in res.err
    res = env.run("push", "--from", "bob", "--to", "bob", "inbox", str(env.root / "missing.rhai"))
    assert res.code == 2 and "missing.rhai" in res.err


@pytest.mark.parametrize("module", ["shared:notes", "builtin:inbox", "../x"])
def test_push_of_a_module_that_is_not_the_targets_own_exits_2_before_sending(env: Env, module: str) -> None:
    # "shared:notes" must not quietly become a push of the peer's own "notes"
    Directory(env.root).add("bob", env.bob.did, "http://127.0.0.1:1")
    res = env.run("push", "--from", "bob", "--to", "bob", module, env.file("good.rhai", GOOD))
    assert res.code == 2 and "not a name of one of the peer's own modules" in res.err


def test_handle_answers_a_logic_request_file_like_a_worker(env: Env, cli: Callable[..., CliResult]) -> None:
    import time

    from peerbox.wire._reply import open_reply
    from peerbox.trust._logic_push import make_logic_request

    key = env.bob.signing_key()
    good = make_logic_request(key, target=env.bob.public_key, module="inbox", source=GOOD2, now=int(time.time()))
    bad = make_logic_request(key, target=env.bob.public_key, module="inbox", source=BROKEN, now=int(time.time()))
    (env.root.parent / "good.cose").write_bytes(good)
    (env.root.parent / "bad.cose").write_bytes(bad)
    out = str(env.root.parent / "reply.cose")

    res = cli("handle", str(env.root.parent / "good.cose"), "--as", "bob", "-o", out, "--root", str(env.root))
    assert res.code == 0, res.err
    assert open_reply(Path(out).read_bytes()).value["version"] == 1
    assert env.live() == GOOD2
    # the same bytes again are a replay: refused before anything happens
    res = cli("handle", str(env.root.parent / "good.cose"), "--as", "bob", "-o", out, "--root", str(env.root))
    assert res.code == 2 and "nonce was already used" in res.err
    res = cli("handle", str(env.root.parent / "bad.cose"), "--as", "bob", "-o", out, "--root", str(env.root))
    assert res.code == 3 and "peer:inbox:2:" in res.err
    reply = open_reply(Path(out).read_bytes())
    assert not reply.ok and reply.error is not None and reply.error["kind"] == "compile_error"
    assert env.live() == GOOD2


def test_remove_and_show_an_old_version(env: Env) -> None:
    assert env.run("set", "bob", "inbox", env.file("v1.rhai", GOOD)).code == 0
    assert env.run("set", "bob", "inbox", env.file("v2.rhai", GOOD2)).code == 0
    res = env.run("show", "bob", "inbox", "--version", "1")
    assert res.code == 0 and res.out == GOOD
    assert env.run("show", "bob", "inbox", "--version", "9").code == 2
    res = env.run("remove", "bob", "inbox")
    assert res.code == 0 and "removed (version 3)" in res.err and "now reach builtin:inbox" in res.err
    assert env.live() is None
    res = env.run("show", "bob", "inbox")
    assert res.code == 0 and "fn messages()" in res.out  # the built-in one again
    res = env.run("history", "bob", "inbox", "--json")
    assert [v["action"] for v in json.loads(res.out)] == ["set", "set", "remove"]
    assert env.run("verify", "bob").code == 0
    res = env.run("remove", "bob", "inbox")
    assert res.code == 2 and "no module of its own" in res.err


def test_envelope_inspect_shows_a_logic_request(env: Env, cli: Callable[..., CliResult]) -> None:
    import time

    from peerbox.trust._logic_push import make_logic_request

    req = make_logic_request(env.bob.signing_key(), target=env.bob.public_key, module="inbox", source=GOOD2,
                             now=int(time.time()))
    path = env.root.parent / "req.cose"
    path.write_bytes(req)
    res = cli("envelope", "inspect", str(path), "--json", "--root", str(env.root))
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["valid"] and doc["type"] == "peerbox/logic" and doc["module"] == "inbox"
    assert doc["source"] == GOOD2 and doc["caller"].endswith("(bob)")
    path.write_bytes(req[:-1] + bytes([req[-1] ^ 1]))
    res = cli("envelope", "inspect", str(path), "--root", str(env.root))
    assert res.code == 2 and "bad_signature" in res.err


PUBLISHING = ('import "builtin:inbox" as base;\n\nexport fn deliver(msg: string) { base::deliver(msg) }\n'
              'export fn stats() { base::count() }\nfn helper(x) { x }\n')


def test_logic_list_shows_exports_and_callers(env: Env) -> None:
    (env.root / "logic").mkdir()
    (env.root / "logic" / "notes.rhai").write_text('export fn shared_one(n) { n }\n')  # a shared layer: not published
    _installed(env, PUBLISHING)
    env.bob.paths.policy.write_text(
        'version = 2\n\n[[rule]]\neffect = "allow"\nwho = "owner"\nactions = ["*", "logic.*"]\n\n'
        '[[rule]]\neffect = "allow"\nwho = "carol"\nactions = ["call"]\nresources = ["inbox::deliver"]\n\n'
        '[[rule]]\neffect = "deny"\nwho = ["dave", "erin"]\nactions = ["call"]\nresources = ["inbox::*"]\n')
    res = env.run("list", "bob")
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    at = lines.index("peer:inbox  overrides builtin:inbox")
    assert lines[at + 1:at + 4] == [
        "    export fn deliver(msg: string)   call: owner (policy.toml:3), carol (policy.toml:8); "
        "denied: dave, erin (policy.toml:14)",
        "    export fn stats()   call: owner (policy.toml:3); denied: dave, erin (policy.toml:14)",
        "    fn helper(x)",
    ]
    assert "    export fn shared_one(n)   (not published: only the peer's own modules publish)" in lines
    docs = {d["file"]: d for d in json.loads(env.run("list", "bob", "--json").out)}
    mine = docs["peer:inbox"]
    assert mine["publishes"] is True
    deliver = next(e for e in mine["exports"] if e["name"] == "deliver")
    assert (deliver["params"], deliver["types"]) == (["msg"], ["string"])
    assert deliver["callers"] == [{"effect": "allow", "who": "owner", "rule": "policy.toml:3"},
                                  {"effect": "allow", "who": "carol", "rule": "policy.toml:8"},
                                  {"effect": "deny", "who": "dave, erin", "rule": "policy.toml:14"}]
    shared = docs["shared:notes"]
    assert shared["publishes"] is False and "callers" not in shared["exports"][0]
    # no rule lets anyone call: only capability holders can
    env.bob.paths.policy.write_text('version = 2\n')
    lines = env.run("list", "bob").out.splitlines()
    assert "    export fn stats()   call: nobody but capability holders" in lines
