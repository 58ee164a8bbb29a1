/* builtins_str.c - string builtins: sub_string, starts_with, ends_with,
 * to_upper, to_lower, trim, replace, split, chars.
 *
 * Positions and lengths count chars (code points). Out-of-range positions
 * are clamped as in Rhai (a negative start counts from the end). Results that
 * are parts of the receiver are slices of it (no copy).
 */
#include "rt.h"

static V nf1(const char *name, V a) { return raise_not_found_fn(name, 1, &a); }
static V nfn(const char *name, int n, V a, V b, V c) {
    V args[3] = {a, b, c};
    return raise_not_found_fn(name, n, args);
}

static int is_space(uint8_t c) { return c == ' ' || (c >= 9 && c <= 13); }

/* The slice of s from char `start` (clamped, negative from the end), at most
 * `len` chars (len < 0: to the end). */
static V char_slice(V s, int64_t start, int64_t len) {
    uint8_t *p = s_ptr(s);
    uint32_t n = s_len(s), chars = utf8_count(p, n);
    if (start < 0) {
        start += chars;
        if (start < 0) start = 0;
    }
    if (start >= chars) return vstr(p + n, 0);
    uint32_t b0 = utf8_offset(p, n, (uint32_t)start);
    if (len < 0 || len >= (int64_t)chars - start) return vstr(p + b0, n - b0);
    uint32_t b1 = b0 + utf8_offset(p + b0, n - b0, (uint32_t)len);
    return vstr(p + b0, b1 - b0);
}

EXPORT("f_sub_string_2") V f_sub_string_2(P(0), P(1)) {
    if (t0 != T_STR || t1 != T_INT) return nfn("sub_string", 2, A(0), A(1), unit());
    return char_slice(A(0), p1, -1);
}

EXPORT("f_sub_string_3") V f_sub_string_3(P(0), P(1), P(2)) {
    if (t0 != T_STR || t1 != T_INT || t2 != T_INT) return nfn("sub_string", 3, A(0), A(1), A(2));
    if (p2 <= 0) return vstr(s_ptr(A(0)), 0);
    return char_slice(A(0), p1, p2);
}

EXPORT("f_starts_with_2") V f_starts_with_2(P(0), P(1)) {
    if (t0 != T_STR || t1 != T_STR) return nfn("starts_with", 2, A(0), A(1), unit());
    V s = A(0), x = A(1);
    return vbool(s_len(x) <= s_len(s) && memcmp(s_ptr(s), s_ptr(x), s_len(x)) == 0);
}

EXPORT("f_ends_with_2") V f_ends_with_2(P(0), P(1)) {
    if (t0 != T_STR || t1 != T_STR) return nfn("ends_with", 2, A(0), A(1), unit());
    V s = A(0), x = A(1);
    return vbool(s_len(x) <= s_len(s) && memcmp(s_ptr(s) + s_len(s) - s_len(x), s_ptr(x), s_len(x)) == 0);
}

static V map_case(V s, int upper) {
    uint32_t n = s_len(s);
    const uint8_t *p = s_ptr(s);
    uint8_t lo = upper ? 'a' : 'A';
    uint32_t i = 0;
    while (i < n && (uint8_t)(p[i] - lo) > 25) i++;
    if (i == n) return s; /* nothing to change: the same (immutable) string */
    Buf b;
    buf_init(&b, n);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (upper && c >= 'a' && c <= 'z') c -= 32;
        if (!upper && c >= 'A' && c <= 'Z') c += 32;
        b.p[i] = c;
    }
    b.len = n;
    return buf_str(&b);
}

EXPORT("f_to_upper_1") V f_to_upper_1(P(0)) {
    if (t0 != T_STR) return nf1("to_upper", A(0));
    return map_case(A(0), 1);
}

EXPORT("f_to_lower_1") V f_to_lower_1(P(0)) {
    if (t0 != T_STR) return nf1("to_lower", A(0));
    return map_case(A(0), 0);
}

EXPORT("f_trim_1") V f_trim_1(P(0)) {
    if (t0 != T_STR) return nf1("trim", A(0));
    V s = A(0);
    uint8_t *p = s_ptr(s);
    uint32_t n = s_len(s), i = 0;
    while (i < n && is_space(p[i])) i++;
    while (n > i && is_space(p[n - 1])) n--;
    return vstr(p + i, n - i);
}

/* Rust's str::replace: every non-overlapping occurrence, left to right; an
 * empty pattern matches before every char and at the end. */
EXPORT("f_replace_3") V f_replace_3(P(0), P(1), P(2)) {
    if (t0 != T_STR || t1 != T_STR || t2 != T_STR) return nfn("replace", 3, A(0), A(1), A(2));
    V s = A(0), find = A(1), with = A(2);
    uint8_t *p = s_ptr(s);
    uint32_t n = s_len(s), fl = s_len(find);
    Buf b;
    buf_init(&b, n + 16);
    if (fl == 0) {
        for (uint32_t i = 0; i < n;) {
            uint32_t cl = utf8_charlen(p[i]);
            if (i + cl > n) cl = n - i;
            buf_sv(&b, with);
            buf_put(&b, p + i, cl);
            i += cl;
        }
        buf_sv(&b, with);
        return buf_str(&b);
    }
    uint32_t at = 0;
    for (;;) {
        int64_t k = str_find(s, find, at);
        if (k < 0) break;
        buf_put(&b, p + at, (uint32_t)k - at);
        buf_sv(&b, with);
        at = (uint32_t)k + fl;
    }
    if (at == 0) return s;
    buf_put(&b, p + at, n - at);
    return buf_str(&b);
}

EXPORT("f_split_1") V f_split_1(P(0)) {
    if (t0 != T_STR) return nf1("split", A(0));
    V s = A(0);
    uint8_t *p = s_ptr(s);
    uint32_t n = s_len(s), i = 0;
    Array *a = array_new(0);
    while (i < n) {
        while (i < n && is_space(p[i])) i++;
        uint32_t j = i;
        while (j < n && !is_space(p[j])) j++;
        if (j > i) array_push(a, vstr(p + i, j - i));
        i = j;
    }
    return vptr(T_ARRAY, a);
}

EXPORT("f_split_2") V f_split_2(P(0), P(1)) {
    V s = A(0), d = A(1);
    if (t0 == T_STR && t1 == T_INT) {
        /* split at a char index (Rhai's split(index)): [before, from] */
        V tail = char_slice(s, p1, -1);
        V head = vstr(s_ptr(s), (uint32_t)(s_ptr(tail) - s_ptr(s)));
        Array *a = array_new(2);
        array_push(a, head);
        array_push(a, tail);
        return vptr(T_ARRAY, a);
    }
    if (t0 != T_STR || t1 != T_STR) return nfn("split", 2, s, d, unit());
    if (s_len(d) == 0) return str_chars(s);
    uint8_t *p = s_ptr(s);
    uint32_t n = s_len(s), at = 0;
    Array *a = array_new(0);
    for (;;) {
        int64_t k = str_find(s, d, at);
        if (k < 0) break;
        array_push(a, vstr(p + at, (uint32_t)k - at));
        at = (uint32_t)k + s_len(d);
    }
    array_push(a, vstr(p + at, n - at));
    return vptr(T_ARRAY, a);
}

EXPORT("f_chars_1") V f_chars_1(P(0)) {
    if (t0 != T_STR) return nf1("chars", A(0));
    return str_chars(A(0));
}
