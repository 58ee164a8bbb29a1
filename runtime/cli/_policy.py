"""The ``peerbox policy`` commands: check and explain a peer's ``policy.toml``.

::

    peerbox policy check NAME [--root DIR] [--json]
    peerbox policy explain NAME --caller WHO --action ACTION [--path P | --module M | --resource R]
                           [--at TIME] [--root DIR] [--json]

``check`` loads the policy and prints ``OK: FILE: N rules`` (exit 0) or
every problem as ``file:line: problem`` on stderr (exit 2). Warnings (a
resource pattern not in Unicode NFC, which is matched normalised; a version 1
``fs.write``; a peer name in ``who`` or a group that resolves to no local peer
and no ``peers.toml`` entry, to a conflict, or to a shadowed directory name)
go to stderr as ``file:line: warning: ...`` and leave the exit code 0.

``explain`` decides one request the way the peer would and prints the
decision and the rule (``file:line``, the full path: this is the local
operator; remote callers see only ``policy.toml:line``) that decided it, or
that nothing allowed it. A path or module name is decided exactly as the
peer would decide it, so any Unicode spelling (NFC or NFD) of a name gets the
same answer. WHO is a ``did:key``, a peer name under the root or in its
``peers.toml``, or ``owner``; the output says how the name resolved and, for
``exec`` and ``call``, the caller's limits, rate and quota; for ``db.*`` (a
collection, given as ``--resource``), which records the caller may touch
(``rows``: every record, or those a rule's row filter allows).
Exit 0 when allowed, 6 (the policy-denial code) when denied, 2 when the
policy does not load or the arguments make no sense.

:func:`add_parsers` adds ``policy`` to the CLI's subparsers; each leaf
subparser sets ``handler`` (``args.handler(args) -> int``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from datetime import datetime
from typing import Any

from ..policy import (
    ACTIONS, DB_ACTIONS, RESOURCE_ACTIONS, Policy, PolicyError, PolicyLimits, RateLimit, Request, RuleRef,
    RuleSpec, load,
)

from ._peers import add_root_argument
from .._errors import UsageError
from ..wire import IdentityError, public_key_from_did
from ..peer import Known, Peer, PeerNames, PeerStore

__all__ = ["add_parsers", "cmd_check", "cmd_explain", "COMMANDS", "EXIT_DENIED"]

#: The subcommands this module adds.
COMMANDS = ("policy",)
#: Exit code of ``explain`` for a denied request (the CLI's policy-denial code).
EXIT_DENIED = 6


def add_parsers(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``policy check`` and ``policy explain`` to ``subparsers``."""
    pp = subparsers.add_parser(
        "policy", help="check a peer's policy, or explain a decision",
        description="Work with a peer's policy (<root>/peers/NAME/policy.toml).",
    )
    pp.set_defaults(handler=_cmd_policy_usage)
    sub = pp.add_subparsers(dest="policy_command", metavar="COMMAND")

    pc = sub.add_parser(
        "check", help="load the policy and report every problem",
        description="Load NAME's policy.toml; print OK and the rule count, or every problem "
        "as file:line: problem (exit 2).",
    )
    pc.add_argument("name", metavar="NAME", help="the peer whose policy to check")
    add_root_argument(pc)
    pc.add_argument("--json", action="store_true", help="print the result as one JSON object")
    pc.set_defaults(handler=cmd_check)

    pe = sub.add_parser(
        "explain", help="decide one request and show the rule that decided it",
        description="Decide a request the way peer NAME would and print allow/deny with the rule "
        "(file:line) that decided it, or that nothing allowed it. Exit 0 allowed, 6 denied.",
    )
    pe.add_argument("name", metavar="NAME", help="the peer whose policy decides")
    pe.add_argument("--caller", required=True, metavar="WHO",
                    help="a did:key, a peer name (local or in <root>/peers.toml), or 'owner'")
    pe.add_argument("--action", required=True, choices=ACTIONS, metavar="ACTION",
                    help=f"one of {', '.join(ACTIONS)}")
    what = pe.add_mutually_exclusive_group()
    what.add_argument("--path", metavar="P", help="the path (for fs.* actions; '' is the storage root)")
    what.add_argument("--module", metavar="M", help="the module name (for module.import and logic.*)")
    what.add_argument("--resource", metavar="R",
                      help="the resource of any action that has one: MODULE::FUNCTION for call "
                      "(e.g. inbox::deliver), a path for fs.*, a module name for module.import, logic.*, "
                      "a collection for db.*")
    pe.add_argument("--at", metavar="TIME", default=None,
                    help="decide as of this RFC 3339 time (default: now); expired rules are ignored")
    add_root_argument(pe)
    pe.add_argument("--json", action="store_true", help="print the decision as one JSON object")
    pe.set_defaults(handler=cmd_explain)


def _cmd_policy_usage(args: argparse.Namespace) -> int:
    raise UsageError("peerbox policy: choose a command: check or explain")


def cmd_check(args: argparse.Namespace) -> int:
    """``peerbox policy check NAME``: 0 and ``OK`` when the policy loads (warnings on stderr, or
    under ``"warnings"`` with ``--json``), else 2 and the problems."""
    store = PeerStore(args.root)
    peer = store.get(args.name)
    try:
        policy = load(peer.paths.policy)
    except PolicyError as exc:
        if args.json:
            _out(json.dumps({"ok": False, "file": str(peer.paths.policy), "problems": [
                {"file": p.file, "line": p.line, "problem": p.problem} for p in exc.problems
            ]}, ensure_ascii=False))
        else:
            sys.stderr.write(f"{exc}\n")
        return 2
    warnings = [(w.file, w.line, w.problem) for w in policy.warnings]
    warnings += [(policy.file, line, text) for line, text in _name_warnings(policy, PeerNames(store))]
    if args.json:
        _out(json.dumps({"ok": True, "file": policy.file, "rules": len(policy.rules),
                         "groups": sorted(policy.groups), "warnings": [
                             {"file": file, "line": line, "warning": text} for file, line, text in warnings
                         ]}, ensure_ascii=False))
    else:
        for file, line, text in warnings:
            where = f"{file}:{line}" if line else file
            sys.stderr.write(f"{where}: warning: {text}\n")
        n = len(policy.rules)
        _out(f"OK: {policy.file}: {n} rule{'s' if n != 1 else ''}, "
             f"{len(policy.groups)} group{'s' if len(policy.groups) != 1 else ''}")
    return 0


def _names_in(policy: Policy, rule: RuleSpec) -> list[str]:
    """The peer names a rule's ``who`` uses, directly or through its groups (dids, ``*``,
    ``owner`` left out), each once, in order."""
    out: list[str] = []
    for item in rule.who_text:
        members = policy.groups.get(item[len("group:"):], ()) if item.startswith("group:") else (item,)
        for m in members:
            if m not in ("*", "owner") and not m.startswith("did:") and m not in out:
                out.append(m)
    return out


def _name_warnings(policy: Policy, names: PeerNames) -> list[tuple[int | None, str]]:
    """``(line, warning)`` for each name in a rule's ``who`` that matches no caller here or is
    ambiguous (:meth:`PeerNames.resolve`: ``none``, ``conflict``, ``shadowed``)."""
    out: list[tuple[int | None, str]] = []
    for rule in policy.rules:
        for name in _names_in(policy, rule):
            res = names.resolve(name)
            if res.note is not None:
                out.append((rule.line, f"rule #{rule.index + 1}: 'who': {res.note}"))
    return out


#: How ``explain`` shows where a caller's name came from.
_SOURCES = {"local": "a local peer", "directory": "peers.toml", "none": "not named here"}


def _resolve_caller(store: PeerStore, owner: Peer, who: str) -> tuple[Known, str | None]:
    """What WHO is here (its did, the name a worker would give it, where that name comes from)
    and a note when the name is ambiguous. Raises :class:`UsageError` for a name nothing
    resolves or a malformed did."""
    names = PeerNames(store)
    if who == "owner":
        return Known(owner.did, owner.name, "local"), None
    if who.startswith("did:"):
        try:
            public_key_from_did(who)
        except IdentityError as exc:
            raise UsageError(f"--caller: {exc}") from exc
        return names.of_did(who), None
    res = names.resolve(who)
    if res.did is None:
        raise UsageError(f"--caller: no peer named {who!r} under {store.root} nor in its peers.toml "
                         "(give a did:key, a peer name or 'owner')")
    return names.of_did(res.did), res.note


def _when(text: str | None) -> float:
    if text is None:
        return time.time()
    try:
        value = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError as exc:
        raise UsageError(f"--at: not an RFC 3339 date-time: {text!r}") from exc
    if value.tzinfo is None:
        raise UsageError(f"--at: {text!r} has no time zone (write e.g. 2030-01-01T00:00:00Z)")
    return value.timestamp()


def _resource(args: argparse.Namespace) -> str | None:
    action = args.action
    if args.resource is not None:
        if action not in RESOURCE_ACTIONS:
            raise UsageError(f"{action} names no resource: leave out --resource")
        return str(args.resource)
    if action == "call":
        raise UsageError("call needs --resource MODULE::FUNCTION (e.g. inbox::deliver)")
    if action in DB_ACTIONS and args.path is None:
        raise UsageError(f"{action} needs --resource COLLECTION (e.g. inbox)")
    if action in ("module.import", "logic.read", "logic.write"):
        if args.module is None:
            raise UsageError(f"{action} needs --module M")
        return str(args.module)
    if action in RESOURCE_ACTIONS:
        if args.path is None:
            raise UsageError(f"{action} needs --path P")
        return str(args.path)
    if args.path is not None or args.module is not None:
        raise UsageError(f"{action} names no resource: leave out --path and --module")
    return None


def _limits_json(limits: PolicyLimits | None, rates: tuple[RateLimit, ...]) -> dict[str, Any] | None:
    if limits is None:
        return None
    return {"fuel": limits.fuel, "timeout": limits.timeout, "memory": limits.memory,
            "calls_per_minute": limits.calls_per_minute, "burst": limits.burst,
            "max_bytes": limits.max_bytes, "max_files": limits.max_files,
            "rates": [{"calls_per_minute": r.per_minute, "burst": r.burst, "rule": str(r.rule)}
                      for r in rates]}


def _limits_text(limits: PolicyLimits, rates: tuple[RateLimit, ...]) -> str | None:
    """``timeout=2.0; rate: 30/min, burst 5 (policy.toml:21); quota: 65536 bytes, 100 files``
    (None when nothing is capped)."""
    parts = []
    run_caps = ", ".join(f"{k}={v}" for k, v in (("fuel", limits.fuel), ("timeout", limits.timeout),
                                                  ("memory", limits.memory)) if v is not None)
    if run_caps:
        parts.append(run_caps)
    if rates:
        parts.append("rate: " + ", ".join(
            f"{r.describe().replace(' calls per minute,', '/min,')} ({r.rule})" for r in rates))
    quota = [f"{limits.max_bytes} bytes" if limits.max_bytes is not None else "",
             f"{limits.max_files} files" if limits.max_files is not None else ""]
    if any(quota):
        parts.append("quota: " + ", ".join(q for q in quota if q))
    return "; ".join(parts) or None


def cmd_explain(args: argparse.Namespace) -> int:
    """``peerbox policy explain``: print the decision; exit 0 allowed, 6 denied, 2 broken policy."""
    store = PeerStore(args.root)
    owner = store.get(args.name)
    known, note = _resolve_caller(store, owner, args.caller)
    did, name = known.did, known.name
    resource = _resource(args)
    now = _when(args.at)
    try:
        policy = load(owner.paths.policy)
    except PolicyError as exc:
        sys.stderr.write(f"{exc}\n")
        policy = Policy.deny_all(file=str(owner.paths.policy), error=exc)
        broken = True
    else:
        broken = False
    request = Request(did, name, args.action, resource, owner.did, now)
    decision = policy.decide(request)
    limited = decision.allowed and args.action in ("exec", "call")
    limits = policy.limits_for(request) if limited else None
    rates = policy.rates_for(request) if limited else ()
    rows = policy.row_filters(request) if decision.allowed and args.action in DB_ACTIONS else None
    rule = decision.rule
    if args.json:
        _out(json.dumps({
            "allowed": decision.allowed,
            "decision": "allow" if decision.allowed else "deny",
            "reason": decision.reason,
            "cause": None if decision.cause is None else str(decision.cause),
            "rule": None if rule is None else {"file": policy.file, "line": rule.line, "effect": rule.effect},
            "caller": {"did": did, "name": name, "source": known.source},
            "action": args.action,
            "resource": resource,
            "limits": _limits_json(limits, rates),
            "rows": None if rows is None else [dict(r) for r in rows],
        }, ensure_ascii=False, default=str))
    else:
        who = f"{name} ({did})" if name else did
        what = args.action + (f" {resource!r}" if resource is not None else "")
        lines = [f"{'ALLOW' if decision.allowed else 'DENY'}: {who} {what}"]
        if decision.allowed:
            lines.append(f"  decided by the {rule.effect} rule at {_local(policy, rule)}" if rule is not None
                         else f"  {decision.reason}")
        else:  # the one shape of a denial, its rule named by the full path (the operator's view)
            local = None if rule is None else RuleRef(policy.file, rule.line, rule.effect, rule.index)
            lines.append(f"  {dataclasses.replace(decision.denial(args.action, resource), rule=local)}")
        if name is not None or args.caller != "owner":
            lines.append(f"  caller: {name or '(no name)'} = {did} ({_SOURCES[known.source]})")
        if note is not None:
            lines.append(f"  note: {note}")
        shown = _limits_text(limits, rates) if limits is not None else None
        if shown is not None:
            lines.append(f"  limits: {shown}")
        if decision.allowed and args.action in DB_ACTIONS:
            shown_rows = " or ".join(" and ".join(f"{k} = {v!r}" for k, v in r.items()) for r in rows or ())
            lines.append(f"  rows: only records with {shown_rows}" if rows is not None
                         else "  rows: every record")
        _out("\n".join(lines))
    if broken:
        return 2
    return 0 if decision.allowed else EXIT_DENIED


def _local(policy: Policy, rule: RuleRef) -> str:
    """Where ``rule`` is, with the full path of its file (the operator's view; a decision itself
    names only the file's name within the peer)."""
    return str(RuleRef(policy.file, rule.line, rule.effect, rule.index))


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
