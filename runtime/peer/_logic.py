"""A peer's logic: script modules in three layers, and the owner's tools to change them.

The layers, highest first::

    peer     <root>/peers/NAME/logic/     the peer's own modules, owned by its owner
    shared   <root>/logic/                the worker's shared modules
    builtin  peerbox's library            (inbox, notes, kv; shipped in the package)

``import "notes" as n;`` finds ``notes.rhai`` in the highest layer that has
it, whoever writes the import: a peer overrides a shared or built-in module
for every importer, built-in modules included, by defining one of the same
name. ``import "shared:notes"`` (or ``builtin:notes``, ``peer:notes``) names
one layer only, which is how an override *extends* the module it replaces::

    // peers/bob/logic/inbox.rhai
    import "builtin:inbox" as base;
    fn deliver(text) { base::deliver(text.to_upper()) }

A module is known by its layer and name (``peer:inbox``): that is its file
name in compile errors, in the compile cache's manifests (so a change in any
layer recompiles exactly the programs that import it) and in ``peerbox logic
list``. Import cycles are compile errors that name the chain.

:class:`PeerLogic` is the owner's side: list what a peer sees, show a
module's source or WebAssembly text, install a version (``set``,
``rollback``) or remove one only after it and every module importing it still
compile, and keep the signed history of :mod:`peerbox.peer._history`.
"""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._errors import Error, UsageError
from .._atomic import write_atomic
from ._history import HISTORY_DIR, History, HistoryError, HistoryMismatch, safe_dir
from ._versions import Version, make_statement, open_statement, sha256_hex
from ..run import (LAYERS, MAX_MODULE_SIZE, MODULE_SUFFIX, LogicLayers, ModuleRef, read_module,
                   shared_logic_dir, split_module_name)
from ..hostcalls import HOST_CALLS, Schema, SchemaError
from ..wasm_guests.lang import CompileError, CompileLimits, Export, ModuleSource, compile_to_wat, interface
from ..wire import CapabilityError, KeyPair, verify_chain, verify_signature
from ._api import check_param_types, record_types, signature
from ._peers import Peer
from ._schema import load_schema, schema_path

__all__ = ["HEAD_KEY", "LAYERS", "MAX_MODULE_SIZE", "LogicLayers", "ModuleRef", "ModuleListing", "PeerLogic",
           "LogicError", "LogicRefused", "split_module_name", "shared_logic_dir"]

#: The key of :meth:`PeerLogic.verify`'s report for problems with the history's sealed head.
HEAD_KEY = "logic-history/head.json"


class LogicError(UsageError):
    """A logic command named something that is not there or not allowed (exit 2)."""


class LogicRefused(Error):
    """An install was refused because the module, or a module importing it, would not compile.

    ``kind`` is ``compile_error`` or ``breaks_dependent``; ``dependent`` names
    the module it would break (``shared:inbox``); the message carries the
    compiler's errors with positions. Nothing was changed (exit 3).
    """

    exit_code = 3

    def __init__(self, message: str, *, kind: str, module: str, dependent: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.module = module
        self.dependent = dependent


@dataclass(frozen=True, slots=True, kw_only=True)
class ModuleListing:
    """One module as ``peerbox logic list`` shows it.

    ``active``: whether imports of its bare name reach it (False for a module
    a higher layer overrides); ``overrides``: the lower-layer modules it
    hides; ``functions`` its public functions with their parameters;
    ``exports`` its ``export fn`` functions (with declared types and line);
    ``publishes``: whether those are callable with ``peerbox/call`` (only
    the peer's own layer publishes; see :mod:`._api`);
    ``error``: why it does not parse, if it does not.
    """

    ref: ModuleRef
    active: bool
    overrides: tuple[str, ...]
    functions: tuple[tuple[str, tuple[str, ...]], ...]
    constants: tuple[str, ...]
    imports: tuple[str, ...]
    error: str | None = None
    exports: tuple[Export, ...] = ()
    publishes: bool = False

    def doc(self) -> dict[str, Any]:
        """As JSON (``peerbox logic list --json``, and a remote ``list``'s reply)."""
        return {"module": self.ref.name, "layer": self.ref.layer, "file": self.ref.file,
                "active": self.active, "overrides": list(self.overrides),
                "functions": [{"name": n, "params": list(ps)} for n, ps in self.functions],
                "exports": [{"name": e.name, "params": list(e.params), "types": list(e.types), "line": e.line,
                             "signature": signature(e.name, e.params, e.types)}
                            for e in self.exports],
                "publishes": self.publishes,
                "constants": list(self.constants), "imports": list(self.imports), "error": self.error}


class PeerLogic:
    """A peer's logic as its owner sees it: list, show, install, roll back, verify.

    Installing takes the history's lock, checks that the new source and
    every module that imports it compile, records the version (signed), then
    replaces the live file atomically: a refused install changes nothing,
    and the next compile of a dependent script picks the new version up
    (the compile cache notices the changed source).
    """

    def __init__(self, peer: Peer, *, layers: LogicLayers | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.peer = peer
        self.layers = layers if layers is not None else LogicLayers.of(peer)
        self.history = History(peer.paths.dir / HISTORY_DIR, peer.public_key)
        self.clock = clock

    def _schema(self) -> dict[str, Any] | None:
        """The peer's schema as the compiler takes it (None: none, or one that does not check):
        modules installed for the peer are checked against it."""
        if not os.path.exists(schema_path(self.peer)):
            return None
        try:
            return load_schema(self.peer).canonical()
        except SchemaError:
            return None

    # -- reading ----------------------------------------------------------------------------

    def list(self) -> list[ModuleListing]:
        """Every module visible to the peer, the active one of each name first."""
        refs = self.layers.modules()
        out: list[ModuleListing] = []
        for ref in refs:
            same = [r for r in refs if r.name == ref.name]
            active = same[0] is ref
            lower = tuple(r.file for r in same[same.index(ref) + 1:])
            text = read_module(ref.path)
            try:
                if text is None:
                    raise UsageError("cannot be read (or is not UTF-8, or is over 512 KiB)")
                face = interface(text, ref.file)
            except (CompileError, UsageError) as exc:
                out.append(ModuleListing(ref=ref, active=active, overrides=lower if active else (),
                                         functions=(), constants=(), imports=(), error=str(exc),
                                         publishes=ref.layer == "peer"))
                continue
            out.append(ModuleListing(ref=ref, active=active, overrides=lower if active else (),
                                     functions=face.functions, constants=face.constants,
                                     imports=face.imports, exports=face.exports,
                                     publishes=ref.layer == "peer"))
        return out

    def find(self, module: str) -> ModuleSource:
        """The source ``import "module"`` reaches for this peer. Raises :class:`LogicError`."""
        if split_module_name(module) is None:
            raise LogicError(f"{module!r:.80} is not a module name (letters, digits, '_', '-', '/'; "
                             "optionally LAYER: with LAYER one of peer, shared, builtin)")
        found = self.layers(module, "<logic>")
        if found is None:
            raise LogicError(f"peer {self.peer.name!r} has no module {module!r}")
        return found

    def wat(self, module: str) -> str:
        """The module compiled (with what it imports) to WebAssembly text. Raises CompileError."""
        found = self.find(module)
        return compile_to_wat(found.source, found.file, self.layers, host_calls=HOST_CALLS,
                              schema=self._schema()).wat

    def versions(self, module: str) -> builtins.list[Version]:
        """The recorded versions of the peer's ``module``, oldest first."""
        return self.history.entries(self._own_name(module))

    # -- installing -------------------------------------------------------------------------

    def _own_name(self, module: str) -> str:
        parsed = split_module_name(module)
        if parsed is None or parsed[0] not in (None, "peer"):
            raise LogicError(f"{module!r:.80} is not a name of one of the peer's own modules "
                             "(letters, digits, '_', '-', '/'; the shared and built-in layers are read-only)")
        return parsed[1]

    def check(self, module: str, source: str | None, *, limits: CompileLimits | None = None) -> None:
        """Refuse (:class:`LogicRefused`) a source for ``module`` (None: removing it) that would
        not compile or would break a module importing it; a module that was already broken does
        not count. ``limits`` is the budget of each of these compiles (default: the compiler's)."""
        name = self._own_name(module)
        file = f"peer:{name}"
        after = self.layers.with_overlay("peer", name, source)
        schema = self._schema()
        if source is not None:
            if len(source.encode("utf-8")) > MAX_MODULE_SIZE:
                raise LogicRefused(f"{file}: the source is over {MAX_MODULE_SIZE} bytes",
                                   kind="compile_error", module=name)
            try:
                compile_to_wat(source, file, after, limits=limits, host_calls=HOST_CALLS, schema=schema)
            except CompileError as exc:
                raise LogicRefused(f"{file} does not compile:\n{exc}", kind="compile_error",
                                   module=name) from exc
            self._check_param_types(file, name, source)
        # a removal affects the modules that reach the file now; an install those that will
        doing = "removing" if source is None else "installing"
        for ref, text in self._dependents(file, self.layers if source is None else after):
            try:
                compile_to_wat(text, ref.file, after, limits=limits, host_calls=HOST_CALLS, schema=schema)
            except CompileError as exc:
                try:
                    compile_to_wat(text, ref.file, self.layers, limits=limits, host_calls=HOST_CALLS,
                                   schema=schema)
                except CompileError:
                    continue  # broken before this install: not this install's doing
                raise LogicRefused(f"{doing} {file} would break {ref.file}:\n{exc}",
                                   kind="breaks_dependent", module=name, dependent=ref.file) from exc

    def _check_param_types(self, file: str, name: str, source: str) -> None:
        """Refuse published functions whose parameters name a record type the peer's schema
        does not declare (``file:line:col``, the peer's types, the nearest one)."""
        exports = interface(source, file).exports
        if not any(record_types(e.types) for e in exports):
            return
        try:
            schema: Schema | None = load_schema(self.peer)
        except SchemaError:
            schema = None
        problems = check_param_types(file, exports, schema, self.peer.name)
        if problems:
            raise LogicRefused(f"{file} does not compile:\n" + "\n".join(problems), kind="compile_error",
                               module=name)

    def _dependents(self, file: str, layers: LogicLayers) -> builtins.list[tuple[ModuleRef, str]]:
        """The modules whose imports reach ``file`` (directly or not) in ``layers``.

        Found by parsing only (each module's ``import`` lines, resolved in
        ``layers``), so an install compiles just the modules it can affect.
        """
        texts: dict[str, tuple[ModuleRef, str]] = {}
        edges: dict[str, set[str]] = {}
        for ref in self.layers.modules():
            text = read_module(ref.path)
            if ref.file == file or text is None or "import" not in text:
                continue
            try:
                names = interface(text, ref.file).imports
            except CompileError:
                names = ()  # does not parse: nothing this install does changes that
            texts[ref.file] = (ref, text)
            for imported in names:
                found = layers(imported, ref.file)
                if found is not None:
                    edges.setdefault(found.file, set()).add(ref.file)
        reached: set[str] = set()
        todo = [file]
        while todo:
            for importer in edges.get(todo.pop(), ()):
                if importer not in reached:
                    reached.add(importer)
                    todo.append(importer)
        return [texts[f] for f in sorted(reached)]

    def install(self, module: str, source: str, *, statement: bytes, cap: bytes | None = None,
                rule: str | None = None, action: str = "set", restores: int | None = None,
                now: int | None = None, force: bool = False, limits: CompileLimits | None = None) -> Version:
        """Check, record (sealed by the peer) and install ``source`` as the peer's ``module``.

        ``limits`` bounds each compile of the check (a remote install passes a shorter deadline).

        ``statement`` is the installer's signed statement (see
        :func:`~peerbox.peer._versions.make_statement`); the caller has already
        decided the installer may do this (``cap``/``rule`` say why).
        ``action="remove"`` (with ``source=""``) deletes the live file instead.
        A live file that does not match the latest recorded version (edited,
        deleted or added by hand) refuses the install with
        :class:`~peerbox.peer._history.HistoryMismatch` (exit 8), unless ``force``
        (a ``set`` only): the version is then recorded with action ``force``,
        so the overwrite shows in the history. Raises :class:`LogicRefused`
        (nothing changed), :class:`LogicError`, or ``HistoryMismatch`` when the
        log or the head does not check out (``peerbox logic verify``).
        """
        name = self._own_name(module)
        when = int(self.clock()) if now is None else now
        sealer = self.peer.signing_key()
        path = self.peer.paths.logic / (name + MODULE_SUFFIX)
        removing = action == "remove"
        if force and action != "set":
            raise LogicError(f"only a set can be forced, not a {action}")
        with self.history.lock():
            try:
                problem = self.history.live_problem(name, path)
            except HistoryError as exc:
                raise HistoryMismatch(f"{exc} (run `peerbox logic verify {self.peer.name}`)",
                                      module=name) from exc
            if problem is not None:
                if not force:
                    raise HistoryMismatch(
                        f"{problem}: refusing to overwrite it. `peerbox logic verify {self.peer.name}` "
                        f"shows what does not check out; `peerbox logic set {self.peer.name} {name} FILE "
                        "--force` records the new version over it (as action 'force')", module=name)
                action = "force"
            if removing and not path.is_file():
                raise LogicError(f"peer {self.peer.name!r} has no module of its own named {name!r}")
            self.check(name, None if removing else source, limits=limits)
            if not removing:
                safe_dir(self.peer.paths.logic, name + MODULE_SUFFIX)
            mark = self.history.mark(name)
            version = self.history.record(name, source, statement=statement, cap=cap, rule=rule,
                                          action=action, restores=restores, sealer=sealer, now=when)
            try:
                if removing:
                    path.unlink()
                else:
                    write_atomic(path, source.encode("utf-8"))
            except OSError as exc:
                self.history.undo(mark)  # nothing installed: nothing recorded
                raise HistoryError(f"cannot write {path}: {exc}", module=name) from exc
        return version

    def set(self, module: str, source: str, *, key: KeyPair | None = None, now: int | None = None,
            force: bool = False) -> Version:
        """Install ``source`` as the peer's ``module``, signed by ``key`` (default: the peer's own).

        ``force``: also over a live file changed by hand (see :meth:`install`).
        """
        return self._signed(module, source, "set", key, now, force=force)

    def _signed(self, module: str, source: str, action: str, key: KeyPair | None, now: int | None,
                restores: int | None = None, force: bool = False) -> Version:
        """Install (or, ``action="remove"``, remove) with a statement signed here by ``key``."""
        name = self._own_name(module)
        when = int(self.clock()) if now is None else now
        signer = key if key is not None else self.peer.signing_key()
        statement = make_statement(signer, peer=self.peer.public_key, module=name, source=source, now=when,
                                   remove=action == "remove")
        return self.install(name, source, statement=statement, action=action, restores=restores, now=when,
                            force=force)

    def remove(self, module: str, *, key: KeyPair | None = None, now: int | None = None) -> Version:
        """Remove the peer's own ``module`` (imports then reach the shared or built-in one, if any),
        recorded as a version with action ``remove``. Refused like an install if a module importing
        it would stop compiling; :class:`LogicError` if the peer has no such module."""
        return self._signed(module, "", "remove", key, now)

    def adopt(self, entry: Version, source: str) -> Version | None:
        """Install here a version another host of this peer recorded (``entry``, with its
        ``source``): the same statement, capability or rule, recorded as this history's next version
        (sealed here) and checked as :meth:`install` checks a push. None when it is recorded here
        already (the same installer's statement) or older than the latest version here (its
        statement was issued before the latest one's). Raises :class:`LogicRefused` (kind
        ``forged``) for an entry the peer's key did not seal, whose statement does not check out or
        whose source is not the one it names; else what :meth:`install` raises (nothing changed)."""
        name = self._own_name(entry.module)
        problems = [] if verify_signature(self.peer.public_key, entry.signed_bytes(), entry.seal) else \
            ["the peer's seal does not match the entry"]
        if sha256_hex(source) != entry.sha256 or (entry.action == "remove" and source):
            problems.append("the source is not the one the entry names")
        problems += self.history.check_statement(entry, name, self._check_cap)
        if problems:
            raise LogicRefused(f"peer:{name}: refusing version {entry.version}: {'; '.join(problems)}",
                               kind="forged", module=name)
        with self.history.lock():  # the same record seen by two processes on one root: one installs
            here = self.history.entries(name)
            if here and open_statement(here[-1].statement).iat > open_statement(entry.statement).iat:
                return None  # older than what is here: an old record put back cannot roll the module back
            if any(v.statement == entry.statement for v in here):
                return None
            restores = entry.restores  # the same number only when it names the same source here
            if restores is not None and not any(v.version == restores and v.sha256 == entry.sha256
                                                for v in here):
                restores = None
            action = "rollback" if restores is not None else \
                "set" if entry.action in ("rollback", "force") else entry.action
            return self.install(name, source, statement=entry.statement, cap=entry.cap, rule=entry.rule,
                                action=action, restores=restores, now=entry.time,
                                force=entry.action == "force")

    def rollback(self, module: str, version: int, *, key: KeyPair | None = None,
                 now: int | None = None) -> Version:
        """Install the source of recorded ``version`` again, as a new version (history only grows).

        Works after a removal too (the module comes back). Raises :class:`LogicError` for a
        version that is not recorded or that was itself a removal.
        """
        name = self._own_name(module)
        versions = self.history.entries(name)
        match = [v for v in versions if v.version == version]
        if not match:
            have = f"1..{len(versions)}" if versions else "none"
            raise LogicError(f"module {name!r} of peer {self.peer.name!r} has no version {version} "
                             f"(recorded: {have})")
        if match[0].action == "remove":
            raise LogicError(f"version {version} of {name!r} is a removal, not a source to restore "
                             "(to remove the module again: `peerbox logic remove`)")
        source = self.history.source(match[0].sha256)
        return self._signed(name, source, "rollback", key, now, restores=version)

    def verify(self, check_cap: Callable[[Version, bytes], str | None] | None = None,
               ) -> dict[str, builtins.list[str]]:
        """Check every recorded history and every live module of the peer: ``{module: problems}``.

        A version installed by another key than the peer's must carry a
        capability that granted ``logic.write`` for the module when it was
        installed (``check_cap(version, installer_key)`` says what is wrong
        with it; the default verifies the whole chain, rooted in the peer's
        key, at the version's time) or name a policy rule.
        """
        check = check_cap if check_cap is not None else self._check_cap
        logic = self.peer.paths.logic
        report: dict[str, builtins.list[str]] = {}
        with self.history.lock(shared=True):
            try:
                head: dict[str, tuple[int, str]] | None = self.history.head()
            except HistoryError as exc:
                head, report[HEAD_KEY] = None, [str(exc)]
            names = set(self.history.modules()) | set(head or {})
            names.update(r.name for r in self.layers.modules() if r.layer == "peer")
            for name in sorted(names):
                path = logic / (name + MODULE_SUFFIX)
                try:
                    live = path.read_bytes() if path.is_file() else None
                except OSError as exc:
                    report[name] = [f"{name}: the live file cannot be read: {exc}"]
                    continue
                report[name] = self.history.verify(name, live, head, check)
        return report

    def _check_cap(self, version: Version, installer: bytes) -> str | None:
        assert version.cap is not None
        try:  # rooted in the peer's own key, valid when the version was installed
            chain = verify_chain(version.cap, caller=installer, subject=self.peer.public_key,
                                 now=version.time, revoked=lambda _id: False)
        except CapabilityError as exc:
            return str(exc)
        if not chain.allows("logic.write", version.module):
            return f"it grants {', '.join(chain.grants)}, not logic.write of {version.module!r}"
        return None
