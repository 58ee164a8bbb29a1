"""Command-line arguments shared by every command: the parser class, sizes, params.

:class:`Parser` turns argparse's usage errors into :class:`ArgError` (exit
2, rendered by :mod:`._report`); ``parse_size``, ``parse_param`` and
``params_from_args`` read ``--memory 64M``, ``--param k=v``,
``--params-json`` and ``--params-file`` for ``run``, ``send`` and ``envelope make``
(:func:`add_params_arguments` adds the three options, :func:`read_params_file` reads the file).
"""

from __future__ import annotations

import argparse
import re
from typing import Any, NoReturn

from .._errors import UsageError
from ._input import MAX_PARAMS_BYTES, excerpt, loads_json, read_text

__all__ = ["ArgError", "Parser", "add_params_arguments", "add_root_argument", "one_stdin", "parse_fuel",
           "parse_param", "parse_size", "parse_timeout", "params_from_args", "read_params_file"]


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


def add_params_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``--param K=V`` (repeatable), ``--params-json JSON`` and ``--params-file FILE|-`` to ``p``."""
    p.add_argument("--param", action="append", default=[], metavar="K=V",
                   help="a param; V is parsed as JSON if it parses, else taken as a string (overrides "
                   "--params-json and --params-file)")
    p.add_argument("--params-json", metavar="JSON",
                   help="params as one JSON object (overrides --params-file; --param overrides it)")
    p.add_argument("--params-file", metavar="FILE",
                   help="params as one JSON object read from FILE ('-': stdin; then the script cannot "
                   "come from stdin too)")


def one_stdin(**inputs: str | None) -> None:
    """Refuse two inputs read from stdin in one command: ``one_stdin(SCRIPT="-", **{"--params-file": "-"})``.

    Raises :class:`UsageError` naming both when more than one of ``inputs`` is ``-``.
    """
    from_stdin = [name for name, path in inputs.items() if path == "-"]
    if len(from_stdin) > 1:
        raise UsageError(f"{' and '.join(from_stdin)} cannot both be read from stdin ('-'): "
                         "give one of them as a file")


def read_params_file(path: str, what: str = "--params-file") -> tuple[Any, int]:
    """The JSON document of ``path`` (``-``: stdin) and its size in bytes, bounded like every param.

    Raises :class:`UsageError` for a file that cannot be read, is not UTF-8, is over
    :data:`~peerbox.cli._input.MAX_PARAMS_BYTES` (nothing beyond that is read) or nested too
    deeply, or is not JSON. The caller checks the type of the document.
    """
    text = read_text(path, MAX_PARAMS_BYTES, "params")
    shown = "stdin" if path == "-" else path
    try:
        return loads_json(text, f"{what} {shown}"), len(text)
    except ValueError as exc:
        raise UsageError(f"{what} {shown} is not valid JSON: {excerpt(str(exc), 200)}") from exc


def params_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """``--params-file``, then ``--params-json`` (overriding it key by key), then every ``--param k=v``
    (overriding both), as a dict.

    Raises :class:`UsageError` for a file or JSON that is not an object, a malformed
    ``k=v``, or params over the size (all together) or nesting limits of :mod:`peerbox.cli._input`.
    """
    params: dict[str, Any] = {}
    total = 0
    params_file = getattr(args, "params_file", None)
    if params_file is not None:
        loaded, total = read_params_file(params_file)
        if not isinstance(loaded, dict):
            raise UsageError("--params-file must hold one JSON object (param names to values)")
        params.update(loaded)
    if args.params_json is not None:
        try:
            loaded = loads_json(args.params_json, "--params-json")
        except ValueError as exc:
            raise UsageError(f"--params-json is not valid JSON: {excerpt(str(exc), 200)}") from exc
        if not isinstance(loaded, dict):
            raise UsageError("--params-json must be a JSON object")
        params.update(loaded)
        total += len(args.params_json)
        if total > MAX_PARAMS_BYTES:
            raise UsageError(f"the params are over {MAX_PARAMS_BYTES} bytes in all, the limit on params")
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
