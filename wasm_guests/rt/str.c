/* str.c - byte buffers, string values and UTF-8 helpers.
 *
 * A string is an immutable slice (len << 32 | ptr) of valid UTF-8. Strings
 * built by rt come from a Buf, whose bytes live in a string buffer: a block
 * of a STR page (gc.c) with a header {u32 used} in front, where `used` is the
 * end of the furthest slice ever made from it. A concatenation whose left
 * operand starts at a buffer's bytes and is exactly `used` long appends in
 * place while the block has room (else it moves to a buffer 1.5x larger),
 * so `s += x` in a loop is linear however many other strings the loop body
 * builds. Only bytes past every existing slice are ever written, so no slice
 * changes. Only STR pages hold string buffers, so no other block (the input,
 * a host call's reply, a literal) is ever mistaken for one.
 */
#include "rt.h"

#include <wasm_simd128.h>

V vcstr(const char *s) { return vstr((const uint8_t *)s, cstrlen(s)); }

/* ---- Buf ------------------------------------------------------------------ */

void buf_init(Buf *b, uint32_t cap) {
    if (cap < 16) cap = 16;
    b->p = alloc_str(cap, &b->cap);
    b->len = 0;
    b->heap = 1;
}

void buf_reserve(Buf *b, uint32_t extra) {
    uint64_t need = (uint64_t)b->len + extra;
    if (need <= b->cap) return;
    uint64_t cap = (uint64_t)b->cap + b->cap / 2 + 32;
    if (cap < need) cap = need;
    if (cap > 0x7fff0000ull) cap = need;
    uint32_t room;
    uint8_t *p = alloc_str(cap, &room);
    memcpy(p, b->p, b->len);
    b->p = p;
    b->cap = room;
    b->heap = 1;
}

void buf_put(Buf *b, const void *src, uint32_t n) {
    if (n == 0) return;
    buf_reserve(b, n);
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

void buf_byte(Buf *b, uint8_t c) {
    if (b->len == b->cap) buf_reserve(b, 1);
    b->p[b->len++] = c;
}

void buf_cstr(Buf *b, const char *s) { buf_put(b, s, cstrlen(s)); }

void buf_sv(Buf *b, V s) { buf_put(b, s_ptr(s), s_len(s)); }

static const char DIGITS2[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

/* The decimal digits of v < 10^8 ending at end (exactly `width` of them, zero-padded, when
 * width is 8; else as many as v needs); returns where they start. 32-bit divisions by
 * constants, which the compiler turns into multiplications (64-bit ones stay divisions). */
static uint8_t *digits32(uint8_t *end, uint32_t v, int width) {
    uint8_t *p = end;
    while (v >= 100 || (width == 8 && end - p < 6)) {
        uint32_t r = v % 100;
        v /= 100;
        p -= 2;
        __builtin_memcpy(p, DIGITS2 + 2 * r, 2);
    }
    if (v >= 10 || width == 8) {
        p -= 2;
        __builtin_memcpy(p, DIGITS2 + 2 * v, 2);
    } else {
        *--p = (uint8_t)('0' + v);
    }
    return p;
}

void buf_int(Buf *b, int64_t i) {
    uint8_t tmp[24], *end = tmp + sizeof tmp, *p = end;
    uint64_t u = i < 0 ? (uint64_t)0 - (uint64_t)i : (uint64_t)i;
    while (u >= 100000000) { /* at most twice */
        p = digits32(p, (uint32_t)(u % 100000000), 8);
        u /= 100000000;
    }
    p = digits32(p, (uint32_t)u, 0);
    if (i < 0) *--p = '-';
    buf_put(b, p, (uint32_t)(end - p));
}

void buf_float(Buf *b, double d) {
    uint8_t tmp[32];
    buf_put(b, tmp, (uint32_t)f64_repr(d, tmp));
}

V buf_str(Buf *b) {
    if (b->heap) { /* the header {u32 used} is right before the bytes */
        uint32_t *used = (uint32_t *)(uintptr_t)(b->p - 8);
        if (*used < b->len) *used = b->len; /* the furthest slice made from it */
    }
    return vstr(b->p, b->len);
}

V str_from(const void *p, uint32_t n) {
    Buf b;
    buf_init(&b, n);
    buf_put(&b, p, n);
    return buf_str(&b);
}

/* The header of the string buffer `a` is the whole used part of, or 0; *room its room. */
static uint32_t *extendable(V a, uint32_t *room) {
    uint32_t *used = str_buffer(s_ptr(a), room);
    return used && *used == s_len(a) ? used : 0;
}

/* a ++ bytes: never returns a slice of `p` (which may be a temporary). */
V str_append(V a, const uint8_t *p, uint32_t n) {
    uint32_t al = s_len(a), room;
    uint8_t *ap = s_ptr(a);
    if (n == 0) return a;
    uint32_t *used = extendable(a, &room);
    if (used && (uint64_t)al + n <= room) {
        memmove(ap + al, p, n); /* p may be in this very buffer, before `used` */
        *used = al + n;
        return vstr(ap, al + n);
    }
    uint64_t need = (uint64_t)al + n;
    Buf buf;
    buf_init(&buf, sz_mul(need + need / 2 + 16, 1));
    buf_put(&buf, ap, al);
    buf_put(&buf, p, n);
    return buf_str(&buf);
}

/* a ++ b for two strings (an empty side gives the other one, shared). */
V str_concat(V a, V b) {
    uint32_t room;
    if (s_len(a) == 0 && !extendable(a, &room)) return b;
    return str_append(a, s_ptr(b), s_len(b));
}

/* ---- UTF-8 ------------------------------------------------------------------ */

uint32_t utf8_charlen(uint8_t lead) {
    if (lead < 0x80) return 1;
    if (lead >= 0xf0) return 4;
    if (lead >= 0xe0) return 3;
    return 2;
}

/* ---- 8 bytes at a time (SWAR; wasm loads need no alignment) ---- */

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

static inline uint64_t load8(const uint8_t *p) {
    uint64_t w;
    __builtin_memcpy(&w, p, 8);
    return w;
}

/* Bytes of w equal to zero have their high bit set in the result (exact for the lowest). */
static inline uint64_t zero_bytes(uint64_t w) { return (w - ONES) & ~w & HIGHS; }

uint32_t utf8_count(const uint8_t *p, uint32_t n) {
    uint32_t cont = 0, i = 0;
    for (; i + 8 <= n; i += 8) { /* a continuation byte is 10xxxxxx */
        uint64_t w = load8(p + i);
        cont += (uint32_t)__builtin_popcountll(w & ~(w << 1) & HIGHS);
    }
    for (; i < n; i++) cont += (p[i] & 0xc0) == 0x80;
    return n - cont;
}

uint32_t utf8_offset(const uint8_t *p, uint32_t n, uint32_t chars) {
    uint32_t i = 0;
    while (chars >= 8 && i + 8 <= n && !(load8(p + i) & HIGHS)) { /* ASCII: a byte a char */
        i += 8;
        chars -= 8;
    }
    while (chars && i < n) {
        i += utf8_charlen(p[i]);
        chars--;
    }
    return i > n ? n : i;
}

/* ---- comparisons and search ---------------------------------------------------- */

int str_cmp(V a, V b) {
    uint32_t al = s_len(a), bl = s_len(b);
    int c = memcmp(s_ptr(a), s_ptr(b), al < bl ? al : bl);
    if (c) return c;
    return al < bl ? -1 : al > bl;
}

int str_eq(V a, V b) {
    return s_len(a) == s_len(b) && memcmp(s_ptr(a), s_ptr(b), s_len(a)) == 0;
}

int str_eq_c(V a, const char *c) {
    uint32_t n = cstrlen(c);
    return s_len(a) == n && memcmp(s_ptr(a), c, n) == 0;
}

/* 16 candidates at a time with wasm SIMD (a function of its own, so only it needs simd128):
 * those whose first and last bytes match the needle's are checked, lowest first. The match's
 * index, -1 when there is none, or -2 - i: nothing before i, search on from there. */
__attribute__((target("simd128"))) static int64_t find16(const uint8_t *h, uint32_t hl, const uint8_t *n,
                                                          uint32_t nl, uint32_t i, uint32_t last) {
    v128_t first = wasm_i8x16_splat((int8_t)n[0]), lastb = wasm_i8x16_splat((int8_t)n[nl - 1]);
    while (i <= last && (uint64_t)i + (nl - 1) + 16 <= hl) {
        v128_t a = wasm_v128_load(h + i), b = wasm_v128_load(h + i + nl - 1);
        uint32_t m = (uint32_t)wasm_i8x16_bitmask(wasm_v128_and(wasm_i8x16_eq(a, first), wasm_i8x16_eq(b, lastb)));
        while (m) {
            uint32_t j = i + (uint32_t)__builtin_ctz(m);
            if (j > last) return -1;
            if (nl <= 2 || memcmp(h + j + 1, n + 1, nl - 2) == 0) return j;
            m &= m - 1;
        }
        i += 16;
    }
    return -2 - (int64_t)i;
}

int64_t str_find(V hay, V needle, uint32_t from) {
    uint32_t hl = s_len(hay), nl = s_len(needle);
    const uint8_t *h = s_ptr(hay), *n = s_ptr(needle);
    if (nl == 0) return from <= hl ? (int64_t)from : -1;
    if (nl > hl) return -1;
    uint8_t first = n[0];
    uint64_t pat = ONES * first;
    uint32_t i = from, last = hl - nl; /* candidates start in [from, last] */
    if (i > last) return -1;
    int64_t r = find16(h, hl, n, nl, i, last);
    if (r >= -1) return r;
    i = (uint32_t)(-2 - r);
    uint64_t nword = 0, nmask = nl >= 8 ? ~0ull : (1ull << (8 * nl)) - 1;
    __builtin_memcpy(&nword, n, nl < 8 ? nl : 8); /* a short needle is compared as one word */
    if (nl >= 2) {
        /* 8 candidates at a time: those whose first AND last bytes match the needle's
         * (zero_bytes flags every zero byte, with false positives only above one, so no
         * match is missed; each candidate is checked, lowest first) */
        uint64_t lpat = ONES * n[nl - 1];
        while (i <= last && (uint64_t)i + (nl - 1) + 8 <= hl) {
            uint64_t z = zero_bytes(load8(h + i) ^ pat) & zero_bytes(load8(h + i + nl - 1) ^ lpat);
            while (z) {
                uint32_t j = i + (uint32_t)__builtin_ctzll(z) / 8;
                if (j > last) return -1;
                if (memcmp(h + j, n, nl) == 0) return j;
                z &= z - 1;
            }
            i += 8;
        }
    }
    while (i <= last) {
        if (i + 8 <= hl) { /* skip 8 bytes at a time to the next byte equal to `first` */
            uint64_t z = zero_bytes(load8(h + i) ^ pat);
            if (!z) {
                i += 8;
                continue;
            }
            i += (uint32_t)__builtin_ctzll(z) / 8;
            if (i > last) break;
        } else if (h[i] != first) {
            i++;
            continue;
        }
        if (i + 8 <= hl && ((load8(h + i) ^ nword) & nmask)) {
            i++; /* its first 8 bytes differ */
            continue;
        }
        if (nl <= 8 ? (i + 8 <= hl || memcmp(h + i, n, nl) == 0) : memcmp(h + i, n, nl) == 0) return i;
        i++;
    }
    return -1;
}
