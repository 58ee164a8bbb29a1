"""A small reference evaluator for a subset of the peerbox language (tests only).

Written independently of the compiler, straight from the language rules (Rhai's
semantics plus peerbox's ABI decisions), so the differential test can compare
the compiled program against it.

Subset: int/float/bool/string literals, ``()``, unary ``- + !``, binary
``+ - * / % ** == != < <= > >= & | ^ << >> in && ||``, parentheses, ``let``,
``const``, ``=``, ``+= -= *= /= %=``, blocks, ``if / else if / else`` (also as
an expression), ``while``, ``//`` and ``/* */`` comments, and array literals
(so a program can return several values; arrays support no operators here).

``evaluate(src)`` returns the script's value (None for ``()``), or
``("error", kind)`` for a runtime error. It raises :class:`Unsupported` for
source outside the subset (or that does not parse), and :class:`Unspecified`
when the program reaches a behaviour the spec leaves open (float division by
zero, ordering of bools, ...), so a differential test can discard it.

Layout: ``_syntax`` (lexer, parser, :class:`Unsupported`), ``_semantics``
(values, operators, the interpreter, :func:`evaluate`). The package is loaded
by file path (tests/ is not a package): see ``_load`` in test_differential.py.
"""

from ._semantics import RefError, Unspecified, display, evaluate
from ._syntax import I64_MAX, I64_MIN, Unsupported

__all__ = ["evaluate", "display", "Unsupported", "Unspecified", "RefError", "I64_MIN", "I64_MAX"]
