"""The ``peerbox`` command (also ``python -m peerbox``): a thin layer over the rooms below it.

Its module map, in the order a command line is handled::

    _main       ``main``/``console_main``: the command table (name, module, help), the lazy
                top-level parser, the one error boundary
    _args       the parser class, sizes, ``--param``/``--params-json``
    _input      bounded reading of files and stdin, JSON limits, message excerpts
    _run        ``compile``, ``run``, ``handle``, ``cache stats|clear`` (scripts and requests run here)
    _peers      ``init``, ``peers [list]``, ``peers show``
    _policy     ``policy check|explain``
    _caps       ``cap grant|delegate|inspect|revoke``
    _envelope   ``envelope make|inspect`` (requests and replies as files)
    _send       ``send`` (a script to a remote peer, over :mod:`peerbox.net`)
    _directory  ``directory add|remove|list``, ``peers add`` (``peers.toml``, comments kept)
    _logic      ``logic list|show|set|history|rollback|remove|verify|push``
    _serve      ``serve`` (the worker); ``python -m peerbox.cli._serve`` starts isolated children
    _completion ``completion bash|zsh|fish`` (argcomplete), and answering the shell's TAB
    _report     a failure as one message, an exit code and (``--json``) one JSON document

The top-level parser imports a command's module only when that command is
chosen (``peerbox CMD ...`` or ``peerbox CMD --help``), and commands import
what is slow to load (trio and h2 for the network, wasmtime through
:mod:`peerbox.run`'s lazy names) only where they use it: ``peerbox --version``
and ``peerbox --help`` load none of them, nor nacl or cbor2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import attach

if TYPE_CHECKING:
    from ._main import console_main, main

__all__ = ["main", "console_main"]

# Lazy (PEP 562) like every room, so that ``python -m peerbox.cli._serve`` does not import
# ``_serve`` twice (once through ``_main``, once as ``__main__``).
__getattr__, __dir__ = attach(__name__, {"main": "._main", "console_main": "._main"})
