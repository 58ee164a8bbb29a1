"""did:key identities: known vectors, base58, strict decoding, refused keys, key pairs."""

from __future__ import annotations

import pickle

import nacl.bindings
import pytest
from hypothesis import given
from hypothesis import strategies as st

from peerbox._errors import UsageError
from peerbox.policy import b58decode, b58encode
from peerbox.wire._identity import (
    SMALL_ORDER_POINTS,
    IdentityError,
    InvalidDid,
    InvalidPublicKey,
    KeyPair,
    did_from_public_key,
    public_key_from_did,
    validate_public_key,
    verify,
)

# The Ed25519 vectors of the did:key spec's test suite
# (w3c-ccg/did-method-key, test-vectors/ed25519-x25519.json): seed -> did, and
# the public key in plain base58 (publicKeyBase58).
DID_KEY_VECTORS = [
    ("00" * 32, "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
     "4zvwRjXUKGfvwnParsHAS3HuSVzV5cA4McphgmoCtajS"),
    ("00" * 31 + "01", "did:key:z6MkjchhfUsD6mmvni8mCdXHw216Xrm9bQe2mBH1P5RDjVJG",
     "6ASf5EcmmEHTgDJ4X4ZT5vT6iHVJBXPg5AN5YoTCpGWt"),
    ("00" * 31 + "02", "did:key:z6MknGc3ocHs3zdPiJbnaaqDi58NGb4pk1Sp9WxWufuXSdxf",
     "8pM1DN3RiT8vbom5u1sNryaNT1nyL8CTTW3b5PwWXRBH"),
    ("00" * 31 + "03", "did:key:z6MkvqoYXQfDDJRv8L4wKzxYeuKyVZBfi9Qo6Ro8MiLH3kDQ",
     "HPYVwAQmskwT1qEEeRzhoomyfyupJGASQQtCXSNG8XS2"),
    ("00" * 31 + "04", "did:key:z6MkwW6aqMnjgrhJXFUko3NnZPGzVpkNzhYK7yEhnsibmLwL",
     "J3qYF7YJMKCqQke47UQwiHizgFUXapHxRxKmxbkar89x"),
]
GOOD = DID_KEY_VECTORS[0][1]

# Bitcoin's base58 test vectors (hex -> base58).
B58_VECTORS = [
    ("", ""),
    ("61", "2g"),
    ("626262", "a3gV"),
    ("636363", "aPEr"),
    ("73696d706c792061206c6f6e6720737472696e67", "2cFupjhnEsSn59qHXstmK2ffpLv2"),
    ("00eb15231dfceb60925886b67d065299925915aeb172c06647", "1NS17iag9jJgTHD1VXjvLCEnZuQ3rJDE9L"),
    ("516b6fcd0f", "ABnLTmg"),
    ("bf4f89001e670274dd", "3SEo3LWLoPntC"),
    ("572e4794", "3EFU7m"),
    ("ecac89cad93923c02321", "EJDM8drfXA6uyA"),
    ("10c8511e", "Rt5zm"),
    ("00000000000000000000", "1111111111"),
]


def did_of_raw(raw: bytes) -> str:
    """A did:key of arbitrary bytes (no validation), to build hostile inputs."""
    return "did:key:z" + b58encode(raw)


# ------------------------------------------- independent curve arithmetic
# A slow, textbook edwards25519 (RFC 8032 §5.1) to check the small-order
# list without trusting libsodium or the module under test.

P = 2**255 - 19
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
Point = tuple[int, int]


def decompress(enc: bytes) -> Point | None:
    y = int.from_bytes(enc, "little") & ((1 << 255) - 1)
    sign = enc[31] >> 7
    if y >= P:
        return None
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = (u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P)) % P
    if (v * x * x - u) % P != 0:
        x = x * SQRT_M1 % P
        if (v * x * x - u) % P != 0:
            return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = P - x
    return (x, y)


def add(a: Point, b: Point) -> Point:
    (x1, y1), (x2, y2) = a, b
    t = D * x1 * x2 * y1 * y2 % P
    x3 = (x1 * y2 + x2 * y1) * pow(1 + t, P - 2, P) % P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, P - 2, P) % P
    return (x3, y3)


def order_if_small(pt: Point) -> int | None:
    q, n = pt, 1
    while q != (0, 1):
        if n == 8:
            return None
        q, n = add(q, pt), n + 1
    return n


# ------------------------------------------------------------------ tests


@pytest.mark.parametrize("seed_hex, did, pub_b58", DID_KEY_VECTORS)
def test_did_key_spec_vectors(seed_hex: str, did: str, pub_b58: str) -> None:
    pair = KeyPair.from_seed(bytes.fromhex(seed_hex))
    assert b58encode(pair.public_key) == pub_b58
    assert b58decode(pub_b58) == pair.public_key
    assert pair.did == did == did_from_public_key(pair.public_key)
    assert public_key_from_did(did) == pair.public_key
    assert did.startswith("did:key:z6Mk") and len(did) == 56


def test_rfc8032_test_1() -> None:
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    pair = KeyPair.from_seed(seed)
    assert pair.public_key.hex() == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    sig = pair.sign(b"")
    assert sig.hex() == (
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46b"
        "d25bf5f0595bbe24655141438e7a100b"
    )
    assert verify(pair.public_key, b"", sig)


@pytest.mark.parametrize("hex_data, text", B58_VECTORS)
def test_base58_vectors(hex_data: str, text: str) -> None:
    assert b58encode(bytes.fromhex(hex_data)) == text
    assert b58decode(text) == bytes.fromhex(hex_data)


@given(st.binary(max_size=80))
def test_base58_round_trip(data: bytes) -> None:
    assert b58decode(b58encode(data)) == data


@pytest.mark.parametrize("bad", ["0", "O", "I", "l", "abc ", "a+b", "é", "\x00", "1\n"])
def test_base58_refuses_characters_outside_the_alphabet(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid base58 character"):
        b58decode(bad)


def test_base58_refuses_huge_input() -> None:
    with pytest.raises(ValueError, match="too long"):
        b58decode("2" * 5000)


@given(st.binary(min_size=32, max_size=32))
def test_round_trip_for_any_seed(seed: bytes) -> None:
    pair = KeyPair.from_seed(seed)
    assert public_key_from_did(pair.did) == pair.public_key
    assert KeyPair.from_seed(seed).did == pair.did


def test_generated_keys_differ() -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    assert a.did != b.did and a != b
    assert a == KeyPair.from_seed(a.secret_seed())


@pytest.mark.parametrize(
    "did, reason",
    [
        ("did:web:example.com", "prefix"),
        ("did:key:" + GOOD[9:], "prefix"),  # no multibase prefix
        ("did:key:m7QFZmF1bHQ", "prefix"),  # base64 multibase
        ("DID:KEY:" + GOOD[8:], "prefix"),
        (" " + GOOD, "prefix"),
        ("did:key:", "prefix"),
        ("did:key:z", "multicodec"),
        (GOOD + "#key-1", "alphabet"),  # fragments are not part of a did
        (GOOD + "?s=1", "alphabet"),
        (GOOD + "\n", "alphabet"),
        (GOOD[:20] + "0" + GOOD[21:], "alphabet"),
        (GOOD[:20] + "l" + GOOD[21:], "alphabet"),
        (GOOD + "x" * 40, "length"),
        # the x25519 key-agreement key of the same spec vector: multicodec 0xec01
        ("did:key:z6LShs9GGnqk85isEBzzshkuVWrVKsRp24GnDuHk8QWkARMW", "multicodec"),
        (did_of_raw(b"\xe7\x01" + bytes(range(1, 34))), "multicodec"),  # secp256k1-pub
        (did_of_raw(b"\xed\x01" + bytes(range(1, 32))), "length"),  # 31 key bytes
        (did_of_raw(b"\xed\x01" + bytes(range(1, 34))), "length"),  # 33 key bytes
        (did_of_raw(b"\xed\x01" + bytes(32)), "all_zero"),
        (did_of_raw(b"\xed"), "multicodec"),
    ],
)
def test_decode_refuses(did: str, reason: str) -> None:
    with pytest.raises(InvalidDid) as info:
        public_key_from_did(did)
    assert info.value.reason == reason, str(info.value)
    assert str(info.value).startswith("invalid did")


def test_one_character_less_is_refused() -> None:
    with pytest.raises(InvalidDid):
        public_key_from_did(GOOD[:-1])


@pytest.mark.parametrize("value", [None, b"did:key:z", 42])
def test_decode_refuses_non_strings(value: object) -> None:
    with pytest.raises(InvalidDid, match="must be a string"):
        public_key_from_did(value)  # type: ignore[arg-type]


def test_small_order_list_is_the_torsion_subgroup() -> None:
    points = [decompress(p) for p in SMALL_ORDER_POINTS]
    assert all(pt is not None for pt in points)
    orders = sorted(order_if_small(pt) or 0 for pt in points if pt is not None)
    assert orders == [1, 2, 4, 4, 8, 8, 8, 8]
    assert len(set(points)) == 8


@pytest.mark.parametrize("point", SMALL_ORDER_POINTS, ids=lambda p: p.hex()[:8] + "…" + p.hex()[-2:])
def test_small_order_points_are_refused(point: bytes) -> None:
    expected = "all_zero" if not any(point) else "small_order"
    with pytest.raises(InvalidPublicKey) as info:
        validate_public_key(point)
    assert info.value.reason == expected
    with pytest.raises(InvalidDid) as info2:
        public_key_from_did(did_of_raw(b"\xed\x01" + point))
    assert info2.value.reason == expected
    with pytest.raises(InvalidPublicKey):
        did_from_public_key(point)


@pytest.mark.parametrize(
    "enc",
    [
        # y = p (≡ 0) and y = p + 1 (≡ 1), with and without the sign bit;
        # the identity with a "negative zero" x
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "0100000000000000000000000000000000000000000000000000000000000080",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    ],
)
def test_non_canonical_small_order_aliases_are_refused(enc: str) -> None:
    with pytest.raises(InvalidPublicKey) as info:
        validate_public_key(bytes.fromhex(enc))
    assert info.value.reason == "small_order"


def test_point_off_the_curve_is_refused() -> None:
    y = next(y for y in range(2, 100) if decompress(y.to_bytes(32, "little")) is None)
    with pytest.raises(InvalidPublicKey) as info:
        validate_public_key(y.to_bytes(32, "little"))
    assert info.value.reason == "invalid_point"


def test_point_with_a_torsion_component_is_refused() -> None:
    good = KeyPair.from_seed(bytes(32)).public_key
    mixed = nacl.bindings.crypto_core_ed25519_add(good, SMALL_ORDER_POINTS[4])
    assert decompress(mixed) is not None  # on the curve, just not in the prime-order subgroup
    with pytest.raises(InvalidPublicKey) as info:
        validate_public_key(mixed)
    assert info.value.reason == "invalid_point"


@pytest.mark.parametrize("key", [b"", bytes(31), bytes(33), b"\x01" * 64])
def test_wrong_key_sizes_are_refused(key: bytes) -> None:
    with pytest.raises(InvalidPublicKey) as info:
        validate_public_key(key)
    assert info.value.reason == "length"


def test_errors_are_usage_errors() -> None:
    assert issubclass(InvalidDid, IdentityError) and issubclass(InvalidPublicKey, IdentityError)
    assert issubclass(IdentityError, UsageError) and IdentityError.exit_code == 2


@given(st.text(max_size=120))
def test_decode_of_any_text_is_a_key_or_invalid_did(text: str) -> None:
    try:
        key = public_key_from_did(text)
    except InvalidDid:
        return
    assert did_from_public_key(key) == text  # only the canonical spelling decodes


@given(st.binary(min_size=34, max_size=34))
def test_decode_of_any_34_bytes(raw: bytes) -> None:
    try:
        key = public_key_from_did(did_of_raw(raw))
    except InvalidDid:
        return
    assert raw[:2] == b"\xed\x01" and key == raw[2:]


def test_sign_and_verify() -> None:
    pair = KeyPair.generate()
    sig = pair.sign(b"hello")
    assert len(sig) == 64
    assert pair.verify(b"hello", sig) and verify(pair.public_key, b"hello", sig)
    assert not verify(pair.public_key, b"hellO", sig)
    assert not verify(pair.public_key, b"hello", sig[:-1])
    assert not verify(pair.public_key, b"hello", bytes(64))
    assert not verify(KeyPair.generate().public_key, b"hello", sig)
    with pytest.raises(InvalidPublicKey):
        verify(SMALL_ORDER_POINTS[0], b"hello", sig)


def test_secret_stays_inside() -> None:
    pair = KeyPair.from_seed(bytes(range(32)))
    secret = bytes(range(32))
    for text in (repr(pair), str(pair), f"{pair}"):
        assert pair.did in text
        assert secret.hex() not in text and repr(secret) not in text
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(pair)
    assert pair.secret_seed() == secret


@pytest.mark.parametrize("seed", [b"", bytes(31), bytes(33), "00" * 32])
def test_from_seed_refuses_wrong_seeds(seed: object) -> None:
    with pytest.raises(IdentityError, match="32 bytes"):
        KeyPair.from_seed(seed)  # type: ignore[arg-type]


def test_the_did_syntax_is_policys_and_only_the_curve_checks_are_added_here() -> None:
    import peerbox.policy
    import peerbox.wire._identity as identity

    import peerbox.wire
    from peerbox.policy import _didkey

    # one implementation of base58 and of the did:key syntax, exported by policy alone: the identity
    # module and the wire export only what they add (PUBLIC_KEY_SIZE, policy's own, states their checks)
    syntax_names = set(_didkey.__all__)
    assert syntax_names <= set(peerbox.policy.__all__)
    assert set(identity.__all__) & syntax_names == {"PUBLIC_KEY_SIZE"}
    assert set(peerbox.wire.__all__) & syntax_names == {"PUBLIC_KEY_SIZE"}
    assert identity.PUBLIC_KEY_SIZE is peerbox.policy.PUBLIC_KEY_SIZE
    # a did whose syntax is fine but whose key is a small-order point: policy takes it, identity not
    bad = peerbox.policy.did_from_key_bytes(SMALL_ORDER_POINTS[1])
    assert peerbox.policy.key_bytes_from_did(bad) == SMALL_ORDER_POINTS[1]
    with pytest.raises(InvalidDid) as info:
        public_key_from_did(bad)
    assert info.value.reason == "small_order"
    assert isinstance(info.value.__cause__, InvalidPublicKey)
    with pytest.raises(InvalidDid) as syntax:
        public_key_from_did("did:web:example.com")
    assert syntax.value.reason == "prefix"
    assert isinstance(syntax.value.__cause__, peerbox.policy.DidSyntaxError)
