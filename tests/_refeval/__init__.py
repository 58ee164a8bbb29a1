"""A small reference evaluator for a subset of the peerbox language (tests only).

Written independently of the compiler, straight from the language rules (Rhai's
semantics plus peerbox's ABI decisions), so the differential tests can compare
the compiled program against it.

Subset: int/float/bool/string literals, back-tick templates (`` `a${e}` ``),
``()``, unary ``- + !``, binary ``+ - * / % ** == != < <= > >= & | ^ << >> in
&& ||``, parentheses, ``let``, ``const``, ``=`` and ``+= -= *= /= %=`` on
places (``x``, ``a[i]``, ``m.k``, ``m["k"]``, ``m.a[0].b``), blocks, ``if /
else if / else`` (also as an expression), ``while``, ``for x in array`` and
``for i in a..b`` / ``a..=b``, ``break``, ``continue``, ``return``, ``try {..}
catch {..}`` (no binding), ``//`` and
``/* */`` comments; arrays ``[..]`` and maps ``#{k: v}`` with their builtins
(``len push pop insert remove clear keys values``), strings' (``len contains
split replace sub_string to_upper``), ``len(x)``; script functions ``fn f(a)
{..}`` and closures ``|x| ..`` called with ``.call(..)``. Arrays and maps are
values: assignment, parameters and indexing copy them (see ``_collections``).

``evaluate(src)`` returns the script's value (None for ``()``, lists, dicts),
or ``("error", kind)`` for a runtime error. It raises :class:`Unsupported` for
source outside the subset (or that does not parse, or runs too long or builds
too large a value), and :class:`Unspecified` when the program reaches a
behaviour the spec leaves open (float division by zero, ordering of bools or
containers, ...), so a differential test can discard it.

Layout: ``_lexer`` (tokens, :class:`Unsupported`), ``_syntax`` (the parser),
``_collections`` (values, copies, display forms, indexing, builtins,
:class:`RefError`, :class:`Unspecified`), ``_semantics`` (operators),
``_interp`` (the interpreter, :func:`evaluate`). The package is loaded by file
path (tests/ is not a package): see ``_load`` in test_differential.py.
"""

from ._collections import RefError, Unspecified, display
from ._interp import evaluate
from ._lexer import I64_MAX, I64_MIN, Unsupported

__all__ = ["evaluate", "display", "Unsupported", "Unspecified", "RefError", "I64_MIN", "I64_MAX"]
