/* sort_keyed.c - `a.sort(|x, y| ...)` without calling the closure, for comparators
 * that only compare properties of their two arguments.
 *
 * The compiler recognises a comparator whose body is a tree of `if` on
 * comparisons of properties (`x.k < y.k`, `!=`, ...), integer constants and
 * differences of properties (`y.k - x.k`), and passes that tree as a spec
 * string next to the closure (`rt_sort_keyed`). rt reads each element's
 * properties once into a table (decorate), then runs the same stable merge
 * sort as the closure path (msort.h) on element indices, answering each
 * "x sorts after y" from the table, and installs the elements in that order.
 *
 * The result is the closure path's result: the merge sort asks the same
 * questions in the same order, and each answer is what the closure would
 * return. So the keyed path is taken only when it cannot differ: every
 * element is a map holding every key, each key's values are all ints or all
 * strings, both sides of each comparison have the same kind, and no
 * difference can overflow (every int used in one lies in a range whose width
 * fits in an i64). Otherwise (floats, missing keys, non-maps, mixed kinds)
 * the closure path runs, with its errors and its messages.
 *
 * Spec (all bytes < 0x80 but the key names, so the spec is a UTF-8 string):
 *   spec  := '0'+K  (len name){K}  tree          K <= MAX_KEYS, len in 1..127
 *   tree  := 'k' [-]digits ';'                   an int constant
 *          | 'd' key side key side               key(side) - key(side)
 *          | '?' op key side key side tree tree  if key(side) op key(side) {tree} else {tree}
 *   key   := '0'+index   side := 'a' | 'b' (the first or the second parameter)
 *   op    := '<' '>' 'l' (<=) 'g' (>=) '=' (==) '!' (!=)
 */
#include "rt.h"

#define MAX_KEYS 3 /* keys held in a record (the compiler's _sortspec.MAX_KEYS) */
#define MAX_NODES 64

enum { N_CONST, N_DIFF, N_IF };
enum { K_NONE, K_INTS, K_STRS };

typedef struct {
    uint8_t kind, op, ki, si, kj, sj; /* si, sj: 0 = first parameter, 1 = second */
    uint16_t then_, else_;             /* node indices (N_IF) */
    int64_t c;                         /* N_CONST */
} Node;

/* What the sort moves: an element's keys (an int, or a string's first 8 bytes
 * big-endian and zero-padded, which order as the bytes do) and its index.
 * Merging records in place of indices keeps the sort's memory accesses
 * sequential. */
typedef struct {
    int64_t hot[MAX_KEYS];
    uint32_t idx;
    uint32_t pad;
} Rec;

typedef struct {
    int err; /* msort.h's stop flag: never set here (no answer can fail) */
    const Node *nodes;
    const int64_t *strs; /* strs[idx * nkeys + k]: the payload of a string key */
    const uint8_t *kind; /* K_INTS / K_STRS per key */
    uint32_t nkeys;
} Ctx;

#include "msort.h"

typedef struct {
    const uint8_t *p, *end;
    Node nodes[MAX_NODES];
    uint32_t count;
    uint32_t nkeys;
} Parser;

static int key_side(Parser *ps, uint8_t *k, uint8_t *s) {
    if (ps->end - ps->p < 2) return -1;
    uint32_t key = (uint32_t)(ps->p[0] - '0');
    uint8_t side = ps->p[1];
    if (key >= ps->nkeys || (side != 'a' && side != 'b')) return -1;
    *k = (uint8_t)key;
    *s = side == 'b';
    ps->p += 2;
    return 0;
}

static int is_op(uint8_t c) {
    return c == '<' || c == '>' || c == 'l' || c == 'g' || c == '=' || c == '!';
}

/* Parse one tree node (and its subtrees); its index, or -1 for a malformed spec. */
static int parse_tree(Parser *ps, int depth) {
    if (ps->p >= ps->end || ps->count >= MAX_NODES || depth > MAX_NODES) return -1;
    uint32_t at = ps->count++;
    Node *n = &ps->nodes[at];
    uint8_t c = *ps->p++;
    if (c == 'k') {
        int neg = ps->p < ps->end && *ps->p == '-';
        ps->p += neg;
        uint64_t v = 0;
        int digits = 0;
        while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
            if (v > (UINT64_C(1) << 63) / 10) return -1;
            v = v * 10 + (uint64_t)(*ps->p++ - '0');
            digits++;
        }
        if (!digits || ps->p >= ps->end || *ps->p++ != ';' || v > (UINT64_C(1) << 63) - !neg) return -1;
        n->kind = N_CONST;
        n->c = neg ? (int64_t)(0 - v) : (int64_t)v;
        return (int)at;
    }
    if (c == 'd') {
        n->kind = N_DIFF;
        return key_side(ps, &n->ki, &n->si) || key_side(ps, &n->kj, &n->sj) ? -1 : (int)at;
    }
    if (c != '?' || ps->p >= ps->end) return -1;
    n->kind = N_IF;
    n->op = *ps->p++;
    if (!is_op(n->op) || key_side(ps, &n->ki, &n->si) || key_side(ps, &n->kj, &n->sj)) return -1;
    int t = parse_tree(ps, depth + 1);
    if (t < 0) return -1;
    int e = parse_tree(ps, depth + 1);
    if (e < 0) return -1;
    ps->nodes[at].then_ = (uint16_t)t;
    ps->nodes[at].else_ = (uint16_t)e;
    return (int)at;
}

/* <0, 0, >0 as key k of x and key k2 of y compare (keys of one kind) */
static inline int cmp_keys(const Ctx *c, const Rec *x, uint8_t k, const Rec *y, uint8_t k2) {
    int64_t a = x->hot[k], b = y->hot[k2];
    if (c->kind[k] == K_INTS) return a < b ? -1 : a > b;
    if (a != b) return (uint64_t)a < (uint64_t)b ? -1 : 1;
    return str_cmp(mk(T_STR, c->strs[x->idx * c->nkeys + k]), mk(T_STR, c->strs[y->idx * c->nkeys + k2]));
}

static inline int keys_differ(const Ctx *c, const Rec *x, uint8_t k, const Rec *y, uint8_t k2) {
    if (x->hot[k] != y->hot[k2]) return 1;
    if (c->kind[k] == K_INTS) return 0;
    return !str_eq(mk(T_STR, c->strs[x->idx * c->nkeys + k]), mk(T_STR, c->strs[y->idx * c->nkeys + k2]));
}

/* The first 8 bytes of a string as a big-endian number (zero-padded): ordered as the bytes are. */
static int64_t prefix8(V s) {
    const uint8_t *p = s_ptr(s);
    uint32_t n = s_len(s);
    uint64_t w = 0;
    for (uint32_t i = 0; i < 8; i++) w = w << 8 | (i < n ? p[i] : 0);
    return (int64_t)w;
}

/* What the comparator returns for the elements x (first parameter) and y. */
static int64_t answer(const Ctx *c, const Rec *x, const Rec *y) {
    const Node *n = c->nodes;
    for (;;) {
        if (n->kind == N_CONST) return n->c;
        const Rec *l = n->si ? y : x, *r = n->sj ? y : x;
        if (n->kind == N_DIFF) return l->hot[n->ki] - r->hot[n->kj]; /* no overflow: checked before */
        int cmp;
        if (n->op == '=' || n->op == '!') cmp = keys_differ(c, l, n->ki, r, n->kj);
        else cmp = cmp_keys(c, l, n->ki, r, n->kj);
        int holds;
        switch (n->op) {
        case '<': holds = cmp < 0; break;
        case '>': holds = cmp > 0; break;
        case 'l': holds = cmp <= 0; break;
        case 'g': holds = cmp >= 0; break;
        case '=': holds = cmp == 0; break;
        default: holds = cmp != 0; break;
        }
        n = c->nodes + (holds ? n->then_ : n->else_);
    }
}

#define REC_GT(a, b) (answer(ctx, &(a), &(b)) > 0)
DEFINE_MSORT(msort_keyed, Rec, REC_GT)

/* Sort `a` by the spec; 0 when sorted, -1 when the closure path must run instead
 * (nothing changed then). */
static int sort_keyed(Array *a, const uint8_t *spec, uint32_t len) {
    uint32_t n = a->len;
    if (n < 2) return -1; /* the closure path does nothing either, after its checks */
    Parser *ps = alloc(sizeof(Parser));
    ps->p = spec;
    ps->end = spec + len;
    if (ps->p >= ps->end) return -1;
    ps->nkeys = (uint32_t)(*ps->p++ - '0');
    if (ps->nkeys < 1 || ps->nkeys > MAX_KEYS) return -1;
    V names[MAX_KEYS];
    for (uint32_t k = 0; k < ps->nkeys; k++) {
        if (ps->p >= ps->end) return -1;
        uint32_t l = *ps->p++;
        if (!l || (uint32_t)(ps->end - ps->p) < l) return -1;
        names[k] = vstr(ps->p, l);
        ps->p += l;
    }
    if (parse_tree(ps, 0) != 0 || ps->p != ps->end) return -1;

    /* decorate: every key of every element, checking the kinds */
    uint32_t nk = ps->nkeys;
    Rec *recs = alloc(sz_mul(n, sizeof(Rec)));
    int64_t *strs = alloc(sz_mul(n, nk * 8));
    uint8_t kind[MAX_KEYS] = {0};
    const Slot *d = a->data;
    for (uint32_t i = 0; i < n; i++) {
        if (d[i].tag != T_MAP) return -1;
        Map *m = (Map *)(uintptr_t)(uint32_t)d[i].p;
        recs[i].idx = i;
        for (uint32_t k = 0; k < nk; k++) {
            Entry *e = map_find(m, names[k]);
            if (!e) return -1;
            uint8_t kk = e->tag == T_INT ? K_INTS : e->tag == T_STR ? K_STRS : K_NONE;
            if (kk == K_NONE || (kind[k] && kind[k] != kk)) return -1;
            kind[k] = kk;
            recs[i].hot[k] = kk == K_INTS ? e->p : prefix8(mk(T_STR, e->p));
            strs[i * nk + k] = e->p;
        }
    }
    /* every comparison compares like with like; differences are of ints within a safe range */
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    uint8_t in_diff[MAX_KEYS] = {0};
    for (uint32_t j = 0; j < ps->count; j++) {
        const Node *x = &ps->nodes[j];
        if (x->kind == N_CONST) continue;
        if (kind[x->ki] != kind[x->kj]) return -1;
        if (x->kind == N_DIFF) {
            if (kind[x->ki] != K_INTS) return -1;
            in_diff[x->ki] = in_diff[x->kj] = 1;
        }
    }
    for (uint32_t k = 0; k < nk; k++) {
        if (!in_diff[k]) continue;
        for (uint32_t i = 0; i < n; i++) {
            int64_t v = recs[i].hot[k];
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
    }
    int64_t width;
    if (lo <= hi && __builtin_sub_overflow(hi, lo, &width)) return -1;

    /* sort the records, then install the elements in their order (a private copy, as sort_array) */
    Ctx ctx = {0, ps->nodes, strs, kind, nk};
    msort_keyed(recs, n > RUN ? alloc(sz_mul(n, sizeof(Rec))) : 0, n, &ctx);
    Slot *x = alloc(sz_mul(n, sizeof(Slot)));
    for (uint32_t i = 0; i < n; i++) x[i] = d[recs[i].idx];
    a->data = x;
    a->len = n;
    a->cap = n;
    return 0;
}

/* rt_sort_keyed(array, closure, spec): `array.sort(closure)` where the compiler
 * described the closure by `spec`; sorts by the spec when that gives the
 * closure's order for sure, else calls the closure as f_sort_2 does. */
EXPORT("rt_sort_keyed") V rt_sort_keyed(P(0), P(1), P(2)) {
    if (t0 == T_ARRAY && t1 == T_FN && t2 == T_STR && CLOS(A(1))->nparams == 2 &&
        sort_keyed(ARR(A(0)), s_ptr(A(2)), s_len(A(2))) == 0)
        return unit();
    if (t0 != T_ARRAY || t1 != T_FN) {
        V args[2] = {A(0), A(1)};
        return raise_not_found_fn("sort", 2, args);
    }
    return sort_array(ARR(A(0)), A(1), 1);
}
