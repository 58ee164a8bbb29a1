"""Command-line arguments shared by every command: the parser class, sizes, params.

:class:`Parser` turns argparse's usage errors into :class:`ArgError` (exit
2, rendered by :mod:`._report`); ``parse_size``, ``parse_param`` and
``params_from_args`` read ``--memory 64M``, ``--param k=v`` and
``--params-json`` for ``run``, ``send`` and ``envelope make``.
"""

from __future__ import annotations

import argparse
import re
from typing import Any, NoReturn

from .._errors import UsageError
from ._input import MAX_PARAMS_BYTES, excerpt, loads_json

__all__ = ["ArgError", "Parser", "add_root_argument", "parse_fuel", "parse_param", "parse_size",
           "parse_timeout", "params_from_args"]


class ArgError(Exception):
    """argparse found a usage error (exit 2)."""

    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message)
        self.usage = usage


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that raises :class:`ArgError` instead of exiting on a usage error."""

    def error(self, message: str) -> NoReturn:
        raise ArgError(message, self.format_usage())


_SIZE = re.compile(r"(?i)\s*([0-9]+)\s*(k|kb|kib|m|mb|mib|g|gb|gib)?\s*")
_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(text: str) -> int:
    """``"65536"``, ``"64K"``, ``"256M"``, ``"1G"`` (binary units) -> bytes."""
    m = _SIZE.fullmatch(text)
    if m is None:
        raise argparse.ArgumentTypeError(f"not a size in bytes: {text!r} (examples: 65536, 64K, 256M, 1G)")
    unit = (m.group(2) or "")[:1].lower()
    return int(m.group(1)) * _UNITS.get(unit, 1)


def parse_timeout(text: str) -> float | None:
    """``--timeout``: seconds, or ``none`` (no limit)."""
    if text.strip().lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from exc
    return value


def parse_fuel(text: str) -> int | None:
    """``--fuel``: an integer (``_`` separators allowed), or ``none`` (no limit)."""
    if text.strip().lower() == "none":
        return None
    try:
        return int(text.replace("_", ""))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from exc


def parse_param(text: str) -> tuple[str, Any]:
    """Parse ``--param k=v``: ``v`` as JSON if it parses, else the raw string.

    Raises :class:`UsageError` for a malformed ``k=v``, a value over
    :data:`~peerbox.cli._input.MAX_PARAMS_BYTES` or JSON nested deeper than
    :data:`~peerbox.cli._input.MAX_JSON_DEPTH` (checked before parsing).
    """
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise UsageError(f"--param expects KEY=VALUE, got {excerpt(text)}")
    try:
        value: Any = loads_json(raw, f"--param {excerpt(key, 40)}")
    except ValueError:
        value = raw
    return key, value


def params_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """``--params-json`` then every ``--param k=v`` (which override it), as a dict.

    Raises :class:`UsageError` for JSON that is not an object, a malformed
    ``k=v``, or params over the size or nesting limits of :mod:`peerbox.cli._input`.
    """
    params: dict[str, Any] = {}
    total = 0
    if args.params_json is not None:
        try:
            loaded = loads_json(args.params_json, "--params-json")
        except ValueError as exc:
            raise UsageError(f"--params-json is not valid JSON: {excerpt(str(exc), 200)}") from exc
        if not isinstance(loaded, dict):
            raise UsageError("--params-json must be a JSON object")
        params.update(loaded)
        total += len(args.params_json)
    for item in args.param:
        total += len(item)
        if total > MAX_PARAMS_BYTES:
            raise UsageError(f"the params are over {MAX_PARAMS_BYTES} bytes in all, the limit on params")
        key, value = parse_param(item)
        params[key] = value
    return params


def add_root_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--root DIR`` (for every command that works on peers, e.g. ``run --peer``)."""
    from ..peer import DEFAULT_ROOT, ENV_ROOT  # here: ``peerbox --version`` loads no peer code

    parser.add_argument(
        "--root", metavar="DIR", default=None,
        help=f"the peer root (default: ${ENV_ROOT}, else ./{DEFAULT_ROOT})",
    )
