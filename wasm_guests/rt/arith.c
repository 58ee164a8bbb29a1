/* arith.c - the operators: + - * / % ** & | ^ << >>, unary - and !,
 * comparisons and `in`.
 *
 * Integers are checked i64 (overflow -> integer_overflow, x/0 and x%0 ->
 * division_by_zero, `/` truncates toward zero, `%` takes the sign of the
 * dividend). An int mixed with a float gives a float; float division by
 * zero gives inf/NaN. Comparisons never fail.
 */
#include "rt.h"

static inline int is_num(int32_t t) { return t == T_INT || t == T_FLOAT; }
static inline double num(V v) { return v.tag == T_INT ? (double)v.p : fval(v); }
static V overflow(void) { return raise_c(K_OVERFLOW, "integer overflow"); }
static V div0(void) { return raise_c(K_DIV0, "division by zero"); }

/* a * b with overflow check (1 on overflow). __builtin_mul_overflow on i64
 * would need compiler-rt's __multi3, which a -nostdlib build does not have. */
static int mul_ovf(int64_t a, int64_t b, int64_t *r) {
    if (a == (int32_t)a && b == (int32_t)b) {
        *r = a * b;
        return 0;
    }
    if (a == 0 || b == 0) {
        *r = 0;
        return 0;
    }
    int neg = (a < 0) != (b < 0);
    uint64_t ua = a < 0 ? (uint64_t)0 - (uint64_t)a : (uint64_t)a;
    uint64_t ub = b < 0 ? (uint64_t)0 - (uint64_t)b : (uint64_t)b;
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    if (ua > limit / ub) return 1;
    uint64_t m = ua * ub;
    *r = neg ? (int64_t)((uint64_t)0 - m) : (int64_t)m;
    return 0;
}

/* fmod for finite/inf/NaN doubles, exact (after musl's fmod). */
static double fmod_(double x, double y) {
    uint64_t ux, uy, i;
    __builtin_memcpy(&ux, &x, 8);
    __builtin_memcpy(&uy, &y, 8);
    int ex = (int)(ux >> 52 & 0x7ff), ey = (int)(uy >> 52 & 0x7ff);
    uint64_t sx = ux >> 63;
    if (uy << 1 == 0 || y != y || ex == 0x7ff) return (x * y) / (x * y);
    if (ux << 1 <= uy << 1) {
        if (ux << 1 == uy << 1) return 0 * x;
        return x;
    }
    if (!ex) {
        for (i = ux << 12; i >> 63 == 0; ex--, i <<= 1) {}
        ux <<= -ex + 1;
    } else {
        ux &= (uint64_t)-1 >> 12;
        ux |= 1ull << 52;
    }
    if (!ey) {
        for (i = uy << 12; i >> 63 == 0; ey--, i <<= 1) {}
        uy <<= -ey + 1;
    } else {
        uy &= (uint64_t)-1 >> 12;
        uy |= 1ull << 52;
    }
    for (; ex > ey; ex--) {
        i = ux - uy;
        if (i >> 63 == 0) {
            if (i == 0) return 0 * x;
            ux = i;
        }
        ux <<= 1;
    }
    i = ux - uy;
    if (i >> 63 == 0) {
        if (i == 0) return 0 * x;
        ux = i;
    }
    for (; ux >> 52 == 0; ux <<= 1, ex--) {}
    if (ex > 0) {
        ux -= 1ull << 52;
        ux |= (uint64_t)ex << 52;
    } else {
        ux >>= -ex + 1;
    }
    ux |= sx << 63;
    double r;
    __builtin_memcpy(&r, &ux, 8);
    return r;
}

/* ---- + ------------------------------------------------------------------------ */

static V add_str(V a, V b) {
    if (a.tag == T_STR && b.tag == T_STR) return str_concat(a, b);
    uint8_t small[64];
    Buf t = {small, 0, sizeof small, 0};
    if (a.tag == T_STR) {
        /* don't finish `t` as a string: `a` must stay the open buffer's tail */
        if (buf_display(&t, b, 0)) return raise_too_deep();
        return str_append(a, t.p, t.len);
    }
    buf_init(&t, 32 + s_len(b));
    if (buf_display(&t, a, 0)) return raise_too_deep();
    buf_sv(&t, b);
    return buf_str(&t);
}

EXPORT("rt_add") V rt_add(int32_t at, int64_t ap, int32_t bt, int64_t bp) {
    V a = mk(at, ap), b = mk(bt, bp);
    if (at == T_INT && bt == T_INT) {
        int64_t r;
        if (__builtin_add_overflow(ap, bp, &r)) return overflow();
        return vint(r);
    }
    if (is_num(at) && is_num(bt)) return vfloat(num(a) + num(b));
    if (at == T_STR || bt == T_STR) return add_str(a, b);
    if (at == T_ARRAY && bt == T_ARRAY) {
        V c = clone1(a);
        Array *x = ARR(c), *y = ARR(b);
        uint32_t n = y->len;
        Slot *d = y->data;
        array_reserve(x, n);
        for (uint32_t i = 0; i < n; i++) array_push(x, share(slot_get(&d[i])));
        return check_depth(c);
    }
    if (at == T_MAP && bt == T_MAP) {
        V c = clone1(a);
        Map *y = MAPP(b);
        uint32_t n = y->len;
        Entry *e = y->e;
        for (uint32_t i = 0; i < n; i++) map_set(MAPP(c), entry_key(&e[i]), share(entry_val(&e[i])));
        return check_depth(c);
    }
    if (at == T_BLOB && bt == T_BLOB) {
        Blob *x = BLOBP(a), *y = BLOBP(b);
        Blob *c = blob_new(sz_mul((uint64_t)x->len + y->len, 1));
        memcpy(c->data, x->data, x->len);
        memcpy(c->data + x->len, y->data, y->len);
        c->len = x->len + y->len;
        return vptr(T_BLOB, c);
    }
    return raise_type2("cannot add ", b, " to ", a);
}

/* ---- - * / % -------------------------------------------------------------------- */

EXPORT("rt_sub") V rt_sub(int32_t at, int64_t ap, int32_t bt, int64_t bp) {
    V a = mk(at, ap), b = mk(bt, bp);
    if (at == T_INT && bt == T_INT) {
        int64_t r;
        if (__builtin_sub_overflow(ap, bp, &r)) return overflow();
        return vint(r);
    }
    if (is_num(at) && is_num(bt)) return vfloat(num(a) - num(b));
    return raise_type2("cannot subtract ", b, " from ", a);
}

EXPORT("rt_mul") V rt_mul(int32_t at, int64_t ap, int32_t bt, int64_t bp) {
    V a = mk(at, ap), b = mk(bt, bp);
    if (at == T_INT && bt == T_INT) {
        int64_t r;
        if (mul_ovf(ap, bp, &r)) return overflow();
        return vint(r);
    }
    if (is_num(at) && is_num(bt)) return vfloat(num(a) * num(b));
    return raise_type2("cannot multiply ", a, " by ", b);
}

EXPORT("rt_div") V rt_div(int32_t at, int64_t ap, int32_t bt, int64_t bp) {
    V a = mk(at, ap), b = mk(bt, bp);
    if (at == T_INT && bt == T_INT) {
        if (bp == 0) return div0();
        if (ap == INT64_MIN && bp == -1) return overflow();
        return vint(ap / bp);
    }
    if (is_num(at) && is_num(bt)) return vfloat(num(a) / num(b));
    return raise_type2("cannot divide ", a, " by ", b);
}

EXPORT("rt_mod") V rt_mod(int32_t at, int64_t ap, int32_t bt, int64_t bp) {
    V a = mk(at, ap), b = mk(bt, bp);
    if (at == T_INT && bt == T_INT) {
        if (bp == 0) return div0();
        if (ap == INT64_MIN && bp == -1) return overflow();
        return vint(ap % bp);
    }
    if (is_num(at) && is_num(bt)) return vfloat(fmod_(num(a), num(b)));
    return raise_type2("cannot take the remainder of ", a, " by ", b);
}

EXPORT("rt_pow") V rt_pow(int32_t at, int64_t ap, int32_t bt, int64_t bp) {
    V a = mk(at, ap), b = mk(bt, bp);
    if (at == T_INT && bt == T_INT) {
        if (bp < 0) return raise_c(K_INVALID, "cannot raise an integer to a negative power");
        int64_t r = 1, base = ap;
        uint64_t e = (uint64_t)bp;
        while (e) {
            if (e & 1) {
                if (mul_ovf(r, base, &r)) return overflow();
            }
            e >>= 1;
            if (e && mul_ovf(base, base, &base)) return overflow();
        }
        return vint(r);
    }
    if (is_num(at) && is_num(bt)) return vfloat(host_pow_f64(num(a), num(b)));
    return raise_type2("cannot raise ", a, " to the power ", b);
}

/* ---- bit operators ----------------------------------------------------------------- */

static V bad_bits(const char *op, V a, V b) {
    Buf buf;
    buf_init(&buf, 64);
    buf_cstr(&buf, "cannot apply ");
    buf_cstr(&buf, op);
    buf_cstr(&buf, " to ");
    buf_cstr(&buf, type_name(a.tag));
    buf_cstr(&buf, " and ");
    buf_cstr(&buf, type_name(b.tag));
    return raise_buf(K_TYPE, &buf);
}

#define BITOP(NAME, EXPNAME, OP, SYM)                                                     \
    EXPORT(EXPNAME) V NAME(int32_t at, int64_t ap, int32_t bt, int64_t bp) {             \
        if (at == T_INT && bt == T_INT) return vint(ap OP bp);                            \
        if (at == T_BOOL && bt == T_BOOL) return vbool((ap OP bp) != 0);                  \
        return bad_bits(SYM, mk(at, ap), mk(bt, bp));                                     \
    }
BITOP(rt_band, "rt_band", &, "&")
BITOP(rt_bor, "rt_bor", |, "|")
BITOP(rt_bxor, "rt_bxor", ^, "^")

static V bad_shift(int64_t n) {
    Buf buf;
    buf_init(&buf, 64);
    buf_cstr(&buf, "shift amount ");
    buf_int(&buf, n);
    buf_cstr(&buf, " is out of range 0..63");
    return raise_buf(K_INVALID, &buf);
}

EXPORT("rt_shl") V rt_shl(int32_t at, int64_t ap, int32_t bt, int64_t bp) {
    if (at != T_INT || bt != T_INT) return bad_bits("<<", mk(at, ap), mk(bt, bp));
    if (bp < 0 || bp >= 64) return bad_shift(bp);
    return vint((int64_t)((uint64_t)ap << bp));
}

EXPORT("rt_shr") V rt_shr(int32_t at, int64_t ap, int32_t bt, int64_t bp) {
    if (at != T_INT || bt != T_INT) return bad_bits(">>", mk(at, ap), mk(bt, bp));
    if (bp < 0 || bp >= 64) return bad_shift(bp);
    return vint(ap >> bp);
}

/* ---- unary -------------------------------------------------------------------------- */

EXPORT("rt_neg") V rt_neg(int32_t t, int64_t p) {
    if (t == T_INT) {
        if (p == INT64_MIN) return overflow();
        return vint(-p);
    }
    if (t == T_FLOAT) return vfloat(-bits2f(p));
    return raise_type1("cannot negate ", mk(t, p), "");
}

EXPORT("rt_not") V rt_not(int32_t t, int64_t p) {
    if (t == T_BOOL) return vbool(!p);
    return raise_type1("expected a bool, found ", mk(t, p), "");
}

/* ---- comparisons (never fail) --------------------------------------------------------- */

EXPORT("rt_eq") V rt_eq(int32_t at, int64_t ap, int32_t bt, int64_t bp) {
    return vbool(val_eq(mk(at, ap), mk(bt, bp), 0));
}
EXPORT("rt_ne") V rt_ne(int32_t at, int64_t ap, int32_t bt, int64_t bp) {
    return vbool(!val_eq(mk(at, ap), mk(bt, bp), 0));
}

#define CMPOP(NAME, EXPNAME, COND)                                                   \
    EXPORT(EXPNAME) V NAME(int32_t at, int64_t ap, int32_t bt, int64_t bp) {        \
        int c;                                                                       \
        if (!val_order(mk(at, ap), mk(bt, bp), &c)) return vbool(0);                 \
        return vbool(COND);                                                          \
    }
CMPOP(rt_lt, "rt_lt", c < 0)
CMPOP(rt_le, "rt_le", c <= 0)
CMPOP(rt_gt, "rt_gt", c > 0)
CMPOP(rt_ge, "rt_ge", c >= 0)

/* ---- in ------------------------------------------------------------------------------- */

/* 1/0 for `a in b`, or -1 with an error raised. Shared with contains(). */
int val_in(V a, V b) {
    switch (b.tag) {
    case T_ARRAY: {
        Array *arr = ARR(b);
        for (uint32_t i = 0; i < arr->len; i++)
            if (val_eq(a, slot_get(&arr->data[i]), 0)) return 1;
        return 0;
    }
    case T_MAP:
        if (a.tag != T_STR) break;
        return map_find(MAPP(b), a) != 0;
    case T_STR:
        if (a.tag != T_STR) break;
        return str_find(b, a, 0) >= 0;
    case T_BLOB: {
        if (a.tag != T_INT) break;
        Blob *bl = BLOBP(b);
        for (uint32_t i = 0; i < bl->len; i++)
            if (bl->data[i] == a.p) return 1;
        return 0;
    }
    default: break;
    }
    raise_type2("cannot look for ", a, " in ", b);
    return -1;
}

EXPORT("rt_in") V rt_in(int32_t at, int64_t ap, int32_t bt, int64_t bp) {
    int r = val_in(mk(at, ap), mk(bt, bp));
    return r < 0 ? exc() : vbool(r);
}
