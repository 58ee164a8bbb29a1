"""policy._didkey: did:key syntax without crypto, agreeing with the identity module; no nacl in policy."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

import peerbox
from peerbox.policy import _didkey
from peerbox.policy._didkey import (
    DID_KEY_PREFIX,
    DidSyntaxError,
    b58decode,
    b58encode,
    did_from_key_bytes,
    key_bytes_from_did,
)

try:  # the identity module's home while runtime moves into sub-packages
    from peerbox.wire import _identity as identity
except ImportError:  # pragma: no cover - the flat layout
    from peerbox import _identity as identity  # type: ignore[no-redef]


def test_a_real_did_decodes_to_its_key() -> None:
    kp = peerbox.KeyPair.from_seed(b"\7" * 32)
    assert kp.did.startswith("did:key:z6Mk") and len(kp.did) == 56
    assert key_bytes_from_did(kp.did) == kp.public_key
    assert did_from_key_bytes(kp.public_key) == kp.did


@pytest.mark.parametrize(
    ("did", "reason"),
    [
        (42, "type"),
        ("did:web:example.com", "prefix"),
        ("did:key:m6Mk", "prefix"),
        ("did:key:z" + "1" * 60, "length"),
        ("did:key:zNOTAKEY", "alphabet"),
        ("did:key:z6Mk0", "alphabet"),
        ("did:key:z" + b58encode(b"\xec\x01" + b"\1" * 32), "multicodec"),
        ("did:key:z" + b58encode(b"\xed\x01" + b"\1" * 31), "length"),
        ("did:key:z" + b58encode(b"\xed\x01" + b"\1" * 33), "length"),
    ],
)
def test_syntax_errors_have_the_identity_modules_reasons(did: object, reason: str) -> None:
    with pytest.raises(DidSyntaxError) as info:
        key_bytes_from_did(did)
    assert info.value.reason == reason
    with pytest.raises(identity.InvalidDid) as info2:
        identity.public_key_from_did(did)  # type: ignore[arg-type]
    assert info2.value.reason == reason
    assert str(info.value) == str(info2.value)


def test_a_long_did_is_cut_in_messages() -> None:
    with pytest.raises(DidSyntaxError) as info:
        key_bytes_from_did("did:key:z" + "x" * 500)
    assert len(str(info.value)) < 200 and "…" in str(info.value)


def test_syntax_only_the_curve_is_not_checked_here() -> None:
    zero = DID_KEY_PREFIX + b58encode(b"\xed\x01" + bytes(32))
    assert key_bytes_from_did(zero) == bytes(32)  # identity refuses it: that needs the curve
    with pytest.raises(identity.InvalidDid):
        identity.public_key_from_did(zero)


@given(st.binary(min_size=32, max_size=32))
def test_round_trip(key: bytes) -> None:
    assert key_bytes_from_did(did_from_key_bytes(key)) == key


@given(st.binary(max_size=64))
def test_base58_round_trip_and_same_as_identity(data: bytes) -> None:
    assert b58decode(b58encode(data)) == data
    assert b58encode(data) == identity.b58encode(data)


@given(st.text(max_size=70) | st.builds(lambda s: DID_KEY_PREFIX + s, st.text(max_size=60)))
def test_agrees_with_the_identity_module(text: str) -> None:
    """Whatever identity accepts decodes here to the same key; whatever is refused here for its
    syntax, identity refuses for the same reason."""
    try:
        key = key_bytes_from_did(text)
    except DidSyntaxError as exc:
        with pytest.raises(identity.InvalidDid) as info:
            identity.public_key_from_did(text)
        assert info.value.reason == exc.reason
        return
    try:
        assert identity.public_key_from_did(text) == key
    except identity.InvalidDid as exc:  # only the curve checks are identity's alone
        assert exc.reason in ("all_zero", "small_order", "invalid_point")


def test_policy_modules_import_no_crypto_runtime_or_wasmtime() -> None:
    """peerbox.policy's own imports (with a bare ``peerbox`` package, whatever its facade loads)."""
    spec = importlib.util.find_spec("peerbox")
    assert spec is not None and spec.submodule_search_locations is not None
    code = textwrap.dedent(f"""
        import sys, types
        pkg = types.ModuleType("peerbox")
        pkg.__path__ = {list(spec.submodule_search_locations)!r}
        sys.modules["peerbox"] = pkg
        import peerbox.policy
        from peerbox.policy import loads
        loads('version = 1\\n[[rule]]\\neffect = "allow"\\nwho = ["{_didkey.DID_KEY_PREFIX}'
              '6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"]\\nactions = ["exec"]\\n', "p.toml")
        heavy = sorted(m for m in sys.modules
                       if m.split(".")[0] in ("nacl", "wasmtime", "trio", "h2", "cbor2"))
        print(",".join(heavy))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
