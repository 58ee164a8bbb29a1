/* builtins_any.c - builtins that work on values of several types:
 * type_of, to_string, to_debug, print, debug, is_empty, len, contains,
 * index_of, get, clear, keys, values.
 *
 * A builtin called with a combination of types it does not support raises
 * not_found "function not found: name(t1, t2)" (Rhai's dispatch failure).
 */
#include "rt.h"

static V nf1(const char *name, V a) { return raise_not_found_fn(name, 1, &a); }
static V nf2(const char *name, V a, V b) {
    V args[2] = {a, b};
    return raise_not_found_fn(name, 2, args);
}

EXPORT("f_type_of_1") V f_type_of_1(P(0)) {
    (void)p0;
    return vcstr(type_name(t0));
}

EXPORT("f_to_string_1") V f_to_string_1(P(0)) { return display_str(A(0)); }

EXPORT("f_to_debug_1") V f_to_debug_1(P(0)) { return debug_str(A(0)); }

EXPORT("f_print_1") V f_print_1(P(0)) {
    V s = display_str(A(0));
    if (s.tag == T_EXC) return s;
    log_line(s);
    return unit();
}

EXPORT("f_debug_1") V f_debug_1(P(0)) {
    V s = debug_str(A(0));
    if (s.tag == T_EXC) return s;
    log_line(s);
    return unit();
}

/* number of elements, or -1 for a type without elements */
static int64_t count(V v) {
    switch (v.tag) {
    case T_STR: return utf8_count(s_ptr(v), s_len(v));
    case T_ARRAY: return ARR(v)->len;
    case T_MAP: return MAPP(v)->len;
    case T_BLOB: return BLOBP(v)->len;
    default: return -1;
    }
}

EXPORT("f_is_empty_1") V f_is_empty_1(P(0)) {
    V v = A(0);
    if (t0 == T_STR) return vbool(s_len(v) == 0);
    int64_t n = count(v);
    return n < 0 ? nf1("is_empty", v) : vbool(n == 0);
}

EXPORT("f_len_1") V f_len_1(P(0)) {
    int64_t n = count(A(0));
    return n < 0 ? nf1("len", A(0)) : vint(n);
}

EXPORT("f_contains_2") V f_contains_2(P(0), P(1)) {
    V a = A(0), x = A(1);
    int ok = t0 == T_ARRAY || (t0 == T_STR && t1 == T_STR) || (t0 == T_MAP && t1 == T_STR) ||
             (t0 == T_BLOB && t1 == T_INT);
    if (!ok) return nf2("contains", a, x);
    int r = val_in(x, a);
    return r < 0 ? exc() : vbool(r);
}

EXPORT("f_index_of_2") V f_index_of_2(P(0), P(1)) {
    V a = A(0), x = A(1);
    if (t0 == T_STR && t1 == T_STR) {
        int64_t off = str_find(a, x, 0);
        return vint(off < 0 ? -1 : (int64_t)utf8_count(s_ptr(a), (uint32_t)off));
    }
    if (t0 == T_ARRAY && t1 == T_FN) { /* Rhai: the first element the predicate accepts */
        Array *arr = ARR(a);
        for (uint32_t i = 0; i < arr->len; i++) {
            V r = call_closure(x, 1, slot_get(&arr->data[i]), unit());
            if (r.tag == T_EXC) return r;
            if (r.tag == T_BOOL && r.p) return vint(i);
        }
        return vint(-1);
    }
    if (t0 == T_ARRAY) {
        Array *arr = ARR(a);
        for (uint32_t i = 0; i < arr->len; i++)
            if (val_eq(slot_get(&arr->data[i]), x, 0)) return vint(i);
        return vint(-1);
    }
    return nf2("index_of", a, x);
}

EXPORT("f_get_2") V f_get_2(P(0), P(1)) {
    V a = A(0), k = A(1);
    if (t0 == T_ARRAY && t1 == T_INT) {
        Array *arr = ARR(a);
        int64_t i = norm_index(p1, arr->len);
        return i < 0 ? unit() : slot_get(&arr->data[i]);
    }
    if (t0 == T_MAP && t1 == T_STR) {
        Entry *e = map_find(MAPP(a), k);
        return e ? entry_val(e) : unit();
    }
    if (t0 == T_BLOB && t1 == T_INT) {
        Blob *b = BLOBP(a);
        int64_t i = norm_index(p1, b->len);
        return i < 0 ? unit() : vint(b->data[i]);
    }
    if (t0 == T_STR && t1 == T_INT) {
        uint8_t *p = s_ptr(a);
        uint32_t n = s_len(a);
        int64_t i = norm_index(p1, utf8_count(p, n));
        if (i < 0) return unit();
        uint32_t off = utf8_offset(p, n, (uint32_t)i);
        return vstr(p + off, utf8_charlen(p[off]));
    }
    return nf2("get", a, k);
}

EXPORT("f_clear_1") V f_clear_1(P(0)) {
    V v = A(0);
    if (t0 == T_ARRAY) ARR(v)->len = 0;
    else if (t0 == T_BLOB) BLOBP(v)->len = 0;
    else if (t0 == T_MAP) {
        Map *m = MAPP(v);
        map_forget_hit();
        m->len = 0;
        m->sorted = 0;
        m->idx = 0;
        m->icap = 0;
    } else return nf1("clear", v);
    return unit();
}

EXPORT("f_keys_1") V f_keys_1(P(0)) {
    if (t0 != T_MAP) return nf1("keys", A(0));
    Map *m = MAPP(A(0));
    map_sort(m);
    Array *a = array_new(m->len);
    for (uint32_t i = 0; i < m->len; i++) slot_set(&a->data[i], entry_key(&m->e[i]));
    a->len = m->len;
    return vptr(T_ARRAY, a);
}

EXPORT("f_values_1") V f_values_1(P(0)) {
    if (t0 != T_MAP) return nf1("values", A(0));
    Map *m = MAPP(A(0));
    map_sort(m);
    uint32_t n = m->len;
    Entry *e = m->e;
    Array *a = array_new(n);
    for (uint32_t i = 0; i < n; i++) {
        /* the map's containers are now referenced from the new array too */
        slot_set(&a->data[i], share(entry_val(&e[i])));
    }
    a->len = n;
    return vptr(T_ARRAY, a);
}
