/* array.c - arrays, blobs, indexing, properties, iteration and closure calls.
 *
 * rt_index_get / rt_prop_get return a REFERENCE to the element (no copy): the
 * compiler copies when it stores the value into another place, which is what
 * lets `db.users[0].tags.push("y")` change `db` in place.
 */
#include "rt.h"

V check_depth(V c) {
    return vdepth(c) > MAX_DEPTH ? raise_too_deep() : c;
}

V depth_unit(V c) {
    return vdepth(c) > MAX_DEPTH ? raise_too_deep() : unit();
}

/* The first `cap` slots share the header's block (one cache line fewer per access);
 * growing moves them to a block of their own. */
Array *array_new(uint32_t cap) {
    Array *a = alloc(sizeof(Array) + (uint64_t)sz_mul(cap, sizeof(Slot)));
    a->depth = 1;
    if (cap) a->data = (Slot *)(a + 1);
    a->cap = cap;
    return a;
}

void array_reserve(Array *a, uint32_t extra) {
    uint64_t need = (uint64_t)a->len + extra;
    if (need <= a->cap) return;
    uint64_t cap = (uint64_t)a->cap * 2;
    if (cap < 4) cap = 4;
    if (cap < need) cap = need;
    Slot *d = alloc(sz_mul(cap, sizeof(Slot)));
    memcpy(d, a->data, (size_t)a->len * sizeof(Slot));
    a->data = d;
    a->cap = (uint32_t)cap;
}

void array_push(Array *a, V v) {
    if (a->len == a->cap) array_reserve(a, 1);
    note_child(&a->depth, v);
    slot_set(&a->data[a->len++], v);
}

int64_t norm_index(int64_t i, uint32_t len) {
    if (i < 0) i += len;
    if (i < 0 || i >= (int64_t)len) return -1;
    return i;
}

Blob *blob_new(uint32_t cap) {
    Blob *b = alloc(sizeof(Blob));
    if (cap) b->data = alloc(cap);
    b->cap = cap;
    return b;
}

void blob_push(Blob *b, uint8_t x) {
    if (b->len == b->cap) {
        uint64_t cap = (uint64_t)b->cap * 2;
        if (cap < 16) cap = 16;
        uint8_t *d = alloc(sz_mul(cap, 1));
        memcpy(d, b->data, b->len);
        b->data = d;
        b->cap = (uint32_t)cap;
    }
    b->data[b->len++] = x;
}

/* ---- literals ---------------------------------------------------------------- */

EXPORT("rt_array_new") V rt_array_new(int32_t cap) {
    return vptr(T_ARRAY, array_new(cap < 0 ? 0 : (uint32_t)cap));
}

EXPORT("rt_array_push") V rt_array_push(int32_t at, int64_t ap, int32_t t, int64_t p) {
    if (at != T_ARRAY) return unit();
    array_push(ARR(mk(at, ap)), mk(t, p));
    return depth_unit(mk(at, ap));
}

EXPORT("rt_map_new") V rt_map_new(int32_t cap) { return vptr(T_MAP, map_new(cap < 0 ? 0 : (uint32_t)cap)); }

/* A map literal's entry: the key is a constant whose hash the compiler computed. */
EXPORT("rt_map_set") V rt_map_set(int32_t mt, int64_t mp, int32_t kt, int64_t kp, int32_t h, int32_t t, int64_t p) {
    if (mt != T_MAP || kt != T_STR) return unit();
    map_set_h(MAPP(mk(mt, mp)), mk(kt, kp), (uint32_t)h, mk(t, p));
    return depth_unit(mk(mt, mp));
}

/* ---- indexing ------------------------------------------------------------------ */

V rt_index_set(int32_t ot, int64_t op, int32_t it, int64_t ip, int32_t t, int64_t p);

static V bad_index(V obj, V idx) {
    if (obj.tag == T_MAP) return raise_type1("map key must be a string, not ", idx, "");
    if (obj.tag == T_ARRAY || obj.tag == T_STR || obj.tag == T_BLOB) {
        Buf b;
        buf_init(&b, 64);
        buf_cstr(&b, type_name(obj.tag));
        buf_cstr(&b, " index must be i64, not ");
        buf_cstr(&b, type_name(idx.tag));
        return raise_buf(K_TYPE, &b);
    }
    Buf b;
    buf_init(&b, 48);
    buf_cstr(&b, "cannot index into ");
    buf_cstr(&b, type_name(obj.tag));
    return raise_buf(K_TYPE, &b);
}

EXPORT("rt_index_get") V rt_index_get(int32_t ot, int64_t op, int32_t it, int64_t ip) {
    V obj = mk(ot, op), idx = mk(it, ip);
    if (ot == T_MAP) {
        if (it != T_STR) return bad_index(obj, idx);
        Entry *e = map_find(MAPP(obj), idx);
        return e ? entry_val(e) : unit();
    }
    if (it != T_INT || (ot != T_ARRAY && ot != T_STR && ot != T_BLOB)) return bad_index(obj, idx);
    if (ot == T_ARRAY) {
        Array *a = ARR(obj);
        int64_t i = norm_index(ip, a->len);
        if (i < 0) return raise_index(ip, a->len, "array");
        return slot_get(&a->data[i]);
    }
    if (ot == T_BLOB) {
        Blob *b = BLOBP(obj);
        int64_t i = norm_index(ip, b->len);
        if (i < 0) return raise_index(ip, b->len, "blob");
        return vint(b->data[i]);
    }
    uint8_t *p = s_ptr(obj);
    uint32_t n = s_len(obj), chars = utf8_count(p, n);
    int64_t i = norm_index(ip, chars);
    if (i < 0) return raise_index(ip, chars, "string");
    uint32_t off = utf8_offset(p, n, (uint32_t)i);
    uint32_t cl = utf8_charlen(p[off]);
    if (off + cl > n) cl = n - off;
    return vstr(p + off, cl);
}

/* a[i] about to be changed in place (obj is already private): the element,
 * replaced in obj by a private copy first when it is a shared container. */
EXPORT("rt_index_own") V rt_index_own(int32_t ot, int64_t op, int32_t it, int64_t ip) {
    V e = rt_index_get(ot, op, it, ip);
    if (!is_shared(e)) return e;
    V c = clone1(e);
    rt_index_set(ot, op, it, ip, c.tag, c.p);
    return c;
}

EXPORT("rt_index_set") V rt_index_set(int32_t ot, int64_t op, int32_t it, int64_t ip, int32_t t, int64_t p) {
    V obj = mk(ot, op), idx = mk(it, ip), x = mk(t, p);
    if (ot == T_MAP) {
        if (it != T_STR) return bad_index(obj, idx);
        map_set(MAPP(obj), idx, x);
        return depth_unit(obj);
    }
    if (ot == T_STR) return raise_c(K_TYPE, "strings are immutable: cannot assign to a string index");
    if (it != T_INT || (ot != T_ARRAY && ot != T_BLOB)) return bad_index(obj, idx);
    if (ot == T_ARRAY) {
        Array *a = ARR(obj);
        int64_t i = norm_index(ip, a->len);
        if (i < 0) return raise_index(ip, a->len, "array");
        slot_set(&a->data[i], x);
        note_child(&a->depth, x);
        return depth_unit(obj);
    }
    Blob *b = BLOBP(obj);
    int64_t i = norm_index(ip, b->len);
    if (i < 0) return raise_index(ip, b->len, "blob");
    if (t != T_INT) return raise_type1("blob element must be i64, not ", x, "");
    b->data[i] = (uint8_t)p;
    return unit();
}

static V no_prop(V obj, V name) {
    Buf b;
    buf_init(&b, 64);
    buf_cstr(&b, "property ");
    if (name.tag == T_STR) buf_sv(&b, name);
    buf_cstr(&b, " not found on ");
    buf_cstr(&b, type_name(obj.tag));
    return raise_buf(K_NOT_FOUND, &b);
}

/* m.k: the name is a constant whose hash the compiler computed (hash_key). */
EXPORT("rt_prop_get") V rt_prop_get(int32_t ot, int64_t op, int32_t nt, int64_t np, int32_t h) {
    V obj = mk(ot, op), name = mk(nt, np);
    if (ot != T_MAP || nt != T_STR) return no_prop(obj, name);
    Entry *e = map_find_h(MAPP(obj), name, (uint32_t)h);
    return e ? entry_val(e) : unit();
}

/* The index of m.k's entry (its key made the constant's slice), or -1: the compiled
 * code caches it per property site and reads the entry inline while it still holds
 * that key (see _codegen's prop_get). */
EXPORT("rt_prop_index") int32_t rt_prop_index(int32_t ot, int64_t op, int32_t nt, int64_t np, int32_t h) {
    if (ot != T_MAP || nt != T_STR) return -1;
    Map *m = MAPP(mk(ot, op));
    Entry *e = map_find_h(m, mk(nt, np), (uint32_t)h);
    return e ? (int32_t)(e - m->e) : -1;
}

/* m.k about to be changed in place (m is already private): see rt_index_own. */
EXPORT("rt_prop_own") V rt_prop_own(int32_t ot, int64_t op, int32_t nt, int64_t np, int32_t h) {
    if (ot != T_MAP || nt != T_STR) return no_prop(mk(ot, op), mk(nt, np));
    Entry *e = map_find_h(MAPP(mk(ot, op)), mk(nt, np), (uint32_t)h);
    if (!e) return unit();
    V v = entry_val(e);
    if (!is_shared(v)) return v;
    V c = clone1(v);
    e->tag = c.tag; /* in place: the entry's map is private already */
    e->p = c.p;
    return c;
}

EXPORT("rt_prop_set") V rt_prop_set(int32_t ot, int64_t op, int32_t nt, int64_t np, int32_t h, int32_t t, int64_t p) {
    V obj = mk(ot, op), name = mk(nt, np);
    if (ot != T_MAP || nt != T_STR) return no_prop(obj, name);
    Entry *e = map_find_h(MAPP(obj), name, (uint32_t)h);
    if (e) {
        e->tag = t;
        e->p = p;
        note_child(&MAPP(obj)->depth, mk(t, p));
        return depth_unit(obj);
    }
    map_set(MAPP(obj), name, mk(t, p));
    return depth_unit(obj);
}

/* ---- iteration ------------------------------------------------------------------ */

V str_chars(V s) {
    uint8_t *p = s_ptr(s);
    uint32_t n = s_len(s);
    Array *a = array_new(utf8_count(p, n));
    for (uint32_t i = 0; i < n;) {
        uint32_t cl = utf8_charlen(p[i]);
        if (i + cl > n) cl = n - i;
        slot_set(&a->data[a->len++], vstr(p + i, cl));
        i += cl;
    }
    return vptr(T_ARRAY, a);
}

EXPORT("rt_iter") V rt_iter(int32_t t, int64_t p) {
    V v = mk(t, p);
    if (t == T_ARRAY) return share(v); /* a change to the array in the loop copies it */
    if (t == T_STR) return str_chars(v);
    if (t == T_BLOB) {
        Blob *b = BLOBP(v);
        Array *c = array_new(b->len);
        for (uint32_t i = 0; i < b->len; i++) slot_set(&c->data[i], vint(b->data[i]));
        c->len = b->len;
        return vptr(T_ARRAY, c);
    }
    Buf b;
    buf_init(&b, 48);
    buf_cstr(&b, "cannot iterate over ");
    buf_cstr(&b, type_name(t));
    return raise_buf(K_TYPE, &b);
}

/* ---- closures -------------------------------------------------------------------- */

typedef V (*Fn1)(uint32_t env, int32_t t1, int64_t p1);
typedef V (*Fn2)(uint32_t env, int32_t t1, int64_t p1, int32_t t2, int64_t p2);

V call_closure(V f, int n, V a, V b) {
    if (f.tag != T_FN) return rt_err_not_fn(f.tag, f.p);
    Closure *c = CLOS(f);
    if (c->nparams != (uint32_t)n) return rt_err_arity((int32_t)c->nparams, n);
    uint32_t env = (uint32_t)(uintptr_t)c->env;
    V r;
    gc_enter_unsafe(); /* our caller keeps values in C locals: no collection inside */
    if (n == 1) r = ((Fn1)(uintptr_t)c->table_index)(env, a.tag, a.p);
    else r = ((Fn2)(uintptr_t)c->table_index)(env, a.tag, a.p, b.tag, b.p);
    gc_leave_unsafe();
    return r;
}
