/* builtins_num.c - number builtins: to_int, to_float, parse_int, parse_float,
 * abs, sign, min, max, floor, ceiling, round, sqrt.
 *
 * floor/ceiling/round/sqrt accept ints too (converted to float first) and
 * always return a float.
 */
#include "rt.h"

static V nf1(const char *name, V a) { return raise_not_found_fn(name, 1, &a); }
static inline int is_num(int32_t t) { return t == T_INT || t == T_FLOAT; }
static inline double num(V v) { return v.tag == T_INT ? (double)v.p : fval(v); }

static V bad_value(const char *pre, V v, const char *post) {
    Buf b;
    buf_init(&b, 64);
    buf_cstr(&b, pre);
    if (buf_debug(&b, v, 0)) buf_cstr(&b, "...");
    buf_cstr(&b, post);
    return raise_buf(K_INVALID, &b);
}

EXPORT("f_to_int_1") V f_to_int_1(P(0)) {
    if (t0 == T_INT) return A(0);
    if (t0 != T_FLOAT) return nf1("to_int", A(0));
    double d = bits2f(p0);
    if (d != d) return bad_value("cannot convert ", A(0), " to an integer");
    if (!(d > -9223372036854777856.0 && d < 9223372036854775808.0)) {
        /* Rhai: "Integer overflow: to_int(x)" */
        Buf b;
        buf_init(&b, 64);
        buf_cstr(&b, "integer overflow: to_int(");
        buf_float(&b, d);
        buf_byte(&b, ')');
        return raise_buf(K_OVERFLOW, &b);
    }
    return vint((int64_t)d);
}

EXPORT("f_to_float_1") V f_to_float_1(P(0)) {
    if (!is_num(t0)) return nf1("to_float", A(0));
    return vfloat(num(A(0)));
}

static int is_space(uint8_t c) { return c == ' ' || (c >= 9 && c <= 13); }

static V trimmed(V s) {
    uint8_t *p = s_ptr(s);
    uint32_t n = s_len(s), i = 0;
    while (i < n && is_space(p[i])) i++;
    while (n > i && is_space(p[n - 1])) n--;
    return vstr(p + i, n - i);
}

EXPORT("f_parse_int_1") V f_parse_int_1(P(0)) {
    if (t0 != T_STR) return nf1("parse_int", A(0));
    V s = trimmed(A(0));
    uint8_t *p = s_ptr(s);
    uint32_t n = s_len(s), i = 0;
    int neg = 0;
    if (i < n && (p[i] == '+' || p[i] == '-')) neg = p[i++] == '-';
    if (i == n) return bad_value("cannot parse ", A(0), " as an integer");
    uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return bad_value("cannot parse ", A(0), " as an integer");
        v = v * 10 + (p[i] - '0');
        if (v > limit) return bad_value("cannot parse ", A(0), " as an integer (out of range)");
    }
    return vint(neg ? (int64_t)(0 - v) : (int64_t)v);
}

EXPORT("f_parse_float_1") V f_parse_float_1(P(0)) {
    if (t0 != T_STR) return nf1("parse_float", A(0));
    V s = trimmed(A(0));
    double d = 0;
    if (s_len(s) == 0 || !host_parse_f64(s_ptr(s), s_len(s), &d))
        return bad_value("cannot parse ", A(0), " as a float");
    return vfloat(d);
}

EXPORT("f_abs_1") V f_abs_1(P(0)) {
    if (t0 == T_INT) {
        if (p0 == INT64_MIN) return raise_c(K_OVERFLOW, "integer overflow");
        return vint(p0 < 0 ? -p0 : p0);
    }
    if (t0 == T_FLOAT) return mk(T_FLOAT, p0 & INT64_MAX);
    return nf1("abs", A(0));
}

EXPORT("f_sign_1") V f_sign_1(P(0)) {
    if (t0 == T_INT) return vint(p0 < 0 ? -1 : p0 > 0);
    if (t0 != T_FLOAT) return nf1("sign", A(0));
    double d = bits2f(p0);
    if (d != d) return raise_c(K_INVALID, "the sign of NaN is undefined");
    return vint(d < 0 ? -1 : d > 0);
}

static V minmax(const char *name, V a, V b, int want_max) {
    if (!is_num(a.tag) || !is_num(b.tag)) {
        V args[2] = {a, b};
        return raise_not_found_fn(name, 2, args);
    }
    if (a.tag == T_INT && b.tag == T_INT) {
        int64_t r = want_max ? (a.p >= b.p ? a.p : b.p) : (a.p <= b.p ? a.p : b.p);
        return vint(r);
    }
    double x = num(a), y = num(b);
    if (x != x) return vfloat(y);
    if (y != y) return vfloat(x);
    return vfloat(want_max ? (y > x ? y : x) : (y < x ? y : x));
}

EXPORT("f_min_2") V f_min_2(P(0), P(1)) { return minmax("min", A(0), A(1), 0); }
EXPORT("f_max_2") V f_max_2(P(0), P(1)) { return minmax("max", A(0), A(1), 1); }

EXPORT("f_floor_1") V f_floor_1(P(0)) {
    if (!is_num(t0)) return nf1("floor", A(0));
    return vfloat(__builtin_floor(num(A(0))));
}

EXPORT("f_ceiling_1") V f_ceiling_1(P(0)) {
    if (!is_num(t0)) return nf1("ceiling", A(0));
    return vfloat(__builtin_ceil(num(A(0))));
}

EXPORT("f_round_1") V f_round_1(P(0)) {
    if (!is_num(t0)) return nf1("round", A(0));
    double d = num(A(0));
    double t = __builtin_trunc(d);
    double frac = d - t; /* exact for every double */
    if (frac >= 0.5) t += 1.0;
    else if (frac <= -0.5) t -= 1.0;
    return vfloat(t);
}

EXPORT("f_sqrt_1") V f_sqrt_1(P(0)) {
    if (!is_num(t0)) return nf1("sqrt", A(0));
    return vfloat(__builtin_sqrt(num(A(0))));
}
