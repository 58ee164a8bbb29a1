/* rt.h - shared declarations of the peerbox guest runtime ("rt").
 *
 * rt is freestanding C compiled to wasm32 with the multi-value ABI, so a
 * value `V` returned from a function is the wasm pair (i32 tag, i64 payload).
 * Exported functions take each value as two scalar parameters (tag, payload).
 * See ../ABI.md for the contract with the compiler and the host.
 *
 * Memory is collected by a non-moving mark-and-sweep collector (gc.c) that
 * only runs at the script's safe points, never while rt's C code is running
 * (rt marks itself unsafe while it calls a closure), so a pointer held in a
 * C local stays valid for the whole call: that is what makes snapshots of an
 * array's (len, data) safe to iterate while a closure mutates the array.
 *
 * Arrays, maps and blobs have value semantics by copy-on-write: a container
 * whose FLAG_SHARED is set may be referenced from more than one place and is
 * never changed in place; the compiler asks for a private copy (rt_own,
 * rt_index_own, rt_prop_own) before it changes one. The flag is sticky.
 */
#ifndef PEERBOX_RT_H
#define PEERBOX_RT_H

#include <stddef.h>
#include <stdint.h>

#define EXPORT(name) __attribute__((export_name(name), visibility("default")))
#define HOST(name) __attribute__((import_module("peerbox_rt"), import_name(name)))

/* ---- values ------------------------------------------------------------ */

typedef struct {
    int32_t tag;
    int64_t p;
} V;

enum {
    T_UNIT = 0,
    T_BOOL = 1,
    T_INT = 2,
    T_FLOAT = 3,
    T_STR = 4,
    T_ARRAY = 5,
    T_MAP = 6,
    T_FN = 7,
    T_BLOB = 8,
    T_CELL = 16, /* not a value: a captured variable's cell, in a shadow-stack slot */
    T_ENV = 17,  /* not a value: a closure's environment, in a shadow-stack slot */
    T_EXC = 255,
};

/* Limit on container nesting for copies, CBOR in/out, display, equality. */
#define MAX_DEPTH 128

/* An array slot / a captured-variable cell: {i32 tag, i32 pad, i64 payload}. */
typedef struct {
    int32_t tag;
    int32_t pad;
    int64_t p;
} Slot;

#define FLAG_SHARED 1u

typedef struct {
    uint32_t len;
    uint32_t cap;
    Slot *data;
    uint32_t flags;
    uint32_t depth; /* an upper bound of the levels of containers in it (itself: 1) */
    uint32_t pad;   /* (8-aligned slots may follow the header in its block) */
} Array;

typedef struct {
    uint32_t len;
    uint32_t cap;
    uint8_t *data;
    uint32_t flags;
} Blob;

typedef struct {
    uint32_t table_index;
    uint32_t nparams;
    uint32_t *env;
} Closure;

/* A map entry: key string slice, value, and the key's hash (in the pad). */
typedef struct {
    int64_t key;
    int32_t tag;
    uint32_t hash;
    int64_t p;
} Entry;

/* Map: entries in arbitrary order; `sorted` entries at the front are in
 * key order; `idx` (when icap != 0) is an open-addressing table of entry
 * index + 1, used once the map has more than MAP_SMALL entries.
 * exc_kind lets a bare `throw;` re-raise a caught runtime error with its
 * own kind (copies do not carry it, so `throw e` raises kind "throw"). */
typedef struct {
    uint32_t len;
    uint32_t cap;
    Entry *e;
    uint32_t *idx;
    uint32_t icap;
    uint32_t sorted;
    uint32_t exc_kind; /* kind + 1 on the map rt_exc_take made for a runtime error */
    uint32_t flags;
    uint32_t depth; /* as Array.depth */
    uint32_t pad;   /* (8-aligned entries may follow the header in its block) */
} Map;

#define MAP_SMALL 8

static inline V mk(int32_t tag, int64_t p) {
    V v;
    v.tag = tag;
    v.p = p;
    return v;
}
static inline V unit(void) { return mk(T_UNIT, 0); }
static inline V vbool(int b) { return mk(T_BOOL, b ? 1 : 0); }
static inline V vint(int64_t i) { return mk(T_INT, i); }
static inline V exc(void) { return mk(T_EXC, 0); }
static inline int64_t f2bits(double d) {
    int64_t b;
    __builtin_memcpy(&b, &d, 8);
    return b;
}
static inline double bits2f(int64_t b) {
    double d;
    __builtin_memcpy(&d, &b, 8);
    return d;
}
static inline V vfloat(double d) { return mk(T_FLOAT, f2bits(d)); }
static inline double fval(V v) { return bits2f(v.p); }
static inline V vptr(int32_t tag, const void *ptr) { return mk(tag, (int64_t)(uint32_t)(uintptr_t)ptr); }
static inline void *pval(V v) { return (void *)(uintptr_t)(uint32_t)v.p; }
#define ARR(v) ((Array *)pval(v))
#define MAPP(v) ((Map *)pval(v))
#define BLOBP(v) ((Blob *)pval(v))
#define CLOS(v) ((Closure *)pval(v))

static inline V slot_get(const Slot *s) { return mk(s->tag, s->p); }
static inline void slot_set(Slot *s, V v) {
    s->tag = v.tag;
    s->pad = 0;
    s->p = v.p;
}

/* ---- strings: (len << 32) | ptr ------------------------------------------ */

static inline uint32_t s_len(V v) { return (uint32_t)((uint64_t)v.p >> 32); }
static inline uint8_t *s_ptr(V v) { return (uint8_t *)(uintptr_t)(uint32_t)v.p; }
static inline V vstr(const uint8_t *p, uint32_t len) {
    return mk(T_STR, (int64_t)(((uint64_t)len << 32) | (uint32_t)(uintptr_t)p));
}
V vcstr(const char *s); /* a static C string as a string value (no copy) */

/* ---- heap.c, gc.c ---------------------------------------------------------- */

void *alloc(uint64_t n);       /* 8-aligned, zeroed; traps (fault 1) when out of memory */
void *alloc_perm(uint64_t n);  /* never collected */
uint8_t *alloc_str(uint64_t n, uint32_t *room); /* a string buffer's bytes (room >= n) */
uint32_t *str_buffer(const uint8_t *p, uint32_t *room); /* its header {used}, if p starts one */
void gc_enter_unsafe(void);    /* around a closure call from rt: no collection inside */
void gc_leave_unsafe(void);
void gc_mark_value(V v);       /* for rt_gc_mark_roots */
void gc_mark_ptr(const void *p);
int gc_is_marked(uint32_t p);  /* after marking: is the block holding p kept? */
_Noreturn void heap_corrupt(void); /* fault 3 */
/* Roots and caches outside gc.c, called while collecting. */
void rt_gc_mark_roots(void);   /* cbor.c: params, caller, target, the pending error */
void sort_gc_forget(void);     /* sort.c, map.c: drop scratch buffers */
void map_gc_forget(void);
void map_forget_hit(void); /* map.c: entries moved (clear) */
void exc_gc_mark(void);
uint32_t sz_mul(uint64_t a, uint64_t b); /* a*b, or out of memory past ~2 GiB */
_Noreturn void oom(void);
_Noreturn void host_stop(void); /* fault 2: the host refused to go on (a host-call budget) */
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
void *memset(void *d, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
uint32_t cstrlen(const char *s);

/* ---- str.c: growable byte buffer and string helpers ----------------------- */

typedef struct {
    uint8_t *p;
    uint32_t len;
    uint32_t cap;
    uint32_t heap; /* p is a string buffer's bytes (buf_init, buf_reserve); 0: memory of the caller's */
} Buf;

void buf_init(Buf *b, uint32_t cap);
void buf_reserve(Buf *b, uint32_t extra);
void buf_put(Buf *b, const void *src, uint32_t n);
void buf_byte(Buf *b, uint8_t c);
void buf_cstr(Buf *b, const char *s);
void buf_sv(Buf *b, V s); /* the bytes of a string value */
void buf_int(Buf *b, int64_t i);
void buf_float(Buf *b, double d);
V buf_str(Buf *b); /* finish as a string; it becomes the extendable buffer */
V str_concat(V a, V b); /* a, b strings; in-place extension when possible */
V str_append(V a, const uint8_t *p, uint32_t n); /* copies p (may be temporary) */
V str_from(const void *p, uint32_t n); /* fresh copy */
uint32_t utf8_count(const uint8_t *p, uint32_t n);
uint32_t utf8_offset(const uint8_t *p, uint32_t n, uint32_t chars); /* byte offset of char index */
uint32_t utf8_charlen(uint8_t lead);
int64_t str_find(V hay, V needle, uint32_t from); /* byte offset or -1 */
int str_cmp(V a, V b);                             /* bytewise: <0, 0, >0 */
int str_eq(V a, V b);
int str_eq_c(V a, const char *c);

/* ---- exc.c: the pending error ------------------------------------------- */

enum {
    K_DIV0 = 0,
    K_OVERFLOW,
    K_INDEX,
    K_TYPE,
    K_NOT_FOUND,
    K_ARITY,
    K_INVALID,
    K_TOO_DEEP,
    K_THROW,
    K_HOST, /* a host call refused: the kind is a string chosen by the host */
};
const char *kind_name(int kind);
V exc_kind_str(void); /* the pending error's kind as a string value */
V raise_host(V kind, V msg);
V raise_v(int kind, V msg);         /* record an error; returns EXC */
V raise_c(int kind, const char *m); /* static message */
V raise_buf(int kind, Buf *b);
V raise_type2(const char *verb, V a, const char *mid, V b); /* "<verb> <a> <mid> <b>" type_mismatch */
V raise_type1(const char *pre, V a, const char *post); /* type_mismatch */
V raise_not_found_fn(const char *name, int n, const V *args);
V raise_index(int64_t i, uint32_t len, const char *what);
V raise_too_deep(void);
int exc_pending(void);
void exc_reset(void);
/* For rt_finish: describe the pending error. */
int exc_kind(void);
V exc_message(void);
V exc_value(void);
int32_t exc_line_code(void);

/* ---- value.c ------------------------------------------------------------ */

const char *type_name(int32_t tag);
int buf_display(Buf *b, V v, int depth); /* 0 ok, -1 too deep */
int buf_debug(Buf *b, V v, int depth);
V display_str(V v); /* string value or EXC */
V debug_str(V v);
int val_eq(V a, V b, int depth);
/* Ordering for <, <=, >, >=: 1 and *out=-1/0/1 if comparable, else 0. */
int val_order(V a, V b, int *out);
V clone1(V v); /* a private shallow copy of a container (its elements become shared) */
/* Value semantics: `v` is about to be referenced from one more place. */
static inline V share(V v) {
    if (v.tag == T_ARRAY) ARR(v)->flags |= FLAG_SHARED;
    else if (v.tag == T_MAP) MAPP(v)->flags |= FLAG_SHARED;
    else if (v.tag == T_BLOB) BLOBP(v)->flags |= FLAG_SHARED;
    return v;
}
#define copy(v) share(v)
/* Nesting is bounded when values are built: a container's depth is an upper
 * bound (it never shrinks) kept as children are stored. */
static inline uint32_t vdepth(V v) {
    if (v.tag == T_ARRAY) return ARR(v)->depth;
    if (v.tag == T_MAP) return MAPP(v)->depth;
    return 0;
}
static inline void note_child(uint32_t *depth, V child) {
    uint32_t d = vdepth(child) + 1;
    if (d > *depth) *depth = d;
}
V check_depth(V container); /* container, or too_deep past MAX_DEPTH levels */
V depth_unit(V container);  /* (), or too_deep past MAX_DEPTH levels */
static inline int is_shared(V v) {
    if (v.tag == T_ARRAY) return ARR(v)->flags & FLAG_SHARED;
    if (v.tag == T_MAP) return MAPP(v)->flags & FLAG_SHARED;
    if (v.tag == T_BLOB) return BLOBP(v)->flags & FLAG_SHARED;
    return 0;
}
/* A container that may be changed in place: v itself, or a private copy. */
static inline V own(V v) { return is_shared(v) ? clone1(v) : v; }

/* ---- array.c ------------------------------------------------------------ */

Array *array_new(uint32_t cap);
void array_push(Array *a, V v);
void array_reserve(Array *a, uint32_t extra);
/* Normalise index i (negative counts from the end) into [0, len); -1 if out. */
int64_t norm_index(int64_t i, uint32_t len);
Blob *blob_new(uint32_t cap);
void blob_push(Blob *b, uint8_t x);

/* ---- map.c -------------------------------------------------------------- */

Map *map_new(uint32_t cap);
Entry *map_find(Map *m, V key);
Entry *map_find_h(Map *m, V key, uint32_t h); /* h = hash_key(key), known in advance */
uint32_t hash_key(V key); /* FNV-1a 32 of the bytes, then h ^= h >> 15 (the compiler computes it too) */
void map_set(Map *m, V key, V val);
void map_set_h(Map *m, V key, uint32_t h, V val); /* h = hash_key(key), known in advance */
int map_remove(Map *m, V key, V *out);
void map_sort(Map *m); /* entries in key order afterwards */
Map *map_clone1(Map *m); /* shallow private copy, values shared */
static inline V entry_val(const Entry *e) { return mk(e->tag, e->p); }
static inline V entry_key(const Entry *e) { return mk(T_STR, e->key); }

V str_chars(V s); /* array of one-char strings */

/* ---- closures (array.c) ------------------------------------------------- */

V call_closure(V f, int n, V a, V b); /* n = 1 or 2 args; arity checked */

/* ---- log / cbor --------------------------------------------------------- */

void log_line(V s);
void log_reset(void);
void log_encode(Buf *out); /* the log as a CBOR array */
void cbor_head(Buf *b, uint32_t major, uint64_t n);
int cbor_encode(Buf *b, V v, int depth); /* 0 ok, -1 too deep */
/* Decode one CBOR value filling [p, p+len) exactly; 0 ok, else -1 and *err. */
int cbor_decode(const uint8_t *p, uint32_t len, V *out, const char **err);

/* ---- sort.c ------------------------------------------------------------- */

void sort_entries(Entry *e, uint32_t n);
void sort_i64(int64_t *x, uint32_t n);
V sort_array(Array *a, V fn, int with_fn); /* () or EXC */

/* ---- shared by the builtins --------------------------------------------- */

int val_in(V a, V b); /* `a in b`: 1/0, or -1 with type_mismatch raised */
V rt_err_arity(int32_t expected, int32_t got);
V rt_err_not_fn(int32_t t, int64_t p);
/* A builtin's parameter n is two wasm values; A(n) is the value. */
#define P(n) int32_t t##n, int64_t p##n
#ifdef RT_DEBUG
V gc_check(V v); /* debug builds: fault 3 unless every block v uses is allocated */
#define A(n) gc_check(mk(t##n, p##n))
#else
#define A(n) mk(t##n, p##n)
#endif

/* ---- float display form (fmt_float.c) ------------------------------------ */

/* Writes Python's repr(x) (NaN as `NaN`; at most 24 bytes) to out, returns its length. */
int32_t f64_repr(double x, uint8_t *out);

/* ---- host imports ------------------------------------------------------- */

HOST("parse_f64") int32_t host_parse_f64(const uint8_t *p, uint32_t len, double *out);
HOST("pow_f64") double host_pow_f64(double a, double b);

#endif
