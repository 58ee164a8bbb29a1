/* gc.c - the collector: marking from the roots, the shadow stack of the script's roots.
 *
 * Why this design (see ../ABI.md, "Memory"): strings are slices that point
 * into the middle of buffers, rt's C code keeps plain pointers in wasm
 * locals, and values are copied between the script module and rt as
 * (tag, payload) pairs, so objects must never move and interior pointers
 * must find their block. The page map (heap.c) answers "which block holds
 * this address" in O(1); marking is driven by the value tags (a block needs
 * no header), with an explicit stack of (kind, base, next, end) items.
 *
 * When it runs. The compiled script tests rt's flag word at its safe points
 * (loop back-edges in statement position), writes every root it holds to its
 * shadow-stack frame and calls rt_gc(ssp). A call made while values are held
 * on the operand stack marks the script's own frames unsafe (the script
 * skips its polls then), and rt marks itself unsafe while it runs a closure
 * (`gc_unsafe`), so a collection only ever happens where every live value is
 * in a root: the shadow stack, rt's globals (params, caller, target, the
 * pending error) or a PERM page.
 */
#include "heap.h"

/* The shadow stack: segments of PERM memory, in stack order. A frame that does not
 * fit in its segment starts the next one (rt_ss_grow); `top` is where the live
 * frames of a segment end while a later segment is in use. */
#define SS_MAX_SEGS 24
#define SS_MAX_BYTES (64u << 20)
typedef struct {
    uint32_t base, end, top;
} Seg;
static Seg segs[SS_MAX_SEGS];
static uint32_t nsegs, ss_bytes;
static int32_t gc_unsafe; /* > 0 while rt runs a closure: values live in C locals */

/* ---- the mark stack: what is left to scan, as (kind, base, next, end) ----------------- */

enum { IT_SLOTS, IT_ENTRIES, IT_ENV };
typedef struct {
    uint32_t kind, base, i, n;
} Item;

static Item mark_small[256];
static Item *mstack = mark_small;
static uint32_t mcap = 256, mlen;
static uint32_t mpage, mpages; /* RAW pages holding a grown stack */

static void mpush(uint32_t kind, uint32_t base, uint32_t n) {
    if (!n || !base) return;
    if (mlen == mcap) {
        uint32_t np = (uint32_t)(((uint64_t)mcap * 2 * sizeof(Item) + PAGE - 1) >> PAGE_SHIFT);
        uint32_t s = take_pages(np, PG_RAW);
        Item *ns = (Item *)(uintptr_t)(s << PAGE_SHIFT);
        memcpy(ns, mstack, mlen * sizeof(Item));
        if (mpages) release_pages(mpage, mpages);
        mstack = ns;
        mpage = s;
        mpages = np;
        mcap = (np << PAGE_SHIFT) / sizeof(Item);
    }
    Item *it = &mstack[mlen++];
    it->kind = kind;
    it->base = base;
    it->i = 0;
    it->n = n;
}

static void mark_value(int32_t tag, int64_t p) {
    uint32_t ptr = (uint32_t)p;
    switch (tag) {
    case T_STR:
        if ((uint64_t)p >> 32) mark_block(ptr);
        break;
    case T_ARRAY:
        if (mark_block(ptr)) {
            Array *a = (Array *)(uintptr_t)ptr;
            mark_block((uint32_t)(uintptr_t)a->data);
            mpush(IT_SLOTS, (uint32_t)(uintptr_t)a->data, a->len);
        }
        break;
    case T_MAP:
        if (mark_block(ptr)) {
            Map *m = (Map *)(uintptr_t)ptr;
            mark_block((uint32_t)(uintptr_t)m->e);
            mark_block((uint32_t)(uintptr_t)m->idx);
            mpush(IT_ENTRIES, (uint32_t)(uintptr_t)m->e, m->len);
        }
        break;
    case T_BLOB:
        if (mark_block(ptr)) mark_block((uint32_t)(uintptr_t)((Blob *)(uintptr_t)ptr)->data);
        break;
    case T_FN:
        if (mark_block(ptr)) {
            uint32_t env = (uint32_t)(uintptr_t)((Closure *)(uintptr_t)ptr)->env;
            if (mark_block(env)) mpush(IT_ENV, env, block_size(env) / 4);
        }
        break;
    case T_CELL:
        if (mark_block(ptr)) mpush(IT_SLOTS, ptr, 1);
        break;
    case T_ENV:
        if (mark_block(ptr)) mpush(IT_ENV, ptr, block_size(ptr) / 4);
        break;
    default: break;
    }
}

static void drain(void) {
    while (mlen) {
        Item *it = &mstack[mlen - 1];
        if (it->i == it->n) {
            mlen--;
            continue;
        }
        uint32_t i = it->i++;
        switch (it->kind) {
        case IT_SLOTS: {
            Slot *s = (Slot *)(uintptr_t)it->base + i;
            mark_value(s->tag, s->p); /* may push: `it` is not used after this */
            break;
        }
        case IT_ENTRIES: {
            Entry *e = (Entry *)(uintptr_t)it->base + i;
            mark_value(T_STR, e->key);
            mark_value(e->tag, e->p);
            break;
        }
        default: { /* IT_ENV: cell pointers, zero past the captures */
            uint32_t cell = ((uint32_t *)(uintptr_t)it->base)[i];
            if (cell) mark_value(T_CELL, cell);
            break;
        }
        }
    }
}

void gc_mark_value(V v) {
    mark_value(v.tag, v.p);
    drain();
}

void gc_mark_ptr(const void *p) { mark_block((uint32_t)(uintptr_t)p); }

/* ---- collection -------------------------------------------------------------------- */

static void collect(uint32_t ssp) {
    sort_gc_forget();
    map_gc_forget();
    /* roots: the shadow stack (the segments below ssp's up to their tops, ssp's up to
     * ssp; segments have gaps between them, so ssp belongs to exactly one), then rt's */
    uint32_t k = nsegs;
    while (k > 0 && !(segs[k - 1].base <= ssp && ssp <= segs[k - 1].end)) k--;
    if (k == 0) heap_corrupt();
    for (uint32_t i = 0; i < k; i++) {
        uint32_t to = i + 1 == k ? ssp : segs[i].top;
        for (uint32_t s = segs[i].base; s < to; s += sizeof(Slot)) {
            Slot *slot = (Slot *)(uintptr_t)s;
            mark_value(slot->tag, slot->p);
            drain();
        }
    }
    rt_gc_mark_roots();
    drain();
    heap_sweep();
    if (mpages) {
        release_pages(mpage, mpages);
        mstack = mark_small;
        mcap = 256;
        mpages = 0;
    }
    heap_collected();
}

/* The script's safe point: collect if rt itself is not inside a closure call. */
EXPORT("rt_gc") void rt_gc(int32_t ssp) {
    if (gc_unsafe) return; /* the flag stays up: the next safe point outside tries again */
    collect((uint32_t)ssp);
}

static void new_seg(uint32_t i, uint32_t bytes) {
    if (i >= SS_MAX_SEGS || (uint64_t)ss_bytes + bytes > SS_MAX_BYTES) {
        stack_fault(); /* as deep a recursion as we allow: LimitExceeded("stack") */
    }
    /* 16 bytes of gap: a segment never ends where the next begins */
    uint32_t base = (uint32_t)(uintptr_t)alloc_perm((uint64_t)bytes + 16);
    segs[i].base = segs[i].top = base;
    segs[i].end = base + bytes;
    ss_bytes += bytes;
    nsegs = i + 1;
}

/* The shadow stack's first segment (`slots` 16-byte slots, zeroed); returns its base.
 * The script keeps its module constants in the first slots. */
EXPORT("rt_ss") int32_t rt_ss(int32_t slots) {
    if (slots < 0) oom();
    if (!nsegs) new_seg(0, sz_mul((uint64_t)slots, sizeof(Slot)));
    return (int32_t)segs[0].base;
}

/* The end of the segment starting at base (the script's $ssend). */
EXPORT("rt_ss_end_of") int32_t rt_ss_end_of(int32_t base) {
    for (uint32_t i = 0; i < nsegs; i++)
        if (segs[i].base == (uint32_t)base) return (int32_t)segs[i].end;
    heap_corrupt();
}

/* A frame of `bytes` does not fit above fp: the base of the next segment (made, or
 * made larger, as needed; each at least twice the one before). */
EXPORT("rt_ss_grow") int32_t rt_ss_grow(int32_t fp, int32_t bytes) {
    uint32_t i = 0;
    while (i < nsegs && !(segs[i].base <= (uint32_t)fp && (uint32_t)fp <= segs[i].end)) i++;
    if (i == nsegs || bytes < 0) heap_corrupt();
    segs[i].top = (uint32_t)fp;
    if (i + 1 < nsegs && segs[i + 1].end - segs[i + 1].base >= (uint32_t)bytes) {
        nsegs = i + 2; /* later segments hold no live frame */
        return (int32_t)segs[i + 1].base;
    }
    uint64_t size = (uint64_t)(segs[i].end - segs[i].base) * 2;
    if (size < (uint64_t)bytes) size = (uint64_t)bytes;
    if (size > SS_MAX_BYTES) size = SS_MAX_BYTES;
    new_seg(i + 1, (uint32_t)size);
    return (int32_t)segs[i + 1].base;
}

void gc_enter_unsafe(void) { gc_unsafe++; }
void gc_leave_unsafe(void) { gc_unsafe--; }

