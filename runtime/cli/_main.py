"""The ``peerbox`` command (also ``python -m peerbox``): the parser, the dispatch, the error boundary.

::

    peerbox compile | run | handle | cache          scripts and requests run here (``_run``)
    peerbox init | peers                           peers under a root (``_peers``)
    peerbox policy check | explain                 a peer's policy (``_policy``)
    peerbox envelope make | inspect                signed requests as files (``_envelope``)
    peerbox cap grant | delegate | inspect | revoke  capability tokens (``_caps``)
    peerbox send | directory                       a script to a remote peer (``_send``)
    peerbox call                                   a remote peer's published function (``_call``)
    peerbox serve                                  the HTTP/2 worker (``_serve``)
    peerbox audit                                  a peer's audit log of decisions (``_audit``)
    peerbox logic list | show | set | history | rollback | remove | verify | push   (``_logic``)
    peerbox completion bash | zsh | fish           shell completion (``_completion``)
    peerbox dev up | env | down                    local nats-server and S3 for trying scale-out (``_dev``)
    peerbox --version | --help

The top-level parser knows each command from :data:`COMMANDS` (its name, the
module that implements it, its one-line help) and imports that module only
when the command is chosen (``peerbox CMD ...`` or ``peerbox CMD --help``):
``peerbox --version`` and ``peerbox --help`` load no wasmtime, trio, h2, nacl
or cbor2. Each command module's ``add_parsers(subparsers)`` registers its
commands (their options, descriptions and ``handler(args) -> exit code``).

Exit codes: 0 ok, 2 usage error, 3 compile error, 4 runtime error, 5 resource
limit, 6 denied by a policy, 7 transport or verification failure, 8 ``logic
verify`` found a problem, 9 rate limited by the target's policy, 1 only
for a bug in peerbox (130 after Ctrl-C, 141 when stdout is closed early).
Errors are printed to stderr, never as a traceback (with ``--json``, also as
one JSON document on stdout); the script's log (``print``/``debug``) goes to stderr too.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

from .._version import __version__
from ._args import Parser
from ._report import report

__all__ = ["main", "console_main", "build_parser", "Command", "COMMANDS"]

EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


class Command(NamedTuple):
    """One top-level command: its ``name``, the ``module`` (in ``peerbox.cli``) whose
    ``add_parsers`` registers it, and the one-line ``help`` that ``peerbox --help`` lists."""

    name: str
    module: str
    help: str


#: Every top-level command, in the order ``peerbox --help`` lists them. A test checks that each
#: module registers exactly its commands here, with the same help lines.
COMMANDS: tuple[Command, ...] = (
    Command("compile", "._run", "compile a script and print its WebAssembly"),
    Command("run", "._run", "compile (or fetch from the cache) and run a script"),
    Command("init", "._peers", "create a peer: an Ed25519 identity and its directory"),
    Command("peers", "._peers", "list the peers under a root, or show one (peers show NAME [--did])"),
    Command("policy", "._policy", "check a peer's policy, or explain a decision"),
    Command("schema", "._schema", "check, show or apply a peer's record types and collections (schema.toml)"),
    Command("db", "._db", "export or import a collection of a peer's records (JSON lines)"),
    Command("envelope", "._envelope", "make and inspect signed request envelopes (COSE_Sign1)"),
    Command("cap", "._caps", "capability tokens: grant, delegate, inspect, revoke"),
    Command("send", "._send", "sign a script, run it on a remote peer over HTTP/2, verify and print the "
            "reply"),
    Command("call", "._call", "call a function a remote peer publishes (runs with its owner's rights)"),
    Command("directory", "._send", "where remote peers are reachable (<root>/peers.toml)"),
    Command("serve", "._serve", "host peers over HTTP/2 (POST /v1/exec, /v1/call, /v1/logic, /v1/revoke; "
            "GET /v1/health, /v1/ready, /v1/status, /v1/peers, /metrics)"),
    Command("status", "._status", "what a running worker is doing: mode, peers, runs, uptime, errors"),
    Command("logic", "._logic", "a peer's modules: list, show, set, history, rollback, remove, verify, push"),
    Command("handle", "._run", "answer a signed request (exec, call, logic update or revocation) as a "
            "local peer (what a worker does)"),
    Command("cache", "._run", "the on-disk cache of compiled modules: stats, clear"),
    Command("completion", "._completion", "print a shell completion script (bash, zsh or fish)"),
    Command("audit", "._audit", "a peer's audit log: who asked what, and what was decided"),
    Command("dev", "._dev", "local nats-server and SeaweedFS (S3) for trying scale-out: dev up | env | down"),
)

_COMMAND_MODULES = {c.name: c.module for c in COMMANDS}
_PROG = "peerbox"


if TYPE_CHECKING:
    _SubParsers = argparse._SubParsersAction[Parser]
else:  # generic only in typeshed
    _SubParsers = argparse._SubParsersAction


class _LazyCommands(_SubParsers):
    """Subparsers that start as placeholders (name and help only) and are filled when chosen.

    When argparse dispatches to a command, the module named in :data:`COMMANDS`
    is imported and its ``add_parsers`` registers the real parsers (of every
    command that module adds), replacing the placeholders before the command's
    arguments are parsed. Each module is loaded at most once per parser.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loaded: set[str] = set()

    def load(self, module: str) -> None:
        """Import ``module`` (relative to ``peerbox.cli``) and register its parsers here.

        Raises ``ImportError`` if it does not import (a bug in peerbox, exit 1).
        """
        if module in self.loaded:
            return
        staging = Parser(prog=_PROG).add_subparsers(prog=_PROG, parser_class=Parser)
        importlib.import_module(module, __package__).add_parsers(staging)
        self.choices.update(staging.choices)
        self.loaded.add(module)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        if values:
            command = _COMMAND_MODULES.get(values[0])
            if command is not None:
                self.load(command)
        super().__call__(parser, namespace, values, option_string)


def build_parser() -> Parser:
    """The top-level parser: ``--version``, ``--help`` and every command of :data:`COMMANDS`, lazily.

    Parsing a command's arguments imports its module (see :class:`_LazyCommands`);
    ``parse_args`` raises :class:`~peerbox.cli._args.ArgError` for a usage error.
    """
    parser = Parser(
        prog=_PROG,
        description="Compile and run peerbox scripts (a Rhai-like language) in a wasm sandbox.",
        epilog="exit codes: 0 ok, 2 usage, 3 compile error, 4 runtime error, 5 resource limit, "
        "6 denied by a policy, 7 transport or verification failure, 8 a logic history that does not "
        "check out, 9 rate limited, 1 a bug in peerbox",
    )
    parser.add_argument("--version", action="version", version=f"peerbox {__version__}")
    # Each command's parser sets ``handler(args) -> exit code`` in its defaults.
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser,
                                action=_LazyCommands)
    sub.required = True
    for command in COMMANDS:
        sub.add_parser(command.name, help=command.help)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``peerbox`` console script: parse ``argv``, run the command, return its exit code.

    Every failure is rendered by :func:`~peerbox.cli._report.report` (a message
    on stderr, its exit code); only ``--help``/``--version`` raise ``SystemExit``.
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    want_json = "--json" in args_list
    try:
        try:
            args = build_parser().parse_args(args_list)
            want_json = bool(getattr(args, "json", False))
            handler: Callable[[argparse.Namespace], int] = args.handler
            return handler(args)
        except BrokenPipeError:
            raise
        except KeyboardInterrupt:
            raise
        except SystemExit:
            raise  # --help / --version
        except BaseException as err:  # every failure ends here, rendered, never a traceback
            return report(err, want_json)
    except BrokenPipeError:
        # stdout was closed early (e.g. `| head`): silence the final flush and exit quietly.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError:
            pass
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        try:
            sys.stderr.write("interrupted\n")
            sys.stderr.flush()
        except OSError:
            pass
        return EXIT_INTERRUPTED


def console_main() -> NoReturn:  # pragma: no cover - exercised through subprocesses
    """The ``peerbox`` console script: :func:`main`, then exit with its code (``os._exit`` after Ctrl-C,
    since a guest may still be running on the worker thread). Under argcomplete's protocol
    (``_ARGCOMPLETE`` set, the shell asking for completions) it answers that and exits instead."""
    if "_ARGCOMPLETE" in os.environ:
        from ._completion import complete

        complete(build_parser(), [c.module for c in COMMANDS])
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = EXIT_BROKEN_PIPE
    if code == EXIT_INTERRUPTED:
        os._exit(code)  # a guest may still be running on the worker thread
    sys.exit(code)
