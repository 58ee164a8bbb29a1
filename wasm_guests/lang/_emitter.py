"""The emitter: wasm locals, labels, error regions and variables for one function.

Code generation (``_codegen``) is written against this small vocabulary;
everything about *how* a value is kept (locals, heap cells for captured
variables, module globals) and *how* an error unwinds lives here.

Roots for the collector (see ABI.md, "Memory"): in a function that may
reach a collection, every local that holds a value the collector must keep
(a variable, a captured variable's cell, a loop's array, a caught error, a
switch's subject, a closure's environment) has a slot in the function's
shadow-stack frame, written wherever the local is assigned
(:meth:`Emitter.add_root`), so safe points need no writes of their own.
The frame is pushed on entry and popped on every return (``%ret`` marks
where, expanded by :meth:`Emitter.finish` only if the function has a frame
at all). Code is *safe* (``Emitter.safe``) where no value is held on the
wasm operand stack by an enclosing expression: only there may a
collection happen.

Locals are the one resource a function's code can run up: a variable gets
its own pair, but operand temporaries (:meth:`Emitter.temp`) and scratch
locals (:meth:`Emitter.scratch`) come from per-function pools and are given
back when their expression or loop ends, so a long expression or many
statements reuse the same few. ``CompileLimits.locals`` caps what is left
(mostly variables), and ``CompileLimits.wat_bytes`` the text emitted; both
are checked as code is emitted (:meth:`Emitter.visit`, :meth:`Emitter.local`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NoReturn

from . import _ast as A
from ._budget import TICK, Budget
from ._resolver import Binding, Resolution

__all__ = ["Emitter", "ModuleBuilder", "Operand", "CLOSURE_TABLE_BASE", "CODEGEN_VERSION", "SHADOW_SLOTS",
           "V", "key_hash"]

CLOSURE_TABLE_BASE = 64
CODEGEN_VERSION = "4"

UNIT, BOOL, INT, FLOAT, STR, ARRAY, MAP, FN, BLOB_TAG = 0, 1, 2, 3, 4, 5, 6, 7, 8
ENTRY_SIZE = 24  # rt's map Entry: {i64 key @0, i32 tag @8, u32 hash @12, i64 payload @16}; Map.e @8
ARRAY_FLAGS, MAP_FLAGS = 12, 28  # where rt.h's Array/Blob and Map headers keep their flags (bit 0: shared)
CELL, ENV = 16, 17  # shadow-stack slot tags for a cell pointer and a closure environment
EXC = 255
SHADOW_SLOTS = 512  # the first segment of 16-byte slots (8 KiB): module constants, then frames
I64_MIN = -(2**63)
I64_MAX = 2**63 - 1

V = "i32 i64"
# rt imports used by generated code: name -> (params, results)
RT_SIGS: dict[str, tuple[str, str]] = {
    "rt_alloc": ("i32", "i32"),
    "rt_begin": ("i32 i32", "i32"),
    "rt_output": ("", "i32"),
    "rt_finish": (V, "i32"),
    "rt_throw": (V, V),
    "rt_set_line": ("i32", ""),
    "rt_exc_take": ("", V),
    "rt_err_bool": (V, V),
    "rt_err_int": (V, V),
    "rt_err_not_fn": (V, V),
    "rt_err_arity": ("i32 i32", V),
    "rt_err_overflow": ("", V),
    "rt_neg": (V, V),
    "rt_not": (V, V),
    "rt_copy": (V, V),
    "rt_own": (V, V),
    "rt_index_own": (f"{V} {V}", V),
    "rt_prop_own": (f"{V} {V} i32", V),
    "rt_prop_index": (f"{V} {V} i32", "i32"),
    "rt_rethrow": (V, V),
    "rt_gc": ("i32", ""),
    "rt_gc_word": ("", "i32"),
    "rt_ss": ("i32", "i32"),
    "rt_ss_end_of": ("i32", "i32"),
    "rt_ss_grow": ("i32 i32", "i32"),
    "rt_alloc_perm": ("i32", "i32"),
    "rt_global": ("i32", V),
    "rt_array_new": ("i32", V),
    "rt_array_push": (f"{V} {V}", V),
    "rt_map_new": ("i32", V),
    "rt_map_set": (f"{V} {V} i32 {V}", V),
    "rt_index_get": (f"{V} {V}", V),
    "rt_index_set": (f"{V} {V} {V}", V),
    "rt_prop_get": (f"{V} {V} i32", V),
    "rt_prop_set": (f"{V} {V} i32 {V}", V),
    "rt_iter": (V, V),
    "rt_in": (f"{V} {V}", V),
    "rt_sort_keyed": (f"{V} {V} {V}", V),
}
BINOPS = {
    "+": "rt_add", "-": "rt_sub", "*": "rt_mul", "/": "rt_div", "%": "rt_mod", "**": "rt_pow",
    "&": "rt_band", "|": "rt_bor", "^": "rt_bxor", "<<": "rt_shl", ">>": "rt_shr",
    "==": "rt_eq", "!=": "rt_ne", "<": "rt_lt", "<=": "rt_le", ">": "rt_gt", ">=": "rt_ge",
}
for _op in BINOPS.values():
    RT_SIGS[_op] = (f"{V} {V}", V)
COMPARE = {
    "==": "i64.eq", "!=": "i64.ne", "<": "i64.lt_s", "<=": "i64.le_s", ">": "i64.gt_s", ">=": "i64.ge_s",
}
_JOINS = frozenset({"end", "else", "if"})
_JOIN_PREFIXES = ("block", "loop", "if ")
# expressions whose value is never referenced from anywhere else
FRESH = (A.Unit, A.Bool, A.Int, A.Float, A.Str, A.Interp, A.ArrayLit, A.MapLit, A.Binary,
          A.Unary, A.Logical, A.Closure)


def key_hash(name: str) -> int:
    """rt's hash of a map key (``hash_key`` in ``rt/map.c``: FNV-1a 32, then ``h ^= h >> 15``),
    as a signed i32 for ``i32.const``: constant property names are hashed here, once."""
    h = 2166136261
    for byte in name.encode("utf-8", "surrogatepass"):
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h >= 1 << 31 else h


@dataclass(slots=True)
class Operand:
    """Where an evaluated operand lives: constants, a binding's locals or temps."""

    tag: str  # one instruction pushing the i32 tag
    payload: str  # one instruction pushing the i64 payload
    int_const: int | None = None
    temp: int | None = None
    is_int: bool = False  # statically known to be an int (a literal, or see Emitter.known_int)


@dataclass(slots=True)
class ModuleBuilder:
    """What the functions of one module share: strings, rt imports, globals, the budget."""

    res: Resolution
    budget: Budget
    strings: dict[bytes, int] = field(default_factory=dict)
    data: bytearray = field(default_factory=bytearray)
    imports: dict[str, tuple[str, str]] = field(default_factory=dict)
    funcs: list[str] = field(default_factory=list)
    globals: list[str] = field(default_factory=list)
    closure_arities: set[int] = field(default_factory=set)
    int_clones: set[str] = field(default_factory=set)  # functions with an all-int-arguments clone
    int_returns: set[str] = field(default_factory=set)  # clones ("$f..._int") that only return ints
    may_gc: set[str] = field(default_factory=set)  # functions that may reach a collection
    closures_may_gc: bool = True  # some closure body may reach a collection
    global_slots: dict[str, int] = field(default_factory=dict)  # module constant -> shadow slot
    ic_sites: list[str] = field(default_factory=list)  # property sites' inline-cache globals

    def global_slot(self, name: str) -> int:
        """The shadow-stack slot (at the base, a root for the whole run) of a module constant."""
        return self.global_slots.setdefault(name, len(self.global_slots))

    def string(self, s: str) -> tuple[int, int]:
        b = s.encode("utf-8", "surrogatepass")
        off = self.strings.get(b)
        if off is None:
            off = len(self.data)
            self.strings[b] = off
            self.data += b
            self.budget.wat_bytes += len(b)  # at least a byte of WAT each (exact size checked at the end)
        return off, len(b)

    def use(self, name: str, sig: tuple[str, str] | None = None) -> str:
        if name not in self.imports:
            self.imports[name] = sig if sig is not None else RT_SIGS[name]
        return f"${name}"


class Emitter:
    """Emits the body of one wasm function: the plumbing under the code generator."""

    def __init__(self, mb: ModuleBuilder, file_index: int) -> None:
        self.mb = mb
        self.res = mb.res
        self.budget = mb.budget
        self.file_index = file_index
        self.out: list[str] = []
        self.at: A.Node | None = None  # the node being compiled, for budget errors
        self.out_counted = 0  # instructions of ``out`` already in ``out_bytes``
        self.out_bytes = 0  # bytes of WAT those instructions take
        self.scratch_free: dict[str, list[str]] = {}  # type -> free scratch locals
        self.locals: list[str] = ["(local $xt i32)", "(local $xp i64)", "(local $ln i32)"]
        self.vals: dict[int, tuple[str, str]] = {}  # binding id -> (tag local, payload local)
        self.cells: dict[int, str] = {}  # binding id -> cell pointer local
        self.free_temps: list[int] = []
        self.ntemps = 0
        self.nlabels = 0
        self.regions: list[tuple[str, str]] = []  # (fail, overflow) labels of enclosing regions
        self.ln_known: int | None = None  # what $ln holds here, if known in this basic block
        self.loops: list[tuple[str, str]] = []
        self.caught: list[tuple[str, str]] = []  # locals holding what each enclosing catch caught
        self.known_int: set[int] = set()  # bindings that hold an int for the whole function
        self.last_int = False  # the value expr() just emitted is known to be an int
        self.returns_int = True  # every value this function returns so far is known to be an int
        self.assumed: set[str] = set()  # clones ("$f..._int") whose int results this code relies on
        self.safe = True  # no value is held on the operand stack here: a collection may happen
        self.rooted = True  # this function may reach a collection: its roots live in its frame
        self.env_root = False  # a closure: its environment (local 0) is a root
        self.slots: dict[tuple[str, str], int] = {}  # root -> its slot in this function's frame
        self.prologue_at = 0  # where the frame is pushed (after an int clone's entry test)
        self.call_safe = True  # was the call expression being compiled in safe code
        self.param_ids: set[int] = set()  # this function's parameters (their values are the caller's too)

    # -- plumbing -----------------------------------------------------------------

    def emit(self, *ins: str) -> None:
        self.out.extend(ins)
        if self.ln_known is not None:
            for x in ins:  # control may join here: $ln is no longer known
                if x in _JOINS or x.startswith(_JOIN_PREFIXES):
                    self.ln_known = None
                    break

    def label(self, kind: str) -> str:
        self.nlabels += 1
        return f"${kind}{self.nlabels}"

    def visit(self, node: A.Node) -> None:
        """Count one node compiled; every few thousand, check the WAT size and the clock."""
        self.at = node
        b = self.budget
        b.generated += 1
        if b.generated % TICK == 0:
            self.count_out()
            b.check_time(lambda: node.span)

    def count_out(self) -> None:
        """Add the instructions emitted since the last count to ``out_bytes``; fail past
        ``CompileLimits.function_wat_bytes`` or ``wat_bytes`` (the module so far included)."""
        out = self.out
        n = len(out)
        self.out_bytes += sum(map(len, out[self.out_counted:n])) + 3 * (n - self.out_counted)
        self.out_counted = n
        self.check_size(self.out_bytes)

    def check_size(self, size: int) -> None:
        """Fail if this function, at ``size`` bytes of WAT, is over a WAT limit."""
        b = self.budget
        if size > b.limits.function_wat_bytes:
            self.over("function_wat_bytes", "one function's generated code too large (bytes of WebAssembly "
                                            "text; split it into functions)")
        if b.wat_bytes + size > b.limits.wat_bytes:
            self.over("wat_bytes", "generated code too large (bytes of WebAssembly text)")

    def over(self, limit: str, what: str) -> NoReturn:
        """Fail for ``limit`` at the node being compiled."""
        node = self.at
        span = node.span if node is not None else A.Span(self.res.modules[self.file_index].file, 1, 1, 1, 2)
        self.budget.fail(limit, span, what)

    def local(self, name: str, ty: str) -> str:
        """Declare a local; fail past ``CompileLimits.locals`` locals in this function."""
        self.locals.append(f"(local {name} {ty})")
        limit = self.budget.limits.locals
        if len(self.locals) > limit:
            self.over("locals", "too many variables in one function (wasm locals; use arrays or maps, "
                                "or split the function)")
        return name

    def scratch(self, ty: str) -> str:
        """A scratch local of type ``ty`` from this function's pool; give it back with
        :meth:`free` once the code using it is emitted (a loop's, after the loop)."""
        free = self.scratch_free.get(ty)
        if free:
            return free.pop()
        return self.local(f"$s{len(self.locals)}", ty)

    def free(self, ty: str, *names: str) -> None:
        """Return scratch locals of type ``ty`` to the pool."""
        self.scratch_free.setdefault(ty, []).extend(names)

    def temp(self) -> int:
        if self.free_temps:
            return self.free_temps.pop()
        self.ntemps += 1
        n = self.ntemps
        self.local(f"$t{n}t", "i32")
        self.local(f"$t{n}p", "i64")
        return n

    def release(self, *ops: Operand) -> None:
        for op in ops:
            if op.temp is not None:
                self.free_temps.append(op.temp)

    def to_temp(self) -> Operand:
        """Pop a value from the stack into a fresh temp pair."""
        n = self.temp()
        self.emit(f"local.set $t{n}p", f"local.set $t{n}t")
        return Operand(f"local.get $t{n}t", f"local.get $t{n}p", temp=n)

    def push(self, op: Operand) -> None:
        self.emit(op.tag, op.payload)

    def line_code(self, span: A.Span) -> int:
        return (self.file_index << 24) | min(span.line, 0xFFFFFF)

    def set_line(self, span: A.Span) -> None:
        """Record in $ln the line an error detected next would be reported at."""
        code = self.line_code(span)
        if self.ln_known != code:
            self.out.extend((f"i32.const {code}", "local.set $ln"))
            self.ln_known = code

    def raise_(self, span: A.Span) -> None:
        """An error is pending in rt: unwind to the innermost region's fail path."""
        self.set_line(span)
        self.emit(f"br {self.regions[-1][0]}")

    def fail_if(self, span: A.Span, *, overflow: bool = False) -> None:
        """Pop an i32; if it is non-zero, fail (an overflow raises integer_overflow first)."""
        self.set_line(span)
        self.emit(f"br_if {self.regions[-1][1 if overflow else 0]}")

    def check(self, span: A.Span) -> None:
        """After a call that may fail: unwind if the value on the stack is EXC."""
        self.emit("local.set $xp", "local.tee $xt", f"i32.const {EXC}", "i32.eq")
        self.fail_if(span)
        self.emit("local.get $xt", "local.get $xp")

    def open_region(self) -> None:
        """Start code whose errors go to one fail path (a function body or a try body).

        Layout: ``block $fail (block $ovf <code> end; rt_err_overflow) end; <fail path>``;
        the code must leave its block by a branch or return.
        """
        fail, ovf = self.label("fail"), self.label("ovf")
        self.regions.append((fail, ovf))
        self.emit(f"block {fail}", f"block {ovf}")

    def close_region(self) -> None:
        """End the region's code and emit its fail path, which records the line."""
        self.regions.pop()
        self.emit("end", f"call {self.mb.use('rt_err_overflow')}", "drop", "drop", "end",
                  "local.get $ln", f"call {self.mb.use('rt_set_line')}")

    def call(self, name: str, span: A.Span | None) -> None:
        self.emit(f"call {self.mb.use(name)}")
        if span is not None:
            self.check(span)

    def bool_i32(self) -> None:
        """Replace the BOOL value on the stack by its i32 payload."""
        self.emit("local.set $xp", "drop", "local.get $xp", "i32.wrap_i64")

    def unit(self) -> None:
        self.emit(f"i32.const {UNIT}", "i64.const 0")

    def share_top(self, *, known_int: bool = False) -> None:
        """The value on the stack is being stored in one more place: mark an array, map or
        blob shared (``rt_copy``; copy-on-write, O(1)); other values pass (tested inline,
        or not at all when the value is ``known_int``)."""
        if known_int:
            return
        self.emit("local.set $xp", "local.tee $xt", f"i32.const {ARRAY}", "i32.sub",
                  f"i32.const {BLOB_TAG - ARRAY}", "i32.le_u", "if", "local.get $xt", "local.get $xp",
                  f"call {self.mb.use('rt_copy')}", "drop", "drop", "end", "local.get $xt", "local.get $xp")

    # -- roots and safe points --------------------------------------------------------

    def add_root(self, kind: str, a: str, b: str = "") -> None:
        """The local(s) now hold a root of ``kind``: write it through to its frame slot.

        ``v`` a value (tag, payload locals), ``c`` a cell pointer, ``a`` an array
        pointer, ``e`` a closure environment pointer. Called wherever such a
        local is assigned, so the frame always holds what the locals hold and a
        safe point needs no writes of its own (code linear in the function). A
        slot keeps its last value after its variable's scope ends: it keeps a
        dead value alive until the function returns, never a freed one. Only a
        function that may reach a collection (``rooted``) keeps a frame.
        """
        if not self.rooted:
            return
        slot = self.slots.setdefault((a, b), len(self.slots))
        off = 16 * slot
        if kind == "v":
            self.emit("local.get $fp", f"local.get {a}", f"i32.store offset={off}",
                      "local.get $fp", f"local.get {b}", f"i64.store offset={off + 8}")
        else:
            tag = {"c": CELL, "a": ARRAY, "e": ENV}[kind]
            self.emit("local.get $fp", f"i32.const {tag}", f"i32.store offset={off}", "local.get $fp",
                      f"local.get {a}", "i64.extend_i32_u", f"i64.store offset={off + 8}")

    def poll(self) -> None:
        """A safe point at a loop's back-edge: collect if rt asks and no caller is unsafe."""
        self.emit("global.get $gcw", "i32.load", "if", "global.get $nosafe", "i32.eqz", "if",
                  "global.get $ssp", f"call {self.mb.use('rt_gc')}", "end", "end")

    def gc_call(self, *call: str, may_gc: bool) -> None:
        """Emit a call to a function that may collect: from safe code as it is (the roots
        are in the frame already); from unsafe code, with the script marked unsafe
        (``$nosafe``) meanwhile."""
        if not may_gc or self.safe:
            self.emit(*call)
        else:
            self.emit("global.get $nosafe", "i32.const 1", "i32.add", "global.set $nosafe", *call,
                      "global.get $nosafe", "i32.const 1", "i32.sub", "global.set $nosafe")

    def ret(self) -> None:
        """Return from the function (popping its frame, if it has one)."""
        self.emit("%ret", "return")

    def frame_code(self) -> tuple[list[str], list[str]]:
        """The prologue pushing this function's frame and the epilogue popping it."""
        size = 16 * len(self.slots)
        # a frame that does not fit in the segment goes to the next one (rt_ss_grow);
        # $se keeps the caller's segment end, restored with $ssp on the way out
        push = ["global.get $ssend", "local.set $se", "global.get $ssp", "local.tee $fp", f"i32.const {size}",
                "i32.add", "local.tee $xt", "global.get $ssend", "i32.gt_u", "if",
                "local.get $fp", f"i32.const {size}", f"call {self.mb.use('rt_ss_grow')}", "local.tee $fp",
                f"call {self.mb.use('rt_ss_end_of')}", "global.set $ssend",
                "local.get $fp", f"i32.const {size}", "i32.add", "local.set $xt", "end",
                "local.get $xt", "global.set $ssp", "local.get $fp", "i32.const 0", f"i32.const {size}",
                "memory.fill"]
        return push, ["local.get $fp", "global.set $ssp", "local.get $se", "global.set $ssend"]

    def prop_name(self, name: str) -> None:
        """Push a property's name and its hash (the arguments rt_prop_* take after the map)."""
        self.str_const(name)
        self.emit(f"i32.const {key_hash(name)}")

    def prop_get(self, name: str, span: A.Span) -> None:
        """``obj.name`` with the map on the stack, through a per-site inline cache.

        The site remembers the entry index where it last found ``name``; while
        that entry's key is the constant's own slice (rt makes it so on a hit,
        :c:func:`map_find_h`), the value is read inline, with no call into rt.
        Otherwise ``rt_prop_index`` finds the entry and the cache learns it.
        A value that is not a map takes the generic path (its error).
        """
        site = f"$ic{len(self.mb.ic_sites)}"
        self.mb.ic_sites.append(site)
        off, n = self.mb.string(name)
        h = key_hash(name)
        ie = self.scratch("i32")
        done = self.label("ic")
        key = ("global.get $strbase", "i64.extend_i32_u", f"i64.const {(n << 32) | off}", "i64.add")
        entry = (f"i32.const {ENTRY_SIZE}", "i32.mul", "local.get $xp", "i32.wrap_i64", "i32.load offset=8",
                 "i32.add", f"local.tee {ie}", "i32.load offset=8", f"local.get {ie}", "i64.load offset=16",
                 f"br {done}")
        self.emit("local.set $xp", "local.set $xt", f"block {done} (result i32 i64)",
                  "local.get $xt", f"i32.const {MAP}", "i32.eq", "if",
                  # the cached index, if still inside the map and holding the constant's key
                  f"global.get {site}", "local.get $xp", "i32.wrap_i64", "i32.load", "i32.lt_u", "if",
                  f"global.get {site}", f"i32.const {ENTRY_SIZE}", "i32.mul", "local.get $xp", "i32.wrap_i64",
                  "i32.load offset=8", "i32.add", f"local.tee {ie}", "i64.load", *key, "i64.eq", "if",
                  f"local.get {ie}", "i32.load offset=8", f"local.get {ie}", "i64.load offset=16",
                  f"br {done}", "end", "end",
                  # a miss: rt finds the entry; the site remembers it
                  "local.get $xt", "local.get $xp", f"i32.const {STR}", *key, f"i32.const {h}",
                  f"call {self.mb.use('rt_prop_index')}", f"local.tee {ie}", "i32.const 0", "i32.ge_s", "if",
                  f"local.get {ie}", f"global.set {site}", f"local.get {ie}", *entry, "end",
                  f"i32.const {UNIT}", "i64.const 0", f"br {done}", "end",
                  "local.get $xt", "local.get $xp", f"i32.const {STR}", *key, f"i32.const {h}",
                  f"call {self.mb.use('rt_prop_get')}", "end")
        self.free("i32", ie)
        self.check(span)

    def str_const(self, s: str) -> None:
        off, n = self.mb.string(s)
        self.emit(f"i32.const {STR}", "global.get $strbase", "i64.extend_i32_u",
                  f"i64.const {(n << 32) | off}", "i64.add")

    # -- bindings -------------------------------------------------------------------

    def _locals_of(self, b: Binding) -> tuple[str, str]:
        pair = self.vals.get(b.id)
        if pair is None:
            pair = (self.local(f"$v{b.id}t", "i32"), self.local(f"$v{b.id}p", "i64"))
            self.vals[b.id] = pair
        return pair

    def declare(self, b: Binding, *, known_int: bool = False) -> None:
        """Pop the value on the stack into a new variable ``b``, a root written through to
        the frame unless the value is ``known_int`` (the slot may then keep an older value
        alive a little longer: a slot only ever holds values that were rooted)."""
        if b.module_global is not None:
            off = 16 * self.mb.global_slot(b.module_global)
            self.emit("local.set $xp", "local.set $xt", "global.get $ssbase", "local.get $xt",
                      f"i32.store offset={off}", "global.get $ssbase", "local.get $xp",
                      f"i64.store offset={off + 8}")
        elif b.captured:
            cell = self.cells.get(b.id) or self.local(f"$c{b.id}", "i32")
            self.cells[b.id] = cell
            self.emit("local.set $xp", "local.set $xt", "i32.const 16",
                      f"call {self.mb.use('rt_alloc')}", f"local.tee {cell}",
                      "local.get $xt", "i32.store", f"local.get {cell}", "local.get $xp",
                      "i64.store offset=8")
            self.add_root("c", cell)
        else:
            t, p = self._locals_of(b)
            self.emit(f"local.set {p}", f"local.set {t}")
            if not known_int:
                self.add_root("v", t, p)

    def store(self, b: Binding, *, known_int: bool = False) -> None:
        """Pop the value on the stack into the existing variable ``b`` (see :meth:`declare`)."""
        if b.module_global is not None:
            self.declare(b)
        elif b.captured:
            cell = self.cells[b.id]
            self.emit("local.set $xp", "local.set $xt", f"local.get {cell}", "local.get $xt",
                      "i32.store", f"local.get {cell}", "local.get $xp", "i64.store offset=8")
        else:
            self.declare(b, known_int=known_int)

    def operand_of(self, b: Binding) -> Operand | None:
        """A binding readable without side effects in place (plain locals only)."""
        if b.captured or b.module_global is not None:
            return None
        t, p = self._locals_of(b)
        return Operand(f"local.get {t}", f"local.get {p}", is_int=b.id in self.known_int)

    def load(self, b: Binding) -> None:
        if b.module_global is not None:
            off = 16 * self.mb.global_slot(b.module_global)
            self.emit("global.get $ssbase", f"i32.load offset={off}", "global.get $ssbase",
                      f"i64.load offset={off + 8}")
        elif b.captured:
            cell = self.cells[b.id]
            self.emit(f"local.get {cell}", "i32.load", f"local.get {cell}", "i64.load offset=8")
        else:
            t, p = self._locals_of(b)
            self.emit(f"local.get {t}", f"local.get {p}")

    # -- output ----------------------------------------------------------------------

    def finish(self, header: str) -> str:
        """The function's text; its size is checked against ``CompileLimits.wat_bytes``."""
        if self.slots:
            push, pop = self.frame_code()
            self.locals.append("(local $fp i32)")
            self.locals.append("(local $se i32)")
            out: list[str] = self.out[:self.prologue_at] + push
            for x in self.out[self.prologue_at:]:
                if x == "%ret":
                    out.extend(pop)
                else:
                    out.append(x)
            self.out = out
        else:
            self.out = [x for x in self.out if x != "%ret"]
        self.out_counted = min(self.out_counted, len(self.out))
        self.count_out()
        b = self.budget
        if len(self.locals) > b.limits.locals:  # (the few every function has are not declared by local())
            self.over("locals", "too many variables in one function (wasm locals; use arrays or maps, "
                                "or split the function)")
        b.instructions += len(self.out)
        b.locals_total += len(self.locals)
        if len(self.locals) > b.locals:
            b.locals = len(self.locals)
        text = "\n  ".join([header, *self.locals, *self.out, ")"])
        self.check_size(len(text))
        if len(text) > b.function_wat_bytes:
            b.function_wat_bytes = len(text)
        return text

