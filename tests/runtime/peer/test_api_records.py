"""Published functions whose parameters are record types of the peer's schema.

``export fn deliver(msg: Message)``: the caller's argument is checked with the
validator ``db::insert`` uses before anything runs, and a refusal names the
function, the parameter, the field path and the rule (never the value); the
owner is told at install time, with the position and the nearest type name,
when a parameter names a type the schema does not declare.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from peerbox.hostcalls import Schema
from peerbox.peer import (BadArguments, LogicRefused, PeerLogic, PeerStore, PublishedFn, SignatureError,
                          bind_args, check_param_types, parse_schema_text, record_types)
from peerbox.wasm_guests.lang import interface

DID = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
FN = PublishedFn(module="inbox", file="peer:inbox", name="deliver", params=("msg", "note"),
                 types=("Message", "Author?"), line=1)


@pytest.fixture
def schema(schema_toml: str) -> Schema:
    return parse_schema_text(schema_toml)


def good(**more: Any) -> dict[str, Any]:
    return {"from": DID, "text": "hi", "sent": 5, **more}


def test_a_valid_record_is_bound_normalised(schema: Schema) -> None:
    args = bind_args(FN, {"msg": good(score=1, tags=["a"], author={"name": "Bob"}, status=None)}, schema)
    assert args == {"msg": {"from": DID, "text": "hi", "sent": 5, "score": 1.0, "tags": ["a"],
                            "author": {"name": "Bob"}}, "note": None}
    assert type(args["msg"]["score"]) is float  # as db::insert would store it; () in an optional field dropped


def test_records_by_position_and_an_optional_record_given(schema: Schema) -> None:
    args = bind_args(FN, [good(), {"name": "Al", "pubkey": b"\x01"}], schema)
    assert args["note"] == {"name": "Al", "pubkey": b"\x01"}


@pytest.mark.parametrize(("msg", "said"), [
    (good(text="x" * 201), "argument 'msg': field 'text': max_len 200: it has 201 characters"),
    ({"from": DID, "text": "hi"}, "argument 'msg': field 'sent': required: type Message needs it (timestamp)"),
    (good(form=DID), "argument 'msg': field 'form': unknown_field: type Message has no field 'form'"),
    (good(sent="now"), "argument 'msg': field 'sent': type: expected timestamp, got string"),
    (good(sent=-1), "argument 'msg': field 'sent': min 0: -1 is smaller"),
    (good(score=2.5), "argument 'msg': field 'score': max 1.0: 2.5 is larger"),
    (good(level=-1), "argument 'msg': field 'level': min 0: -1 is smaller"),
    (good(status="old"), "argument 'msg': field 'status': one_of: 'old' is not one of 'new', 'seen', 'spam'"),
    (good(tags=["a", 2]), "argument 'msg': field 'tags[1]': type: expected string, got int"),
    (good(tags=list("abcdef")), "argument 'msg': field 'tags': max_len 5: it has 6 items"),
    (good(meta={"n": "x"}), "argument 'msg': field 'meta.n': type: expected int, got string"),
    (good(author={"name": ""}), "argument 'msg': field 'author.name': min_len 1: it has 0 characters"),
    (good(author={"nom": "x"}), "argument 'msg': field 'author.nom': unknown_field: type Author has no field"),
    (good(blob=b"x" * 17), "argument 'msg': field 'blob': max_len 16: it has 17 bytes"),
    (good(**{"from": "carol"}), "argument 'msg': field 'from': type: expected a did (did:key:z...)"),
    ("hello", "argument 'msg' must be a Message record (a map), got string"),
    (None, "argument 'msg' must be a Message record (a map), got ()"),
])
def test_every_kind_of_violation_names_parameter_field_and_rule(schema: Schema, msg: Any, said: str) -> None:
    with pytest.raises(BadArguments) as info:
        bind_args(FN, {"msg": msg}, schema)
    assert str(info.value).startswith("inbox::deliver: " + said)


def test_a_violation_never_echoes_the_value(schema: Schema) -> None:
    with pytest.raises(BadArguments) as info:
        bind_args(FN, {"msg": good(text="SECRET" * 50)}, schema)
    assert "SECRET" not in str(info.value)


def test_the_schema_is_asked_for_only_when_a_record_parameter_needs_it(schema: Schema) -> None:
    asked: list[int] = []

    def get() -> Schema:
        asked.append(1)
        return schema

    plain = PublishedFn(module="m", file="peer:m", name="f", params=("x", "y"), types=("i64", "string?"), line=1)
    assert bind_args(plain, {"x": 1}, get) == {"x": 1, "y": None}
    assert asked == []
    bind_args(FN, [good(), None], get)
    assert asked


def test_a_type_the_schema_lacks_at_call_time_is_the_owners_error(schema: Schema) -> None:
    gone = PublishedFn(module="inbox", file="peer:inbox", name="deliver", params=("m",), types=("Letter",), line=1)
    with pytest.raises(SignatureError, match="parameter 'm' names type 'Letter', which the peer's schema"):
        bind_args(gone, {"m": {}}, schema)
    with pytest.raises(SignatureError, match="the peer has no schema"):
        bind_args(gone, {"m": {}}, None)
    optional = PublishedFn(module="inbox", file="peer:inbox", name="f", params=("m",), types=("Letter?",), line=1)
    with pytest.raises(SignatureError, match="names type 'Letter'"):  # even when the argument is left out
        bind_args(optional, {}, schema)


def test_check_param_types_points_at_the_type_and_suggests(schema: Schema) -> None:
    source = "export fn deliver(msg: Mesage, who: Contact?, n: i64) { 1 }\nexport fn f(a: Letter) { a }\n"
    exports = interface(source, "peer:inbox").exports
    assert record_types(exports[0].types) == ("Mesage", "Contact")
    assert check_param_types("peer:inbox", exports, schema, "bob") == [
        "peer:inbox:1:24: error: unknown type 'Mesage' for parameter 'msg' of deliver: the schema of peer 'bob' "
        "declares Author, Message, Contact; did you mean 'Message'?",
        "peer:inbox:2:16: error: unknown type 'Letter' for parameter 'a' of f: the schema of peer 'bob' "
        "declares Author, Message, Contact",
    ]
    (problem,) = check_param_types("peer:inbox", exports[:1], None, "bob")[:1]
    assert "peer 'bob' declares no record types (no valid schema.toml)" in problem


def test_logic_set_refuses_an_unknown_type_and_accepts_a_declared_one(tmp_path: Path, schema_toml: str) -> None:
    store = PeerStore(tmp_path / "root")
    bob = store.init("bob")
    logic = PeerLogic(bob)
    with pytest.raises(LogicRefused) as info:
        logic.set("inbox", "export fn deliver(msg: Message) { 1 }\n")  # no schema.toml yet
    assert "peer:inbox:1:24: error: unknown type 'Message'" in str(info.value)
    (bob.paths.dir / "schema.toml").write_text(schema_toml)
    with pytest.raises(LogicRefused) as info:
        logic.set("inbox", "export fn deliver(msg: message_) { 1 }\nexport fn g(m: Mesage) { 1 }\n")
    assert "unknown parameter type 'message_'" in str(info.value)
    with pytest.raises(LogicRefused) as info:
        logic.set("inbox", "export fn g(m: Mesage) { 1 }\n")
    assert info.value.kind == "compile_error"
    assert "peer:inbox:1:16: error: unknown type 'Mesage' for parameter 'm' of g" in str(info.value)
    assert "did you mean 'Message'?" in str(info.value)
    assert not (bob.paths.logic / "inbox.rhai").exists()  # nothing installed
    logic.set("inbox", "export fn deliver(msg: Message, note: Author?) { 1 }\n")
    (m,) = [m for m in logic.list() if m.ref.file == "peer:inbox"]
    assert m.doc()["exports"][0]["signature"] == "deliver(msg: Message, note: Author?)"
