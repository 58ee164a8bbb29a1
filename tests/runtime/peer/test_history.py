"""The signed version history of a peer's logic (peerbox.peer._history and ._versions) and ``PeerLogic.verify``.

Each installed version is an entry in ``logic-history/log/<module>.jsonl``
carrying the installer's signed statement and the peer's seal chained to the
entry before it; its source is kept in ``logic-history/sources/``. These
tests tamper with those files the way someone with disk access could, and
check that ``verify`` names the module and version that no longer check out.
"""

# ruff: noqa: E501  (expected messages read best on one line)

from __future__ import annotations

import json
from pathlib import Path

import pytest

from peerbox.peer._versions import STATEMENT_TYP, make_statement, open_statement, sha256_hex
from peerbox.wire import EnvelopeError, KeyPair, did_from_public_key, grant, sign1
from peerbox.peer._logic import PeerLogic
from peerbox.peer._peers import Peer, PeerStore

NOW = 1_700_000_000
CAROL = KeyPair.from_seed(bytes([3]) * 32)
DAVE = KeyPair.from_seed(bytes([4]) * 32)
SRC = 'fn hi() { "hello" }'


@pytest.fixture
def bob(tmp_path: Path) -> Peer:
    return PeerStore(tmp_path / "root").init("bob")


@pytest.fixture
def logic(bob: Peer) -> PeerLogic:
    return PeerLogic(bob, clock=lambda: NOW)


def log_path(bob: Peer, module: str) -> Path:
    return bob.paths.dir / "logic-history" / "log" / f"{module}.jsonl"


def three_versions(logic: PeerLogic) -> None:
    logic.set("greet", 'fn hi() { "one" }', now=NOW)
    logic.set("greet", 'fn hi() { "two" }', now=NOW + 1)
    logic.set("greet", 'fn hi() { "three" }', now=NOW + 2)


def edit_line(path: Path, index: int, **changes: object) -> None:
    lines = path.read_text().splitlines()
    doc = json.loads(lines[index])
    doc.update(changes)
    lines[index] = json.dumps(doc, sort_keys=True)
    path.write_text("\n".join(lines) + "\n")


def problems_of(logic: PeerLogic, module: str = "greet") -> list[str]:
    report = logic.verify()
    assert module in report
    return report[module]


# ------------------------------------------------------------------ statements


def test_statement_round_trip(bob: Peer) -> None:
    data = make_statement(CAROL, peer=bob.public_key, module="inbox", source=SRC, now=NOW)
    st = open_statement(data)
    assert st.by == CAROL.public_key
    assert st.peer == bob.public_key
    assert st.module == "inbox"
    assert st.sha256 == sha256_hex(SRC)
    assert st.iat == NOW
    assert st.data == data


def _payload(bob: Peer, **changes: object) -> dict[str, object]:
    p: dict[str, object] = {"v": 1, "typ": STATEMENT_TYP, "by": CAROL.public_key, "peer": bob.public_key,
                            "module": "inbox", "sha256": bytes.fromhex(sha256_hex(SRC)), "iat": NOW}
    p.update(changes)
    return p


def test_statement_signed_by_another_key_than_it_names(bob: Peer) -> None:
    # signed by dave, claims to be carol, kid says carol: the signature does not verify
    forged = sign1(_payload(bob), DAVE).replace(DAVE.public_key, CAROL.public_key)
    with pytest.raises(EnvelopeError) as exc:
        open_statement(forged)
    assert exc.value.kind == "bad_signature"
    # with dave's kid left in the header, the key mismatch is caught first
    with pytest.raises(EnvelopeError) as exc:
        open_statement(sign1(_payload(bob), DAVE))
    assert exc.value.kind == "bad_key"


def test_statement_with_edited_payload_bytes(bob: Peer) -> None:
    data = make_statement(CAROL, peer=bob.public_key, module="inbox", source=SRC, now=NOW)
    assert data.count(b"inbox") == 1
    with pytest.raises(EnvelopeError) as exc:
        open_statement(data.replace(b"inbox", b"notes"))
    assert exc.value.kind == "bad_signature"


def test_statement_with_wrong_typ(bob: Peer) -> None:
    with pytest.raises(EnvelopeError) as exc:
        open_statement(sign1(_payload(bob, typ="peerbox/cap"), CAROL))
    assert exc.value.kind == "wrong_type"


def test_statement_with_an_extra_field(bob: Peer) -> None:
    with pytest.raises(EnvelopeError) as exc:
        open_statement(sign1(_payload(bob, note="hi"), CAROL))
    assert exc.value.kind == "bad_field"


def test_statement_with_a_short_key(bob: Peer) -> None:
    with pytest.raises(EnvelopeError) as exc:
        open_statement(sign1(_payload(bob, peer=b"\x01" * 31), CAROL))
    assert exc.value.kind == "bad_field"


# ------------------------------------------------------------------ verify: clean


def test_verify_clean_history_with_a_rollback(bob: Peer, logic: PeerLogic) -> None:
    three_versions(logic)
    logic.rollback("greet", 1, now=NOW + 3)
    logic.set("inbox", 'import "builtin:inbox" as base;\nfn deliver(t) { base::deliver(t) }', now=NOW + 4)
    assert logic.verify() == {"greet": [], "inbox": []}
    assert [(v.version, v.action, v.restores) for v in logic.versions("greet")] == [
        (1, "set", None), (2, "set", None), (3, "set", None), (4, "rollback", 1)]


def test_verify_with_nothing_installed_is_empty(logic: PeerLogic) -> None:
    assert logic.verify() == {}


# ------------------------------------------------------------------ verify: tampering


@pytest.mark.parametrize("field,value", [("size", 999), ("time", NOW - 86400)])
def test_verify_detects_a_history_line_edited_by_hand(field: str, value: int, bob: Peer, logic: PeerLogic) -> None:
    three_versions(logic)
    edit_line(log_path(bob, "greet"), 1, **{field: value})
    problems = problems_of(logic)
    assert any(p.startswith("greet: version 2: ") and "seal" in p for p in problems), problems
    assert logic.verify()["greet"] != []


def test_verify_detects_an_entry_removed_from_the_middle(bob: Peer, logic: PeerLogic) -> None:
    three_versions(logic)
    path = log_path(bob, "greet")
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + lines[2])
    problems = problems_of(logic)
    assert any(p.startswith("greet: version 3: ") and "does not follow" in p for p in problems), problems
    assert any("not numbered" in p for p in problems), problems


def test_verify_detects_two_entries_swapped(bob: Peer, logic: PeerLogic) -> None:
    three_versions(logic)
    path = log_path(bob, "greet")
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + lines[2] + lines[1])
    problems = problems_of(logic)
    assert any(p.startswith("greet: version 3: ") and "does not follow" in p for p in problems), problems
    # the live file is version 3's source, but the log now ends with version 2
    assert any("live file differs from version 2" in p for p in problems), problems


def test_verify_detects_the_live_file_edited_outside_peerbox(bob: Peer, logic: PeerLogic) -> None:
    three_versions(logic)
    (bob.paths.logic / "greet.rhai").write_text('fn hi() { "sneaky" }')
    assert problems_of(logic) == ["greet: the live file differs from version 3 (changed outside peerbox)"]


def test_verify_detects_the_live_file_deleted(bob: Peer, logic: PeerLogic) -> None:
    three_versions(logic)
    (bob.paths.logic / "greet.rhai").unlink()
    problems = problems_of(logic)
    assert problems == ["greet: logic file is missing, yet version 3 is recorded"]


def test_verify_detects_a_stored_source_edited(bob: Peer, logic: PeerLogic) -> None:
    three_versions(logic)
    v2 = logic.versions("greet")[1]
    stored = bob.paths.dir / "logic-history" / "sources" / f"{v2.sha256}.rhai"
    assert stored.read_text() == 'fn hi() { "two" }'
    stored.write_text('fn hi() { "TWO" }')
    problems = problems_of(logic)
    assert problems == [f"greet: version 2: its stored source does not hash to {v2.sha256[:12]}"]


def test_verify_detects_a_stored_source_removed(bob: Peer, logic: PeerLogic) -> None:
    three_versions(logic)
    v1 = logic.versions("greet")[0]
    (bob.paths.dir / "logic-history" / "sources" / f"{v1.sha256}.rhai").unlink()
    assert problems_of(logic) == [f"greet: version 1: its source {v1.sha256[:12]} is missing"]


def test_verify_detects_a_live_module_with_no_history(bob: Peer, logic: PeerLogic) -> None:
    logic.set("greet", SRC)
    (bob.paths.logic / "byhand.rhai").write_text("fn f() { 1 }")
    report = logic.verify()
    assert report["greet"] == []
    assert report["byhand"] == ["byhand: the live file has no recorded history (installed by hand)"]


def test_verify_detects_a_line_that_is_not_json(bob: Peer, logic: PeerLogic) -> None:
    three_versions(logic)
    path = log_path(bob, "greet")
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + "{not json\n" + lines[2])
    problems = problems_of(logic)
    assert any(f"{path}:2:" in p and "not a valid history entry" in p for p in problems), problems


def test_verify_detects_a_history_rewritten_with_another_peers_seal(tmp_path: Path, bob: Peer, logic: PeerLogic) -> None:
    # a complete, self-consistent history sealed by some other key does not pass as bob's
    eve = PeerStore(tmp_path / "other").init("eve")
    eve_logic = PeerLogic(eve, clock=lambda: NOW)
    eve_logic.set("greet", SRC)
    logic.set("greet", SRC)
    log_path(bob, "greet").write_bytes(log_path(eve, "greet").read_bytes())
    problems = problems_of(logic)
    assert any(p.startswith("greet: version 1: ") and "seal" in p for p in problems), problems


# ------------------------------------------------------------------ installs by other keys


def _install_by_carol(bob: Peer, logic: PeerLogic, module: str, cap: bytes | None, rule: str | None = None) -> None:
    src = 'import "builtin:inbox" as base;\nfn deliver(t) { base::deliver(t) }' if module == "inbox" else SRC
    statement = make_statement(CAROL, peer=bob.public_key, module=module, source=src, now=NOW)
    logic.install(module, src, statement=statement, cap=cap, rule=rule, now=NOW)


def _cap(bob: Peer, grants: list[str]) -> bytes:
    return grant(bob.signing_key(), audience=CAROL.public_key, subject=bob.public_key, grants=grants, now=NOW - 60,
                 ttl=3600)


def test_install_by_a_capability_holder_granted_the_module_verifies(bob: Peer, logic: PeerLogic) -> None:
    _install_by_carol(bob, logic, "inbox", _cap(bob, ["logic.write:inbox"]))
    assert logic.verify() == {"inbox": []}
    (v,) = logic.versions("inbox")
    assert v.by == did_from_public_key(CAROL.public_key)
    assert v.cap is not None


def test_install_by_a_capability_holder_granted_another_module_is_reported(bob: Peer, logic: PeerLogic) -> None:
    _install_by_carol(bob, logic, "inbox", _cap(bob, ["logic.write:other"]))
    problems = problems_of(logic, "inbox")
    assert len(problems) == 1
    assert problems[0].startswith("inbox: version 1: its capability does not grant it")
    assert "logic.write of 'inbox'" in problems[0]


def test_install_with_a_capability_issued_to_someone_else_is_reported(bob: Peer, logic: PeerLogic) -> None:
    to_dave = grant(bob.signing_key(), audience=DAVE.public_key, subject=bob.public_key,
                    grants=["logic.write:inbox"], now=NOW - 60, ttl=3600)
    _install_by_carol(bob, logic, "inbox", to_dave)
    problems = problems_of(logic, "inbox")
    assert len(problems) == 1 and problems[0].startswith("inbox: version 1: its capability does not grant it")


def test_install_by_another_key_without_cap_or_rule_is_reported(bob: Peer, logic: PeerLogic) -> None:
    _install_by_carol(bob, logic, "greet", None)
    assert problems_of(logic) == [
        "greet: version 1: installed by another key than the peer's, without a capability or policy rule"]


def test_statement_for_another_module_is_reported(bob: Peer, logic: PeerLogic) -> None:
    statement = make_statement(bob.signing_key(), peer=bob.public_key, module="notes", source=SRC, now=NOW)
    logic.install("greet", SRC, statement=statement, now=NOW)
    assert problems_of(logic) == ["greet: version 1: the statement is for another module or source"]


# ------------------------------------------------------------------ the sealed head


def test_versions_cut_off_the_end_with_the_live_file_rewound_are_reported(bob: Peer, logic: PeerLogic) -> None:
    three_versions(logic)
    path = log_path(bob, "greet")
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:2]))
    (bob.paths.logic / "greet.rhai").write_text('fn hi() { "two" }')
    problems = problems_of(logic)
    assert any("head names version 3, the log ends at version 2" in p for p in problems), problems


def test_a_history_deleted_with_its_live_file_is_reported(bob: Peer, logic: PeerLogic) -> None:
    three_versions(logic)
    log_path(bob, "greet").unlink()
    (bob.paths.logic / "greet.rhai").unlink()
    problems = problems_of(logic)
    assert any("head names version 3, the log ends with nothing" in p for p in problems), problems


def test_a_head_edited_by_hand_is_reported_and_blocks_installs_until_resealed(bob: Peer, logic: PeerLogic) -> None:
    from peerbox.peer._history import HistoryError
    from peerbox.peer._logic import HEAD_KEY

    three_versions(logic)
    head = bob.paths.dir / "logic-history" / "head.json"
    doc = json.loads(head.read_text())
    doc["modules"]["greet"]["version"] = 2
    head.write_text(json.dumps(doc))
    report = logic.verify()
    assert "seal does not match" in report[HEAD_KEY][0]
    with pytest.raises(HistoryError, match="seal does not match"):
        logic.set("greet", SRC)
    assert len(logic.versions("greet")) == 3
    logic.history.reseal(bob.signing_key())
    assert logic.verify() == {"greet": []}
    assert logic.set("greet", SRC).version == 4


def test_an_interrupted_append_is_reported_and_blocks_installs(bob: Peer, logic: PeerLogic) -> None:
    from peerbox.peer._history import HistoryError

    three_versions(logic)
    with open(log_path(bob, "greet"), "a") as f:
        f.write('{"version": 4, "mod')
    assert any(":4: an incomplete entry" in p for p in problems_of(logic))
    with pytest.raises(HistoryError, match="incomplete entry"):
        logic.set("greet", SRC)


def test_an_install_whose_live_file_cannot_be_written_records_nothing(bob: Peer, logic: PeerLogic) -> None:
    from peerbox.peer._history import HistoryError

    logic.set("greet", SRC)
    before = log_path(bob, "greet").read_bytes(), (bob.paths.dir / "logic-history" / "head.json").read_bytes()
    (bob.paths.logic / "other.rhai").mkdir()  # a directory where the live file should go
    with pytest.raises(HistoryError, match="cannot write"):
        logic.set("other", SRC)
    assert logic.versions("other") == []
    assert (log_path(bob, "greet").read_bytes(), (bob.paths.dir / "logic-history" / "head.json").read_bytes()) == before
    (bob.paths.logic / "other.rhai").rmdir()
    assert logic.verify() == {"greet": []}


def test_out_of_range_numbers_in_an_entry_are_reported_not_crashed_on(bob: Peer, logic: PeerLogic) -> None:
    three_versions(logic)
    for value in (10**30, -5):
        edit_line(log_path(bob, "greet"), 1, time=value)
        problems = problems_of(logic)
        assert any(":2: not a valid history entry: 'time' is out of range" in p for p in problems), problems


def test_installs_append_in_constant_work_and_the_history_stays_verifiable(bob: Peer, logic: PeerLogic) -> None:
    for i in range(30):
        logic.set("greet", f"fn hi() {{ {i} }}", now=NOW + i)
    assert [v.version for v in logic.versions("greet")] == list(range(1, 31))
    assert logic.verify() == {"greet": []}
