"""``peerbox completion bash|zsh|fish``: shell completion, through argcomplete.

::

    peerbox completion bash > ~/.local/share/bash-completion/completions/peerbox
    peerbox completion zsh  > "${fpath[1]}/_peerbox"
    peerbox completion fish > ~/.config/fish/completions/peerbox.fish

The printed script is argcomplete's: on TAB the shell runs ``peerbox`` itself
with argcomplete's environment (``_ARGCOMPLETE``, ``COMP_LINE``,
``COMP_POINT``), and :func:`complete` answers from the real parser, so the
completions are always those of the installed version. The top-level parser
loads command modules lazily; :func:`complete` loads every one first, so
every command's options complete. Arguments that take a peer (``--from``,
``--to``, ``--peer``, ``--as``, ``--peers A,B``, ``peers show NAME``,
``directory remove NAME``, ...) complete the peers under the root (``--root``
if typed, else ``$PEERBOX_ROOT``, else ``./peerbox-data``) and the names in
its ``peers.toml``: a directory listing and one small file, read per TAB.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, NoReturn

from ..peer import DEFAULT_ROOT, ENV_ROOT, Directory, DirectoryError

__all__ = ["add_parsers", "cmd_completion", "complete", "peer_names", "SHELLS", "COMMANDS"]

COMMANDS = ("completion",)
#: The shells ``peerbox completion`` writes a script for.
SHELLS = ("bash", "zsh", "fish")
_PROG = "peerbox"
#: Metavars of the arguments that name a peer (``A,B``: a comma-separated list of peers).
_PEER_METAVARS = frozenset({"NAME", "NAME|DID", "PEER", "OWNER", "A,B"})
#: Commands whose NAME is a new name, not an existing peer.
_NEW_NAMES = frozenset({"init"})


def add_parsers(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``completion``; it sets ``handler`` in its defaults."""
    p = subparsers.add_parser(
        "completion", help="print a shell completion script (bash, zsh or fish)",
        description="Print the completion script of SHELL on stdout; load it with e.g. "
        "`source <(peerbox completion bash)` or save it where your shell looks for completions. "
        "Commands, options and peer names (from --root, $PEERBOX_ROOT or ./peerbox-data) complete.",
    )
    p.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash, zsh or fish")
    p.set_defaults(handler=cmd_completion)


def cmd_completion(args: argparse.Namespace) -> int:
    """``peerbox completion SHELL``: print argcomplete's script for ``peerbox`` in that shell."""
    from argcomplete.shell_integration import shellcode

    sys.stdout.write(shellcode([_PROG], shell=args.shell))
    sys.stdout.flush()
    return 0


def peer_names(root: str | None) -> list[str]:
    """The peers under ``root`` (None: ``$PEERBOX_ROOT``, else ``./peerbox-data``) and the names in
    its ``peers.toml``, sorted; what cannot be read contributes nothing (completion never fails)."""
    base = root or os.environ.get(ENV_ROOT) or DEFAULT_ROOT
    names: set[str] = set()
    try:
        with os.scandir(os.path.join(base, "peers")) as it:
            names.update(e.name for e in it if e.is_dir() and not e.name.startswith("."))
    except OSError:
        pass
    try:
        names.update(e.name for e in Directory(base).list())
    except DirectoryError:
        pass
    return sorted(names)


def _peer_completer(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    names = peer_names(getattr(parsed_args, "root", None))
    head, sep, _tail = prefix.rpartition(",")
    return [head + sep + n for n in names]


def _walk(parser: argparse.ArgumentParser) -> Iterator[tuple[argparse.ArgumentParser, argparse.Action]]:
    for action in parser._actions:
        yield parser, action
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if name not in _NEW_NAMES:
                    yield from _walk(sub)


def prepare(parser: argparse.ArgumentParser, modules: Iterable[str]) -> argparse.ArgumentParser:
    """Load every command module of ``modules`` into ``parser`` (the lazy top level) and attach the
    peer-name completer to every argument that names a peer; returns ``parser``."""
    for action in parser._actions:
        load = getattr(action, "load", None)
        if isinstance(action, argparse._SubParsersAction) and load is not None:
            for module in dict.fromkeys(modules):
                load(module)
    for _, action in _walk(parser):
        if action.metavar in _PEER_METAVARS and not isinstance(action, argparse._SubParsersAction):
            action.completer = _peer_completer  # type: ignore[attr-defined]
    return parser


def complete(parser: argparse.ArgumentParser, modules: Iterable[str]) -> NoReturn:
    """Answer argcomplete's request (``_ARGCOMPLETE`` set) with the completions of ``parser`` (its
    commands from ``modules`` all loaded) and exit."""
    from argcomplete.finders import CompletionFinder

    CompletionFinder()(prepare(parser, modules))
    sys.exit(0)  # autocomplete exits itself when it answered; this is for a malformed request
