"""Hostile config files never reach exit 1 (issue 12): peer.toml, peers.toml, policy.toml.

The TOML files a user or a peer controls are parsed through
``peerbox.policy._toml.loads_bounded``: nesting deeper than
``MAX_TOML_DEPTH`` levels and dotted keys of more than ``MAX_KEY_PARTS`` parts
are refused before tomllib could recurse (``RecursionError``) or work
quadratically, sizes are capped, and every refusal is the file's own typed
error (exit 2) naming the file. The commands run in-process through the real
CLI entry point (``peerbox.cli._main.main``), on files a hypothesis strategy
writes: deep nesting around and far past the limit, long dotted keys,
random bytes, invalid UTF-8, oversized files, and near-valid files with a
hostile line added.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import peerbox
from peerbox.policy import PolicyCache, PolicyError
from peerbox.policy import Request as PolicyRequest
from peerbox.policy import load as load_policy
from peerbox.policy._toml import MAX_KEY_PARTS, MAX_TOML_DEPTH, TomlTooComplex, loads_bounded

Cli = Callable[..., Any]

DID = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
DEEP = 100_000
_CAPS = {"peer.toml": 1 << 20, "policy.toml": 1 << 20, "peers.toml": 4 << 20}


class World:
    """A root with peer alice (policy and metadata as ``init`` wrote them) and a script."""

    def __init__(self, base: Path) -> None:
        self.root = base / "root"
        self.store = peerbox.PeerStore(self.root)
        self.peer = self.store.init("alice")
        self.script = base / "job.rhai"
        self.script.write_text("40 + 2\n")
        self.files = {
            "peer.toml": self.peer.paths.meta,
            "policy.toml": self.peer.paths.policy,
            "peers.toml": self.root / "peers.toml",
        }
        (self.root / "peers.toml").write_text(f'[peers.bob]\ndid = "{DID}"\nurl = "http://127.0.0.1:7700"\n')
        self.original = {name: path.read_bytes() for name, path in self.files.items()}

    def commands(self, name: str) -> list[tuple[str, ...]]:
        """The CLI commands that read file ``name``."""
        root = ("--root", str(self.root))
        if name == "peers.toml":
            return [("directory", "list", *root),
                    ("directory", "add", "carol", DID, "http://127.0.0.1:7701", *root)]
        cmds = [("peers", *root), ("peers", "--json", *root), ("policy", "check", "alice", *root),
                ("run", str(self.script), "--peer", "alice", *root)]
        return cmds

    def restore(self) -> None:
        for name, path in self.files.items():
            path.write_bytes(self.original[name])


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def check_no_bug(cli: Cli, world: World, name: str, data: bytes) -> list[tuple[tuple[str, ...], Any]]:
    """Write ``data`` as file ``name``, run every command reading it; none may exit 1 or trace back.

    Returns each command's argv and result (``code``, ``out``, ``err``).
    """
    world.files[name].write_bytes(data)
    results = []
    try:
        for argv in world.commands(name):
            r = cli(*argv)
            assert r.code != 1, (argv, r.err[-2000:])
            assert "Traceback" not in r.err and "internal error" not in r.err, (argv, r.err[-2000:])
            results.append((argv, r))
    finally:
        world.restore()
    return results


# ------------------------------------------------------------------ strategies

def _nest(opens: str, closes: str, n: int, inner: str = "1") -> str:
    return opens * n + inner + closes * n


_depth = st.one_of(st.integers(MAX_TOML_DEPTH - 2, MAX_TOML_DEPTH + 2), st.sampled_from([200, 1000, DEEP]))
_parts = st.one_of(st.integers(MAX_KEY_PARTS - 2, MAX_KEY_PARTS + 2), st.sampled_from([500, 20_000]))

_hostile_line = st.one_of(
    _depth.map(lambda n: "k = " + _nest("[", "]", n)),
    _depth.map(lambda n: "k = " + _nest("{a = ", "}", n)),
    _depth.map(lambda n: "k = " + _nest("[{a = ", "}]", n)),
    _depth.map(lambda n: "k = " + "[" * n),  # unclosed
    _parts.map(lambda n: ".".join(["a"] * n) + " = 1"),
    _parts.map(lambda n: "[" + ".".join(["t"] * n) + "]"),
    _parts.map(lambda n: "[[" + ".".join(["t"] * n) + "]]"),
    _parts.map(lambda n: "k = {" + ".".join(["a"] * n) + " = 1}"),
    _depth.map(lambda n: 'k = "' + "[" * 50 + '" \n' + "j = " + _nest("[", "]", n)),
    _depth.map(lambda n: "k = '''x''''\nj = " + _nest("[", "]", n)),
    _depth.map(lambda n: 'k = """a\\"""" # [[[\nj = ' + _nest("{b=", "}", n)),
    _depth.map(lambda n: "# " + "[" * n + "\nk = 1"),
    st.sampled_from(["format = [[[[1]]]]", "did = {a.b.c = 1}", "backend = [[]]", "peers = 5",
                     "version = {v.w.x = 1}", "[[rule]]\nwho = " + _nest("[", "]", 30),
                     '[peers.x]\ndid = [[[["a"]]]]\nurl = 1', "[quotas]\nmax_files = [[1]]"]),
)

_text = st.one_of(
    _hostile_line.map(str.encode),
    st.binary(max_size=512),
    st.text(max_size=300).map(str.encode),
    st.tuples(st.sampled_from([b"", b"format = 1\n", b"version = 1\n"]),
              st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x00"]))
    .map(lambda t: t[0] + b"k = 'v" + t[1] + b"'\n"),
)


@st.composite
def _hostile_file(draw: st.DrawFn, name: str, original: bytes) -> bytes:
    text = draw(_text)
    where = draw(st.sampled_from(["alone", "after", "before"]))
    if where == "after":
        return original + b"\n" + text + b"\n"
    if where == "before":
        return text + b"\n" + original
    return text


_SETTINGS = settings(max_examples=25, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.mark.parametrize("name", ["peer.toml", "policy.toml", "peers.toml"])
@_SETTINGS
@given(data=st.data())
def test_hostile_config_files_never_exit_1(cli: Cli, world: World, name: str, data: st.DataObject) -> None:
    content = data.draw(_hostile_file(name, world.original[name]), label=name)
    check_no_bug(cli, world, name, content)


# ------------------------------------------------------------------ deterministic cases


@pytest.mark.parametrize("name", ["peer.toml", "policy.toml", "peers.toml"])
@pytest.mark.parametrize("line", [
    "a = " + _nest("[", "]", DEEP),
    "a = " + _nest("{b = ", "}", DEEP),
    ".".join(["a"] * DEEP) + " = 1",
])
def test_deep_nesting_is_the_files_own_error(cli: Cli, world: World, name: str, line: str) -> None:
    results = check_no_bug(cli, world, name, line.encode())
    limit = (f"deeper than {MAX_TOML_DEPTH} levels", f"more than {MAX_KEY_PARTS} parts")
    refused = [r for _, r in results if name in r.err and any(x in r.err for x in limit)]
    assert refused  # `peers` lists what loads and warns about the rest; the others exit 2
    assert all(r.code == 2 or (argv[0] == "peers" and "warning:" in r.err) for argv, r in results
               if r in refused)
    assert all(r.code in (0, 2) for _, r in results)


def test_policy_too_deep_names_the_file_only_by_its_name_for_callers(world: World) -> None:
    path = world.peer.paths.policy
    path.write_text("version = 1\nk = " + _nest("[", "]", DEEP) + "\n")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert info.value.line == 2 and f"deeper than {MAX_TOML_DEPTH} levels" in info.value.problem
    assert info.value.shown().startswith("policy.toml:2: invalid TOML:")
    assert str(world.root) not in info.value.shown()
    assert isinstance(info.value.__cause__, TomlTooComplex)  # raised from the parser's refusal
    decision = PolicyCache(path).get().decide(PolicyRequest("did:key:z6MkA", "bob", "exec", None, "x", 0))
    # the caller is told only that the policy does not load; the operator's detail stays on the policy
    assert not decision.allowed and decision.reason == "the target's policy could not be loaded"
    error = PolicyCache(path).get().load_error
    assert error is not None and error.line == 2 and str(world.root) in str(error.file)


@pytest.mark.parametrize("name", ["peer.toml", "policy.toml", "peers.toml"])
def test_files_over_their_size_cap_are_refused_unread(cli: Cli, world: World, name: str) -> None:
    cap = _CAPS[name]
    padding = b"# " + b"[" * (cap - 3) + b"\n"  # a comment: the bracket scan must skip it
    at_cap = world.original[name] + padding[: cap - len(world.original[name]) - 1] + b"\n"
    assert len(at_cap) == cap
    for _, r in check_no_bug(cli, world, name, at_cap):
        assert r.code == 0, r.err[-500:]
    results = check_no_bug(cli, world, name, at_cap + b"#")
    assert all(r.code in (0, 2) for _, r in results)
    assert any(r.code == 2 and f"larger than {cap} bytes" in r.err for _, r in results)


def test_a_fifo_in_place_of_peers_toml_does_not_hang(cli: Cli, world: World) -> None:
    import os

    peers_toml = world.files["peers.toml"]
    peers_toml.unlink()
    os.mkfifo(peers_toml)
    r = cli("directory", "list", "--root", str(world.root))
    assert r.code == 2 and "not a regular file" in r.err


# ------------------------------------------------------------------ the helper itself


@pytest.mark.parametrize("text", [
    'a = "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["',
    "a = '{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{'",
    'a = """\n]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]""\\"\n[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["""""',
    "a = '''[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[['''''",
    "# [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\na = 1",
    "a = " + _nest("[", "]", MAX_TOML_DEPTH),
    ".".join(["a"] * MAX_KEY_PARTS) + " = 1.5",
    "x = 1979-05-27T00:32:00.999999-07:00\ny = [1.5, 2.5, 3.5, 4.5]",
])
def test_valid_toml_within_the_limits_parses_as_tomllib_does(text: str) -> None:
    assert loads_bounded(text) == tomllib.loads(text)


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.integers() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                        st.text("abc.[]{}'\"#=", min_size=1, max_size=4), inner, max_size=3),
                    max_leaves=20))
def test_the_scan_never_refuses_shallow_valid_toml(value: Any) -> None:
    """Strings full of brackets, quotes, dots and '#' in keys and values do not fool the scan."""
    text = _to_toml({"v": value})
    assert loads_bounded(text) == tomllib.loads(text)


def _to_toml(doc: dict[str, Any]) -> str:
    def basic(v: str) -> str:
        out = []
        for ch in v:
            if ch in '"\\':
                out.append("\\" + ch)
            elif ord(ch) < 0x20 or ord(ch) == 0x7F:
                out.append(f"\\u{ord(ch):04x}")
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'

    def key(k: str) -> str:
        return basic(k)

    def val(v: Any) -> str:
        if isinstance(v, int):
            return str(v)
        if isinstance(v, str):
            literal = "'" not in v and all(ord(c) >= 0x20 and ord(c) != 0x7F for c in v)
            return "'" + v + "'" if literal and len(v) % 2 else basic(v)
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return "{" + ", ".join(f"{key(k)} = {val(x)}" for k, x in v.items()) + "}"

    return "\n".join(f"{key(k)} = {val(v)}" for k, v in doc.items()) + "\n"
