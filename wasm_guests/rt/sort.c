/* sort.c - stable merge sorts: map entries by key, plain i64s, and array slots
 * (numbers, strings, or a comparator closure).
 *
 * Bottom-up merge sort with insertion-sorted runs of 16: O(n log n), stable.
 * A comparator closure may fail (EXC) or return a non-int; the sort then stops
 * at once and the array is left unchanged.
 */
#include "rt.h"

typedef struct {
    int err;
    int mode; /* SORT_NUM, SORT_STR, SORT_FN */
    V fn;
} Ctx;

enum { SORT_NUM, SORT_STR, SORT_FN };

#include "msort.h"

/* ---- map entries by key ----------------------------------------------------- */

#define ENTRY_GT(a, b) (str_cmp(mk(T_STR, (a).key), mk(T_STR, (b).key)) > 0)
DEFINE_MSORT(msort_entries, Entry, ENTRY_GT)

static void *scratch;
static uint32_t scratch_bytes;

void sort_gc_forget(void) {
    scratch = 0;
    scratch_bytes = 0;
}

static void *get_scratch(uint32_t n, uint32_t size) {
    uint32_t bytes = sz_mul(n, size);
    if (bytes > scratch_bytes) {
        scratch = alloc(bytes);
        scratch_bytes = bytes;
    }
    return scratch;
}

void sort_entries(Entry *e, uint32_t n) {
    Ctx ctx = {0, 0, {0, 0}};
    if (n < 2) return;
    msort_entries(e, n > RUN ? get_scratch(n, sizeof(Entry)) : 0, n, &ctx);
}

/* ---- i64 ---------------------------------------------------------------------- */

#define I64_GT(a, b) ((a) > (b))
DEFINE_MSORT(msort_i64, int64_t, I64_GT)

void sort_i64(int64_t *x, uint32_t n) {
    Ctx ctx = {0, 0, {0, 0}};
    if (n < 2) return;
    msort_i64(x, n > RUN ? get_scratch(n, 8) : 0, n, &ctx);
}

/* ---- array slots ------------------------------------------------------------------ */

static int slot_gt(Slot a, Slot b, Ctx *ctx) {
    if (ctx->err) return 0;
    if (ctx->mode == SORT_STR) return str_cmp(slot_get(&a), slot_get(&b)) > 0;
    if (ctx->mode == SORT_NUM) {
        if (a.tag == T_INT && b.tag == T_INT) return a.p > b.p;
        double x = a.tag == T_INT ? (double)a.p : bits2f(a.p);
        double y = b.tag == T_INT ? (double)b.p : bits2f(b.p);
        return x > y;
    }
    V r = call_closure(ctx->fn, 2, slot_get(&a), slot_get(&b));
    if (r.tag == T_EXC) {
        ctx->err = 1;
        return 0;
    }
    if (r.tag != T_INT) {
        raise_type1("sort comparator must return i64, not ", r, "");
        ctx->err = 1;
        return 0;
    }
    return r.p > 0;
}

#define SLOT_GT(a, b) slot_gt((a), (b), ctx)
DEFINE_MSORT(msort_slots, Slot, SLOT_GT)

/* sort(array) and sort(array, fn): stable, in place; returns () or EXC. */
V sort_array(Array *a, V fn, int with_fn) {
    uint32_t n = a->len;
    Slot *d = a->data;
    Ctx ctx = {0, SORT_FN, fn};
    if (with_fn) {
        if (fn.tag != T_FN) return raise_type1("sort comparator must be a Fn, not ", fn, "");
        if (CLOS(fn)->nparams != 2) {
            Buf b;
            buf_init(&b, 64);
            buf_cstr(&b, "sort comparator must take 2 arguments, not ");
            buf_int(&b, CLOS(fn)->nparams);
            return raise_buf(K_ARITY, &b);
        }
    } else {
        int ints = 1, nums = 1, strs = 1;
        for (uint32_t i = 0; i < n; i++) {
            int32_t t = d[i].tag;
            ints &= t == T_INT;
            nums &= t == T_INT || t == T_FLOAT;
            strs &= t == T_STR;
        }
        if (ints) {
            int64_t *x = alloc(sz_mul(n, 8));
            for (uint32_t i = 0; i < n; i++) x[i] = d[i].p;
            sort_i64(x, n);
            for (uint32_t i = 0; i < n; i++) d[i].p = x[i];
            return unit();
        }
        if (!nums && !strs) {
            for (uint32_t i = 1; i < n; i++) {
                if (d[i].tag != d[0].tag) {
                    return raise_type2("sort needs all numbers or all strings, found ", slot_get(&d[0]), " and ",
                                       slot_get(&d[i]));
                }
            }
            return raise_type1("sort needs numbers or strings, found ", slot_get(&d[0]), "");
        }
        ctx.mode = nums ? SORT_NUM : SORT_STR;
    }
    if (n < 2) return unit();
    /* sort a private copy, then install it: a comparator that mutates the
     * array (or fails half-way) cannot see or cause a half-sorted state */
    Slot *x = alloc(sz_mul(n, sizeof(Slot)));
    Slot *tmp = alloc(sz_mul(n, sizeof(Slot)));
    memcpy(x, d, (size_t)n * sizeof(Slot));
    if (msort_slots(x, tmp, n, &ctx)) return exc();
    a->data = x;
    a->len = n;
    a->cap = n;
    return unit();
}
