"""The ``peerbox`` command (also ``python -m peerbox``): a thin layer over the rooms below it.

Its module map, in the order a command line is handled::

    _main       ``main``/``console_main``: the parser, ``run``, ``compile``, ``handle``, ``cache``
    _args       the parser class, sizes, ``--param``/``--params-json``
    _input      bounded reading of files and stdin, JSON limits, message excerpts
    _peers      ``init``, ``peers``, ``peers add`` / ``directory add``
    _policy     ``policy check|explain|show``
    _caps       ``cap grant|delegate|show|revoke``
    _envelope   ``envelope make|show|verify`` (requests and replies as files)
    _send       ``send``, ``directory`` (a script to a remote peer, over :mod:`peerbox.net`)
    _logic      ``logic list|show|set|remove|rollback|versions|verify|push``
    _serve      ``serve`` (the worker); ``python -m peerbox.cli._serve`` starts isolated children
    _report     a failure as one message, an exit code and (``--json``) one JSON document

Commands import what they use when they run where it is slow to load
(trio and h2 for the network, wasmtime through :mod:`peerbox.run`'s lazy
names): ``peerbox --version`` loads none of them.
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
