"""``peerbox call``: a remote peer's published function, from the command line.

carol lives under her own root (another machine); bob's root names her in its
``peers.toml`` (no URL: she only calls) and a real ``peerbox serve`` hosts bob.
The end-to-end tests need the worker's ``/v1/call`` (WP2's
``peerbox.trust.CallAdmitted`` and ``ExecHandler.handle_call``); they are
skipped, with that reason, only while that contract is not there.
"""

# ruff: noqa: E501  (policies and expected messages read best on one line)

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import peerbox
from peerbox.cli._call import call_arguments, split_function
from peerbox.peer import Directory, PeerStore

from ...conftest import Serving
from ..conftest import CliResult

API = """\
export fn echo(x) { x }
export fn hello(name: string) { print(`greeting ${name}`); `hello ${name} from ${caller.name}` }
export fn add(a: i64, b: i64) { a + b }
export fn limited() { 1 }
export fn forbidden() { 0 }
export fn touch_private() { fs::write("private/x.txt", "no") }
fn hidden() { 42 }
"""

POLICY = """\
version = 2

[[rule]]
effect = "allow"
who = "owner"
actions = ["*", "logic.*"]

[[rule]]
effect = "allow"
who = "carol"
actions = ["call"]
resources = ["api::*"]

[[rule]]
effect = "allow"
who = "carol"
actions = ["call"]
resources = ["api::limited"]
limits = { calls_per_minute = 1, burst = 1 }

[[rule]]
effect = "deny"
who = "*"
actions = ["call"]
resources = ["api::forbidden"]

[[rule]]
effect = "deny"
who = "*"
actions = ["fs.*"]
resources = ["private/**"]
"""


# ------------------------------------------------------------------ arguments (no network)


def test_split_function() -> None:
    assert split_function("inbox::deliver") == ("inbox", "deliver")
    assert split_function("a/b::f") == ("a/b", "f")
    for bad in ("inbox", "inbox::", "::deliver", "inbox:deliver"):
        with pytest.raises(peerbox.UsageError, match="MODULE::FUNCTION"):
            split_function(bad)


def test_arguments_by_name_and_by_position() -> None:
    assert call_arguments(None, ["msg=hi", "n=3", "o={\"a\": [1]}"]) == {"msg": "hi", "n": 3, "o": {"a": [1]}}
    assert call_arguments('{"msg": "a", "n": 1}', ["n=2"]) == {"msg": "a", "n": 2}   # --arg overrides
    assert call_arguments('[1, "two", null]', []) == [1, "two", None]
    assert call_arguments(None, []) == {}


@pytest.mark.parametrize(("args_json", "items", "message"), [
    ("[1]", ["x=1"], "cannot be added to it"),
    ('"text"', [], "must be a JSON object (by name) or array (by position)"),
    ("{", [], "--args-json is not valid JSON"),
    (None, ["novalue"], "--arg expects NAME=VALUE"),
    (None, ["=1"], "--arg expects NAME=VALUE"),
])
def test_argument_usage_errors(args_json: str | None, items: list[str], message: str) -> None:
    with pytest.raises(peerbox.UsageError, match=re.escape(message)):
        call_arguments(args_json, items)


# ------------------------------------------------------------------ end to end


@dataclass
class World:
    root: Path          # bob's root (the worker's)
    carol_root: Path    # carol's own root
    run: Callable[..., CliResult]

    def call(self, *argv: str) -> CliResult:
        """``peerbox call --from carol --to bob ...`` under carol's root."""
        res = self.run("call", "--from", "carol", "--to", "bob", *argv, "--root", str(self.carol_root))
        assert "Traceback" not in res.err and "internal error" not in res.err, res.err
        return res


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def world(tmp_path: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch) -> World:
    """bob (with the ``api`` module and :data:`POLICY`) and carol under separate roots; not served."""
    monkeypatch.delenv("PEERBOX_ROOT", raising=False)
    root, carol_root = tmp_path / "bob-root", tmp_path / "carol-root"
    bob = PeerStore(root).init("bob")
    carol = PeerStore(carol_root).init("carol")
    (bob.paths.logic / "api.rhai").write_text(API, encoding="utf-8")
    bob.paths.policy.write_text(POLICY, encoding="utf-8")
    Directory(root).add("carol", carol.did)                              # a caller only
    Directory(carol_root).add("bob", bob.did, f"http://127.0.0.1:{_free_port()}")  # nobody listens yet
    return World(root, carol_root, cli)


@pytest.fixture
def served(world: World, serving: Serving) -> Iterator[World]:
    """``world`` with a real ``peerbox serve`` hosting bob, at the URL carol's directory names."""
    with serving(world.root) as (port, _):
        did = PeerStore(world.root).get("bob").did
        Directory(world.carol_root).add("bob", did, f"http://127.0.0.1:{port}", replace=True)
        yield world


def test_array_args_json_with_arg_is_a_usage_error(world: World) -> None:
    res = world.call("api::add", "--args-json", "[1, 2]", "--arg", "a=1")
    assert res.code == 2 and "cannot be added to it" in res.err and res.out == ""
    res = world.call("add", "--arg", "a=1")
    assert res.code == 2 and "MODULE::FUNCTION" in res.err


@pytest.mark.slow
def test_no_server_is_exit_7(world: World) -> None:
    res = world.call("api::echo", "--arg", "x=1", "--timeout", "5")
    assert res.code == 7 and res.out == "" and res.err.startswith("error: ")
    res = world.call("api::echo", "--arg", "x=1", "--timeout", "5", "--json")
    assert res.code == 7 and json.loads(res.out)["error"]["exit_code"] == 7


@pytest.mark.slow
def test_call_prints_the_value_and_exits_0(served: World) -> None:
    res = served.call("api::hello", "--arg", "name=carol")
    assert (res.code, res.out) == (0, "hello carol from carol\n"), res.err
    assert "greeting carol" in res.err                                   # the function's log, on stderr
    res = served.call("api::echo", "--arg", 'x={"k": [1, 2]}', "--json")
    assert res.code == 0 and json.loads(res.out)["value"] == {"k": [1, 2]}


@pytest.mark.slow
def test_arg_json_and_args_json(served: World) -> None:
    assert served.call("api::add", "--arg", "a=2", "--arg", "b=3").out == "5\n"                  # JSON numbers
    assert served.call("api::add", "--args-json", "[4, 5]").out == "9\n"                          # by position
    assert served.call("api::add", "--args-json", '{"a": 1, "b": 1}', "--arg", "b=10").out == "11\n"  # --arg wins
    assert served.call("api::echo", "--arg", "x=not json").out == "not json\n"                   # else a string


@pytest.mark.slow
def test_exit_codes(served: World) -> None:
    res = served.call("api::add", "--arg", "a=1", "--arg", "b=two")                 # b: i64
    assert res.code == 2 and "bad_arguments" in res.err and res.out == ""
    res = served.call("api::add", "--arg", "a=1", "--json")                           # b missing
    assert res.code == 2 and json.loads(res.out)["error"]["kind"] == "bad_arguments"
    for missing in ("api::hidden", "api::nosuch"):
        res = served.call(missing)
        assert res.code == 2 and "no_such_function" in res.err, (missing, res.err)
    res = served.call("nosuch::f")  # the call decision comes first: carol may call api::* only
    assert res.code == 6 and res.err == "bob: call of 'nosuch::f' denied: no rule allowed it\n", res.err
    res = served.call("api::forbidden")                                               # a deny rule
    assert res.code == 6 and res.err == "bob: call of 'api::forbidden' denied by the deny rule at policy.toml:21\n"
    res = served.call("api::touch_private")                                           # the owner's deny rule
    assert res.code == 6, res.err
    assert res.err == "bob: line 6: fs.write of 'private/x.txt' denied by the deny rule at policy.toml:27\n"
    assert served.call("api::limited").code == 0
    res = served.call("api::limited", "--json")                                       # burst 1, 1 per minute
    assert res.code == 9 and res.err.startswith("rate limited by bob: ")
    assert json.loads(res.out)["error"]["kind"] == "rate_limited"


# ------------------------------------------------------------------ cap inspect / revoke --notify

def _carol_token(world: World) -> Path:
    """A token bob grants carol (call:api::echo), written under bob's root's parent."""
    token = world.root.parent / "carol.cap"
    carol_did = PeerStore(world.carol_root).get("carol").did
    res = world.run("cap", "grant", "--from", "bob", "--to", carol_did, "--allow", "call:api::echo",
                    "--expires", "1h", "-o", str(token), "--root", str(world.root))
    assert res.code == 0, res.err
    return token


def test_cap_inspect_uses_PEERBOX_ROOT(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    token = _carol_token(world)
    assert world.run("cap", "revoke", str(token), "--as", "bob", "--root", str(world.root)).code == 0
    monkeypatch.chdir(world.root.parent)                       # no ./peerbox-data here
    res = world.run("cap", "inspect", str(token))
    assert res.code == 0 and "valid now" in res.out and "revocations not checked" in res.err
    monkeypatch.setenv("PEERBOX_ROOT", str(world.root))
    res = world.run("cap", "inspect", str(token))
    assert res.code == 2 and "NOT valid now" in res.out and "revoked" in res.out
    assert world.run("cap", "inspect", str(token), "--json").code == 2


def test_cap_inspect_missing_explicit_root_exits_2(world: World) -> None:
    token = _carol_token(world)
    res = world.run("cap", "inspect", str(token), "--root", str(world.root.parent / "nowhere"))
    assert res.code == 2 and "is not a directory" in res.err and res.out == ""


@pytest.mark.slow
def test_cap_revoke_notify_without_a_worker_is_7_after_recording_locally(world: World) -> None:
    token = _carol_token(world)
    # bob revokes (as the subject), notifying a directory name his root does not know: usage error
    res = world.run("cap", "revoke", str(token), "--as", "bob", "--notify", "nobody", "--root", str(world.root))
    assert res.code == 2
    Directory(world.root).add("self", PeerStore(world.root).get("bob").did, f"http://127.0.0.1:{_free_port()}")
    res = world.run("cap", "revoke", str(token), "--as", "bob", "--notify", "self", "--timeout", "5",
                    "--root", str(world.root))
    assert res.code == 7 and "self: error: " in res.err and "revoked " in res.err


@pytest.mark.slow
def test_cap_revoke_notify_exit_codes(served: World, tmp_path: Path) -> None:
    token = _carol_token(served)
    # carol may call api::echo with the token alone once bob's rule for her is gone
    policy = PeerStore(served.root).get("bob").paths.policy
    policy.write_text('version = 2\n[[rule]]\neffect = "allow"\nwho = "owner"\nactions = ["*", "logic.*"]\n')
    assert served.call("api::echo", "--arg", "x=1", "--cap", str(token)).code == 0
    # carol (the holder) issued no link and is not the subject: refused locally, nothing is sent
    PeerStore(served.carol_root).init("mallory")
    res = served.run("cap", "revoke", str(token), "--as", "carol", "--notify", "bob", "--root",
                     str(served.carol_root))
    assert res.code == 2
    # a token about another peer: bob's worker answers wrong_subject (2)
    other = tmp_path / "other.cap"
    assert served.run("cap", "grant", "--from", "mallory", "--to", "carol", "--allow", "exec", "--expires", "1h",
                      "-o", str(other), "--root", str(served.carol_root)).code == 0
    res = served.run("cap", "revoke", str(other), "--as", "mallory", "--notify", "bob", "--root",
                     str(served.carol_root))
    assert res.code == 2 and "bob: refused: wrong_subject" in res.err
    # bob (the subject) revokes and notifies his own worker, which his root lists as "me"
    port = Directory(served.carol_root).resolve("bob").url
    Directory(served.root).add("me", PeerStore(served.root).get("bob").did, port)
    res = served.run("cap", "revoke", str(token), "--as", "bob", "--notify", "me", "--root", str(served.root))
    assert res.code == 0 and res.out.startswith("me: revoked "), res.err
    res = served.run("cap", "revoke", str(token), "--as", "bob", "--notify", "me", "--root", str(served.root))
    assert res.code == 0 and "(already)" in res.out
    res = served.call("api::echo", "--arg", "x=1", "--cap", str(token))
    assert res.code == 6 and "revoked" in res.err
