"""A published function that takes a typed record, end to end over a real ``peerbox serve``.

bob publishes ``inbox::deliver(msg: Message)`` (``Message`` from his
``schema.toml``); carol calls it with ``peerbox call``. A valid record is
stored by ``db::insert`` inside the function and reads back; an invalid one is
a signed ``bad_arguments`` reply naming the parameter, the field and the rule,
and nothing ran (no file written, no record inserted). ``peerbox logic list``
shows the signature; ``logic set`` refuses a type bob's schema does not declare.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import peerbox
from peerbox.peer import Directory

from .conftest import PEERBOX, Serving

pytestmark = pytest.mark.slow  # `peerbox serve`, child processes

INBOX = """\
export fn deliver(msg: Message, note: Author?) {
    fs::write("ran", "deliver ran");             // shows whether anything ran
    db::insert("inbox", msg)
}
export fn read(key: i64) { db::get("inbox", key) }
export fn count() { db::count("inbox") }
"""

POLICY = """version = 2
[[rule]]
effect = "allow"
who = "owner"
actions = ["*"]

[[rule]]
effect = "allow"
who = "carol"
actions = ["call"]
resources = ["inbox::*"]
"""


@dataclass
class World:
    root: Path
    tmp: Path

    def cli(self, *argv: str) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([*PEERBOX, *argv, "--root", str(self.root)], capture_output=True, text=True,
                             timeout=120)
        assert "Traceback" not in res.stderr, res.stderr
        return res

    def call(self, function: str, args: object) -> subprocess.CompletedProcess[str]:
        return self.cli("call", "--from", "carol", "--to", "bob", function, "--args-json", json.dumps(args),
                        "--json")

    def source(self, name: str, text: str) -> str:
        path = self.tmp / name
        path.write_text(text)
        return str(path)

    @property
    def bob(self) -> peerbox.Peer:
        return peerbox.PeerStore(self.root).get("bob")


@pytest.fixture
def world(tmp_path: Path, schema_toml: str, serving: Serving) -> Iterator[World]:
    root = tmp_path / "root"
    store = peerbox.PeerStore(root)
    bob = store.init("bob")
    store.init("carol")
    bob.paths.policy.write_text(POLICY)
    (bob.paths.dir / "schema.toml").write_text(schema_toml)
    w = World(root, tmp_path)
    res = w.cli("logic", "set", "bob", "inbox", w.source("inbox.rhai", INBOX))
    assert res.returncode == 0, res.stderr
    with serving(root, "--peers", "bob") as (port, _):
        Directory(root).add("bob", bob.did, f"http://127.0.0.1:{port}", replace=True)
        yield w


def test_carol_delivers_a_typed_record_and_an_invalid_one_runs_nothing(world: World) -> None:
    carol = peerbox.PeerStore(world.root).get("carol").did
    msg = {"from": carol, "text": "hello bob", "sent": 7, "tags": ["hi"], "author": {"name": "Carol"}}
    res = world.call("inbox::deliver", {"msg": msg})
    assert res.returncode == 0, res.stderr
    key = json.loads(res.stdout)["value"]
    assert key == 1
    res = world.call("inbox::read", [key])
    assert json.loads(res.stdout)["value"] == {"_key": 1, **msg}
    (world.bob.paths.dir / "files" / "ran").unlink()

    for bad, said in [
        ({**msg, "text": "x" * 300}, "inbox::deliver: argument 'msg': field 'text': max_len 200: it has 300 "
                                     "characters"),
        ({**msg, "author": {"name": ""}}, "inbox::deliver: argument 'msg': field 'author.name': min_len 1"),
        ({**msg, "form": carol}, "inbox::deliver: argument 'msg': field 'form': unknown_field"),
        ("just text", "inbox::deliver: argument 'msg' must be a Message record (a map), got string"),
    ]:
        res = world.call("inbox::deliver", {"msg": bad})
        assert res.returncode == 2, (res.stdout, res.stderr)
        error = json.loads(res.stdout)["error"]
        assert error["kind"] == "bad_arguments" and error["message"].startswith(said), error
    res = world.call("inbox::deliver", {"msg": msg, "note": {"nom": "x"}})  # the optional parameter, wrong
    assert "argument 'note': field 'nom': unknown_field" in json.loads(res.stdout)["error"]["message"]
    assert not (world.bob.paths.dir / "files" / "ran").exists()              # nothing ran
    assert json.loads(world.call("inbox::count", []).stdout)["value"] == 1    # nothing inserted


def test_logic_list_shows_the_signature_and_set_refuses_an_unknown_type(world: World) -> None:
    res = world.cli("logic", "list", "bob")
    assert res.returncode == 0, res.stderr
    assert "    export fn deliver(msg: Message, note: Author?)" in res.stdout
    docs = json.loads(world.cli("logic", "list", "bob", "--json").stdout)
    (inbox,) = [d for d in docs if d["file"] == "peer:inbox"]
    assert [e["signature"] for e in inbox["exports"]] == ["deliver(msg: Message, note: Author?)", "read(key: i64)",
                                                          "count()"]
    res = world.cli("logic", "set", "bob", "inbox",
                    world.source("bad.rhai", "export fn deliver(msg: Mesage) { db::insert(\"inbox\", msg) }\n"))
    assert res.returncode == 3, res.stderr
    assert ("peer:inbox:1:24: error: unknown type 'Mesage' for parameter 'msg' of deliver: the schema of peer "
            "'bob' declares Author, Message, Contact; did you mean 'Message'?") in res.stderr
    # a schema that loses the type after install: calls are refused (signed, nothing runs), list warns
    schema = world.bob.paths.dir / "schema.toml"
    schema.write_text(schema.read_text().replace("[types.Author]", "[types.Writer]")
                      .replace('author = "Author?"', 'author = "Writer?"'))
    res = world.cli("logic", "list", "bob")
    assert "warning: peer:inbox:1:39: unknown type 'Author' for parameter 'note' of deliver" in res.stderr
    carol = peerbox.PeerStore(world.root).get("carol").did
    res = world.call("inbox::deliver", {"msg": {"from": carol, "text": "hi", "sent": 1}})
    error = json.loads(res.stdout)["error"]
    assert error["kind"] == "unavailable", error
    assert "inbox::deliver: parameter 'note' names type 'Author', which the peer's schema does not declare" \
        in error["message"]
    assert "peer:inbox:" not in error["message"]  # the owner's source positions stay with the owner
    assert not (world.bob.paths.dir / "files" / "ran").exists()
