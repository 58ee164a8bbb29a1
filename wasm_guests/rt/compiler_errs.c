/* compiler_errs.c - errors raised by code the compiler inlines.
 *
 * The compiler checks some types itself (range bounds, unary plus) and calls
 * here to raise the error with rt's usual message and kind.
 */
#include "rt.h"

/* A range bound or a unary '+' operand that is not a number. */
EXPORT("rt_err_int") V rt_err_int(int32_t t, int64_t p) {
    return raise_type1("expected an integer, found ", mk(t, p), "");
}
