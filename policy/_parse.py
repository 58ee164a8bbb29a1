"""Reading and validating ``policy.toml`` into :class:`RuleSpec` values.

The file::

    version = 2

    [groups]
    friends = ["alice", "did:key:z6Mk..."]

    [[rule]]
    effect = "allow"                 # or "deny"
    who = ["owner", "group:friends"] # did:key, local peer name, group:NAME, owner, "*"
    actions = ["exec", "fs.read"]    # or "*", "fs.*"
    resources = ["inbox/**"]         # optional: path globs / module names / MODULE::FUNCTION /
                                     #   collections; absent = all
    where = { from = "$caller" }     # optional, allow rules of db.* actions only: a row filter
    limits = { fuel = 1_000_000, timeout = 2.5, memory = 16777216,    # optional, allow rules with
               calls_per_minute = 30, burst = 5,                      # exec or call only
               max_bytes = 65536, max_files = 100 }
    expires = 2030-01-01T00:00:00Z   # optional: TOML datetime or RFC 3339 string
    description = "free text"        # optional

``version = 1`` is the policy language before ``fs.append`` and ``fs.mkdir``
existed: there ``fs.write`` is read as :data:`~._model.LEGACY_WRITE` (all
three), with a warning on each rule that says it; ``version = 2`` means each
action only itself.

Every problem found is collected (each with the file and line of the rule's
``[[rule]]`` header, naming the key) and raised together as one
:class:`PolicyError`. tomllib reports no positions for values, so the lines
come from scanning the text for the table headers.

Resource patterns are normalised (:func:`~._glob.normalize`, the form the
host calls give request paths) as they are read, so a deny rule written
with decomposed accents protects the file whatever spelling a request
uses; a pattern the normalisation changed is kept, normalised, and listed in
:attr:`PolicySpec.warnings` (``peerbox policy check`` shows them).
"""

from __future__ import annotations

import math
import os
import re
import stat
import tomllib
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from peerbox._atomic import read_bounded

from ._didkey import DidSyntaxError, key_bytes_from_did
from ._glob import NORMAL_FORM, glob_problem, normalize
from ._model import (
    ACTION_ALIASES, ACTIONS, CALLER, DB_ACTIONS, LEGACY_WRITE, POLICY_VERSIONS, RESOURCE_ACTIONS, PolicyError,
    PolicyLimits, Problem, RowFilter,
)
from ._toml import TomlTooComplex, loads_bounded

__all__ = ["RuleSpec", "PolicySpec", "parse_text", "read_policy_file", "MAX_POLICY_BYTES", "Who"]

#: Policy files larger than this are refused.
MAX_POLICY_BYTES = 1 << 20
_MAX_PROBLEMS = 50
_PEER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_GROUP_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}")
_RULE_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*rule[ \t]*\]\]", re.MULTILINE)
_GROUPS_HEADER = re.compile(r"^[ \t]*\[[ \t]*groups[ \t]*\]", re.MULTILINE)
_ANY_HEADER = re.compile(r"^[ \t]*\[", re.MULTILINE)
_TOML_WHERE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_RULE_KEYS = ("effect", "who", "actions", "resources", "limits", "expires", "description", "where")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_MAX_WHERE = 8
_TOP_KEYS = ("version", "rule", "groups")
_LIMIT_KEYS = ("fuel", "timeout", "memory", "calls_per_minute", "burst", "max_bytes", "max_files")
#: The highest ``calls_per_minute`` a rule may set.
MAX_CALLS_PER_MINUTE = 1e6
#: The actions whose rules may carry ``limits`` (a run, or a caller's rate and quota).
_LIMITED_ACTIONS = frozenset({"exec", "call"})


@dataclass(frozen=True, slots=True)
class Who:
    """The principals of a rule, groups expanded: ``any`` ("*"), ``owner``, ``ids`` (dids and
    local peer names; names never contain ``:`` so the two cannot collide)."""

    any: bool
    owner: bool
    ids: frozenset[str]


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """One validated rule: ``actions`` expanded, ``resources`` None for all, ``expires`` as Unix
    seconds (None: never), ``line`` of its ``[[rule]]`` header."""

    index: int
    line: int | None
    effect: str
    who: Who
    who_text: tuple[str, ...]
    actions: frozenset[str]
    resources: tuple[str, ...] | None
    limits: PolicyLimits | None
    expires: float | None
    description: str | None
    where: RowFilter | None = None


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """A validated policy file: its ``rules`` and ``groups`` (name -> members); ``warnings``:
    what loaded but deserves the author's eye (patterns the normalisation changed, legacy
    ``fs.write`` in a version 1 file, ``call`` patterns that name no function); ``version``: the
    file's ``version`` (rules are already expanded to its meaning)."""

    file: str
    rules: tuple[RuleSpec, ...]
    groups: dict[str, tuple[str, ...]]
    warnings: tuple[Problem, ...] = ()
    version: int = 2


def read_policy_file(path: str | os.PathLike[str]) -> tuple[str, tuple[int, int, int, int]]:
    """Read a policy file (never through a symlink): its text and ``(mtime_ns, size, inode,
    ctime_ns)`` of exactly what was read. Raises :class:`PolicyError` when it is missing, not a
    regular file, too large or not UTF-8."""
    file = os.fspath(path)
    try:
        fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError as exc:
        raise PolicyError.one(file, None, "policy file is missing") from exc
    except OSError as exc:
        raise PolicyError.one(file, None, f"cannot read it: {exc.strerror or exc}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PolicyError.one(file, None, "not a regular file")
        raw = read_bounded(fd, MAX_POLICY_BYTES)
    finally:
        os.close(fd)
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError.one(file, None, f"larger than {MAX_POLICY_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PolicyError.one(file, line, f"not UTF-8 text (byte {exc.start})") from exc
    return text, (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)


def _toml(text: str, file: str) -> dict[str, Any]:
    """The TOML table of a policy's text, parsed by :func:`~._toml.loads_bounded` (nesting and
    dotted keys bounded: no text makes the parser recurse or work without bound). Raises
    :class:`PolicyError` naming ``file`` (shown to remote callers by its base name only) and
    the line for text that is not TOML or nests too deeply."""
    try:
        return loads_bounded(text)
    except tomllib.TOMLDecodeError as exc:  # TomlTooComplex (too deep, too many key parts) too
        msg = str(exc)
        m = _TOML_WHERE.search(msg)
        if m is not None:
            raise PolicyError.one(file, int(m.group(1)), f"invalid TOML: {msg[: m.start()]}") from exc
        if isinstance(exc, TomlTooComplex):  # found in the parsed tables: no position known
            raise PolicyError.one(file, None, f"invalid TOML: {msg}") from exc
        last = max(1, len(text.splitlines()))
        raise PolicyError.one(file, last, f"invalid TOML: {msg}") from exc


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


class _Checker:
    """Collects problems while validating one file."""

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.text = text
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []

    def add(self, line: int | None, problem: str) -> None:
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(Problem(self.file, line, problem))

    def key_line(self, key: str, start: int = 0, end: int | None = None) -> int | None:
        """The line of ``key =`` at the start of a line within ``text[start:end]`` (best effort)."""
        rx = re.compile(rf"^[ \t]*(?:\"{re.escape(key)}\"|{re.escape(key)})[ \t]*=", re.MULTILINE)
        m = rx.search(self.text, start, len(self.text) if end is None else end)
        return _line_of(self.text, m.start()) if m else None


def parse_text(text: str, file: str = "<policy>") -> PolicySpec:
    """Validate the text of a policy file. Raises :class:`PolicyError` listing every problem
    (unknown keys, actions, groups; bad globs, dids, limits, expiry; wrong types)."""
    data = _toml(text, file)
    ck = _Checker(file, text)
    for key in data:
        if key not in _TOP_KEYS:
            ck.add(ck.key_line(key), f"unknown top-level key {key!r} (expected: {', '.join(_TOP_KEYS)})")
    version = 2
    if "version" not in data:
        ck.add(None, "missing 'version = 2'")
    elif type(data["version"]) is not int or data["version"] not in POLICY_VERSIONS:
        ck.add(ck.key_line("version"), f"unsupported policy version {data['version']!r} (expected 1 or 2)")
    else:
        version = data["version"]
    groups = _groups(data.get("groups", {}), ck)
    raw_rules = data.get("rule", [])
    rules: list[RuleSpec] = []
    if not isinstance(raw_rules, list):
        ck.add(ck.key_line("rule"), "'rule' must be an array of tables ([[rule]])")
    else:
        spans = [m.start() for m in _RULE_HEADER.finditer(text)]
        for i, raw in enumerate(raw_rules):
            start = spans[i] if len(spans) == len(raw_rules) else None
            end = spans[i + 1] if start is not None and i + 1 < len(spans) else None
            rule = _rule(i, raw, start, end, groups, ck, version)
            if rule is not None:
                rules.append(rule)
    if ck.problems:
        raise PolicyError(ck.problems)
    return PolicySpec(file=file, rules=tuple(rules), groups=groups, warnings=tuple(ck.warnings),
                      version=version)


def _groups(raw: object, ck: _Checker) -> dict[str, tuple[str, ...]]:
    m = _GROUPS_HEADER.search(ck.text)
    start = m.start() if m else 0
    nxt = _ANY_HEADER.search(ck.text, m.end()) if m else None
    end = nxt.start() if nxt else None
    header = _line_of(ck.text, start) if m else ck.key_line("groups")
    if not isinstance(raw, dict):
        ck.add(header, "'groups' must be a table of NAME = [members]")
        return {}
    out: dict[str, tuple[str, ...]] = {}
    for name, members in raw.items():
        line = ck.key_line(name, start, end) or header
        if not _GROUP_NAME.fullmatch(name):
            ck.add(line, f"invalid group name {name!r}")
            continue
        if not isinstance(members, list) or not all(isinstance(x, str) for x in members):
            ck.add(line, f"group {name!r} must be an array of strings (dids or peer names)")
            continue
        good: list[str] = []
        for member in members:
            problem = _principal_problem(member)
            if problem is not None:
                ck.add(line, f"group {name!r}: {problem}")
            else:
                good.append(member)
        out[name] = tuple(good)
    return out


def _principal_problem(text: str) -> str | None:
    """Why ``text`` is not a did or a peer name (group members), or None."""
    if text.startswith("did:"):
        try:
            key_bytes_from_did(text)  # syntax only: a did that is no valid key matches no caller
        except DidSyntaxError as exc:
            return f"malformed did: {exc}"
        return None
    if text in ("owner", "*") or text.startswith("group:"):
        return f"{text!r} cannot be a group member (members are dids or peer names)"
    if not _PEER_NAME.fullmatch(text):
        return f"{text!r} is neither a did:key nor a peer name"
    return None


def _rule(
    i: int, raw: object, start: int | None, end: int | None, groups: dict[str, tuple[str, ...]],
    ck: _Checker, version: int = 2,
) -> RuleSpec | None:
    line = _line_of(ck.text, start) if start is not None else None
    label = f"rule #{i + 1}"
    before = len(ck.problems)

    def bad(key: str | None, problem: str) -> None:
        ck.add(line, f"{label}: '{key}': {problem}" if key else f"{label}: {problem}")

    if not isinstance(raw, dict):
        bad(None, "must be a table")
        return None
    for key in raw:
        if key not in _RULE_KEYS:
            bad(key, f"unknown key (expected: {', '.join(_RULE_KEYS)})")
    effect = raw.get("effect")
    if effect not in ("allow", "deny"):
        bad("effect", f"must be \"allow\" or \"deny\", got {effect!r}" if "effect" in raw else "missing")
    who = _who(raw.get("who"), "who" in raw, groups, lambda p: bad("who", p))
    actions = _actions(raw.get("actions"), "actions" in raw, lambda p: bad("actions", p))
    if actions is not None and version == 1 and "fs.write" in actions and not actions >= set(LEGACY_WRITE):
        actions = actions | frozenset(LEGACY_WRITE)
        where = (ck.key_line("actions", start, end) if start is not None else None) or line
        ck.warnings.append(Problem(ck.file, where, (
            f"{label}: 'actions': in a version 1 policy \"fs.write\" also allows fs.append and fs.mkdir; "
            "write version = 2 (and name those you mean) to allow only creating and replacing files")))
    resources: tuple[str, ...] | None = None
    if "resources" in raw:
        res = raw["resources"]
        if not isinstance(res, list) or not res or not all(isinstance(x, str) for x in res):
            bad("resources", "must be a non-empty array of strings (leave it out for all resources)")
        else:
            for pattern in res:
                problem = glob_problem(pattern)
                if problem is not None:
                    bad("resources", f"bad glob: {problem}")
            resources = tuple(normalize(p) for p in res)
            for before_, after in zip(res, resources, strict=True):
                if before_ != after:
                    where = (ck.key_line("resources", start, end) if start is not None else None) or line
                    ck.warnings.append(Problem(ck.file, where, (
                        f"{label}: 'resources': {before_!a} is not in Unicode {NORMAL_FORM}; it is matched "
                        f"as {after!a} (request paths are {NORMAL_FORM}-normalised)")))
            if actions is not None and not (actions & RESOURCE_ACTIONS):
                bad("resources", "only fs.*, db.*, call, module.import and logic.* requests name a resource; "
                    "exec and delegate have none")
            elif actions is not None and not (actions & RESOURCE_ACTIONS) - {"call"}:
                for pattern in resources:
                    if "::" not in pattern and "*" not in pattern:
                        where = (ck.key_line("resources", start, end) if start is not None else None) or line
                        ck.warnings.append(Problem(ck.file, where, (
                            f"{label}: 'resources': {pattern!a} matches no function: call resources are "
                            "MODULE::FUNCTION, e.g. inbox::deliver or inbox::*")))
    limits = None
    if "limits" in raw:
        limits = _limits(raw["limits"], lambda p: bad("limits", p))
        if effect == "deny":
            bad("limits", "limits cap what a rule allows: a deny rule cannot have them")
        elif actions is not None and not (actions & _LIMITED_ACTIONS):
            bad("limits", "limits cap a run or a caller: the rule must allow exec or call")
    expires = _expires(raw["expires"], lambda p: bad("expires", p)) if "expires" in raw else None
    description = raw.get("description")
    if description is not None and not isinstance(description, str):
        bad("description", "must be a string")
    row_filter = _where(raw["where"], lambda p: bad("where", p)) if "where" in raw else None
    if row_filter is not None:
        if effect == "deny":
            bad("where", "a row filter narrows what a rule allows: a deny rule cannot have one")
        elif actions is not None and not actions <= set(DB_ACTIONS):
            bad("where", "a row filter applies to records: the rule's actions must all be db.* ones")
    if len(ck.problems) != before or who is None or actions is None:
        return None
    return RuleSpec(
        index=i, line=line, effect=str(effect), who=who[0], who_text=who[1], actions=actions,
        resources=resources, limits=limits, expires=expires,
        description=description if isinstance(description, str) else None, where=row_filter,
    )


def _where(raw: object, bad: Any) -> RowFilter | None:
    """A rule's row filter ``{ FIELD = VALUE, ... }`` (VALUE a string, int, bool or "$caller")."""
    if not isinstance(raw, dict) or not raw or len(raw) > _MAX_WHERE:
        bad(f"must be a table of 1 to {_MAX_WHERE} FIELD = VALUE pairs, such as {{ from = \"{CALLER}\" }}")
        return None
    fields: list[tuple[str, str | int | bool]] = []
    for key, value in raw.items():
        if not _FIELD.fullmatch(key):
            bad(f"{key!r} is not a field name")
            return None
        if type(value) not in (str, int, bool):
            bad(f"{key}: a value is a string, an integer, a boolean or \"{CALLER}\", not "
                f"{type(value).__name__}")
            return None
        if isinstance(value, str) and value.startswith("$") and value != CALLER:
            bad(f"{key}: unknown variable {value!r} (the one there is: \"{CALLER}\", the caller's did)")
            return None
        fields.append((key, value))
    return RowFilter(tuple(fields))


def _who(
    raw: object, present: bool, groups: dict[str, tuple[str, ...]], bad: Any,
) -> tuple[Who, tuple[str, ...]] | None:
    if not present:
        bad("missing")
        return None
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items or not all(isinstance(x, str) for x in items):
        bad("must be a string or a non-empty array of strings")
        return None
    any_, owner, ok = False, False, True
    ids: set[str] = set()
    for item in items:
        if item == "*":
            any_ = True
        elif item == "owner":
            owner = True
        elif item.startswith("group:"):
            name = item[len("group:"):]
            if name not in groups:
                bad(f"unknown group {name!r} (define it under [groups])")
                ok = False
            else:
                ids.update(groups[name])
        else:
            problem = _principal_problem(item)
            if problem is not None:
                bad(problem + " (who is a did:key, a peer name, group:NAME, \"owner\" or \"*\")")
                ok = False
            else:
                ids.add(item)
    return (Who(any=any_, owner=owner, ids=frozenset(ids)), tuple(items)) if ok else None


def _actions(raw: object, present: bool, bad: Any) -> frozenset[str] | None:
    if not present:
        bad("missing")
        return None
    if not isinstance(raw, list) or not raw or not all(isinstance(x, str) for x in raw):
        bad("must be a non-empty array of strings")
        return None
    out: set[str] = set()
    ok = True
    for action in raw:
        if action in ACTION_ALIASES:
            out.update(ACTION_ALIASES[action])
        elif action in ACTIONS:
            out.add(action)
        else:
            bad(f"unknown action {action!r} (expected one of {', '.join(ACTIONS)}, \"fs.*\", \"logic.*\", "
                "\"db.*\" or \"*\")")
            ok = False
    return frozenset(out) if ok else None


def _limits(raw: object, bad: Any) -> PolicyLimits | None:
    """The ``limits`` table of a rule, every key checked (``bad`` is told each problem)."""
    if not isinstance(raw, dict):
        bad("must be a table such as { fuel = 1000000, timeout = 2.5, memory = 16777216 }")
        return None
    ok = True
    for key in raw:
        if key not in _LIMIT_KEYS:
            bad(f"unknown limit {key!r} (expected {', '.join(_LIMIT_KEYS)})")
            ok = False
    fuel, timeout, memory = raw.get("fuel"), raw.get("timeout"), raw.get("memory")
    rate, burst = raw.get("calls_per_minute"), raw.get("burst")
    max_bytes, max_files = raw.get("max_bytes"), raw.get("max_files")
    for key, value in (("fuel", fuel), ("memory", memory), ("burst", burst)):
        if value is not None and (type(value) is not int or value <= 0):
            bad(f"{key} must be a positive integer, got {value!r}")
            ok = False
    for key, value in (("max_bytes", max_bytes), ("max_files", max_files)):
        if value is not None and (type(value) is not int or value < 0):
            bad(f"{key} must be an integer >= 0, got {value!r}")
            ok = False
    if timeout is not None and (type(timeout) not in (int, float) or not 0 < timeout < float("inf")):
        bad(f"timeout must be a positive number of seconds, got {timeout!r}")
        ok = False
    if rate is not None and (type(rate) not in (int, float) or not 0 < rate <= MAX_CALLS_PER_MINUTE):
        bad(f"calls_per_minute must be a number > 0 and <= {MAX_CALLS_PER_MINUTE:.0f}, got {rate!r}")
        ok = False
    if burst is not None and rate is None:
        bad("burst needs calls_per_minute (the rate its calls refill at)")
        ok = False
    if not ok:
        return None
    per_minute = float(rate) if isinstance(rate, (int, float)) else None
    if per_minute is not None and burst is None:
        burst = max(1, math.ceil(per_minute))  # one minute's worth
    return PolicyLimits(
        fuel=fuel if isinstance(fuel, int) else None,
        timeout=float(timeout) if isinstance(timeout, (int, float)) else None,
        memory=memory if isinstance(memory, int) else None,
        calls_per_minute=per_minute,
        burst=burst if isinstance(burst, int) else None,
        max_bytes=max_bytes if isinstance(max_bytes, int) else None,
        max_files=max_files if isinstance(max_files, int) else None,
    )


def _expires(raw: object, bad: Any) -> float | None:
    value: object = raw
    if isinstance(raw, str):
        text = raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            bad(f"not an RFC 3339 date-time: {raw!r}")
            return None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            bad(f"{raw!r} has no time zone offset (write e.g. 2030-01-01T00:00:00Z)")
            return None
        return value.timestamp()
    if isinstance(value, (date, time)):
        bad(f"{raw!r} is not a full date-time with a time zone (write e.g. 2030-01-01T00:00:00Z)")
        return None
    bad(f"must be a date-time, got {type(raw).__name__}")
    return None
