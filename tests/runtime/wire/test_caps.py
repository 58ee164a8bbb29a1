"""Capability tokens: issuing, delegating, verifying chains, revocation, the ``cap`` CLI.

Grant syntax, globs and containment are :mod:`peerbox.policy`'s (tests/policy/test_containment*.py);
here they are exercised through tokens."""

from __future__ import annotations

import argparse
import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from peerbox.wire import _cose
from peerbox.wire._caps import (
    CapabilityError, Chain, RevocationList, decode_chain, delegate, grant, token_id, verify_chain,
)
from peerbox.cli._caps import add_parsers, parse_duration
from peerbox.wire._identity import KeyPair
from peerbox.peer import PeerStore

NOW = 1_700_000_000
BOB, ALICE, CAROL, DAVE, MALLORY = (KeyPair.from_seed(bytes([i]) * 32) for i in range(1, 6))


def never(_: bytes) -> bool:
    return False


def verify(token: bytes, caller: KeyPair, *, now: int = NOW + 10, revoked: Any = never, **kw: Any) -> Chain:
    return verify_chain(token, caller=caller.public_key, subject=BOB.public_key, now=now, revoked=revoked,
                        **kw)


def root(grants: list[str] | None = None, *, to: KeyPair = ALICE, ttl: int = 3600,
         issuer: KeyPair = BOB, subject: KeyPair = BOB) -> bytes:
    return grant(issuer, audience=to.public_key, subject=subject.public_key,
                 grants=grants or ["fs.write:inbox/**", "fs.read:**", "exec"], now=NOW, ttl=ttl)


def raw_token(key: KeyPair, **fields: Any) -> bytes:
    """A token signed by ``key`` with any fields (bypassing the local checks of grant/delegate)."""
    payload: dict[str, Any] = {
        "v": 1, "typ": "peerbox/cap", "iss": key.public_key, "aud": ALICE.public_key,
        "sub": BOB.public_key, "grants": ["exec"], "nbf": NOW, "exp": NOW + 3600,
        "nonce": secrets.token_bytes(16),
    }
    payload.update(fields)
    return _cose.sign1({k: v for k, v in payload.items() if v is not None}, key)


def kind_of(exc: pytest.ExceptionInfo[CapabilityError]) -> str:
    return exc.value.kind


# ------------------------------------------------------------ valid chains


def test_one_link_chain() -> None:
    chain = verify(root(), ALICE)
    assert chain.grants == ("fs.write:inbox/**", "fs.read:**", "exec")
    assert len(chain.links) == 1 and chain.subject == BOB.public_key and chain.caller == ALICE.public_key
    assert chain.allows("exec") and chain.allows("fs.write", "inbox/a/b.txt")
    assert not chain.allows("fs.write", "outbox/x") and not chain.allows("fs.delete", "inbox/x")
    # as the policy enforces it: a trailing /** names the directory itself too, "**" the root too
    assert chain.allows("fs.write", "inbox") and chain.allows("fs.read", "")


def test_two_and_three_link_chains() -> None:
    t1 = root()
    t2 = delegate(t1, ALICE, audience=CAROL.public_key, grants=["fs.write:inbox/carol/**", "exec"],
                  now=NOW + 1, ttl=600)
    c2 = verify(t2, CAROL)
    assert c2.grants == ("fs.write:inbox/carol/**", "exec") and c2.exp == NOW + 601
    assert [link.iss for link in c2.links] == [BOB.public_key, ALICE.public_key]
    t3 = delegate(t2, CAROL, audience=DAVE.public_key, grants=["fs.write:inbox/carol/*.txt"], now=NOW + 2,
                  ttl=None)
    c3 = verify(t3, DAVE)
    assert c3.grants == ("fs.write:inbox/carol/*.txt",) and c3.exp == NOW + 601
    assert c3.allows("fs.write", "inbox/carol/a.txt") and not c3.allows("fs.write", "inbox/carol/a.md")
    assert not c3.allows("exec")
    assert [link.id for link in c3.links] == [token_id(t1), token_id(t2), token_id(t3)]
    assert decode_chain(t3) == c3.links


def test_root_by_a_delegating_peer() -> None:
    t = root(issuer=CAROL)
    with pytest.raises(CapabilityError) as exc:
        verify(t, ALICE)
    assert kind_of(exc) == "not_issued_by_subject"
    assert verify(t, ALICE, may_delegate=lambda iss: iss == CAROL.public_key).grants


# ---------------------------------------------------------- broken chains


def expect(kind: str, token: bytes, caller: KeyPair = CAROL, **kw: Any) -> CapabilityError:
    with pytest.raises(CapabilityError) as exc:
        verify(token, caller, **kw)
    assert exc.value.kind == kind, exc.value
    return exc.value


def test_widened_grants() -> None:
    t1 = root(["fs.write:inbox/**"])
    for wider in (["fs.write:**"], ["fs.write:inbox/**", "exec"], ["fs.delete:inbox/x"], ["fs.write:inbox*"],
                  ["fs.write:*/carol"], ["fs.write:inbox/**", "fs.list:inbox"]):
        with pytest.raises(CapabilityError) as exc:
            delegate(t1, ALICE, audience=CAROL.public_key, grants=wider, now=NOW, ttl=60)
        assert kind_of(exc) == "widened"
        forged = raw_token(ALICE, aud=CAROL.public_key, grants=wider, prf=t1)
        assert expect("widened", forged).link == 1


def test_longer_expiry() -> None:
    t1 = root(ttl=100)
    with pytest.raises(CapabilityError) as exc:
        delegate(t1, ALICE, audience=CAROL.public_key, grants=["exec"], now=NOW, ttl=101)
    assert kind_of(exc) == "longer_expiry"
    expect("longer_expiry", raw_token(ALICE, aud=CAROL.public_key, exp=NOW + 101, prf=t1))
    expect("longer_expiry", raw_token(ALICE, aud=CAROL.public_key, nbf=NOW - 1, exp=NOW + 50, prf=t1))


def test_wrong_signer() -> None:
    t1 = root()
    # signed by someone other than its iss
    forged = raw_token(MALLORY, iss=ALICE.public_key, aud=CAROL.public_key, prf=t1)
    expect("wrong_signer", forged)
    # a child signed by a key the parent was not given to
    stolen = raw_token(MALLORY, aud=CAROL.public_key, prf=t1)
    assert expect("wrong_signer", stolen).link == 1
    # the kid header must name the issuer
    s1 = _cose.decode1(root())
    assert s1.kid == BOB.public_key
    with pytest.raises(CapabilityError) as exc:
        delegate(t1, CAROL, audience=DAVE.public_key, grants=["exec"], now=NOW, ttl=None)
    assert kind_of(exc) == "wrong_audience"


def test_wrong_audience() -> None:
    t2 = delegate(root(), ALICE, audience=CAROL.public_key, grants=["exec"], now=NOW, ttl=None)
    expect("wrong_audience", t2, DAVE)
    expect("wrong_audience", root(), CAROL)


def test_revoked_parent_kills_descendants(tmp_path: Path) -> None:
    t1 = root()
    t2 = delegate(t1, ALICE, audience=CAROL.public_key, grants=["exec"], now=NOW, ttl=None)
    t3 = delegate(t2, CAROL, audience=DAVE.public_key, grants=["exec"], now=NOW, ttl=None)
    revocations = RevocationList(tmp_path / "peers" / "bob" / "revoked.json")
    assert verify(t3, DAVE, revoked=revocations)
    revocations.revoke(t2)
    assert expect("revoked", t3, DAVE, revoked=revocations).link == 1
    assert expect("revoked", t2, CAROL, revoked=revocations).link == 1
    assert verify(t1, ALICE, revoked=revocations)
    # persisted and seen by another instance (another process)
    again = RevocationList(tmp_path / "peers" / "bob" / "revoked.json")
    assert again.is_revoked(token_id(t2)) and not again.is_revoked(token_id(t1))
    again.revoke(t1)
    assert revocations.is_revoked(token_id(t1))  # re-read after the file changed
    expect("revoked", t1, ALICE, revoked=revocations.is_revoked)
    data = json.loads((tmp_path / "peers" / "bob" / "revoked.json").read_text())
    assert sorted(data["revoked"]) == sorted([token_id(t1).hex(), token_id(t2).hex()])


def test_corrupt_revocation_list_refuses(tmp_path: Path) -> None:
    path = tmp_path / "revoked.json"
    path.write_text("{not json")
    with pytest.raises(CapabilityError):
        verify(root(), ALICE, revoked=RevocationList(path))


def test_expired_and_not_yet_valid_links() -> None:
    t1 = root(ttl=100)
    t2 = delegate(t1, ALICE, audience=CAROL.public_key, grants=["exec"], now=NOW + 50, ttl=10)
    assert verify(t2, CAROL, now=NOW + 55)
    assert expect("expired", t2, now=NOW + 61).link == 1
    assert expect("expired", t2, now=NOW + 101).link == 0
    assert expect("not_yet_valid", t2, now=NOW + 10).link == 1
    assert expect("not_yet_valid", t2, now=NOW - 1).link == 0
    assert verify(t2, CAROL, now=NOW + 60)  # exp itself is still valid


def test_chain_deeper_than_the_limit() -> None:
    keys = [ALICE] + [KeyPair.from_seed(bytes([40 + i]) * 32) for i in range(9)]
    token = root(to=keys[0])
    for holder, to in zip(keys, keys[1:]):
        token = delegate(token, holder, audience=to.public_key, grants=["exec"], now=NOW, ttl=None)
    # 10 links
    with pytest.raises(CapabilityError) as exc:
        verify(token, keys[-1])
    assert kind_of(exc) == "too_deep"
    assert len(verify(token, keys[-1], max_depth=10).links) == 10
    with pytest.raises(CapabilityError) as exc:
        verify(token, keys[-1], max_depth=9)
    assert kind_of(exc) == "too_deep"


def test_wrong_subject() -> None:
    t1 = root(issuer=CAROL, subject=CAROL)  # carol's own resources
    expect("wrong_subject", t1, ALICE)
    t2 = raw_token(ALICE, aud=CAROL.public_key, sub=CAROL.public_key, prf=root())
    assert expect("wrong_subject", t2).link == 1


def test_root_not_issued_by_subject() -> None:
    expect("not_issued_by_subject", raw_token(MALLORY), ALICE)


def test_envelopes_and_replies_are_not_capabilities() -> None:
    for typ in ("peerbox/exec", "peerbox/reply", None):
        token = raw_token(BOB, typ=typ)
        err = expect("bad_token", token, ALICE)
        assert "typ" in err.message
    expect("bad_token", raw_token(BOB, v=3), ALICE)
    expect("bad_token", raw_token(BOB, v=0), ALICE)
    expect("bad_token", raw_token(BOB, v=True), ALICE)
    expect("bad_token", raw_token(BOB, nbf=True), ALICE)
    expect("bad_token", raw_token(BOB, extra=1), ALICE)
    expect("bad_token", raw_token(BOB, nonce=b"short"), ALICE)
    expect("bad_token", raw_token(BOB, grants=["fs.write:../x"]), ALICE)
    expect("bad_token", raw_token(BOB, grants=[]), ALICE)
    expect("bad_token", raw_token(BOB, aud=bytes(32)), ALICE)
    expect("bad_token", raw_token(BOB, nbf=NOW + 10, exp=NOW), ALICE)
    expect("bad_token", raw_token(BOB, prf="text"), ALICE)
    expect("bad_token", b"\xd2\x80", ALICE)
    expect("bad_token", b"", ALICE)


def test_grant_refuses_bad_input() -> None:
    for grants in (["write:inbox"], ["fs.write"], ["exec:x"], ["fs.read:/abs"], ["fs.read:a//b"],
                   ["fs.read:a**"], ["fs.read:a/[b]"], ["fs.*:x"], ["*"], ["delegate"], ["fs.read:**/**"],
                   [7], [], "exec"):
        with pytest.raises(CapabilityError):
            grant(BOB, audience=ALICE.public_key, subject=BOB.public_key, grants=grants,  # type: ignore[arg-type]
                  now=NOW, ttl=10)
    with pytest.raises(CapabilityError):
        grant(BOB, audience=bytes(32), subject=BOB.public_key, grants=["exec"], now=NOW, ttl=10)
    with pytest.raises(CapabilityError):
        grant(BOB, audience=ALICE.public_key, subject=BOB.public_key, grants=["exec"], now=NOW, ttl=0)


# ------------------------------------------------------- grants in tokens


def test_token_grants_are_normalised_and_use_policy_globs() -> None:
    """``?`` is a glob (as in policies), patterns are NFC as request paths are."""
    t = root(["fs.read:inbox/?.txt", "fs.write:cafe\u0301/**"])
    chain = verify(t, ALICE)
    assert chain.grants == ("fs.read:inbox/?.txt", "fs.write:caf\u00e9/**")
    assert chain.allows("fs.read", "inbox/a.txt") and not chain.allows("fs.read", "inbox/ab.txt")
    assert chain.allows("fs.write", "caf\u00e9/x")
    t2 = delegate(t, ALICE, audience=CAROL.public_key, grants=["fs.write:caf\u00e9/in/**"], now=NOW, ttl=60)
    assert verify(t2, CAROL).allows("fs.write", "caf\u00e9/in/x")


def test_root_listing_cannot_be_gained_by_delegation() -> None:
    """Issue 12, finding 5: ``**`` matches the root ``""``, ``**/*`` does not, so ``fs.list:**``
    is wider than ``fs.list:**/*`` and must be refused (locally and when forged)."""
    t1 = root(["fs.list:**/*"])
    assert not verify(t1, ALICE).allows("fs.list", "")
    with pytest.raises(CapabilityError) as exc:
        delegate(t1, ALICE, audience=CAROL.public_key, grants=["fs.list:**"], now=NOW, ttl=60)
    assert kind_of(exc) == "widened"
    forged = raw_token(ALICE, aud=CAROL.public_key, grants=["fs.list:**"], prf=t1)
    assert expect("widened", forged).link == 1
    # what it does allow can still be passed on
    t2 = delegate(t1, ALICE, audience=CAROL.public_key, grants=["fs.list:a/**"], now=NOW, ttl=60)
    assert verify(t2, CAROL).allows("fs.list", "a") and not verify(t2, CAROL).allows("fs.list", "")


# ------------------------------------------------------------------ CLI


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="peerbox")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parsers(sub)
    args = parser.parse_args(list(argv))
    code: int = args.handler(args)
    return code


def test_parse_duration() -> None:
    assert [parse_duration(t) for t in ("30s", "10m", "1h", "7d", "90", "1h30m")] == [
        30, 600, 3600, 7 * 86400, 90, 5400]
    for bad in ("", "0s", "1y", "h", "-5m", "1.5h"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_duration(bad)


def test_cli_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = PeerStore(tmp_path / "root")
    bob, alice, carol = (store.init(n) for n in ("bob", "alice", "carol"))
    root_dir = str(store.root)
    cap, sub = str(tmp_path / "cap.cose"), str(tmp_path / "sub.cose")
    assert cli("cap", "grant", "--from", "bob", "--to", "alice", "--allow", "fs.write:inbox/**",
               "--allow", "exec", "--expires", "1h", "--root", root_dir, "-o", cap) == 0
    assert cli("cap", "delegate", cap, "--from", "alice", "--to", carol.did, "--allow",
               "fs.write:inbox/carol/**", "--expires", "30m", "--root", root_dir, "-o", sub) == 0
    capsys.readouterr()
    assert cli("cap", "inspect", sub, "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert [link["iss"] for link in info["links"]] == [bob.did, alice.did]
    assert info["links"][1]["aud"] == carol.did and info["links"][1]["grants"] == ["fs.write:inbox/carol/**"]
    assert info["valid"] is True
    assert cli("cap", "inspect", sub) == 0
    text = capsys.readouterr().out
    assert "fs.write:inbox/carol/**" in text and carol.did in text
    # widening is refused
    with pytest.raises(CapabilityError) as exc:
        cli("cap", "delegate", cap, "--from", "alice", "--to", "carol", "--allow", "fs.write:**",
            "--root", root_dir, "-o", str(tmp_path / "x.cose"))
    assert kind_of(exc) == "widened"
    # carol is no issuer in the chain of cap.cose: she may not revoke it
    with pytest.raises(CapabilityError):
        cli("cap", "revoke", cap, "--as", "carol", "--root", root_dir)
    assert cli("cap", "revoke", sub, "--as", "alice", "--root", root_dir) == 0
    assert RevocationList(alice.paths.dir / "revoked.json").is_revoked(token_id(Path(sub).read_bytes()))
    assert cli("cap", "revoke", cap, "--as", "bob", "--root", root_dir) == 0
    revoked = RevocationList(bob.paths.dir / "revoked.json")
    chain_token = Path(sub).read_bytes()
    with pytest.raises(CapabilityError) as exc:
        verify_chain(chain_token, caller=carol.public_key, subject=bob.public_key,
                     now=decode_chain(chain_token)[0].nbf, revoked=revoked)
    assert kind_of(exc) == "revoked"
    capsys.readouterr()
    assert cli("cap", "inspect", sub, "--json", "--root", root_dir) == 2
    assert json.loads(capsys.readouterr().out)["reason"]["kind"] == "revoked"


def test_cli_delegate_refuses_gaining_the_root_listing(tmp_path: Path) -> None:
    """Issue 12, finding 5 through ``peerbox cap delegate`` and verify_chain: a holder of
    ``fs.list:**/*`` cannot hand on ``fs.list:**`` (which also lists the root "")."""
    store = PeerStore(tmp_path / "root")
    bob, _, carol = (store.init(n) for n in ("bob", "alice", "carol"))
    root_dir, cap = str(store.root), str(tmp_path / "cap.cose")
    assert cli("cap", "grant", "--from", "bob", "--to", "alice", "--allow", "fs.list:**/*", "--expires", "1h",
               "--root", root_dir, "-o", cap) == 0
    with pytest.raises(CapabilityError) as exc:
        cli("cap", "delegate", cap, "--from", "alice", "--to", "carol", "--allow", "fs.list:**",
            "--root", root_dir, "-o", str(tmp_path / "wide.cose"))
    assert kind_of(exc) == "widened" and exc.value.exit_code == 2
    assert not (tmp_path / "wide.cose").exists()
    parent = Path(cap).read_bytes()
    nbf = decode_chain(parent)[0].nbf
    alice_key = store.get("alice").signing_key()
    forged = raw_token(alice_key, aud=carol.public_key, sub=bob.public_key, grants=["fs.list:**"], prf=parent,
                       nbf=nbf, exp=nbf + 60)
    with pytest.raises(CapabilityError) as exc:
        verify_chain(forged, caller=carol.public_key, subject=bob.public_key, now=nbf + 1, revoked=never)
    assert kind_of(exc) == "widened" and exc.value.link == 1


def test_cli_inspect_garbage(tmp_path: Path) -> None:
    path = tmp_path / "junk.cose"
    path.write_bytes(b"\xd2\x84junk")
    with pytest.raises(CapabilityError):
        cli("cap", "inspect", str(path))


# ------------------------------------------------------ versions (fs.write split)


def test_v1_token_fs_write_expands() -> None:
    """A token made before fs.append/fs.mkdir existed keeps meaning what it meant."""
    token = raw_token(BOB, grants=["fs.write:inbox/**", "fs.read:**"])
    (link,) = decode_chain(token)
    assert link.version == 1
    chain = verify(token, ALICE)
    assert chain.grants == ("fs.write:inbox/**", "fs.append:inbox/**", "fs.mkdir:inbox/**", "fs.read:**")
    assert chain.allows("fs.append", "inbox/a.log") and chain.allows("fs.mkdir", "inbox/d")
    assert not chain.allows("fs.append", "outbox/a.log")


def test_new_tokens_are_v2_and_narrow() -> None:
    token = root(["fs.write:inbox/**"])
    (link,) = decode_chain(token)
    assert link.version == 2 and _cose.decode1(token).payload["v"] == 2
    chain = verify(token, ALICE)
    assert chain.grants == ("fs.write:inbox/**",)
    assert chain.allows("fs.write", "inbox/a.txt")
    assert not chain.allows("fs.append", "inbox/a.txt") and not chain.allows("fs.mkdir", "inbox/d")


def test_delegating_fs_append_from_a_v1_fs_write_parent_is_within() -> None:
    parent = raw_token(BOB, grants=["fs.write:inbox/**"])
    child = delegate(parent, ALICE, audience=CAROL.public_key, grants=["fs.append:inbox/carol.log"],
                     now=NOW + 1)
    links = decode_chain(child)
    assert [link.version for link in links] == [1, 2]
    chain = verify(child, CAROL)
    assert chain.allows("fs.append", "inbox/carol.log") and not chain.allows("fs.write", "inbox/carol.log")
    # the legacy expansion does not make a v1 token an inch wider than fs.write+append+mkdir
    with pytest.raises(CapabilityError) as exc:
        delegate(parent, ALICE, audience=CAROL.public_key, grants=["fs.delete:inbox/x"], now=NOW + 1)
    assert kind_of(exc) == "widened"


def test_v2_child_cannot_widen_to_mkdir_from_a_v2_fs_write_parent() -> None:
    parent = root(["fs.write:inbox/**"])
    for wider in ("fs.mkdir:inbox/d", "fs.append:inbox/a.log"):
        with pytest.raises(CapabilityError) as exc:
            delegate(parent, ALICE, audience=CAROL.public_key, grants=[wider], now=NOW + 1)
        assert kind_of(exc) == "widened"
    # nor by signing such a child by hand: the verifier refuses it
    forged = _cose.sign1({
        "v": 2, "typ": "peerbox/cap", "iss": ALICE.public_key, "aud": CAROL.public_key,
        "sub": BOB.public_key, "grants": ["fs.mkdir:inbox/d"], "nbf": NOW, "exp": NOW + 3600,
        "nonce": secrets.token_bytes(16), "prf": parent}, ALICE)
    with pytest.raises(CapabilityError) as exc:
        verify(forged, CAROL)
    assert kind_of(exc) == "widened"


def test_a_v1_token_still_counts_its_grants_as_written() -> None:
    """64 legacy fs.write grants expand to 192 but the token is within the limit it was made under."""
    grants = [f"fs.write:d{i}/**" for i in range(64)]
    chain = verify(raw_token(BOB, grants=grants), ALICE)
    assert len(chain.grants) == 192
    expect("bad_token", raw_token(BOB, grants=[*grants, "exec"]), ALICE)


def test_a_capability_may_grant_a_call_of_one_published_function() -> None:
    chain = verify(root(["call:inbox::deliver", "fs.append:inbox/carol.log"]), ALICE)
    assert chain.allows("call", "inbox::deliver") and not chain.allows("call", "inbox::purge")
    assert chain.allows("fs.append", "inbox/carol.log") and not chain.allows("fs.write", "inbox/carol.log")
    with pytest.raises(CapabilityError):
        root(["call"])  # a call grant names its functions
