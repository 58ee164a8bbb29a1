"""peers.toml edits keep what a person wrote: comments, blank lines and order (``peer/_toml_edit``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from peerbox.peer import Directory, DirectoryError, PeerStore
from peerbox.peer._toml_edit import EditFailed, remove_entry, set_entry
from peerbox.wire import KeyPair

from ..conftest import CliResult

Cli = Callable[..., CliResult]

A, B, C = (KeyPair.generate().did for _ in range(3))

HAND_WRITTEN = f"""# who we talk to -- kept by hand, please keep the notes
# (ops: ask Dana before changing bob)

[peers.alice]   # alice's laptop
did = "{A}"

# bob moved to the new box in March
[peers.bob]   # bob's worker
did = "{B}"  # rotated 2026-01
# the TLS port, not the h2c one
url = "https://127.0.0.1:8443"

# carol only calls us
[peers.carol]
did = "{C}"
# end of the list
"""


def test_a_hand_written_file_survives_add_and_remove_byte_for_byte(tmp_path: Path, cli: Cli) -> None:
    path = tmp_path / "peers.toml"
    path.write_text(HAND_WRITTEN)
    dave = PeerStore(tmp_path).init("dave").did
    assert cli("directory", "add", "dave", "http://127.0.0.1:7700", "--root", str(tmp_path)).code == 0
    added = path.read_text()
    assert added == HAND_WRITTEN + f'\n[peers.dave]\ndid = "{dave}"\nurl = "http://127.0.0.1:7700"\n'
    assert cli("directory", "remove", "dave", "--root", str(tmp_path)).code == 0
    assert path.read_text() == HAND_WRITTEN


def test_removing_an_entry_takes_its_lines_and_its_comment_only(tmp_path: Path, cli: Cli) -> None:
    path = tmp_path / "peers.toml"
    path.write_text(HAND_WRITTEN)
    assert cli("directory", "remove", "bob", "--root", str(tmp_path)).code == 0
    bob_lines = HAND_WRITTEN[HAND_WRITTEN.index("# bob moved"):HAND_WRITTEN.index("# carol only")]
    assert path.read_text() == HAND_WRITTEN.replace(bob_lines, "")
    assert [e.name for e in Directory(tmp_path).list()] == ["alice", "carol"]


def test_replace_changes_only_the_entry_s_values(tmp_path: Path, cli: Cli) -> None:
    path = tmp_path / "peers.toml"
    path.write_text(HAND_WRITTEN)
    r = cli("directory", "add", "bob", B, "http://10.0.0.2:7700", "--replace", "--root", str(tmp_path))
    assert r.code == 0, r.err
    assert path.read_text() == HAND_WRITTEN.replace("https://127.0.0.1:8443", "http://10.0.0.2:7700")


def test_other_forms_of_toml_are_edited_without_losing_entries() -> None:
    inline = f'# inline\n[peers]\nbob = {{ did = "{B}" }}   # bob\ncarol = {{ did = "{C}" }}\n'
    assert remove_entry(inline, "bob") == f'# inline\n[peers]\ncarol = {{ did = "{C}" }}\n'
    changed = set_entry(inline, "bob", B, "http://h:1")
    assert "# bob" in changed and "http://h:1" in changed and "# inline" in changed
    with pytest.raises(EditFailed):
        remove_entry(inline, "nobody")


def test_removing_an_absent_entry_is_a_usage_error_naming_what_is_there(tmp_path: Path, cli: Cli) -> None:
    (tmp_path / "peers.toml").write_text(HAND_WRITTEN)
    r = cli("directory", "remove", "zed", "--root", str(tmp_path))
    assert r.code == 2
    assert "no peer named 'zed'" in r.err and "alice, bob, carol" in r.err
    assert (tmp_path / "peers.toml").read_text() == HAND_WRITTEN
    with pytest.raises(DirectoryError):
        Directory(tmp_path).remove("zed")
