"""The host-call table: well-formed, a leaf, what the README lists, and what compiler and dispatcher share."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any, cast

import pytest

import peerbox.hostcalls as hc
from peerbox.hostcalls import HOST_CALLS, OP_ACTIONS, Dispatch, HostCall, HostCallError, Op
from peerbox.hostcalls import _table
from peerbox.policy import ACTIONS, DB_ACTIONS, FS_ACTIONS
from peerbox.wasm_guests import lang
from peerbox.wasm_guests.lang._hostfns import MAX_HOST_ARITY, HostFunctions

README = Path(__file__).resolve().parents[2] / "README.md"
#: The argument names the README uses, and the kinds they stand for.
README_ARGS = {"p": "path", "dir": "path", "s": "string", "blob": "blob", "coll": "collection", "key": "key",
               "record": "map", "changes": "map", "query": "map", "where": "map"}


def test_rows_are_well_formed() -> None:
    assert [int(c.op) for c in HOST_CALLS] == sorted({int(c.op) for c in HOST_CALLS})  # op order, unique
    assert sorted(int(op) for op in Op) == [int(c.op) for c in HOST_CALLS]
    assert len({(c.name, c.arity) for c in HOST_CALLS}) == len(HOST_CALLS)
    for c in HOST_CALLS:
        assert re.fullmatch(r"[a-z_]+::[a-z_]+", c.name) and c.module in ("fs", "db")
        if c.module == "fs":
            assert isinstance(c.op, Op) and Op(c.op).name.lower() == c.function
            assert c.params and c.params[0] == "path", c  # the policy is checked against the first argument
            assert c.action in FS_ACTIONS, c  # policy owns the action names
        else:
            assert Op(c.op).name.lower() in (f"db_{c.function}", f"db_{c.function}_where")
            assert c.params and c.params[0] == "collection", c  # the policy is checked against it
            assert c.action in DB_ACTIONS, c
        assert set(c.params) <= set(_table.PARAM_KINDS) and 1 <= c.arity <= MAX_HOST_ARITY
        assert c.action in ACTIONS
        assert c.result in _table.RESULT_KINDS and c.doc


def test_table_module_is_a_leaf() -> None:
    """It imports nothing from peerbox (anything, the compiler's caller included, may read it)."""
    tree = ast.parse(Path(_table.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import in the table module"
            imported.add(node.module or "")
    assert imported <= {"__future__", "enum", "dataclasses"}


def _readme_host_calls() -> set[tuple[str, tuple[str, ...]]]:
    text = README.read_text(encoding="utf-8")
    found: set[tuple[str, tuple[str, ...]]] = set()
    for section in ("## Peers, their storage and host calls", "## Schemas and records"):
        start = text.index(section)
        end = text.index("\n## ", start + 1)
        for name, args in re.findall(r"`(\w+::\w+)\(([^)`]*)\)", text[start:end]):
            found.add((name, tuple(README_ARGS[a.strip()] for a in args.split(",") if a.strip())))
    return found


def test_readme_lists_exactly_the_table() -> None:
    """README sections "Peers, their storage and host calls" and "Schemas and records": every
    call, its arguments' kinds."""
    assert _readme_host_calls() == {(c.name, c.params) for c in HOST_CALLS}


def _emitted(row: HostCall) -> list[tuple[int, int]]:
    """The (op, arity) pairs the compiler emits for a call of ``row`` (its arguments: one local)."""
    args = ", ".join(["p"] * row.arity)
    wat = lang.compile_to_wat(f'let p = "x"; {row.name}({args})', host_calls=HOST_CALLS).wat
    pattern = r"i32\.const (\d+)\n((?:\s*local\.get \S+\n)*)\s*call \$rt_host_(\d)\b"
    out = []
    for op, gets, arity in re.findall(pattern, wat):
        assert gets.count("local.get") == 2 * int(arity)  # a value is (tag, payload)
        out.append((int(op), int(arity)))
    return out


_SAMPLE = {"path": "inbox/a.txt", "string": "text", "blob": b"bytes", "collection": "inbox", "key": 1,
           "map": {}}
#: What the authorizer sees of each sample first argument.
_RESOURCE = {"path": "inbox/a.txt", "collection": "inbox"}


@pytest.mark.parametrize("row", HOST_CALLS, ids=lambda c: c.name)
def test_compiler_and_dispatcher_agree(row: HostCall) -> None:
    """Every call the compiler emits is dispatched, with the same arity and the table's action."""
    assert _emitted(row) == [(int(row.op), row.arity)]
    seen: list[tuple[str, str]] = []

    def authorize(action: str, path: str) -> None:  # the same for fs and db rows
        seen.append((action, path))
        raise HostCallError("denied", "stop before the backend")

    d = Dispatch(cast(Any, object()), authorize=authorize)
    with pytest.raises(HostCallError) as info:
        d.call(int(row.op), [_SAMPLE[k] for k in row.params])
    assert info.value.kind == "denied" and seen == [(row.action, _RESOURCE[row.params[0]])]
    assert OP_ACTIONS[row.op] == row.action
    arities = {c.arity for c in HOST_CALLS if c.name == row.name}
    for wrong in {row.arity - 1, row.arity + 1} - arities:
        with pytest.raises(lang.CompileError, match=f"has no function '{row.function}'"):
            lang.compile_to_wat(f'let p = "x"; {row.name}({", ".join(["p"] * wrong)})', host_calls=HOST_CALLS)
        with pytest.raises(HostCallError, match=f"{row.name} takes {row.arity} argument"):
            d.call(int(row.op), ["p"] * wrong)


def test_every_function_the_compiler_knows_is_a_row() -> None:
    known = {(f.qualname, f.arity, f.op) for f in HostFunctions(HOST_CALLS).functions}
    assert known == {(c.name, c.arity, int(c.op)) for c in HOST_CALLS}


def test_without_a_table_scripts_have_no_host_functions() -> None:
    with pytest.raises(lang.CompileError, match="unknown module 'fs'"):
        lang.compile_to_wat('fs::read("a")')
    lang.check('fs::read("a")', host_calls=HOST_CALLS)
    with pytest.raises(lang.CompileError, match="unknown module 'fs'"):
        lang.check('fs::read("a")')


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        ([HostCall(Op.READ, "read", ("path",), "fs.read", "string", "")], "not 'module::function'"),
        ([HostCall(Op.READ, "fs::read", ("path",) * 4, "fs.read", "string", "")], "at most 3"),
        ([HostCall(cast(Any, -1), "fs::read", ("path",), "fs.read", "string", "")], "not an i32"),
        ([HOST_CALLS[0], HostCall(Op.READ, "fs::other", ("path",), "fs.read", "string", "")], "listed twice"),
        ([HOST_CALLS[0], HostCall(Op.WRITE, "fs::read", ("path",), "fs.read", "string", "")], "listed twice"),
    ],
)
def test_a_malformed_table_is_refused(rows: list[HostCall], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        lang.compile_to_wat("1", host_calls=rows)


def test_fingerprint_covers_the_table() -> None:
    bare = lang.compiler_fingerprint()
    with_table = lang.compiler_fingerprint(HOST_CALLS)
    assert bare != with_table == lang.compiler_fingerprint(tuple(HOST_CALLS))
    changed = [HostCall(Op.WRITE_BYTES, "fs::write_bytes", ("path",), "fs.write", "()", "") if c.op == Op.WRITE_BYTES
               else c for c in HOST_CALLS]
    assert lang.compiler_fingerprint(changed) != with_table


def test_facade_names() -> None:
    assert hc.HOST_CALLS is HOST_CALLS and hc.Op is Op and hc.HostCall is HostCall


def test_each_call_needs_the_action_that_says_what_it_does() -> None:
    """fs.write is create-or-replace; appending and creating directories are actions of their own."""
    assert {c.name: c.action for c in HOST_CALLS} == {
        "fs::read": "fs.read", "fs::write": "fs.write", "fs::append": "fs.append", "fs::list": "fs.list",
        "fs::exists": "fs.read", "fs::delete": "fs.delete", "fs::mkdir": "fs.mkdir", "fs::stat": "fs.read",
        "fs::read_bytes": "fs.read", "fs::write_bytes": "fs.write", "db::insert": "db.write",
        "db::get": "db.read", "db::update": "db.write", "db::delete": "db.delete", "db::query": "db.read",
        "db::count": "db.read"}
