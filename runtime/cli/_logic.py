"""``peerbox logic``: owners inspect and change their peer's modules, locally or remotely.

::

    peerbox logic list NAME [--json] [--root DIR]     (published functions and who may call them)
    peerbox logic show NAME MODULE [--wat | --version N] [--root DIR]
    peerbox logic list|show|history|remove NAME ... --from OWNER [--cap FILE]... [--timeout S]
                                     (NAME is then a remote peer in <root>/peers.toml)
    peerbox logic set NAME MODULE FILE [--force] [--json] [--root DIR]
    peerbox logic history NAME MODULE [--json] [--root DIR]
    peerbox logic rollback NAME MODULE VERSION [--json] [--root DIR]
    peerbox logic remove NAME MODULE [--json] [--root DIR]
    peerbox logic verify NAME [--reseal] [--json] [--root DIR]
    peerbox logic push --from OWNER --to PEER MODULE FILE [--cap FILE]... [--json]
                       [--timeout S] [--root DIR]

A thin layer over :class:`peerbox.peer._logic.PeerLogic` and
:meth:`peerbox.AsyncClient.push_logic`. Exit codes: 0 ok, 2 usage (unknown
peer, module or version, bad name, unreadable file, a history that must be
checked first), 3 the module, or a module importing it, would not compile
(nothing was changed), 4 the target could not write the update (its reply
says why), 6 a push was denied, 7 no verified reply to a push, 8 ``verify``
found a problem, or an install was refused because the history or the live
module does not check out (``set --force`` records a new version over a
live module edited by hand).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any

from .. import net
from .._errors import UsageError
from ..hostcalls import Schema, SchemaError
from ..peer import (HEAD_KEY, Directory, ModuleListing, PeerLogic, PeerStore, Version, check_param_types,
                    load_schema, record_types)
from ..policy import PolicyError, RuleRef, load
from ..trust import exit_code, outcome_of
from ..wire import Reply
from ._peers import add_root_argument
from ._send import _client_failure, _read, add_remote_arguments

__all__ = ["add_parsers", "COMMANDS", "VERIFY_FAILED"]

COMMANDS = ("logic",)
#: The exit code of ``peerbox logic verify`` when the history does not check out.
VERIFY_FAILED = 8
_MAX_SOURCE_FILE = 512 << 10


def add_parsers(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``logic`` and its subcommands; each sets ``handler`` in its defaults."""
    pl = subparsers.add_parser(
        "logic", help="a peer's modules: list, show, set, history, rollback, remove, verify, push",
        description="Each peer owns its logic: modules in three layers (the peer's own logic/, the "
        "worker's shared logic/, peerbox's built-in library), every installed version signed and "
        "recorded. Exit codes: 0 ok, 2 usage, 3 does not compile, 4 the target failed to write it, "
        "6 denied, 7 no verified reply, 8 the history does not verify.",
    )
    sub = pl.add_subparsers(dest="logic_command", required=True, metavar="COMMAND")

    own = "the module name (the peer's own layer)"
    p = _command(sub, "list", cmd_list, "every module the peer sees: layer, overrides, functions; "
                 "published ones (export fn) and who may call them",
                 remote=True)
    p = _command(sub, "show", cmd_show, "print a module's source (or its compiled WebAssembly text)",
                 module="as a script imports it: inbox, shared:inbox, ...", json_flag=False, remote=True)
    shown = p.add_mutually_exclusive_group()
    shown.add_argument("--wat", action="store_true", help="the compiled WebAssembly text instead")
    shown.add_argument("--version", type=int, metavar="N", help="the source of recorded version N")
    p = _command(sub, "set", cmd_set, "install a new version of one of the peer's modules", module=own,
                 description="Compile FILE as the peer's MODULE and check every module importing it; "
                 "install it only if all compile (else nothing changes, exit 3). The version is recorded, "
                 "signed by the peer's key.")
    p.add_argument("file", metavar="FILE", help="the source file ('-' for stdin)")
    p.add_argument("--force", action="store_true",
                   help="install even over a live module changed by hand (which `logic verify` reports); "
                   "recorded as action 'force'")
    _command(sub, "history", cmd_history, "the recorded versions of a module", module=own, remote=True)
    p = _command(sub, "rollback", cmd_rollback, "install a recorded version again (as a new version)",
                 module=own)
    p.add_argument("version", metavar="VERSION", type=int, help="the version number to restore")
    _command(sub, "remove", cmd_remove, "remove one of the peer's own modules (recorded as a version)",
             module=own, remote=True,
             description="Delete the peer's MODULE so that imports reach the shared or "
             "built-in module of that name again, if any; refused (exit 3) if a module importing it "
             "would stop compiling. Recorded and signed like an install; `rollback` brings it back.")
    p = _command(sub, "verify", cmd_verify, "check the signed history of every module of the peer",
                 description="Check every recorded version (the installer's signature, the capability "
                 "that allowed it, the peer's seal and the chain of entries, the sealed head, the stored "
                 "source) and that each live module is its latest version. Exit 8 if anything does not "
                 "check out.")
    p.add_argument("--reseal", action="store_true",
                   help="after checking, seal the head anew from the logs as they are (accept them: for an "
                   "owner who has looked at what verify reports)")

    p = sub.add_parser("push", help="install a module on a remote peer (a signed peerbox/logic request)",
                       description="Sign a logic update as local peer --from and send it to --to (found "
                       "in <root>/peers.toml). The target installs it if --from is its owner or "
                       "presents a capability granting logic.write for MODULE, and it compiles.")
    p.add_argument("module", metavar="MODULE", help="the target's module name")
    p.add_argument("file", metavar="FILE", help="the source file ('-' for stdin)")
    add_remote_arguments(p, cap_help="a capability token granting logic.write (from `peerbox cap grant`); "
                         "repeatable")
    p.set_defaults(handler=cmd_push)


def _command(sub: argparse._SubParsersAction[Any], name: str, handler: Any, help: str, *,
             module: str | None = None, description: str | None = None,
             json_flag: bool = True, remote: bool = False) -> argparse.ArgumentParser:
    """A ``logic`` subcommand taking NAME (and MODULE), --root and, by default, --json.

    ``remote``: also ``--from OWNER [--cap FILE]... [--timeout S]``, which
    make NAME a remote peer found in the directory, asked over HTTP/2.
    """
    p: argparse.ArgumentParser = sub.add_parser(name, help=help, description=description or help)
    p.add_argument("name", metavar="NAME", help="the local peer (with --from: the remote one)")
    if module is not None:
        p.add_argument("module", metavar="MODULE", help=module)
    if json_flag:
        p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    if remote:
        p.add_argument("--from", dest="sender", metavar="OWNER",
                       help="ask the remote peer NAME (in <root>/peers.toml), signing as local peer OWNER")
        p.add_argument("--cap", action="append", default=[], metavar="FILE",
                       help="with --from: a capability token to present (logic.read / logic.write)")
        p.add_argument("--timeout", type=float, default=30.0, metavar="S",
                       help="with --from: seconds for the whole call (default 30)")
    add_root_argument(p)
    p.set_defaults(handler=handler)
    return p


def _logic(args: argparse.Namespace) -> PeerLogic:
    return PeerLogic(PeerStore(args.root).get(args.name))


def _read_source(path: str) -> str:
    try:
        return _read(path, _MAX_SOURCE_FILE).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not UTF-8 text") from exc


def _emit(doc: object) -> None:
    sys.stdout.write(json.dumps(doc, ensure_ascii=False, indent=None) + "\n")
    sys.stdout.flush()


def _version_doc(v: Version) -> dict[str, Any]:
    doc = {k: val for k, val in v.record().items() if k not in ("statement", "seal", "cap")}
    doc["capability"] = v.cap is not None
    return doc


def _when(t: int) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _describe(v: Version) -> str:
    what = f"rollback to {v.restores}" if v.action == "rollback" else v.action
    how = " with a capability" if v.cap is not None else f" under rule {v.rule}" if v.rule else ""
    return (f"{v.version:>4}  {_when(v.time)}  {v.sha256[:12]}  {v.size:>7} B  {what:<15} "
            f"by {v.by}{how}")


def cmd_list(args: argparse.Namespace) -> int:
    """``peerbox logic list NAME`` (or, with ``--from``, of the remote peer NAME)."""
    if args.sender is not None:
        reply = _remote(args, "list")
        if isinstance(reply, int):
            return reply
        docs = reply.value if isinstance(reply.value, list) else []
    else:
        logic = _logic(args)
        listing = logic.list()
        docs = [m.doc() for m in listing]
        _add_callers(docs, logic.peer.paths.policy)
        _warn_types(logic, listing)
    if args.json:
        _emit(docs)
        return 0
    active = {d["module"]: d["file"] for d in docs if d.get("active")}
    out = []
    for d in docs:
        state = "" if d.get("active") else f"  (overridden by {active.get(d['module'], '?')})"
        over = f"  overrides {', '.join(d['overrides'])}" if d.get("overrides") else ""
        out.append(f"{d['file']}{over}{state}")
        if d.get("error") is not None:
            out.append("    does not parse: " + str(d["error"]).splitlines()[0])
        exports = {e["name"]: e for e in d.get("exports", ())}
        for f in d.get("functions", ()):
            e = exports.pop(f["name"], None)
            out.append(f"    fn {f['name']}({', '.join(f['params'])})" if e is None
                       else _export_line(e, bool(d.get("publishes"))))
        out.extend(_export_line(e, bool(d.get("publishes"))) for e in exports.values())
        out.extend(f"    const {c}" for c in d.get("constants", ()))
        if d.get("imports"):
            out.append(f"    imports {', '.join(d['imports'])}")
    sys.stdout.write("".join(line + "\n" for line in out))
    return 0


def _warn_types(logic: PeerLogic, listing: list[ModuleListing]) -> None:
    """A warning on stderr for each published parameter naming a record type the peer's schema
    does not (or no longer) declare: calls to that function are refused until it is fixed."""
    published = [m for m in listing if m.publishes and any(record_types(e.types) for e in m.exports)]
    if not published:
        return
    try:
        schema: Schema | None = load_schema(logic.peer)
    except SchemaError:
        schema = None
    for m in published:
        for problem in check_param_types(m.ref.file, m.exports, schema, logic.peer.name):
            sys.stderr.write(f"warning: {problem.replace(': error: ', ': ', 1)} (calls to it are refused)\n")


def _add_callers(docs: list[dict[str, Any]], policy_file: Path) -> None:
    """Add ``callers`` (``[{effect, who, rule}]``, the policy's rules about calling it, in file
    order, whoever they name) to each export of the peer's own modules in ``docs``. Only the
    local CLI does this: a remote ``list`` must not reveal the policy. A policy that does not
    load gives no callers and a warning on stderr."""
    try:
        policy = load(policy_file)
    except PolicyError as exc:
        sys.stderr.write(f"warning: {exc.problems[0]}: who may call published functions is not shown\n")
        return
    for d in docs:
        if not d.get("publishes"):
            continue
        for e in d.get("exports", ()):
            rules = policy.rules_for("call", f"{d['module']}::{e['name']}")
            e["callers"] = [{"effect": r.effect, "who": ", ".join(r.who_text),
                             "rule": str(RuleRef(policy.name, r.line, r.effect, r.index))} for r in rules]


def _export_line(e: dict[str, Any], publishes: bool) -> str:
    """``    export fn deliver(msg: string)   call: carol (policy.toml:21); denied: dave (...)``."""
    types = e.get("types") or [None] * len(e["params"])
    params = ", ".join(p if t is None else f"{p}: {t}" for p, t in zip(e["params"], types, strict=False))
    line = f"    export fn {e['name']}({params})"
    if not publishes:
        return line + "   (not published: only the peer's own modules publish)"
    callers = e.get("callers")
    if callers is None:  # a remote listing: the policy is not shown
        return line
    allowed = [f"{c['who']} ({c['rule']})" for c in callers if c["effect"] == "allow"]
    denied = [f"{c['who']} ({c['rule']})" for c in callers if c["effect"] == "deny"]
    shown = "call: " + (", ".join(allowed) if allowed else "nobody but capability holders")
    return line + "   " + shown + ("; denied: " + ", ".join(denied) if denied else "")


def cmd_show(args: argparse.Namespace) -> int:
    """``peerbox logic show NAME MODULE [--wat | --version N]`` (remote with ``--from``: the source)."""
    if args.sender is not None:
        if args.wat or args.version is not None:
            raise UsageError("--wat and --version are for local peers (without --from)")
        reply = _remote(args, "show", args.module)
        if isinstance(reply, int):
            return reply
        text = str(reply.value.get("source", "")) if isinstance(reply.value, dict) else ""
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return 0
    logic = _logic(args)
    if args.version is not None:
        match = [v for v in logic.versions(args.module) if v.version == args.version]
        if not match:
            raise UsageError(f"module {args.module!r} of peer {logic.peer.name!r} has no version "
                             f"{args.version}")
        text = logic.history.source(match[0].sha256)
    else:
        text = logic.wat(args.module) if args.wat else logic.find(args.module).source
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def _changed(peer: str, removed: bool, module: object, version: object, sha256: object) -> str:
    """The line that reports an install or a removal, local or remote."""
    if removed:
        return f"{peer}: peer:{module} removed (version {version})"
    return f"{peer}: peer:{module} is now version {version} (sha256 {str(sha256)[:12]})"


def _installed(args: argparse.Namespace, logic: PeerLogic, v: Version, after: str = "") -> int:
    if args.json:
        _emit(_version_doc(v))
    else:
        sys.stderr.write(_changed(logic.peer.name, v.action == "remove", v.module, v.version, v.sha256)
                         + after + "\n")
    return 0


def _changed_remotely(args: argparse.Namespace, op: str, target: str, source: str = "") -> int:
    """Send a ``set`` or ``remove`` to ``target`` and report it (the reply's value with --json)."""
    reply = _remote(args, op, args.module, source, target=target)
    if isinstance(reply, int):
        return reply
    value = reply.value if isinstance(reply.value, dict) else {}
    if args.json:
        _emit(value)
    else:
        sys.stderr.write(_changed(target, op == "remove", value.get("module"), value.get("version"),
                                  value.get("sha256")) + "\n")
    return 0


def cmd_set(args: argparse.Namespace) -> int:
    """``peerbox logic set NAME MODULE FILE``."""
    logic = _logic(args)
    return _installed(args, logic, logic.set(args.module, _read_source(args.file), force=args.force))


def cmd_rollback(args: argparse.Namespace) -> int:
    """``peerbox logic rollback NAME MODULE VERSION``."""
    logic = _logic(args)
    return _installed(args, logic, logic.rollback(args.module, args.version))


def cmd_remove(args: argparse.Namespace) -> int:
    """``peerbox logic remove NAME MODULE`` (remote with ``--from``)."""
    if args.sender is not None:
        return _changed_remotely(args, "remove", args.name)
    logic = _logic(args)
    v = logic.remove(args.module)
    now = logic.layers(v.module, "<logic>")
    return _installed(args, logic, v, f"; imports of {v.module!r} now reach {now.file}" if now else "")


def cmd_history(args: argparse.Namespace) -> int:
    """``peerbox logic history NAME MODULE`` (remote with ``--from``)."""
    if args.sender is not None:
        reply = _remote(args, "history", args.module)
        if isinstance(reply, int):
            return reply
        try:
            records = reply.value["versions"] if isinstance(reply.value, dict) else []
            versions = [Version.parse(r) for r in records]
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{args.name} sent a history that does not parse: {exc}") from exc
    else:
        versions = _logic(args).versions(args.module)
    if args.json:
        _emit([_version_doc(v) for v in versions])
    elif not versions:
        sys.stderr.write(f"no recorded versions of {args.module!r}\n")
    else:
        sys.stdout.write("".join(_describe(v) + "\n" for v in versions))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """``peerbox logic verify NAME``: exit 0 when every history checks out, 8 otherwise."""
    logic = _logic(args)
    report = logic.verify()
    bad = {m: ps for m, ps in report.items() if ps}
    if args.reseal:
        head = logic.history.reseal(logic.peer.signing_key())
        sys.stderr.write(f"{logic.peer.name}: head sealed anew over {len(head)} module histories\n")
    if args.json:
        _emit({"peer": logic.peer.name, "ok": not bad, "modules": report})
    else:
        for module, problems in report.items():
            if problems:
                sys.stdout.write("".join(f"FAIL {p}\n" for p in problems))
            elif module == HEAD_KEY:
                continue
            else:
                n = len(logic.history.entries(module))
                sys.stdout.write(f"ok   {module}: {n} version{'s' if n != 1 else ''} verified\n")
        if not report:
            sys.stdout.write(f"{logic.peer.name} has no modules of its own\n")
    return VERIFY_FAILED if bad else 0


def cmd_push(args: argparse.Namespace) -> int:
    """``peerbox logic push --from OWNER --to PEER MODULE FILE``."""
    return _changed_remotely(args, "set", args.to, _read_source(args.file))


def _remote(args: argparse.Namespace, op: str, module: str = "", source: str = "", *,
            target: str | None = None) -> Reply | int:
    """Send one logic request as ``--from`` to ``target`` (default: NAME, found in the directory).

    Returns the verified ``ok`` reply, or the exit code after reporting a
    failure: 6 denied, 3 refused for not compiling, 2 not found, 4 other
    refusals, 7 no verified reply.
    """
    want_json = bool(getattr(args, "json", False))
    caps = [_read(path, 64 << 10) for path in args.cap]
    if not args.timeout > 0:
        raise UsageError("--timeout must be a positive number of seconds")
    key = PeerStore(args.root).get(args.sender).signing_key()
    directory = Directory(args.root)
    entry = directory.resolve(target if target is not None else args.name)

    import trio  # here, not at the top: only commands that call a worker load trio and h2

    async def call() -> Reply:
        async with net.AsyncClient(key, directory) as client:
            return await client.logic(entry, op, module, source, caps=caps, timeout=args.timeout)

    try:
        reply = trio.run(call)
    except net.ClientError as err:
        return _client_failure(err, want_json)
    if reply.ok:
        return reply
    error = dict(reply.error or {})
    kind, message = str(error.get("kind", "error")), str(error.get("message", ""))
    code = exit_code(outcome_of(False, kind, logic=True), kind, via="push")
    if code == 6:
        sys.stderr.write(f"{entry.name}: {message}\n")  # names the action and the rule, or why
    elif code == 2:
        sys.stderr.write(f"error: {entry.name}: {message}\n")
    else:
        sys.stderr.write(f"{entry.name} refused the {op} ({kind}), nothing changed:\n{message}\n")
    if want_json:
        _emit({"error": {**error, "exit_code": code}})
    return code
