"""``peerbox call``: call a function a remote peer publishes (``export fn``), with its owner's rights.

::

    peerbox call --from NAME --to NAME|DID MODULE::FUNCTION [--arg K=V]... [--args-json JSON]
                 [--params-file FILE|-] [--cap FILE]... [--json] [--timeout S] [--memory BYTES]
                 [--fuel N] [--wait S] [--root DIR]

A thin layer over :meth:`peerbox.AsyncClient.call`: it signs a
``peerbox/call`` request as local peer ``--from`` naming ``MODULE::FUNCTION``
and its arguments, sends it to ``--to`` at the URL the directory
(``<root>/peers.toml``) gives, verifies the signed reply and prints the value
as ``peerbox send`` does (the function's log on stderr). No code of the
caller's runs on the target: the arguments travel as plain values.

Arguments: ``--arg K=V`` passes parameter ``K`` by name (``V`` is JSON if it
parses, else a string, as ``--param`` of ``send``); ``--args-json`` is a JSON
object (by name; ``--arg`` entries override it) or a JSON array (by
position; then ``--arg`` is a usage error, since the two cannot be merged);
``--params-file FILE|-`` is the same JSON read from a file or stdin (one of
``--params-file`` and ``--args-json``, not both). ``--timeout``, ``--memory``
and ``--fuel`` ask for the run's limits (the target's policy caps them),
``--wait`` bounds the whole call; ``--json`` prints what ``run --json`` does.

Exit codes: 0 ok, 2 usage or the target's ``bad_arguments`` (the arguments do
not match the function) and ``no_such_function`` (nothing of that name is
published), 4 the function failed, 5 a resource limit, 6 denied (by the
target's policy, or a host call the owner may not make), 7 no verified reply,
9 rate limited by the target's policy.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .. import net
from .._errors import UsageError
from ..peer import PeerStore
from ..wire import Reply
from ._args import parse_param, read_params_file
from ._input import MAX_PARAMS_BYTES, excerpt, loads_json
from ._send import (
    _MAX_CAP_FILE, _client_failure, _read, add_remote_arguments, call_deadline, print_result, reply_exit_code,
    report_failed_reply, requested_limits, STATE_HELP,
)
from ._directory import add_state_argument, client_directory

__all__ = ["add_parsers", "call_arguments", "split_function", "cmd_call", "COMMANDS"]

#: The command this module adds.
COMMANDS = ("call",)

_HELP = "call a function a remote peer publishes (runs with its owner's rights)"


def add_parsers(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``call``; it sets ``handler`` in its defaults."""
    pc = subparsers.add_parser(
        "call", help=_HELP,
        description="Sign a peerbox/call request from local peer --from asking peer --to (found in "
        "<root>/peers.toml) to run its published function MODULE::FUNCTION (an `export fn` of its own "
        "module) with the given arguments, verify the signed reply and print the value. The function "
        "runs with the target owner's rights; no code of yours runs there. Exit codes: 0 ok, 2 usage, "
        "arguments that do not match or no such published function, 4 the function failed, 5 limit, "
        "6 denied, 7 no verified reply, 9 rate limited.",
    )
    pc.add_argument("function", metavar="MODULE::FUNCTION",
                    help="the published function, e.g. inbox::deliver")
    pc.add_argument("--arg", action="append", default=[], metavar="K=V",
                    help="an argument by name; V is parsed as JSON if it parses, else taken as a string")
    pc.add_argument("--args-json", metavar="JSON",
                    help="the arguments as one JSON object (by name; --arg overrides) or array (by position)")
    pc.add_argument("--params-file", metavar="FILE",
                    help="the arguments as in --args-json, read from FILE ('-': stdin)")
    add_remote_arguments(pc, cap_help="a capability token to present (e.g. granting call:inbox::deliver); "
                         "repeatable", run_limits=True)
    add_state_argument(pc, STATE_HELP)
    pc.set_defaults(handler=cmd_call)


def split_function(text: str) -> tuple[str, str]:
    """``"inbox::deliver"`` -> ``("inbox", "deliver")`` (the module may contain ``::`` itself no
    more than a path does: the function is what follows the last ``::``).

    Raises :class:`UsageError` when there is no ``::`` or either side is empty; the target
    checks the names themselves (a name it cannot carry is refused before sending).
    """
    module, sep, function = text.rpartition("::")
    if not sep or not module or not function:
        raise UsageError(f"expected MODULE::FUNCTION (e.g. inbox::deliver), got {excerpt(text, 80)}")
    return module, function


def call_arguments(args_json: str | None, items: list[str],
                   params_file: str | None = None) -> dict[str, Any] | list[Any]:
    """The arguments of ``--args-json`` (or ``--params-file``) and every ``--arg K=V``: a dict by
    name or a list by position.

    Raises :class:`UsageError` for JSON that is neither an object nor an array, an array combined
    with ``--arg``, both ``--args-json`` and ``--params-file``, a malformed ``K=V``, or arguments over
    :data:`~peerbox.cli._input.MAX_PARAMS_BYTES` in all (or nested too deep).
    """
    total = 0
    by_name: dict[str, Any] = {}
    loaded: Any = None
    what = "--args-json"
    if params_file is not None:
        if args_json is not None:
            raise UsageError("give the arguments in --args-json or in --params-file, not both")
        loaded, total = read_params_file(params_file)
        what = "--params-file"
    elif args_json is not None:
        total += len(args_json)
        try:
            loaded = loads_json(args_json, "--args-json")
        except ValueError as exc:
            raise UsageError(f"--args-json is not valid JSON: {excerpt(str(exc), 200)}") from exc
    if params_file is not None or args_json is not None:
        if isinstance(loaded, list):
            if items:
                raise UsageError(f"{what} gives the arguments by position (a JSON array): "
                                 "--arg (by name) cannot be added to it; use a JSON object instead")
            return loaded
        if not isinstance(loaded, dict):
            raise UsageError(f"{what} must be a JSON object (by name) or array (by position)")
        by_name.update(loaded)
    for item in items:
        total += len(item)
        if total > MAX_PARAMS_BYTES:
            raise UsageError(f"the arguments are over {MAX_PARAMS_BYTES} bytes in all, the limit on params")
        if not item.partition("=")[0] or "=" not in item:
            raise UsageError(f"--arg expects NAME=VALUE, got {excerpt(item)}")
        key, value = parse_param(item)
        by_name[key] = value
    return by_name


def cmd_call(args: argparse.Namespace) -> int:
    """``peerbox call``: sign, send, verify, print; the exit code says the outcome (module docstring)."""
    import trio  # here, not at the top: only commands that call a worker load trio and h2

    split_function(args.function)
    limits = requested_limits(args)
    deadline = call_deadline(args)
    arguments = call_arguments(args.args_json, args.arg, args.params_file)
    caps = [_read(path, _MAX_CAP_FILE) for path in args.cap]
    key = PeerStore(args.root).get(args.sender).signing_key()
    with client_directory(args.root, args.state) as directory:
        entry = directory.resolve(args.to)

        async def call() -> Reply:
            async with net.AsyncClient(key, directory) as client:
                if isinstance(arguments, list):
                    return await client.call(entry, args.function, *arguments, caps=caps, limits=limits,
                                             timeout=deadline)
                return await client.call(entry, args.function, params=arguments or None, caps=caps,
                                         limits=limits, timeout=deadline)

        try:
            reply = trio.run(call)
        except net.ClientError as err:
            return _client_failure(err, args.json)
    if reply.log:
        sys.stderr.write("".join(line + "\n" for line in reply.log))
    if reply.ok:
        print_result(reply, args.json)
        return 0
    return report_failed_reply(entry.name, reply, reply_exit_code(reply, via="call"), args.json)
