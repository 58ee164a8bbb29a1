"""A peer whose peer.toml says ``[storage] backend = "s3"`` keeps its files in S3 (SeaweedFS).

Through a real ``peerbox serve`` process (alice's signed request writes and
reads bob's files) and through ``peerbox run --peer`` (one process writes,
the next reads); nothing lands in the peer's local ``files/``. A storage
setting that does not configure a backend ends the command with exit 2 and
a message naming the key or the environment variable.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

import peerbox
from peerbox.hostcalls import LocalS3, StorageSite, open_storage
from peerbox.net._h2client import H2Transport

from ._serve_helpers import Caller
from .conftest import PEERBOX, Serving

pytestmark = pytest.mark.slow  # a SeaweedFS server, `peerbox serve` and `peerbox run` processes


POLICY = """
version = 2
[[rule]]
who = "owner"
actions = ["*"]
effect = "allow"

[[rule]]
who = "alice"
actions = ["exec", "fs.*"]
effect = "allow"
"""


def _toml(table: dict[str, object]) -> str:
    return "\n[storage]\n" + "".join(f'{k} = "{v}"\n' for k, v in table.items())


def _bob_on_s3(root: Path, table: dict[str, object]) -> peerbox.PeerStore:
    store = peerbox.PeerStore(root)
    store.init("alice")
    bob = store.init("bob")
    with open(bob.paths.meta, "a") as f:
        f.write(_toml(table))
    bob.paths.policy.write_text(POLICY)
    return store


async def test_a_peer_on_s3_serves_fs_write_and_read_through_the_worker(
        tmp_path: Path, s3_table: Callable[..., dict[str, object]], local_s3: LocalS3,
        serving: Serving, monkeypatch: pytest.MonkeyPatch) -> None:
    table = s3_table("bob")
    store = _bob_on_s3(tmp_path, table)
    for name, value in local_s3.environ().items():
        monkeypatch.setenv(name, value)  # the serve process inherits the credentials
    with serving(tmp_path, "--peers", "bob") as (port, _):
        async with H2Transport() as transport:
            c = Caller(store, transport, f"http://127.0.0.1:{port}")
            status, _, body, req = await c.send(
                'fs::mkdir("inbox"); fs::write("inbox/note.txt", "hi from alice"); fs::read("inbox/note.txt")')
            assert status == 200 and c.reply(body, req).value == "hi from alice"
            status, _, body, req = await c.send('fs::append("inbox/note.txt", "!"); fs::list("inbox")')
            assert status == 200 and c.reply(body, req).value == ["note.txt"]
    assert list((tmp_path / "peers" / "bob" / "files").iterdir()) == []  # all of it is in S3
    with open_storage(table, StorageSite(tmp_path, "bob"), None, local_s3.environ()) as direct:
        assert direct.read_bytes("inbox/note.txt") == b"hi from alice!"


def test_peerbox_run_as_a_peer_on_s3(tmp_path: Path, s3_table: Callable[..., dict[str, object]],
                                     local_s3: LocalS3) -> None:
    _bob_on_s3(tmp_path, s3_table("bob"))
    env = {"PATH": "/usr/bin:/bin", **local_s3.environ()}
    write = tmp_path / "write.rhai"
    write.write_text('fs::write("greeting.txt", "hello " + params.who); "written"')
    read = tmp_path / "read.rhai"
    read.write_text('fs::read("greeting.txt")')
    first = subprocess.run([*PEERBOX, "run", str(write), "--peer", "bob", "--root", str(tmp_path),
                            "--param", "who=s3"], capture_output=True, text=True, env=env, timeout=60)
    assert first.returncode == 0, first.stderr
    second = subprocess.run([*PEERBOX, "run", str(read), "--peer", "bob", "--root", str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=60)
    assert (second.returncode, second.stdout.strip()) == (0, "hello s3"), second.stderr


@pytest.mark.parametrize(("extra", "env_creds", "message"), [
    ({}, False, "the environment variable AWS_ACCESS_KEY_ID is not set"),
    ({"bukcet": "x"}, True, "'bukcet' is not a setting of the 's3' backend"),
    ({"aws_secret_access_key": "x"}, True, "credentials are never stored in peer.toml"),
])
def test_bad_storage_settings_end_the_command_with_exit_2(
        tmp_path: Path, extra: dict[str, object], env_creds: bool, message: str) -> None:
    table = {"backend": "s3", "bucket": "peerbox-tests", "endpoint": "http://127.0.0.1:9", **extra}
    _bob_on_s3(tmp_path, table)
    env = {"PATH": "/usr/bin:/bin"}
    if env_creds:
        env.update(AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s")
    script = tmp_path / "s.rhai"
    script.write_text('fs::read("x")')
    done = subprocess.run([*PEERBOX, "run", str(script), "--peer", "bob", "--root", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert message in done.stderr
