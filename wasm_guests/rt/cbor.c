/* cbor.c - the entry protocol: input decoding (rt_begin), the globals, the
 * run's log and result encoding (rt_finish, rt_output, rt_log_out).
 *
 * Input: a CBOR map {"params": map, "caller": any, "target": any} (missing
 * entries read as an empty map / (); other keys are ignored). Accepted: major
 * types 0-5 with definite lengths, ints in i64 range, UTF-8 text, text map keys,
 * false/true/null and f16/f32/f64 floats; nesting up to 128 containers. Tags,
 * indefinite lengths, other simple values (undefined too) and bad UTF-8 are
 * invalid_argument. Decoded strings and blobs point into the input buffer.
 *
 * Output: deterministic CBOR (RFC 8949 section 4.2.1), byte for byte what
 * peerbox.wire's strict encoder (runtime/wire/_cbor_strict.py, dumps) writes
 * for the same value, so a worker signs a result's bytes as they are: definite
 * lengths, minimal int and length heads, each float in the shortest of
 * f16/f32/f64 that keeps its value (every NaN as f97e00), the keys of a map in
 * the bytewise order of their encodings (shorter keys first, then bytewise;
 * a script iterates its maps in plain bytewise order, which the encoder does
 * not change); closures as "<closure>". The envelope's own keys
 * ({"ok","log","value"} and the error map) are in that order too; "value" is
 * the last entry of an ok output, so its bytes run to the end of the document
 * (peerbox.run reads them from there without decoding the rest).
 *
 * The log: print/debug lines are kept pre-encoded as CBOR text items in one
 * buffer with room for the array head and a u32 length in front of them, so
 * rt_log_out needs no allocation (it works after an out-of-memory trap).
 * Encoded lines may use LOG_CAP bytes; the first line that does not fit is
 * replaced by "[log truncated]" and every later line is dropped.
 */
#include "rt.h"

#define LOG_CAP 65536u
#define LOG_HEAD 16u /* room for u32 len + array head in front of the items */

static V g_params, g_caller, g_target;
static uint8_t *out_ptr; /* rt_begin's prepared error output */

static uint8_t *log_buf; /* LOG_HEAD bytes, then the items */
static uint32_t log_used, log_count;
static int log_truncated;
static uint8_t log_empty[5] = {1, 0, 0, 0, 0x80};

/* ---- encoding -------------------------------------------------------------------- */

void cbor_head(Buf *b, uint32_t major, uint64_t n) {
    uint8_t h[9];
    uint32_t len;
    major <<= 5;
    if (n < 24) {
        h[0] = (uint8_t)(major | n);
        len = 1;
    } else if (n <= 0xff) {
        h[0] = (uint8_t)(major | 24);
        h[1] = (uint8_t)n;
        len = 2;
    } else if (n <= 0xffff) {
        h[0] = (uint8_t)(major | 25);
        h[1] = (uint8_t)(n >> 8);
        h[2] = (uint8_t)n;
        len = 3;
    } else if (n <= 0xffffffffull) {
        h[0] = (uint8_t)(major | 26);
        for (int i = 0; i < 4; i++) h[1 + i] = (uint8_t)(n >> (24 - 8 * i));
        len = 5;
    } else {
        h[0] = (uint8_t)(major | 27);
        for (int i = 0; i < 8; i++) h[1 + i] = (uint8_t)(n >> (56 - 8 * i));
        len = 9;
    }
    buf_put(b, h, len);
}

static void enc_text(Buf *b, V s) {
    cbor_head(b, 3, s_len(s));
    buf_sv(b, s);
}

static void enc_ctext(Buf *b, const char *s) { enc_text(b, vcstr(s)); }

/* The f16 bits of the f32 `fb` if the half keeps its value exactly; 0 if it cannot
 * (0 is never returned for a value that fits: +0.0 is answered by the caller). */
static int f16_exact(uint32_t fb, uint16_t *h) {
    uint32_t s = (fb >> 16) & 0x8000, e = (fb >> 23) & 0xff, m = fb & 0x7fffff;
    if (e == 0xff) { /* infinity (NaN never gets here) */
        *h = (uint16_t)(s | 0x7c00);
        return 1;
    }
    if (e == 0) { /* zero, or an f32 subnormal (far below the smallest half) */
        if (m) return 0;
        *h = (uint16_t)s;
        return 1;
    }
    int32_t x = (int32_t)e - 127;
    if (x >= -14 && x <= 15) { /* a normal half: the low 13 mantissa bits must be 0 */
        if (m & 0x1fff) return 0;
        *h = (uint16_t)(s | (uint32_t)(x + 15) << 10 | m >> 13);
        return 1;
    }
    if (x >= -24 && x < -14) { /* a subnormal half: k * 2^-24 with k < 1024 */
        uint32_t full = m | 0x800000, shift = (uint32_t)(-1 - x);
        if (full & ((1u << shift) - 1)) return 0;
        *h = (uint16_t)(s | full >> shift);
        return 1;
    }
    return 0;
}

/* A float in its deterministic form: the shortest of f16, f32 and f64 that keeps its
 * value (what struct.pack/unpack round-trip in _cbor_native.float_bytes); NaN as f97e00. */
static void enc_float(Buf *b, uint64_t bits) {
    double d;
    __builtin_memcpy(&d, &bits, 8);
    uint8_t h[9];
    if (d != d) {
        h[0] = 0xf9, h[1] = 0x7e, h[2] = 0x00;
        buf_put(b, h, 3);
        return;
    }
    float f = (float)d;
    if ((double)f == d) { /* exact in f32 (infinities and -0.0 too: the cast keeps the sign) */
        uint32_t fb;
        uint16_t hb;
        __builtin_memcpy(&fb, &f, 4);
        if (f16_exact(fb, &hb)) {
            h[0] = 0xf9, h[1] = (uint8_t)(hb >> 8), h[2] = (uint8_t)hb;
            buf_put(b, h, 3);
            return;
        }
        h[0] = 0xfa;
        for (int i = 0; i < 4; i++) h[1 + i] = (uint8_t)(fb >> (24 - 8 * i));
        buf_put(b, h, 5);
        return;
    }
    h[0] = 0xfb;
    for (int i = 0; i < 8; i++) h[1 + i] = (uint8_t)(bits >> (56 - 8 * i));
    buf_put(b, h, 9);
}

/* The order a sorted map's entries are encoded in: by the bytewise order of the encoded
 * keys, i.e. by byte length (the length head grows with it), then bytewise (map_sort's
 * order, which a stable sort by length keeps). NULL when that is the entries' own order
 * (every key as long as the next or shorter: small maps of one key length, most records). */
static const uint32_t *encoding_order(const Map *m) {
    uint32_t n = m->len, i;
    for (i = 1; i < n; i++)
        if (s_len(entry_key(&m->e[i])) < s_len(entry_key(&m->e[i - 1]))) break;
    if (i >= n) return 0;
    uint32_t *a = alloc(sz_mul(n, 8)), *t = a + n; /* indices, and the merge's scratch */
    for (i = 0; i < n; i++) a[i] = i;
    for (uint32_t w = 1; w < n; w *= 2) { /* bottom-up stable merge sort by key length */
        for (uint32_t lo = 0; lo < n; lo += 2 * w) {
            uint32_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            uint32_t p = lo, q = mid, k = lo;
            while (p < mid && q < hi)
                t[k++] = s_len(entry_key(&m->e[a[q]])) < s_len(entry_key(&m->e[a[p]])) ? a[q++] : a[p++];
            while (p < mid) t[k++] = a[p++];
            while (q < hi) t[k++] = a[q++];
        }
        uint32_t *swap = a;
        a = t, t = swap;
    }
    return a;
}

int cbor_encode(Buf *b, V v, int depth) {
    switch (v.tag) {
    case T_UNIT: buf_byte(b, 0xf6); return 0;
    case T_BOOL: buf_byte(b, v.p ? 0xf5 : 0xf4); return 0;
    case T_INT:
        if (v.p >= 0) cbor_head(b, 0, (uint64_t)v.p);
        else cbor_head(b, 1, (uint64_t)(-1 - v.p));
        return 0;
    case T_FLOAT: enc_float(b, (uint64_t)v.p); return 0;
    case T_STR: enc_text(b, v); return 0;
    case T_FN: enc_ctext(b, "<closure>"); return 0;
    case T_BLOB: {
        Blob *bl = BLOBP(v);
        cbor_head(b, 2, bl->len);
        buf_put(b, bl->data, bl->len);
        return 0;
    }
    case T_ARRAY: {
        if (depth >= MAX_DEPTH) return -1;
        Array *a = ARR(v);
        cbor_head(b, 4, a->len);
        for (uint32_t i = 0; i < a->len; i++)
            if (cbor_encode(b, slot_get(&a->data[i]), depth + 1)) return -1;
        return 0;
    }
    case T_MAP: {
        if (depth >= MAX_DEPTH) return -1;
        Map *m = MAPP(v);
        map_sort(m);
        uint32_t n = m->len;
        const uint32_t *order = encoding_order(m);
        cbor_head(b, 5, n);
        for (uint32_t i = 0; i < n; i++) {
            const Entry *e = &m->e[order ? order[i] : i];
            enc_text(b, entry_key(e));
            if (cbor_encode(b, entry_val(e), depth + 1)) return -1;
        }
        return 0;
    }
    default: buf_byte(b, 0xf6); return 0;
    }
}

/* ---- the log ------------------------------------------------------------------------ */

void log_reset(void) {
    log_used = 0;
    log_count = 0;
    log_truncated = 0;
}

static void log_append(V s) {
    Buf b = {log_buf + LOG_HEAD + log_used, 0, LOG_CAP + 64 - log_used, 0};
    enc_text(&b, s);
    log_used += b.len;
    log_count++;
}

void log_line(V s) {
    if (log_truncated) return;
    if (!log_buf) log_buf = alloc_perm(LOG_HEAD + LOG_CAP + 64);
    uint64_t need = (uint64_t)s_len(s) + 9;
    if (log_used + need > LOG_CAP) {
        log_truncated = 1;
        log_append(vcstr("[log truncated]"));
        return;
    }
    log_append(s);
}

/* head + items of the log array, written in front of the items. */
static uint8_t *log_frame(uint32_t *len) {
    if (!log_buf) {
        *len = 1;
        return log_empty + 4;
    }
    uint8_t tmp[16];
    Buf h = {tmp, 0, sizeof tmp, 0};
    cbor_head(&h, 4, log_count);
    uint8_t *start = log_buf + LOG_HEAD - h.len;
    memcpy(start, tmp, h.len);
    *len = h.len + log_used;
    return start;
}

void log_encode(Buf *out) {
    uint32_t n;
    uint8_t *p = log_frame(&n);
    buf_put(out, p, n);
}

EXPORT("rt_log_out") int32_t rt_log_out(void) {
    uint32_t n;
    uint8_t *p = log_frame(&n);
    p -= 4;
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(n >> (8 * i));
    return (int32_t)(uintptr_t)p;
}

/* ---- output ------------------------------------------------------------------------ */

static void out_start(Buf *b) {
    buf_init(b, 256);
    b->len = 4; /* u32 length, filled by out_end */
}

static int32_t out_end(Buf *b) {
    uint32_t n = b->len - 4;
    for (int i = 0; i < 4; i++) b->p[i] = (uint8_t)(n >> (8 * i));
    return (int32_t)(uintptr_t)b->p;
}

/* {"ok": false, "log": [...], "error": {...}} for the pending error */
static int32_t out_error(void) {
    Buf b;
    out_start(&b);
    int kind = exc_kind();
    int32_t code = exc_line_code();
    V msg = exc_message();
    V val = exc_value();
    Buf vb;
    int has_value = 0;
    if (kind == K_THROW) {
        Buf mb;
        buf_init(&mb, 64);
        if (buf_display(&mb, val, 0) == 0) msg = buf_str(&mb);
        else msg = vcstr("<value nested too deep>");
        buf_init(&vb, 64);
        has_value = cbor_encode(&vb, val, 0) == 0;
    }
    /* envelope keys in canonical CBOR order (length first, then bytewise) */
    cbor_head(&b, 5, 3);
    enc_ctext(&b, "ok");
    buf_byte(&b, 0xf4);
    enc_ctext(&b, "log");
    log_encode(&b);
    enc_ctext(&b, "error");
    cbor_head(&b, 5, has_value ? 5 : 4);
    enc_ctext(&b, "file");
    cbor_encode(&b, vint((uint32_t)code >> 24), 0);
    enc_ctext(&b, "kind");
    enc_text(&b, exc_kind_str());
    enc_ctext(&b, "line");
    cbor_encode(&b, vint(code & 0xffffff), 0);
    if (has_value) {
        enc_ctext(&b, "value");
        buf_put(&b, vb.p, vb.len);
    }
    enc_ctext(&b, "message");
    enc_text(&b, msg);
    return out_end(&b);
}

EXPORT("rt_finish") int32_t rt_finish(int32_t t, int64_t p) {
    if (t == T_EXC) {
        if (!exc_pending()) raise_c(K_INVALID, "script failed without an error");
        return out_error();
    }
    Buf b;
    out_start(&b);
    cbor_head(&b, 5, 3);
    enc_ctext(&b, "ok");
    buf_byte(&b, 0xf5);
    enc_ctext(&b, "log");
    log_encode(&b);
    enc_ctext(&b, "value");
    if (cbor_encode(&b, mk(t, p), 0)) {
        raise_too_deep();
        return out_error();
    }
    return out_end(&b);
}

EXPORT("rt_output") int32_t rt_output(void) { return (int32_t)(uintptr_t)out_ptr; }

EXPORT("rt_global") V rt_global(int32_t which) {
    if (which == 0) return g_params;
    if (which == 1) return g_caller;
    if (which == 2) return g_target;
    return unit();
}

/* ---- decoding ------------------------------------------------------------------------ */

typedef struct {
    const uint8_t *p, *end;
    const char *err;
} Dec;

static int fail(Dec *d, const char *msg) {
    if (!d->err) d->err = msg;
    return -1;
}

static int utf8_valid(const uint8_t *s, uint32_t n) {
    uint32_t i = 0;
    while (i < n) {
        /* ASCII runs are checked 16 bytes at a time */
        while (i + 16 <= n) {
            uint64_t w0, w1;
            __builtin_memcpy(&w0, s + i, 8);
            __builtin_memcpy(&w1, s + i + 8, 8);
            if ((w0 | w1) & 0x8080808080808080ull) break;
            i += 16;
        }
        if (i >= n) break;
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        uint32_t len, cp, min;
        if (c >= 0xc2 && c <= 0xdf) len = 2, cp = c & 0x1f, min = 0x80;
        else if (c >= 0xe0 && c <= 0xef) len = 3, cp = c & 0x0f, min = 0x800;
        else if (c >= 0xf0 && c <= 0xf4) len = 4, cp = c & 0x07, min = 0x10000;
        else return 0;
        if (n - i < len) return 0;
        for (uint32_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        i += len;
    }
    return 1;
}

/* Read a head: major type and argument. */
static int dec_head(Dec *d, uint32_t *major, uint64_t *arg, uint32_t *info) {
    if (d->p >= d->end) return fail(d, "truncated CBOR input");
    uint8_t b = *d->p++;
    *major = b >> 5;
    *info = b & 31;
    if (*info < 24) {
        *arg = *info;
        return 0;
    }
    if (*info > 27) {
        if (*info == 31) return fail(d, "indefinite-length CBOR items are not supported");
        return fail(d, "malformed CBOR head");
    }
    uint32_t n = 1u << (*info - 24);
    if ((uint64_t)(d->end - d->p) < n) return fail(d, "truncated CBOR input");
    uint64_t v = 0;
    for (uint32_t i = 0; i < n; i++) v = v << 8 | *d->p++;
    *arg = v;
    return 0;
}

static double half_to_double(uint32_t h) {
    uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double v;
    if (e == 0) v = (double)m / 16777216.0; /* m * 2^-24 */
    else if (e == 31) v = m ? __builtin_nan("") : __builtin_inf();
    else {
        v = (double)(m | 0x400);
        int x = (int)e - 25;
        while (x > 0) v *= 2, x--;
        while (x < 0) v /= 2, x++;
    }
    return (h & 0x8000) ? -v : v;
}

static int dec_value(Dec *d, V *out, int depth);

static int dec_text(Dec *d, uint64_t n, V *out) {
    if ((uint64_t)(d->end - d->p) < n) return fail(d, "truncated CBOR input");
    if (!utf8_valid(d->p, (uint32_t)n)) return fail(d, "invalid UTF-8 in CBOR text");
    *out = vstr(d->p, (uint32_t)n);
    d->p += n;
    return 0;
}

static int dec_value(Dec *d, V *out, int depth) {
    uint32_t major, info;
    uint64_t n;
    if (dec_head(d, &major, &n, &info)) return -1;
    uint64_t left = (uint64_t)(d->end - d->p);
    switch (major) {
    case 0:
        if (n > (uint64_t)INT64_MAX) return fail(d, "integer out of i64 range");
        *out = vint((int64_t)n);
        return 0;
    case 1:
        if (n > (uint64_t)INT64_MAX) return fail(d, "integer out of i64 range");
        *out = vint(-1 - (int64_t)n);
        return 0;
    case 2: {
        if (left < n) return fail(d, "truncated CBOR input");
        Blob *b = alloc(sizeof(Blob));
        b->data = (uint8_t *)d->p;
        b->len = b->cap = (uint32_t)n;
        d->p += n;
        *out = vptr(T_BLOB, b);
        return 0;
    }
    case 3: return dec_text(d, n, out);
    case 4: {
        if (depth >= MAX_DEPTH) return fail(d, "input nested deeper than 128 levels");
        if (left < n) return fail(d, "truncated CBOR input");
        Array *a = array_new((uint32_t)n);
        for (uint64_t i = 0; i < n; i++) {
            V x;
            if (dec_value(d, &x, depth + 1)) return -1;
            slot_set(&a->data[i], x);
        }
        a->len = (uint32_t)n;
        *out = vptr(T_ARRAY, a);
        return 0;
    }
    case 5: {
        if (depth >= MAX_DEPTH) return fail(d, "input nested deeper than 128 levels");
        if (left / 2 < n) return fail(d, "truncated CBOR input");
        Map *m = map_new((uint32_t)n);
        for (uint64_t i = 0; i < n; i++) {
            uint32_t km, ki;
            uint64_t kn;
            V k, x;
            if (dec_head(d, &km, &kn, &ki)) return -1;
            if (km != 3) return fail(d, "map keys must be text");
            if (dec_text(d, kn, &k) || dec_value(d, &x, depth + 1)) return -1;
            map_set(m, k, x);
        }
        *out = vptr(T_MAP, m);
        return 0;
    }
    case 6: return fail(d, "CBOR tags are not supported");
    default: /* 7 */
        switch (info) {
        case 20: *out = vbool(0); return 0;
        case 21: *out = vbool(1); return 0;
        case 22: *out = unit(); return 0;
        case 25: *out = vfloat(half_to_double((uint32_t)n)); return 0;
        case 26: {
            uint32_t bits = (uint32_t)n;
            float f;
            __builtin_memcpy(&f, &bits, 4);
            *out = vfloat((double)f);
            return 0;
        }
        case 27: *out = mk(T_FLOAT, (int64_t)n); return 0;
        default: return fail(d, "unsupported CBOR simple value");
        }
    }
}

int cbor_decode(const uint8_t *p, uint32_t len, V *out, const char **err) {
    Dec d = {p, p + len, 0};
    if (dec_value(&d, out, -1) == 0 && d.p == d.end) return 0;
    *err = d.err ? d.err : "trailing bytes after the CBOR value";
    return -1;
}

/* Prepare rt_output for a bad input. */
static int32_t begin_fail(const char *msg) {
    Buf b;
    buf_init(&b, 64);
    buf_cstr(&b, "invalid input: ");
    buf_cstr(&b, msg);
    raise_buf(K_INVALID, &b);
    out_ptr = (uint8_t *)(uintptr_t)out_error();
    exc_reset();
    return 1;
}

void rt_gc_mark_roots(void) {
    gc_mark_value(g_params);
    gc_mark_value(g_caller);
    gc_mark_value(g_target);
    exc_gc_mark();
}

EXPORT("rt_begin") int32_t rt_begin(int32_t ptr, int32_t len) {
    exc_reset();
    log_reset();
    out_ptr = 0;
    g_params = vptr(T_MAP, map_new(0));
    g_caller = unit();
    g_target = unit();
    if (len < 0) return begin_fail("negative length");
    Dec d = {(const uint8_t *)(uintptr_t)ptr, (const uint8_t *)(uintptr_t)ptr + len, 0};
    V top;
    if (dec_value(&d, &top, -1)) return begin_fail(d.err);
    if (d.p != d.end) return begin_fail("trailing bytes after the CBOR value");
    if (top.tag != T_MAP) return begin_fail("expected a map {params, caller, target}");
    Entry *e = map_find(MAPP(top), vcstr("params"));
    if (e) {
        if (e->tag != T_MAP) return begin_fail("params must be a map");
        g_params = entry_val(e);
    }
    if ((e = map_find(MAPP(top), vcstr("caller")))) g_caller = entry_val(e);
    if ((e = map_find(MAPP(top), vcstr("target")))) g_target = entry_val(e);
    /* the globals are read by reference: a change through one copies it first */
    share(g_params);
    share(g_caller);
    share(g_target);
    return 0;
}
