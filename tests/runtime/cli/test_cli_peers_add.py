"""`peerbox peers add NAME DID URL` records a remote peer in <root>/peers.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from peerbox import Directory, PeerStore
from peerbox.cli._main import main


def test_peers_add_records_the_remote_peer_and_refuses_bad_input(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    did = PeerStore(tmp_path).init("bob").did
    assert main(["peers", "add", "bob", did, "http://127.0.0.1:7700", "--root", str(tmp_path)]) == 0
    entry = Directory(tmp_path).resolve("bob")
    assert (entry.did, entry.url) == (did, "http://127.0.0.1:7700")
    assert main(["peers", "add", "eve", "did:key:zNOPE", "http://x:1", "--root", str(tmp_path)]) == 2
    assert main(["peers", "add", "eve", did, "ftp://x:1", "--root", str(tmp_path)]) == 2
    assert main(["peers", "--root", str(tmp_path)]) == 0  # listing still works
    out = capsys.readouterr()
    assert "bob" in out.out and "Traceback" not in out.err


def test_directory_add_without_a_url_records_a_caller_only(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    did = PeerStore(tmp_path / "elsewhere").init("carol").did
    assert main(["directory", "add", "carol", did, "--root", str(tmp_path)]) == 0
    assert "carol = " + did + " (a caller only: no URL)" in capsys.readouterr().err
    assert Directory(tmp_path).resolve("carol").url is None
    assert main(["directory", "list", "--root", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"carol\t{did}\t-\n"
    assert main(["directory", "list", "--json", "--root", str(tmp_path)]) == 0
    assert '"url": null' in capsys.readouterr().out
    assert main(["peers", "add", "dave", did, "--root", str(tmp_path)]) == 0  # the same through `peers add`
