/* value.c - what every value supports: type names, display and debug forms,
 * deep equality, ordering and deep copies.
 *
 * Display forms (to_string, print, string `+`):
 *   ()        ""                  (debug: "()")
 *   bool      true / false
 *   int       decimal, e.g. -12
 *   float     Python repr via the host: 1.0, 0.1, 1e+100, inf, -inf, NaN
 *   string    the raw text        (debug: quoted, Rust-style escapes
 *                                  \" \\ \n \t \r \0 and \u{1b} for other
 *                                  control characters)
 *   array     [1, "a", 2.0]       (elements in debug form, ", " between)
 *   map       #{"a": 1, "b": "x"} (keys always quoted as debug strings,
 *                                  values in debug form, sorted key order)
 *   closure   <closure>
 *   blob      [0102ff]            (lowercase hex bytes)
 * Debug form: as display, except strings are quoted and () is "()".
 */
#include "rt.h"

const char *type_name(int32_t tag) {
    switch (tag) {
    case T_UNIT: return "()";
    case T_BOOL: return "bool";
    case T_INT: return "i64";
    case T_FLOAT: return "f64";
    case T_STR: return "string";
    case T_ARRAY: return "array";
    case T_MAP: return "map";
    case T_FN: return "Fn";
    case T_BLOB: return "blob";
    default: return "?";
    }
}

static const char HEX[] = "0123456789abcdef";

static void buf_quoted(Buf *b, V s) {
    const uint8_t *p = s_ptr(s);
    uint32_t n = s_len(s);
    buf_reserve(b, n + 2);
    buf_byte(b, '"');
    for (uint32_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        switch (c) {
        case '"': buf_cstr(b, "\\\""); break;
        case '\\': buf_cstr(b, "\\\\"); break;
        case '\n': buf_cstr(b, "\\n"); break;
        case '\t': buf_cstr(b, "\\t"); break;
        case '\r': buf_cstr(b, "\\r"); break;
        case 0: buf_cstr(b, "\\0"); break;
        default:
            if (c < 0x20 || c == 0x7f) {
                buf_cstr(b, "\\u{");
                if (c >= 0x10) buf_byte(b, (uint8_t)HEX[c >> 4]);
                buf_byte(b, (uint8_t)HEX[c & 15]);
                buf_byte(b, '}');
            } else {
                buf_byte(b, c);
            }
        }
    }
    buf_byte(b, '"');
}

static int buf_form(Buf *b, V v, int depth, int debug) {
    switch (v.tag) {
    case T_UNIT:
        if (debug) buf_cstr(b, "()");
        return 0;
    case T_BOOL: buf_cstr(b, v.p ? "true" : "false"); return 0;
    case T_INT: buf_int(b, v.p); return 0;
    case T_FLOAT: buf_float(b, fval(v)); return 0;
    case T_STR:
        if (debug) buf_quoted(b, v);
        else buf_sv(b, v);
        return 0;
    case T_FN: buf_cstr(b, "<closure>"); return 0;
    case T_BLOB: {
        Blob *bl = BLOBP(v);
        buf_reserve(b, sz_mul(bl->len, 2) + 2);
        buf_byte(b, '[');
        for (uint32_t i = 0; i < bl->len; i++) {
            buf_byte(b, (uint8_t)HEX[bl->data[i] >> 4]);
            buf_byte(b, (uint8_t)HEX[bl->data[i] & 15]);
        }
        buf_byte(b, ']');
        return 0;
    }
    case T_ARRAY: {
        if (depth >= MAX_DEPTH) return -1;
        Array *a = ARR(v);
        uint32_t n = a->len;
        Slot *d = a->data;
        buf_byte(b, '[');
        for (uint32_t i = 0; i < n; i++) {
            if (i) buf_cstr(b, ", ");
            if (buf_form(b, slot_get(&d[i]), depth + 1, 1)) return -1;
        }
        buf_byte(b, ']');
        return 0;
    }
    case T_MAP: {
        if (depth >= MAX_DEPTH) return -1;
        Map *m = MAPP(v);
        map_sort(m);
        uint32_t n = m->len;
        Entry *e = m->e;
        buf_cstr(b, "#{");
        for (uint32_t i = 0; i < n; i++) {
            if (i) buf_cstr(b, ", ");
            buf_quoted(b, entry_key(&e[i]));
            buf_cstr(b, ": ");
            if (buf_form(b, entry_val(&e[i]), depth + 1, 1)) return -1;
        }
        buf_byte(b, '}');
        return 0;
    }
    default: buf_cstr(b, "?"); return 0;
    }
}

int buf_display(Buf *b, V v, int depth) { return buf_form(b, v, depth, 0); }
int buf_debug(Buf *b, V v, int depth) { return buf_form(b, v, depth, 1); }

V display_str(V v) {
    if (v.tag == T_STR) return v;
    Buf b;
    buf_init(&b, 32);
    if (buf_display(&b, v, 0)) return raise_too_deep();
    return buf_str(&b);
}

V debug_str(V v) {
    Buf b;
    buf_init(&b, 32);
    if (buf_debug(&b, v, 0)) return raise_too_deep();
    return buf_str(&b);
}

/* ---- equality and order ------------------------------------------------------ */

static inline int is_num(int32_t t) { return t == T_INT || t == T_FLOAT; }
static inline double num(V v) { return v.tag == T_INT ? (double)v.p : fval(v); }

int val_eq(V a, V b, int depth) {
    if (a.tag != b.tag) {
        if (is_num(a.tag) && is_num(b.tag)) return num(a) == num(b);
        return 0;
    }
    switch (a.tag) {
    case T_UNIT: return 1;
    case T_BOOL:
    case T_INT: return a.p == b.p;
    case T_FLOAT: return fval(a) == fval(b);
    case T_STR: return str_eq(a, b);
    case T_FN: return (uint32_t)a.p == (uint32_t)b.p;
    case T_BLOB: {
        Blob *x = BLOBP(a), *y = BLOBP(b);
        return x->len == y->len && memcmp(x->data, y->data, x->len) == 0;
    }
    case T_ARRAY: {
        Array *x = ARR(a), *y = ARR(b);
        if (x == y) return 1;
        if (x->len != y->len || depth >= 2 * MAX_DEPTH) return 0;
        for (uint32_t i = 0; i < x->len; i++)
            if (!val_eq(slot_get(&x->data[i]), slot_get(&y->data[i]), depth + 1)) return 0;
        return 1;
    }
    case T_MAP: {
        Map *x = MAPP(a), *y = MAPP(b);
        if (x == y) return 1;
        if (x->len != y->len || depth >= 2 * MAX_DEPTH) return 0;
        for (uint32_t i = 0; i < x->len; i++) {
            Entry *o = map_find(y, entry_key(&x->e[i]));
            if (!o || !val_eq(entry_val(&x->e[i]), entry_val(o), depth + 1)) return 0;
        }
        return 1;
    }
    default: return 0;
    }
}

int val_order(V a, V b, int *out) {
    if (a.tag == T_INT && b.tag == T_INT) {
        *out = a.p < b.p ? -1 : a.p > b.p;
        return 1;
    }
    if (is_num(a.tag) && is_num(b.tag)) {
        double x = num(a), y = num(b);
        if (x < y) *out = -1;
        else if (x > y) *out = 1;
        else if (x == y) *out = 0;
        else return 0; /* NaN: unordered */
        return 1;
    }
    if (a.tag != b.tag) return 0;
    if (a.tag == T_STR) {
        int c = str_cmp(a, b);
        *out = c < 0 ? -1 : c > 0;
        return 1;
    }
    if (a.tag == T_BOOL) {
        *out = a.p < b.p ? -1 : a.p > b.p;
        return 1;
    }
    return 0;
}

/* ---- copies ---------------------------------------------------------------------- */

V clone1(V v) {
    switch (v.tag) {
    case T_ARRAY: {
        Array *a = ARR(v);
        uint32_t n = a->len;
        Array *c = array_new(n);
        memcpy(c->data, a->data, (size_t)n * sizeof(Slot));
        for (uint32_t i = 0; i < n; i++) share(slot_get(&c->data[i]));
        c->len = n;
        c->depth = a->depth;
        return vptr(T_ARRAY, c);
    }
    case T_MAP: return vptr(T_MAP, map_clone1(MAPP(v)));
    case T_BLOB: {
        Blob *b = BLOBP(v);
        Blob *c = blob_new(b->len);
        memcpy(c->data, b->data, b->len);
        c->len = b->len;
        return vptr(T_BLOB, c);
    }
    default: return v;
    }
}

/* `let b = a`: the value is referenced from one more place (copy-on-write). */
EXPORT("rt_copy") V rt_copy(int32_t t, int64_t p) { return share(mk(t, p)); }

/* Before changing a container in place: v, or a private copy when v is shared. */
EXPORT("rt_own") V rt_own(int32_t t, int64_t p) { return own(mk(t, p)); }
