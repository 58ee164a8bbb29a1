/* builtins_array.c - array (and blob) builtins: push, pop, shift, insert,
 * remove, reverse, sort, map, filter, reduce, some, all.
 *
 * Closures: map/filter/some/all take |x| or |x, i|; reduce takes |acc, x|.
 * An EXC from the closure propagates at once. filter/some/all treat a result
 * that is not `true` as false (Rhai does the same). Elements are passed as
 * references: a closure copies its parameters on entry (ABI: the callee
 * copies). A closure's result may be a reference, so map copies it before
 * storing it, and filter stores copies of the elements it keeps.
 * Loops walk a snapshot (len, data) taken at the start: nothing is ever
 * freed, so a closure that mutates the array cannot make rt read freed memory.
 */
#include "rt.h"

static V nf1(const char *name, V a) { return raise_not_found_fn(name, 1, &a); }
static V nfn(const char *name, int n, V a, V b, V c) {
    V args[3] = {a, b, c};
    return raise_not_found_fn(name, n, args);
}

EXPORT("f_push_2") V f_push_2(P(0), P(1)) {
    if (t0 == T_ARRAY) {
        array_push(ARR(A(0)), A(1));
        return depth_unit(A(0));
    } else if (t0 == T_BLOB && t1 == T_INT) blob_push(BLOBP(A(0)), (uint8_t)p1);
    else return nfn("push", 2, A(0), A(1), unit());
    return unit();
}

EXPORT("f_pop_1") V f_pop_1(P(0)) {
    if (t0 == T_ARRAY) {
        Array *a = ARR(A(0));
        if (!a->len) return unit();
        return slot_get(&a->data[--a->len]);
    }
    if (t0 == T_BLOB) {
        Blob *b = BLOBP(A(0));
        if (!b->len) return unit();
        return vint(b->data[--b->len]);
    }
    return nf1("pop", A(0));
}

EXPORT("f_shift_1") V f_shift_1(P(0)) {
    if (t0 == T_ARRAY) {
        Array *a = ARR(A(0));
        if (!a->len) return unit();
        V x = slot_get(&a->data[0]);
        memmove(a->data, a->data + 1, (size_t)(a->len - 1) * sizeof(Slot));
        a->len--;
        return x;
    }
    if (t0 == T_BLOB) {
        Blob *b = BLOBP(A(0));
        if (!b->len) return unit();
        V x = vint(b->data[0]);
        memmove(b->data, b->data + 1, b->len - 1);
        b->len--;
        return x;
    }
    return nf1("shift", A(0));
}

/* insert position: negative from the end (clamped to 0), past the end appends */
static uint32_t insert_pos(int64_t i, uint32_t len) {
    if (i < 0) {
        i += len;
        if (i < 0) i = 0;
    }
    return i > (int64_t)len ? len : (uint32_t)i;
}

EXPORT("f_insert_3") V f_insert_3(P(0), P(1), P(2)) {
    if (t0 == T_ARRAY && t1 == T_INT) {
        Array *a = ARR(A(0));
        uint32_t at = insert_pos(p1, a->len);
        array_reserve(a, 1);
        memmove(a->data + at + 1, a->data + at, (size_t)(a->len - at) * sizeof(Slot));
        slot_set(&a->data[at], A(2));
        a->len++;
        note_child(&a->depth, A(2));
        return depth_unit(A(0));
    }
    if (t0 == T_BLOB && t1 == T_INT && t2 == T_INT) {
        Blob *b = BLOBP(A(0));
        uint32_t at = insert_pos(p1, b->len);
        blob_push(b, 0);
        memmove(b->data + at + 1, b->data + at, b->len - 1 - at);
        b->data[at] = (uint8_t)p2;
        return unit();
    }
    return nfn("insert", 3, A(0), A(1), A(2));
}

EXPORT("f_remove_2") V f_remove_2(P(0), P(1)) {
    if (t0 == T_ARRAY && t1 == T_INT) {
        Array *a = ARR(A(0));
        int64_t i = norm_index(p1, a->len);
        if (i < 0) return unit();
        V x = slot_get(&a->data[i]);
        memmove(a->data + i, a->data + i + 1, (size_t)(a->len - 1 - i) * sizeof(Slot));
        a->len--;
        return x;
    }
    if (t0 == T_MAP && t1 == T_STR) {
        V x;
        return map_remove(MAPP(A(0)), A(1), &x) ? x : unit();
    }
    if (t0 == T_BLOB && t1 == T_INT) {
        Blob *b = BLOBP(A(0));
        int64_t i = norm_index(p1, b->len);
        if (i < 0) return unit();
        V x = vint(b->data[i]);
        memmove(b->data + i, b->data + i + 1, b->len - 1 - (uint32_t)i);
        b->len--;
        return x;
    }
    return nfn("remove", 2, A(0), A(1), unit());
}

EXPORT("f_reverse_1") V f_reverse_1(P(0)) {
    if (t0 == T_ARRAY) {
        Array *a = ARR(A(0));
        for (uint32_t i = 0, j = a->len; i + 1 < j; i++, j--) {
            Slot t = a->data[i];
            a->data[i] = a->data[j - 1];
            a->data[j - 1] = t;
        }
        return unit();
    }
    if (t0 == T_BLOB) {
        Blob *b = BLOBP(A(0));
        for (uint32_t i = 0, j = b->len; i + 1 < j; i++, j--) {
            uint8_t t = b->data[i];
            b->data[i] = b->data[j - 1];
            b->data[j - 1] = t;
        }
        return unit();
    }
    return nf1("reverse", A(0));
}

EXPORT("f_sort_1") V f_sort_1(P(0)) {
    if (t0 != T_ARRAY) return nf1("sort", A(0));
    return sort_array(ARR(A(0)), unit(), 0);
}

EXPORT("f_sort_2") V f_sort_2(P(0), P(1)) {
    if (t0 != T_ARRAY || t1 != T_FN) return nfn("sort", 2, A(0), A(1), unit());
    return sort_array(ARR(A(0)), A(1), 1);
}

/* ---- closures over elements --------------------------------------------------- */

/* Check f is a closure taking 1 or 2 params; returns its nparams or 0 (raised). */
static int elem_fn(const char *name, V a, V f) {
    if (a.tag != T_ARRAY || f.tag != T_FN) {
        nfn(name, 2, a, f, unit());
        return 0;
    }
    uint32_t np = CLOS(f)->nparams;
    if (np != 1 && np != 2) {
        rt_err_arity((int32_t)np, 1);
        return 0;
    }
    return (int)np;
}

/* f(element i) or f(element i, i) */
static V call_elem(V f, int np, const Slot *s, uint32_t i) { return call_closure(f, np, slot_get(s), vint(i)); }

EXPORT("f_map_2") V f_map_2(P(0), P(1)) {
    int np = elem_fn("map", A(0), A(1));
    if (!np) return exc();
    Array *a = ARR(A(0));
    uint32_t n = a->len;
    Slot *d = a->data;
    Array *r = array_new(n);
    for (uint32_t i = 0; i < n; i++) {
        V y = call_elem(A(1), np, &d[i], i);
        if (y.tag == T_EXC) return y;
        y = copy(y);
        if (y.tag == T_EXC) return y;
        array_push(r, y);
    }
    return vptr(T_ARRAY, r);
}

EXPORT("f_filter_2") V f_filter_2(P(0), P(1)) {
    int np = elem_fn("filter", A(0), A(1));
    if (!np) return exc();
    Array *a = ARR(A(0));
    uint32_t n = a->len;
    Slot *d = a->data;
    Array *r = array_new(0);
    for (uint32_t i = 0; i < n; i++) {
        V y = call_elem(A(1), np, &d[i], i);
        if (y.tag == T_EXC) return y;
        if (y.tag == T_BOOL && y.p) {
            V x = copy(slot_get(&d[i]));
            if (x.tag == T_EXC) return x;
            array_push(r, x);
        }
    }
    return vptr(T_ARRAY, r);
}

static V some_all(const char *name, V av, V f, int want_all) {
    int np = elem_fn(name, av, f);
    if (!np) return exc();
    Array *a = ARR(av);
    uint32_t n = a->len;
    Slot *d = a->data;
    for (uint32_t i = 0; i < n; i++) {
        V y = call_elem(f, np, &d[i], i);
        if (y.tag == T_EXC) return y;
        int truth = y.tag == T_BOOL && y.p;
        if (want_all && !truth) return vbool(0);
        if (!want_all && truth) return vbool(1);
    }
    return vbool(want_all);
}

EXPORT("f_some_2") V f_some_2(P(0), P(1)) { return some_all("some", A(0), A(1), 0); }
EXPORT("f_all_2") V f_all_2(P(0), P(1)) { return some_all("all", A(0), A(1), 1); }

static V reduce(V av, V f, V acc) {
    Array *a = ARR(av);
    uint32_t n = a->len;
    Slot *d = a->data;
    for (uint32_t i = 0; i < n && acc.tag != T_EXC; i++) acc = call_closure(f, 2, acc, slot_get(&d[i]));
    return acc;
}

EXPORT("f_reduce_2") V f_reduce_2(P(0), P(1)) {
    if (t0 != T_ARRAY || t1 != T_FN) return nfn("reduce", 2, A(0), A(1), unit());
    return reduce(A(0), A(1), unit());
}

EXPORT("f_reduce_3") V f_reduce_3(P(0), P(1), P(2)) {
    if (t0 != T_ARRAY || t1 != T_FN) return nfn("reduce", 3, A(0), A(1), A(2));
    return reduce(A(0), A(1), A(2));
}
