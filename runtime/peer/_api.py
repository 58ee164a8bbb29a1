"""Published functions: what another peer may call with ``peerbox/call``, and how.

A peer publishes a function by marking it ``export fn`` in one of its own
modules (the ``peer:`` layer)::

    // peers/bob/logic/inbox.rhai
    import "builtin:inbox" as base;
    export fn deliver(msg: string) { base::deliver(msg) }

Only the peer's own layer publishes: an ``export fn`` in a shared or built-in
module is published only if the peer's module re-exports it (as above), so no
code the owner did not choose runs with the owner's rights (Postgres'
``SECURITY DEFINER`` with the search path pinned).

The worker, in the check phase of a call (before a run slot is taken):

* :func:`find_published` looks the function up, and answers None alike for a
  missing module, a missing, plain or ``private`` function, one exported only
  by a lower layer, and a module that does not parse: a caller learns nothing
  about the owner's code;
* :func:`bind_args` checks the caller's arguments against the parameters (their
  number, names and declared types) and raises :class:`BadArguments` with a
  bounded message that never echoes a value; a parameter typed with a record
  type of the peer's schema (``export fn deliver(msg: Message)``) is validated
  as ``db::insert`` validates a record (the message names the parameter, the
  field path and the rule);

then, in the run phase, compiles :func:`call_source`: a fixed, host-made stub
that imports the module from the peer layer and calls the function with the
arguments as plain values (``params``). No code of the caller's runs.

Sans-IO apart from reading the module through the peer's :class:`LogicLayers`.
"""

from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._errors import Error, UsageError
from ..hostcalls import Collection, HostCallError, Schema, validate_record
from ..run import LogicLayers, split_module_name
from ..wasm_guests.lang import PARAM_TYPES, CompileError, Export, Interface, interface

__all__ = ["CALL_FILE", "PARAM_TYPES", "BadArguments", "PublishedFn", "SignatureError", "bind_args",
           "call_source", "check_param_types", "find_published", "published", "record_types", "signature"]

#: The file name a call's stub compiles as (in error lines, and the ``importer`` the layers are asked with).
CALL_FILE = "<call>"
_MAX_SHOWN = 64  # longest argument name quoted in a message
_I64 = (-(1 << 63), (1 << 63) - 1)


class BadArguments(UsageError):
    """Arguments that do not match a published function: their number, a name or a type (exit 2;
    over the network a signed reply of kind ``bad_arguments``, and nothing runs)."""


class SignatureError(Error):
    """A published function's parameter names a record type the peer's schema does not declare
    (or the peer has no schema): the owner's mistake, refused when the module is installed
    (``file:line:col`` and the peer's types) and, should the schema change after, at call time
    (nothing runs)."""

    exit_code = 3


@dataclass(frozen=True, slots=True)
class PublishedFn:
    """A function a peer publishes: ``module`` as called (``inbox``), the ``file`` it lives in
    (``peer:inbox``), its ``name``, ``params``, declared ``types`` (None: any) and ``line``."""

    module: str
    file: str
    name: str
    params: tuple[str, ...]
    types: tuple[str | None, ...]
    line: int
    type_at: tuple[tuple[int, int] | None, ...] = ()

    @property
    def resource(self) -> str:
        """What the policy action ``call`` names: ``inbox::deliver``."""
        return f"{self.module}::{self.name}"

    def signature(self) -> str:
        """As written, less the body: ``deliver(msg: Message, note: string?)``."""
        return signature(self.name, self.params, self.types)


def signature(name: str, params: Sequence[str], types: Sequence[str | None]) -> str:
    """A published function's signature as written, less the body: ``deliver(msg: Message)``."""
    types = list(types) or [None] * len(params)
    shown = (p if t is None else f"{p}: {t}" for p, t in zip(params, types, strict=False))
    return f"{name}({', '.join(shown)})"


@functools.lru_cache(maxsize=128)
def _interface(file: str, source: str) -> Interface | None:
    """The module's interface, or None when it does not parse (cached by its text: a call looks
    its function up on every request, and an owner's module changes rarely)."""
    try:
        return interface(source, file)
    except CompileError:  # CompileLimitExceeded too: a module too big to parse publishes nothing
        return None


def _published_in(bare: str, file: str, face: Interface) -> list[PublishedFn]:
    return [PublishedFn(module=bare, file=file, name=e.name, params=e.params,
                        types=e.types if e.types else (None,) * len(e.params), line=e.line,
                        type_at=e.type_at)
            for e in face.exports]


def find_published(layers: LogicLayers, module: str, function: str) -> PublishedFn | None:
    """The function ``module::function`` the peer publishes, or None.

    ``module`` is a bare module name as ``import`` takes it (``inbox``,
    ``mail/inbox``); a qualified one (``peer:inbox``) or an invalid one gives
    None. Only the peer layer is looked at. None too for a missing module or
    function, a plain or ``private`` function, and a module that does not
    parse. Raises nothing.
    """
    parsed = split_module_name(module)
    if parsed is None or parsed[0] is not None or type(function) is not str:
        return None
    bare = parsed[1]
    src = layers(f"peer:{bare}", CALL_FILE)
    if src is None:
        return None
    face = _interface(src.file, src.source)
    if face is None:
        return None
    for fn in _published_in(bare, src.file, face):
        if fn.name == function:
            return fn
    return None


def published(layers: LogicLayers) -> list[PublishedFn]:
    """Every function the peer publishes (its own layer's ``export fn``), by module then name.
    Modules that do not parse publish nothing. Raises nothing."""
    out: list[PublishedFn] = []
    for ref in layers.modules():
        if ref.layer != "peer":
            continue
        src = layers(ref.file, CALL_FILE)
        face = None if src is None else _interface(src.file, src.source)
        if face is not None:
            out.extend(_published_in(ref.name, ref.file, face))
    out.sort(key=lambda f: (f.module, f.name))
    return out


def _type_name(value: object) -> str:
    """The name ``type_of`` would give ``value`` once it crossed into a script."""
    if value is None:
        return "()"
    if type(value) is bool:
        return "bool"
    if isinstance(value, int):
        return "i64"
    if isinstance(value, float):
        return "f64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (bytes, bytearray)):
        return "blob"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, Mapping):
        return "map"
    return type(value).__name__


def _shown(name: str) -> str:
    return name if len(name) <= _MAX_SHOWN else name[:_MAX_SHOWN] + "…"


def _record_name(typ: str | None) -> str | None:
    """The record type ``typ`` names (``Message`` for ``Message?``), None for a built-in type."""
    if typ is None:
        return None
    bare = typ.removesuffix("?")
    return None if bare in PARAM_TYPES else bare


def record_types(types: Sequence[str | None]) -> tuple[str, ...]:
    """The record types of the peer's schema that ``types`` name, in order, each once."""
    out: list[str] = []
    for t in types:
        name = _record_name(t)
        if name is not None and name not in out:
            out.append(name)
    return tuple(out)


def _suggest(name: str, known: Sequence[str]) -> str:
    near = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if not near:
        near = [k for k in known if k.lower() == name.lower()]
    return f"; did you mean '{near[0]}'?" if near else ""


def check_param_types(file: str, exports: Sequence[Export | PublishedFn], schema: Schema | None,
                      peer: str) -> list[str]:
    """Every parameter of ``exports`` (published from ``file``) that names a record type
    ``schema`` does not declare, as ``file:line:col: error: ...`` lines naming the type, the
    peer's types and the nearest one. ``schema`` None: the peer has no (valid) schema.toml."""
    known = [t.name for t in schema.types] if schema is not None else []
    problems: list[str] = []
    for e in exports:
        at = e.type_at or (None,) * len(e.params)
        for param, typ, pos in zip(e.params, e.types or (None,) * len(e.params), at, strict=False):
            name = _record_name(typ)
            if name is None or name in known:
                continue
            where = f"{file}:{pos[0]}:{pos[1]}" if pos else f"{file}:{e.line}"
            if schema is None:
                why = (f"peer {peer!r} declares no record types (no valid schema.toml); "
                       f"use one of {', '.join(PARAM_TYPES)}, or declare [types.{name}] in its schema.toml")
            else:
                why = (f"the schema of peer {peer!r} declares " + (", ".join(known) if known else "no types")
                       + _suggest(name, known))
            problems.append(f"{where}: error: unknown type '{name}' for parameter '{param}' of "
                            f"{e.name}: {why}")
    return problems


def _check_record(fn: PublishedFn, param: str, want: str, value: Any, schema: Schema) -> Any:
    name = want.removesuffix("?")
    if schema.type(name) is None:
        raise SignatureError(f"{fn.resource}: parameter '{param}' names type '{name}', "
                             "which the peer's schema does not declare")
    if value is None and want.endswith("?"):
        return None
    if not isinstance(value, Mapping):
        raise BadArguments(f"{fn.resource}: argument '{param}' must be a {name} record (a map), "
                           f"got {_type_name(value)}")
    try:  # the validator db::insert uses, on a collection of that type keyed by a field (no ``_key``)
        return validate_record(schema, Collection(name=param, type=name, key=""), dict(value))
    except HostCallError as exc:
        raise BadArguments(f"{fn.resource}: argument '{param}': field {exc.message}") from exc


def _check_type(fn: PublishedFn, param: str, want: str | None, value: Any,
                schema: Callable[[], Schema | None]) -> Any:
    """``value`` as ``param`` takes it (an f64 parameter turns an integer into a float; a record
    parameter takes the record as ``db::insert`` would store it)."""
    if want is None:
        return value
    if _record_name(want) is not None:
        got_schema = schema()
        if got_schema is None:
            raise SignatureError(f"{fn.resource}: parameter '{param}' names a record type, "
                                 "and the peer has no schema")
        return _check_record(fn, param, want, value, got_schema)
    if want.endswith("?"):
        if value is None:
            return None
        want = want[:-1]
    got = _type_name(value)
    if want == "f64" and got == "i64":
        converted = float(value)
        if math.isfinite(converted):
            return converted
    elif want == got:
        if got == "i64" and not _I64[0] <= value <= _I64[1]:
            raise BadArguments(f"{fn.resource}: argument '{param}' is an integer out of the i64 range")
        return value
    raise BadArguments(f"{fn.resource}: argument '{param}' must be {want}, got {got}")


def bind_args(fn: PublishedFn, args: Mapping[str, Any] | Sequence[Any] | None,
              schema: Schema | Callable[[], Schema | None] | None = None) -> dict[str, Any]:
    """The arguments by parameter name, in parameter order, checked against ``fn``.

    ``args`` is a map by name, a sequence by position, or None (no
    arguments). Every parameter needs a value, except that a map may leave
    out one whose type ends in ``?`` (it is then ``()``); a declared type
    must match the value's (``f64`` also takes an integer, converted, since
    JSON clients cannot tell ``3`` from ``3.0``; ``T?`` also takes ``()``).
    A record type (``Message``) is checked against ``schema`` (the peer's,
    or a function giving it, called only when a record parameter needs it)
    with the validator ``db::insert`` uses, and the argument becomes the
    normalised record. Raises :class:`BadArguments`, whose message names the
    function, a parameter (and for a record the field path and the rule) or
    a count; :class:`SignatureError` when the schema does not declare a
    record type ``fn`` names (or ``schema`` is None).
    """
    fixed = schema if isinstance(schema, Schema) else None
    get_schema: Callable[[], Schema | None] = schema if callable(schema) else lambda: fixed
    names = ", ".join(fn.params) if fn.params else "none"
    if args is None:
        args = {}
    if isinstance(args, Mapping):
        for key in args:
            if type(key) is not str:
                raise BadArguments(f"{fn.resource}: argument names must be strings, got {_type_name(key)}")
            if key not in fn.params:
                raise BadArguments(f"{fn.resource} has no parameter '{_shown(key)}' (it takes {names})")
        bound: dict[str, Any] = {}
        for param, want in zip(fn.params, fn.types, strict=True):
            if param not in args and not (want or "").endswith("?"):
                raise BadArguments(f"{fn.resource}: missing argument '{param}'")
            bound[param] = _check_type(fn, param, want, args.get(param), get_schema)
        return bound
    if isinstance(args, (str, bytes, bytearray)) or not isinstance(args, Sequence):
        raise BadArguments(f"{fn.resource}: arguments must be a map by name or an array by position, "
                           f"not {_type_name(args)}")
    if len(args) != len(fn.params):
        n = len(fn.params)
        takes = (f"takes {n} argument{'' if n == 1 else 's'} ({', '.join(fn.params)})" if n
                 else "takes no arguments")
        raise BadArguments(f"{fn.resource} {takes}, got {len(args)}")
    return {param: _check_type(fn, param, want, value, get_schema)
            for param, want, value in zip(fn.params, fn.types, args, strict=True)}


def call_source(fn: PublishedFn) -> str:
    """The stub a call runs: import the module from the peer layer (``peer:``, so the import can
    never reach another layer, even if the module disappears after the check) and call the
    function with ``params`` by name. Module and function names are checked identifiers, and
    the arguments never appear in the text: no code of the caller's runs."""
    args = ", ".join(f'params["{p}"]' for p in fn.params)
    return f'import "peer:{fn.module}" as api;\napi::{fn.name}({args})\n'
