"""The ``peerbox policy`` commands: check and explain a peer's ``policy.toml``.

::

    peerbox policy check NAME [--root DIR] [--json]
    peerbox policy explain NAME --caller WHO --action ACTION [--path P | --module M]
                           [--at TIME] [--root DIR] [--json]

``check`` loads the policy and prints ``OK: FILE: N rules`` (exit 0) or
every problem as ``file:line: problem`` on stderr (exit 2). Warnings (a
resource pattern not in Unicode NFC, which is matched normalised) go to
stderr as ``file:line: warning: ...`` and leave the exit code 0.

``explain`` decides one request the way the peer would and prints the
decision and the rule (``file:line``, the full path: this is the local
operator; remote callers see only ``policy.toml:line``) that decided it, or
that nothing allowed it. A path or module name is decided exactly as the
peer would decide it, so any Unicode spelling (NFC or NFD) of a name gets the
same answer. WHO is a ``did:key``, a peer name under the root, or ``owner``.
Exit 0 when allowed, 6 (the policy-denial code) when denied, 2 when the
policy does not load or the arguments make no sense.

:func:`add_parsers` adds ``policy`` to the CLI's subparsers; each leaf
subparser sets ``handler`` (``args.handler(args) -> int``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from typing import Any

from ..policy import (
    ACTIONS, RESOURCE_ACTIONS, Policy, PolicyError, PolicyLimits, Request, RuleRef, load,
)

from ._peers import add_root_argument
from .._errors import UsageError
from ..wire import IdentityError, public_key_from_did
from ..peer import Peer, PeerNotFound, PeerStore

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
                    help="a did:key, a peer name under the root, or 'owner'")
    pe.add_argument("--action", required=True, choices=ACTIONS, metavar="ACTION",
                    help=f"one of {', '.join(ACTIONS)}")
    what = pe.add_mutually_exclusive_group()
    what.add_argument("--path", metavar="P", help="the path (for fs.* actions; '' is the storage root)")
    what.add_argument("--module", metavar="M", help="the module name (for module.import and logic.*)")
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
    peer = PeerStore(args.root).get(args.name)
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
    if args.json:
        _out(json.dumps({"ok": True, "file": policy.file, "rules": len(policy.rules),
                         "groups": sorted(policy.groups), "warnings": [
                             {"file": w.file, "line": w.line, "warning": w.problem} for w in policy.warnings
                         ]}, ensure_ascii=False))
    else:
        for w in policy.warnings:
            where = f"{w.file}:{w.line}" if w.line else w.file
            sys.stderr.write(f"{where}: warning: {w.problem}\n")
        n = len(policy.rules)
        _out(f"OK: {policy.file}: {n} rule{'s' if n != 1 else ''}, "
             f"{len(policy.groups)} group{'s' if len(policy.groups) != 1 else ''}")
    return 0


def _resolve_caller(store: PeerStore, owner: Peer, who: str) -> tuple[str, str | None]:
    """``(did, local name or None)`` of WHO. Raises :class:`UsageError`."""
    if who == "owner":
        return owner.did, owner.name
    if who.startswith("did:"):
        try:
            public_key_from_did(who)
        except IdentityError as exc:
            raise UsageError(f"--caller: {exc}") from exc
        local = store.by_did(who)
        return who, local.name if local is not None else None
    try:
        peer = store.get(who)
    except PeerNotFound as exc:
        raise UsageError(f"--caller: no peer named {who!r} under {store.root} "
                         "(give a did:key, a local peer name or 'owner')") from exc
    return peer.did, peer.name


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
    if action in ("module.import", "logic.read", "logic.write"):
        if args.module is None:
            raise UsageError(f"{action} needs --module M")
        return str(args.module)
    if action in RESOURCE_ACTIONS:
        if args.path is None:
            raise UsageError(f"{action} needs --path P")
        return str(args.path)
    if args.path is not None or args.module is not None:
        raise UsageError("exec names no resource: leave out --path and --module")
    return None


def _limits_json(limits: PolicyLimits | None) -> dict[str, Any] | None:
    if limits is None:
        return None
    return {"fuel": limits.fuel, "timeout": limits.timeout, "memory": limits.memory}


def cmd_explain(args: argparse.Namespace) -> int:
    """``peerbox policy explain``: print the decision; exit 0 allowed, 6 denied, 2 broken policy."""
    store = PeerStore(args.root)
    owner = store.get(args.name)
    did, name = _resolve_caller(store, owner, args.caller)
    resource = _resource(args)
    now = _when(args.at)
    try:
        policy = load(owner.paths.policy)
    except PolicyError as exc:
        sys.stderr.write(f"{exc}\n")
        policy = Policy.deny_all(f"the policy does not load: {exc.problems[0]}", str(owner.paths.policy))
        broken = True
    else:
        broken = False
    request = Request(did, name, args.action, resource, owner.did, now)
    decision = policy.decide(request)
    limits = policy.limits_for(request) if decision.allowed and args.action == "exec" else None
    rule = decision.rule
    if args.json:
        _out(json.dumps({
            "allowed": decision.allowed,
            "decision": "allow" if decision.allowed else "deny",
            "reason": decision.reason,
            "rule": None if rule is None else {"file": policy.file, "line": rule.line, "effect": rule.effect},
            "caller": {"did": did, "name": name},
            "action": args.action,
            "resource": resource,
            "limits": _limits_json(limits),
        }, ensure_ascii=False))
    else:
        who = f"{name} ({did})" if name else did
        what = args.action + (f" {resource!r}" if resource is not None else "")
        lines = [f"{'ALLOW' if decision.allowed else 'DENY'}: {who} {what}"]
        if rule is not None:
            lines.append(f"  decided by the {rule.effect} rule at {_local(policy, rule)}")
        else:
            lines.append(f"  {decision.reason}")
        if limits is not None and not limits.is_empty():
            caps = ", ".join(f"{k}={v}" for k, v in (("fuel", limits.fuel), ("timeout", limits.timeout),
                                                      ("memory", limits.memory)) if v is not None)
            lines.append(f"  limits: {caps}")
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
