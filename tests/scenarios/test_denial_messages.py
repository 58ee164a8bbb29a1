"""Messages that say one thing: every denial, as a caller of a real ``peerbox serve`` sees it.

One shape everywhere (the signed reply's message, ``peerbox send/call``
stderr, ``--json``): the action, its resource, and EITHER the deciding deny
rule ("denied by the deny rule at policy.toml:N") OR why no rule decided
("no rule allowed it", the one reason a capability was refused, "the
target's policy could not be loaded") — never both. The reply's typed fields
(``action``, ``resource``, ``rule``, ``cause``, ``capability``) say the same,
so no client parses text. The worker is the real CLI in a subprocess; the
callers are the real CLI too.
"""

# ruff: noqa: E501  (expected messages read best on one line)

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import peerbox
from peerbox.peer import Directory
from peerbox.wire import REVOCATION_FILE, RevocationList, delegate, grant, sign1

from .conftest import PEERBOX, Serving

pytestmark = pytest.mark.slow  # a real `peerbox serve` and real CLI callers

POLICY = """\
version = 2

[[rule]]
effect = "allow"
who = "owner"
actions = ["*", "logic.*"]

[[rule]]
effect = "allow"
who = ["alice", "dave"]
actions = ["exec", "call"]

[[rule]]
effect = "deny"
who = "dave"
actions = ["exec"]

[[rule]]
effect = "deny"
who = "*"
actions = ["call"]
resources = ["api::secret"]
"""
#: The line of the deny rule for dave's exec, and of the one for api::secret.
DAVE_RULE, SECRET_RULE = 13, 18

API = 'export fn hi() { "hi" }\nexport fn secret() { 42 }\n'


@dataclass
class World:
    root: Path
    store: peerbox.PeerStore
    tmp: Path

    def cli(self, *argv: str) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([*PEERBOX, *argv, "--root", str(self.root)], capture_output=True, text=True,
                             timeout=60)
        assert "Traceback" not in res.stderr and "internal error" not in res.stderr, res.stderr
        return res

    def send(self, sender: str, script: str, *caps: bytes, json_out: bool = False) -> subprocess.CompletedProcess[str]:
        """``peerbox send --from SENDER --to bob`` of ``script`` (a file), presenting ``caps``."""
        path = self.tmp / f"s{time.monotonic_ns()}.rhai"
        path.write_text(script, encoding="utf-8")
        argv = ["send", "--from", sender, "--to", "bob", str(path)]
        for i, token in enumerate(caps):
            cap = self.tmp / f"c{time.monotonic_ns()}-{i}.cap"
            cap.write_bytes(token)
            argv += ["--cap", str(cap)]
        return self.cli(*argv, *(["--json"] if json_out else []))

    def key(self, name: str) -> Any:
        return self.store.get(name).signing_key()

    def pub(self, name: str) -> bytes:
        return self.store.get(name).public_key

    def did(self, name: str) -> str:
        return self.store.get(name).did


@pytest.fixture
def world(tmp_path: Path) -> World:
    root = tmp_path / "root"
    store = peerbox.PeerStore(root)
    for name in ("bob", "alice", "carol", "dave"):
        store.init(name)
    bob = store.get("bob")
    bob.paths.policy.write_text(POLICY, encoding="utf-8")
    (bob.paths.logic / "api.rhai").write_text(API, encoding="utf-8")
    return World(root, store, tmp_path)


@contextmanager
def served(world: World, serving: Serving) -> Iterator[World]:
    """``world`` with bob served by a real ``peerbox serve``, at the URL the directory names."""
    with serving(world.root, "--peers", "bob") as (port, _):
        Directory(world.root).add("bob", world.did("bob"), f"http://127.0.0.1:{port}", replace=True)
        yield world


def _error(res: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    doc = json.loads(res.stdout)
    error = doc["error"]
    assert isinstance(error, dict)
    return error


def test_policy_denials_name_the_action_and_either_the_rule_or_no_rule(world: World, serving: Serving) -> None:
    with served(world, serving) as w:
        # exec denied by no rule: carol is named by no rule
        res = w.send("carol", "1")
        assert (res.returncode, res.stderr) == (6, "bob: exec denied: no rule allowed it\n")
        err = _error(w.send("carol", "1", json_out=True))
        assert (err["action"], err["resource"], err["rule"], err["cause"]) == ("exec", None, None, "no_rule")
        # exec denied by an explicit deny rule (which beats the allow rule naming dave too)
        res = w.send("dave", "1")
        assert (res.returncode, res.stderr) == (6, f"bob: exec denied by the deny rule at policy.toml:{DAVE_RULE}\n")
        err = _error(w.send("dave", "1", json_out=True))
        assert (err["action"], err["rule"], err["cause"]) == ("exec", f"policy.toml:{DAVE_RULE}", "rule")
        assert "no rule allowed it" not in err["message"]
        # an fs.read refused inside the script (a host call): its line, the action and its path
        res = w.send("alice", 'let x = 1;\nfs::read("diary.txt")')
        assert (res.returncode, res.stderr) == (6, "bob: line 2: fs.read of 'diary.txt' denied: no rule allowed it\n")
        err = _error(w.send("alice", 'fs::read("diary.txt")', json_out=True))
        assert (err["action"], err["resource"], err["rule"], err["cause"]) == ("fs.read", "diary.txt", None, "no_rule")
        # what the script itself sees when it catches the refusal: the same words
        res = w.send("alice", 'let m = ""; try { fs::read("diary.txt") } catch (e) { m = `${e.kind}: ${e.message}` } m')
        assert (res.returncode, res.stdout) == (0, "denied: fs.read of 'diary.txt' denied: no rule allowed it\n")
        # a call: by a deny rule, and by no rule
        res = w.cli("call", "--from", "alice", "--to", "bob", "api::secret")
        assert (res.returncode, res.stderr) == (6, f"bob: call of 'api::secret' denied by the deny rule at policy.toml:{SECRET_RULE}\n")
        res = w.cli("call", "--from", "carol", "--to", "bob", "api::hi")
        assert (res.returncode, res.stderr) == (6, "bob: call of 'api::hi' denied: no rule allowed it\n")
        assert w.cli("call", "--from", "alice", "--to", "bob", "api::hi").stdout == "hi\n"


def _when(t: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def test_each_capability_refusal_says_its_one_reason(world: World, serving: Serving) -> None:
    w = world
    now = int(time.time())
    bob, carol = w.pub("bob"), w.pub("carol")

    def cap(issuer: str = "bob", *, to: bytes = carol, sub: bytes = bob, grants: list[str] | None = None,
            start: int = now - 60, ttl: int = 3600) -> bytes:
        return grant(w.key(issuer), audience=to, subject=sub, grants=grants or ["exec"], now=start, ttl=ttl)

    expired = cap(start=now - 7200, ttl=60)
    early = cap(start=now + 3600)
    revoked = cap()
    RevocationList(w.store.get("bob").paths.dir / REVOCATION_FILE).revoke(revoked)
    to_alice = delegate(cap(to=w.pub("alice"), grants=["exec", "fs.read:**"]), w.key("alice"), audience=carol,
                        grants=["fs.read:notes/**"], now=now)
    # a forged child, signed as an attacker would (delegate() refuses to make it): wider than its parent
    parent = cap(to=w.pub("alice"), grants=["fs.read:notes/**"])
    widened = sign1({"v": 2, "typ": "peerbox/cap", "iss": w.pub("alice"), "aud": carol, "sub": bob,
                           "grants": ["fs.read:**"], "nbf": now - 60, "exp": now + 600,
                           "nonce": b"\x01" * 16, "prf": parent}, w.key("alice"))
    bad_signature = bytearray(cap())
    bad_signature[-1] ^= 1
    deep = cap(to=carol, grants=["exec"])
    holders = ["carol", "alice"] * 5
    for i in range(9):  # 10 links: more than a worker accepts (8)
        deep = delegate(deep, w.key(holders[i]), audience=w.pub(holders[i + 1]), grants=["exec"], now=now)
    cases: list[tuple[str, bytes, str, str]] = [
        ("expired", expired, "carol",
         f"exec denied: the capability expired at {_when(now - 7200 + 60)} (now "),
        ("not_yet_valid", early, "carol", f"exec denied: the capability is not valid yet: from {_when(now + 3600)} (now "),
        ("revoked", revoked, "carol", "exec denied: the capability is revoked (token id "),
        ("widened", widened, "carol",
         "exec denied: link 1 of the capability chain widens its parent: fs.read:** is not within the parent's grants ['fs.read:notes/**']"),
        ("wrong_audience", to_alice, "dave",
         f"exec denied: link 1 of the capability chain is addressed to {w.did('carol')}, not to the caller {w.did('dave')}"),
        ("wrong_signer", bytes(bad_signature), "carol", "exec denied: the capability has a bad signature: it is not its issuer's"),
        ("too_deep", deep, "alice", "exec denied: the capability chain is too deep: more than 8 links"),
        ("not_issued_by_subject", cap("alice"), "carol",
         f"exec denied: the capability has an unknown issuer: {w.did('alice')} may not issue capabilities for the target"),
        ("wrong_subject", cap(sub=w.pub("alice")), "carol",
         f"exec denied: the capability covers the resources of another peer ({w.did('alice')})"),
    ]
    with served(world, serving):
        for kind, token, sender, message in cases:
            res = w.send(sender, "1", token, json_out=True)
            assert res.returncode == 6, (kind, res.stderr)
            assert res.stderr.startswith(f"bob: {message}"), (kind, res.stderr)
            assert res.stderr.count("capability") == 1, (kind, res.stderr)  # one reason, said once
            err = _error(res)
            assert (err["cause"], err["capability"], err["action"], err["rule"]) == ("capability", kind, "exec", None)
            assert err["message"] == res.stderr[len("bob: "):-1]


def test_a_broken_policy_tells_the_caller_only_that_it_does_not_load(world: World, serving: Serving) -> None:
    with served(world, serving) as w:
        policy = w.store.get("bob").paths.policy
        policy.write_text(POLICY + '\n[[rule]]\neffect = "allow"\nwho = "alice"\nactions = ["fs.exec"]\n')
        res = w.send("alice", "1", json_out=True)
        assert (res.returncode, res.stderr) == (6, "bob: exec denied: the target's policy could not be loaded\n")
        err = _error(res)
        assert (err["cause"], err["rule"]) == ("policy_unavailable", None)
        assert "fs.exec" not in res.stdout + res.stderr and str(policy.parent) not in res.stdout + res.stderr
        assert "policy.toml" not in res.stdout + res.stderr
        policy.write_text(POLICY)  # fixed: picked up from the next request on
        assert w.send("alice", "40 + 2").stdout == "42\n"


def test_policy_explain_says_it_in_the_same_words(world: World) -> None:
    res = world.cli("policy", "explain", "bob", "--caller", "dave", "--action", "exec")
    policy = world.store.get("bob").paths.policy
    assert res.returncode == 6
    assert res.stdout.splitlines()[1] == f"  exec denied by the deny rule at {policy}:{DAVE_RULE}"
    res = world.cli("policy", "explain", "bob", "--caller", "carol", "--action", "fs.read", "--path", "a.txt")
    assert res.returncode == 6 and res.stdout.splitlines()[1] == "  fs.read of 'a.txt' denied: no rule allowed it"


def test_handle_says_it_in_the_same_words(world: World) -> None:
    script, req, out = world.tmp / "h.rhai", world.tmp / "h.cose", world.tmp / "reply.cose"
    script.write_text('fs::read("diary.txt")', encoding="utf-8")
    assert world.cli("envelope", "make", "--from", "dave", "--to", "bob", str(script), "-o", str(req)).returncode == 0
    res = world.cli("handle", str(req), "--as", "bob", "-o", str(out))
    assert (res.returncode, res.stderr) == (6, f"exec denied by the deny rule at policy.toml:{DAVE_RULE}\n")
    assert world.cli("envelope", "make", "--from", "alice", "--to", "bob", str(script), "-o", str(req)).returncode == 0
    res = world.cli("handle", str(req), "--as", "bob", "-o", str(out))  # a script ending on a refused host call
    assert (res.returncode, res.stderr) == (4, "script_error: fs.read of 'diary.txt' denied: no rule allowed it\n")
