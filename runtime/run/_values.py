"""Values crossing the sandbox boundary: Python <-> CBOR, checked on the way.

A run gets its input as ONE CBOR document written into guest memory
(``{"params": ..., "caller": ..., "target": ...}``) and returns ONE CBOR
document (see ``wasm_guests/ABI.md``, "Entry protocol"). This module is the
only place the run room talks to cbor2; what cbor2 may raise, and as what, is
written once per call in a table next to it (:data:`_ENCODE_ERRORS`,
:data:`_OUTPUT_ERRORS`, :data:`_LOG_ERRORS`, applied with
:func:`peerbox._errors.map_exceptions`). The wire room's strict CBOR is not used:
it decodes signed, deterministic CBOR, and the guest's documents are neither.

Python values a script can receive:

==============================  =======================
Python                          script
==============================  =======================
``None``                        ``()``
``bool``                        bool
``int`` (i64 range)             int
``float``                       float
``str``                         string
``bytes`` / ``bytearray``       blob
``list`` / ``tuple``            array
``dict`` with ``str`` keys      object map
==============================  =======================

Anything else raises :class:`~peerbox.ValueConversionError` naming where the
offending value sits, e.g. ``params.a[2]``. Containers nested deeper than
:data:`MAX_DEPTH` are refused too (this also stops self-referencing lists).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import cbor2

from .._errors import Error, ExceptionMapping, ValueConversionError, map_exceptions
from ._bound import plain_tree

__all__ = [
    "MAX_DEPTH",
    "CborParams",
    "I64_MIN",
    "I64_MAX",
    "encode_input",
    "encode_run_input",
    "refused_input",
    "check_value",
    "decode_output",
    "decode_log",
    "json_safe",
    "display",
]

#: Deepest container nesting a value may have (the guest runtime's limit too).
MAX_DEPTH = 128
I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1

# The input of a run without params, caller or target, encoded once.
_EMPTY_INPUT = cbor2.dumps({"params": {}, "caller": None, "target": None})

_SCALARS = frozenset((bool, int, float, str, bytes, bytearray, type(None)))
# Types that need no check at all (ints need a range check, strs a Unicode check).
_PLAIN = frozenset((bool, float, bytes, bytearray, type(None)))


def check_value(value: Any, path: str = "params", depth: int = 1) -> None:
    """Check that ``value`` can cross into a script; raise if it cannot.

    ``path`` names ``value`` in error messages; ``depth`` is its nesting
    level (1 = a top-level value). Raises :class:`ValueConversionError` for
    unsupported types, integers outside the i64 range, non-``str`` map keys,
    strings that are not valid Unicode (lone surrogates) and nesting deeper
    than :data:`MAX_DEPTH`.
    """
    t = type(value)
    if t is int:
        if not I64_MIN <= value <= I64_MAX:
            raise ValueConversionError(
                f"integer {value} is outside the 64-bit range a script can hold", path=path
            )
        return
    if t is str:
        if not value.isascii():
            _check_text(value, path)
        return
    if t is float or t is bool or value is None or t is bytes or t is bytearray:
        return
    if t is list or t is tuple:
        if depth > MAX_DEPTH:
            raise ValueConversionError(f"nested deeper than {MAX_DEPTH} levels", path=path)
        for i, item in enumerate(value):
            if type(item) in _PLAIN:
                continue
            check_value(item, f"{path}[{i}]", depth + 1)
        return
    if t is dict:
        if depth > MAX_DEPTH:
            raise ValueConversionError(f"nested deeper than {MAX_DEPTH} levels", path=path)
        for key, item in value.items():
            if type(key) is not str:
                raise ValueConversionError(
                    f"map keys must be strings, found {type(key).__name__} key {key!r}", path=path
                )
            sub = f"{path}.{key}" if key.isidentifier() else f"{path}[{key!r}]"
            if not key.isascii():
                _check_text(key, sub)
            check_value(item, sub, depth + 1)
        return
    # Subclasses of the supported types (IntEnum, str subclasses, OrderedDict...)
    # are refused on purpose: their meaning would silently change in a script.
    raise ValueConversionError(
        f"a value of type {t.__module__ + '.' if t.__module__ != 'builtins' else ''}{t.__qualname__} "
        "cannot be passed to a script (use None, bool, int, float, str, bytes, list or dict)",
        path=path,
    )


def _text_ok(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _crosses(root: object) -> bool:
    """Whether ``root`` certainly crosses into a script: :func:`check_value`'s rules, walked
    iteratively without building paths (15-30% faster than it on large params); False means
    "look closer" (:func:`check_value` then names the path of what is wrong)."""
    todo: list[tuple[Any, int]] = [(root, 1)]
    pop, push = todo.pop, todo.append
    plain = _PLAIN
    while todo:
        value, depth = pop()
        t = type(value)
        if t is dict or t is list or t is tuple:
            if depth > MAX_DEPTH:
                return False
            items = value
            if t is dict:
                for key in value:
                    if type(key) is not str or not (key.isascii() or _text_ok(key)):
                        return False
                items = value.values()
            for item in items:
                ti = type(item)
                if ti is int:
                    if not I64_MIN <= item <= I64_MAX:
                        return False
                elif ti is str:
                    if not (item.isascii() or _text_ok(item)):
                        return False
                elif ti not in plain:
                    push((item, depth + 1))
        elif t is int:
            if not I64_MIN <= value <= I64_MAX:
                return False
        elif t is str:
            if not (value.isascii() or _text_ok(value)):
                return False
        elif t not in plain:
            return False
    return True


def _check_text(s: str, path: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueConversionError(f"string is not valid Unicode ({exc.reason})", path=path) from exc


@dataclass(frozen=True, slots=True)
class CborParams:
    """A run's params given as the CBOR bytes of one map, handed to the guest as they are.

    For params that are CBOR already (a verified request's ``params``, a
    file, another service's output): no Python objects are made, checked or
    encoded on the way in. Who validates what: Python checks only that
    ``data`` is ``bytes``; the guest runtime's decoder (``wasm_guests/rt/cbor.c``)
    checks everything else, on any bytes whatever their origin: one
    definite-length map with text keys, nesting at most :data:`MAX_DEPTH`,
    integers in the i64 range, valid UTF-8, no tags, every length within the
    input, nothing after the map. What it refuses ends the run before the
    script starts, as :class:`~peerbox.ValueConversionError`
    (see :func:`refused_params`). ``data`` is placed last in the input
    document, so no bytes in it can change ``caller`` or ``target``.
    """

    data: bytes

    def __post_init__(self) -> None:
        if type(self.data) is not bytes:
            raise ValueConversionError(
                f"CborParams takes bytes, not {type(self.data).__name__}", path="params")


#: The message prefix of the guest runtime's refusal of its input document (cbor.c, begin_fail).
INPUT_REFUSED = "invalid input: "


def refused_params(params: CborParams, reason: str) -> ValueConversionError:
    """The error for :class:`CborParams` the guest refused with ``reason``.

    Names the path of the bad value when the bytes decode in Python
    (cbor2, nesting bounded) and :func:`check_value` finds it; otherwise
    says what the guest said. Error path only: the cost does not matter.
    """
    try:
        value = cbor2.loads(params.data, semantic_decoders=_NoTags(), tag_hook=_reject_tag, **_STRICT)
    except _CBOR2_DECODE_ERRORS:  # what cbor2 cannot decode either: the guest's reason is the answer
        return ValueConversionError(f"not a CBOR map a script can take ({reason})", path="params")
    if type(value) is not dict:
        return ValueConversionError(f"params must be a CBOR map, not {type(value).__name__}", path="params")
    try:
        check_value(value, "params")
    except ValueConversionError as exc:
        return exc
    return ValueConversionError(f"not a CBOR map a script can take ({reason})", path="params")


def _refuse_semantic(decoder: object, immutable: bool = False) -> NoReturn:
    raise ValueError("CBOR tags are not supported")


class _NoTags(Mapping[int, Callable[..., NoReturn]]):
    """cbor2's ``semantic_decoders``, looked up before its built-in ones (dates, big numbers...):
    every tag number is refused, as the guest runtime refuses it."""

    def __getitem__(self, tag: int) -> Callable[..., NoReturn]:
        return _refuse_semantic

    def __len__(self) -> int:
        return 0

    def __iter__(self) -> Iterator[int]:
        return iter(())


_PARAMS_KEY = cbor2.dumps("params")
#: What ``cbor2.loads`` raises for bytes it refuses (its own errors, and from inside its decoder).
_CBOR2_DECODE_ERRORS = (cbor2.CBORError, ValueError, TypeError, OverflowError, RecursionError, EOFError)


def encode_input(params: object = None, caller: object = None, target: object = None) -> bytes:
    """Encode the input document of a run as CBOR, checking every value first.

    ``params`` must be ``None`` (no params), a ``dict`` with ``str`` keys or
    :class:`CborParams` (copied in as they are, after ``caller`` and ``target``;
    the guest checks them). Raises :class:`ValueConversionError` naming the
    path of a bad value (a run uses :func:`encode_run_input`).
    """
    if type(params) is CborParams:
        for value, name in ((caller, "caller"), (target, "target")):
            if not _crosses(value):
                check_value(value, name)
        with map_exceptions(_ENCODE_ERRORS):
            head = cbor2.dumps({"caller": caller, "target": target})
        # a 2-entry map head (0xa2) becomes a 3-entry one, params last
        return b"".join((b"\xa3", head[1:], _PARAMS_KEY, params.data))
    if params is None:
        params = {}
        if caller is None and target is None:
            return _EMPTY_INPUT
    elif type(params) is not dict:
        raise ValueConversionError(
            f"params must be a dict with str keys (or None), not {type(params).__name__}", path="params"
        )
    for value, name in ((params, "params"), (caller, "caller"), (target, "target")):
        if not _crosses(value):
            check_value(value, name)
    with map_exceptions(_ENCODE_ERRORS):
        return cbor2.dumps({"params": params, "caller": caller, "target": target})


def encode_run_input(params: object = None, caller: object = None, target: object = None) -> bytes:
    """:func:`encode_input` for a run, leaving to the guest runtime what its decoder checks anyway.

    A ``params`` dict (and ``caller``, ``target``) of exact builtin types nested
    less deep than the recursion limit (:func:`~peerbox.run._bound.plain_tree`,
    at C speed) is encoded by cbor2 without a walk in Python: out-of-range
    integers, non-text keys, sets and nesting over :data:`MAX_DEPTH` reach the
    guest runtime, which refuses the input document before the script starts;
    :func:`refused_input` then names the bad value as :func:`encode_input` would
    have. Anything else goes through :func:`encode_input`, which raises
    :class:`ValueConversionError` naming it.
    """
    if type(params) is dict:
        doc = {"params": params, "caller": caller, "target": target}
        if plain_tree(doc):
            try:
                return cbor2.dumps(doc)
            except _ENCODE_REFUSALS:  # a lone surrogate, a PickleBuffer...: encode_input says what
                pass
    return encode_input(params, caller, target)


def refused_input(reason: str, params: object, caller: object, target: object) -> ValueConversionError:
    """The error for Python params (and caller, target) the guest runtime refused with ``reason``
    (:func:`encode_input` left the range, key and depth checks to it): what :func:`check_value`
    says of the first bad value, the message a check before the run would have given."""
    for value, name in ((params, "params"), (caller, "caller"), (target, "target")):
        try:
            check_value(value, name)
        except ValueConversionError as exc:
            return exc
    return ValueConversionError(f"not a value a script can take ({reason})", path="params")


#: What cbor2's encoder raises for a value :func:`~peerbox.run._bound.plain_tree` let through.
_ENCODE_REFUSALS = (cbor2.CBOREncodeError, ValueError, TypeError, OverflowError)


def _unencodable(exc: BaseException) -> BaseException:  # pragma: no cover (check_value refuses first)
    return ValueConversionError(f"cannot encode: {exc}", path="params")


#: What ``cbor2.dumps`` may raise for an input document :func:`check_value` accepted: nothing,
#: unless cbor2 changes; then the value cannot cross, as if refused by the check.
_ENCODE_ERRORS: ExceptionMapping = dict.fromkeys(
    (cbor2.CBOREncodeError, ValueError, TypeError, OverflowError), _unencodable)


def _reject_tag(decoder: object, tag: object) -> object:
    raise ValueError("the guest runtime never writes CBOR tags")


def _strict_options() -> dict[str, Any]:
    """cbor2's strictness switches, where this cbor2 has them (6.x does, 5.x does not)."""
    options: dict[str, Any] = {
        "allow_indefinite": False,
        "allow_duplicate_keys": False,
        "max_depth": MAX_DEPTH + 8,
    }
    try:
        cbor2.loads(b"\xa0", tag_hook=_reject_tag, **options)
    except TypeError:
        return {}
    return options


_STRICT = _strict_options()


def _malformed(what: str) -> ExceptionMapping:
    """The table of a decode of the guest runtime's ``what``: whatever cbor2 refuses is a bug in peerbox.

    cbor2 raises its own errors, and ``ValueError`` (a tag, refused by
    :func:`_reject_tag`), ``TypeError``, ``OverflowError``, ``RecursionError``
    and ``EOFError`` from inside its decoder; each is :class:`~peerbox.Error`
    (exit code 1): the guest runtime wrote something the ABI does not allow.
    """

    def bug(exc: BaseException) -> BaseException:
        return Error(f"malformed {what} from the guest runtime (a bug in peerbox): {exc}")

    return dict.fromkeys(_CBOR2_DECODE_ERRORS, bug)


_OUTPUT_ERRORS = _malformed("run output")
_LOG_ERRORS = _malformed("log")


def _decode(data: bytes, errors: ExceptionMapping) -> Any:
    with map_exceptions(errors):
        return cbor2.loads(data, tag_hook=_reject_tag, **_STRICT)


def _check_output(value: Any, depth: int = 0) -> None:
    """Check a decoded guest value holds only the types a script can produce."""
    t = type(value)
    if t is list:
        if depth > MAX_DEPTH + 1:
            raise Error("guest output nested too deep (a bug in peerbox)")
        for item in value:
            if type(item) in _SCALARS:
                continue
            _check_output(item, depth + 1)
    elif t is dict:
        if depth > MAX_DEPTH + 1:
            raise Error("guest output nested too deep (a bug in peerbox)")
        for key, item in value.items():
            if type(key) is not str:
                raise Error("guest output has a non-text map key (a bug in peerbox)")
            if type(item) in _SCALARS:
                continue
            _check_output(item, depth + 1)
    elif t not in _SCALARS:
        raise Error(f"guest output holds a {t.__name__} (a bug in peerbox)")


def decode_output(data: bytes) -> dict[str, Any]:
    """Decode the output document of a run (``{"ok": ..., ...}``).

    Checks the shape the ABI promises: a map with a bool ``ok``, a ``log``
    list of strings, and a ``value`` (ok) or an ``error`` map (not ok), all
    made of plain script values. Anything else means the guest runtime is
    broken: raises :class:`~peerbox.Error` (exit code 1).
    """
    out = _decode(data, _OUTPUT_ERRORS)
    if type(out) is not dict or type(out.get("ok")) is not bool:
        raise Error("malformed run output from the guest runtime (a bug in peerbox)")
    log = out.get("log", [])
    if type(log) is not list or any(type(line) is not str for line in log):
        raise Error("malformed log in the run output (a bug in peerbox)")
    if out["ok"]:
        _check_output(out.get("value"))
    else:
        err = out.get("error")
        if type(err) is not dict or type(err.get("kind")) is not str:
            raise Error("malformed error in the run output (a bug in peerbox)")
        _check_output(err)
    return out


def decode_log(data: bytes) -> list[str]:
    """Decode the log the guest runtime kept (a CBOR array of strings)."""
    log = _decode(data, _LOG_ERRORS)
    if type(log) is not list or any(type(line) is not str for line in log):
        raise Error("malformed log from the guest runtime (a bug in peerbox)")
    return log


def json_safe(value: object) -> object:
    """A script value as JSON-compatible data (for ``peerbox run --json``).

    ``bytes`` become base64 text, floats that JSON cannot hold (NaN, ±inf)
    become ``null``; everything else maps directly.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    return value


def _float_text(x: float) -> str:
    return "NaN" if x != x else repr(x)


def display(value: object, *, top: bool = True) -> str:
    """The display form of a script value, as ``print``/``to_string`` shows it.

    Strings print raw at the top level and quoted inside containers; ``()``
    prints as ``()``; floats use Python's shortest round-trip form (``1.0``,
    ``inf``, ``NaN``); maps print as ``#{"key": value, ...}`` in key order;
    blobs as ``blob(<hex>)``.
    """
    if value is None:
        return "()"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value if top else _quote(value)
    if isinstance(value, (bytes, bytearray)):
        return f"blob({bytes(value).hex()})"
    if isinstance(value, list):
        return "[" + ", ".join(display(v, top=False) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{_quote(k)}: {display(v, top=False)}" for k, v in sorted(value.items()))
        return "#{" + ", ".join(items) + "}"
    return repr(value)


def _quote(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)
