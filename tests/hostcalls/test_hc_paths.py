"""The path rules, one table row per rule, and every rule through every op of both backends."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from peerbox.hostcalls import (
    MAX_NAME_BYTES,
    MAX_PATH_BYTES,
    TEMP_PREFIX,
    Backend,
    Dispatch,
    HostCallError,
    Op,
    parse_path,
)

# (path, expected components)
VALID = [
    ("", ()),
    ("a", ("a",)),
    ("a/b/c.txt", ("a", "b", "c.txt")),
    (".hidden", (".hidden",)),
    ("...", ("...",)),
    ("..a", ("..a",)),
    ("a..", ("a..",)),
    ("a b", ("a b",)),
    ("back\\slash", ("back\\slash",)),  # not a separator on POSIX
    ("peerbox-tmp-x", ("peerbox-tmp-x",)),  # the reserved prefix has a leading dot
    ("x.peerbox-tmp-", ("x.peerbox-tmp-",)),
    ("\u00e9t\u00e9", ("\u00e9t\u00e9",)),
    ("e\u0301", ("\u00e9",)),  # NFD -> NFC
    ("\u212b", ("\u00c5",)),  # ANGSTROM SIGN -> A WITH RING
    ("\u00a0nbsp", ("\u00a0nbsp",)),  # U+00A0 is not a C1 control
    ("x" * MAX_NAME_BYTES, ("x" * MAX_NAME_BYTES,)),
    ("\u00e9" * (MAX_NAME_BYTES // 2), ("\u00e9" * (MAX_NAME_BYTES // 2),)),
    # 300 bytes as NFD but 200 as NFC: lengths are measured after normalisation
    ("e\u0301" * 100, ("\u00e9" * 100,)),
    ("/".join(["x" * 200] * 5) + "/" + "y" * 19, tuple(["x" * 200] * 5 + ["y" * 19])),  # 1024 bytes
]

ESCAPE = "path escapes the peer root: "

# (path, exact message, or "invalid path …" to match only the start)
INVALID = [
    # absolute
    ("/", ESCAPE + "/ (absolute paths are not allowed)"),
    ("/etc/passwd", ESCAPE + "/etc/passwd (absolute paths are not allowed)"),
    ("//x", ESCAPE + "//x (absolute paths are not allowed)"),
    # .. climbing out
    ("..", ESCAPE + ".."),
    ("../x", ESCAPE + "../x"),
    ("a/../../x", ESCAPE + "a/../../x"),
    ("a/../..", ESCAPE + "a/../.."),
    ("./../x", ESCAPE + "./../x"),
    ("../peers/bob/files/secret.txt", ESCAPE + "../peers/bob/files/secret.txt"),
    # .. and . that stay inside: refused anyway (one spelling per entry)
    ("a/../b", "invalid path 'a/../b': '..' components are not allowed"),
    ("a/..", "invalid path 'a/..': '..' components are not allowed"),
    (".", "invalid path '.': '.' components are not allowed"),
    ("./a", "invalid path './a': '.' components are not allowed"),
    ("a/./b", "invalid path 'a/./b': '.' components are not allowed"),
    ("a/.", "invalid path 'a/.': '.' components are not allowed"),
    # empty components
    ("a//b", "invalid path 'a//b': empty component"),
    ("a/", "invalid path 'a/': empty component"),
    ("a/b/", "invalid path 'a/b/': empty component"),
    # control characters: C0, DEL, C1
    ("\x00", "invalid path '\\x00': control character U+0000"),
    ("a\x00b", "invalid path 'a\\x00b': control character U+0000"),
    ("a/b\x00", "invalid path 'a/b\\x00': control character U+0000"),
    ("a\nb", "invalid path 'a\\nb': control character U+000A"),
    ("tab\there", "invalid path 'tab\\there': control character U+0009"),
    ("\x1f", "invalid path '\\x1f': control character U+001F"),
    ("del\x7f", "invalid path 'del\\x7f': control character U+007F"),
    ("c1\x80", "invalid path 'c1\\x80': control character U+0080"),
    ("c1\x9b[2J", "invalid path 'c1\\x9b[2J': control character U+009B"),
    ("c1\x9f", "invalid path 'c1\\x9f': control character U+009F"),
    ("../\x00", "invalid path '../\\x00': control character U+0000"),
    # lengths
    ("x" * (MAX_NAME_BYTES + 1), f"invalid path '{'x' * 120}…': a component is longer than 255 bytes"),
    ("a/" + "\u00e9" * 128, "invalid path …"),  # 256 bytes of UTF-8 in 128 characters
    ("/".join(["x" * 200] * 5) + "/" + "y" * 20, "invalid path …"),  # 1025 bytes
    ("a/" * 600 + "a", "invalid path …"),
    # the reserved temporary-file prefix, anywhere, any case
    (
        TEMP_PREFIX + "abc",
        f"invalid path '{TEMP_PREFIX}abc': names starting with '{TEMP_PREFIX}' are reserved",
    ),
    ("a/" + TEMP_PREFIX + "x/b", "invalid path …"),
    (TEMP_PREFIX, "invalid path …"),
    (TEMP_PREFIX.upper() + "x", "invalid path …"),
    ("d/.Peerbox-Tmp-1", "invalid path …"),
    # not Unicode
    ("\ud800", "invalid path '\\ud800': not valid Unicode"),
    ("a/\udcff", "invalid path 'a/\\udcff': not valid Unicode"),
]


@pytest.mark.parametrize(("path", "expected"), VALID, ids=[repr(p)[:40] for p, _ in VALID])
def test_valid_paths(path: str, expected: tuple[str, ...]) -> None:
    parts = parse_path(path)
    assert parts == expected
    for name in parts:
        assert unicodedata.is_normalized("NFC", name)


def _check_message(exc: HostCallError, expected: str) -> None:
    """Exact match, or a prefix match for rows written ``"invalid path …"``."""
    if expected.endswith(" …"):
        assert exc.message.startswith(expected[:-1]), exc.message
    else:
        assert exc.message == expected


@pytest.mark.parametrize(("path", "expected"), INVALID, ids=[repr(p)[:40] for p, _ in INVALID])
def test_invalid_paths(path: str, expected: str) -> None:
    with pytest.raises(HostCallError) as info:
        parse_path(path)
    assert info.value.kind == "invalid_path"
    _check_message(info.value, expected)


def test_length_limits_are_bytes_after_nfc() -> None:
    assert MAX_PATH_BYTES == 1024 and MAX_NAME_BYTES == 255
    with pytest.raises(HostCallError, match="longer than 1024 bytes"):
        parse_path("/".join(["x" * 200] * 5) + "/" + "y" * 20)
    with pytest.raises(HostCallError, match="component is longer than 255 bytes"):
        parse_path("\u00e9" * 128)
    # 1100 bytes as NFD, 825 as NFC: accepted
    assert len(parse_path("/".join(["e\u0301" * 50] * 5 + ["a" * 25]))) == 6


@pytest.mark.parametrize("value", [1, None, b"a", ["a"], 1.5, True])
def test_non_string_path_is_invalid_argument(value: object) -> None:
    with pytest.raises(HostCallError) as info:
        parse_path(value)
    assert info.value.kind == "invalid_argument"


def _refusing_calls(path: str) -> list[tuple[Op, list[object]]]:
    return [
        (Op.READ, [path]),
        (Op.READ_BYTES, [path]),
        (Op.WRITE, [path, "x"]),
        (Op.WRITE_BYTES, [path, b"x"]),
        (Op.APPEND, [path, "x"]),
        (Op.LIST, [path]),
        (Op.EXISTS, [path]),
        (Op.DELETE, [path]),
        (Op.MKDIR, [path]),
        (Op.STAT, [path]),
    ]


@pytest.mark.parametrize(
    "path",
    ["../x", "/etc/passwd", "a/../b", "./x", "a//b", "a/", "a\x00b", "a\x85", "x" * 256, TEMP_PREFIX + "1"],
)
def test_every_op_refuses_invalid_paths_on_both_backends(
    path: str, backend: Backend, tmp_path: Path, snapshot: object
) -> None:
    backend.mkdir("a")
    backend.write_bytes("a/b", b"inside")
    dispatch = Dispatch(backend)
    before = backend.usage()
    for op, args in _refusing_calls(path):
        with pytest.raises(HostCallError) as info:
            dispatch.call(op, args)
        assert info.value.kind == "invalid_path", (op, info.value)
    assert backend.usage() == before
    assert backend.list_dir("") == ["a"]
    assert backend.list_dir("a") == ["b"]
    assert backend.read_bytes("a/b") == b"inside"


def test_nfc_is_applied_once_and_names_one_entry(backend: Backend) -> None:
    nfd, nfc = "cafe\u0301.txt", "caf\u00e9.txt"
    backend.write_bytes(nfd, b"1")
    assert backend.read_bytes(nfc) == b"1"
    backend.write_bytes(nfc, b"2")
    assert backend.read_bytes(nfd) == b"2"
    assert backend.list_dir("") == [nfc]
    assert backend.usage() == (1, 1)
