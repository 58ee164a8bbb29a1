/* heap.c - the guest heap's pages and allocation; the sweep that frees blocks.
 *
 * Layout. Memory above rt's data is cut into 16 KiB pages (small, so that a
 * short run touches little memory: each size class takes a page), each
 * described by one word of the page map `ptab` (which grows with memory):
 *   SMALL  blocks of one size class, a PageHdr with the mark bits in front;
 *   LARGE  the first page of a run of whole pages holding one block;
 *   CONT   the other pages of that run (the word gives the distance back);
 *   FREE   an empty page, reusable by any class or run;
 *   PERM   never collected (string literals, the shadow stack, the log);
 *   RAW    the collector's own mark stack while it runs, the page map itself.
 * SMALL and LARGE pages may also be STR pages: their blocks are string
 * buffers, {u32 used, u32 pad, bytes...}, the only blocks `s += x` may extend
 * in place (see str.c), so no other block can be mistaken for one. A new
 * page is handed out block by block; the sweep rebuilds every free list, so
 * a freed block is never on a list twice. Blocks have no header: the
 * collector (gc.c) knows what a block holds from the value pointing to it.
 *
 * Allocation never collects: it raises the flag word `gc_word` once GC_MIN
 * bytes or the live size, whichever is larger, were allocated since the last
 * collection, and the compiled script collects at its next safe point.
 *
 * Every size passes through a 64-bit computation and anything past ALLOC_MAX
 * is out of memory, so a hostile script can never wrap a u32 size and get a
 * short buffer.
 */
#include "heap.h"

extern unsigned char __heap_base;

static uint32_t ptab0[1024]; /* the page map while memory is under 16 MiB */
static uint32_t *ptab = ptab0, ptab_cap = 1024;

/* ---- size classes ---------------------------------------------------------------- */

#define HDR 272u /* PageHdr, rounded to 16 */
typedef struct {
    uint32_t size, nblocks;
    uint32_t recip; /* ceil(2^32 / size): blk_div divides by size with a multiplication */
    uint32_t pad;
    uint8_t mark[128];  /* one bit per block (at most 1007 blocks of 16 bytes) */
    uint8_t alloc[128]; /* debug builds: one bit per allocated block */
} PageHdr;

static const uint32_t CLASS_SIZE[] = {
    16,  32,  48,  64,  80,  96,   112,  128,  160,  192,  224,  256,  320,  384,
    448, 512, 640, 768, 896, 1024, 1280, 1536, 1792, 2048, 2688, 4016, 5360, 8048,
};
#define NCLASS (sizeof CLASS_SIZE / sizeof CLASS_SIZE[0])
#define SMALL_MAX 8048u

static uint32_t free_head[2][NCLASS]; /* free blocks ([1]: of STR pages), linked through their first word */
/* A new page is handed out block by block from its start (only blocks in use are
 * ever touched: a short run touches a few KiB, not a page per size class). */
static uint32_t bump_next[2][NCLASS], bump_end[2][NCLASS];

/* The class of sizes up to 1 KiB by (n + 15) / 16, filled on first use. */
static uint8_t small_class[65];

static uint32_t class_of(uint64_t n) {
    if (n <= 1024) {
        uint32_t k = (uint32_t)(n + 15) >> 4;
        if (!small_class[k]) {
            uint32_t c = 0;
            while (CLASS_SIZE[c] < k * 16) c++;
            small_class[k] = (uint8_t)(c + 1);
        }
        return small_class[k] - 1u;
    }
    uint32_t c = 19; /* 1024 */
    while (CLASS_SIZE[c] < n) c++;
    return c;
}

/* ---- state ----------------------------------------------------------------------- */

static uint32_t first_page, end_page; /* pages [first_page, end_page) are ours */
static uint32_t free_hint;           /* no FREE page below this one */
static int32_t fault_code;           /* 1 out of memory, 2 the host stopped the run, 3 heap corrupted */
static uint64_t allocated;           /* bytes allocated since the last collection */
#ifdef RT_DEBUG
static uint64_t threshold = 0; /* debug builds collect at every safe point */
#else
static uint64_t threshold = GC_MIN;
#endif
static uint64_t live_bytes;          /* what the last collection kept */
static uint32_t gc_word;             /* non-zero: the script should call rt_gc at its next safe point */
static uint32_t perm_ptr, perm_end;  /* bump region of PERM pages */
#ifdef RT_DEBUG
static int32_t gc_debug = 1; /* collect at every safe point */
#else
static int32_t gc_debug;
#endif

_Noreturn void oom(void) {
    fault_code = 1;
    __builtin_trap();
}

_Noreturn void host_stop(void) {
    if (!fault_code) fault_code = 2; /* an out-of-memory during the host call stays fault 1 */
    __builtin_trap();
}

_Noreturn void stack_fault(void) {
    fault_code = 4;
    __builtin_trap();
}

_Noreturn void heap_corrupt(void) {
    fault_code = 3;
    __builtin_trap();
}

EXPORT("rt_fault") int32_t rt_fault(void) { return fault_code; }

uint32_t sz_mul(uint64_t a, uint64_t b) {
    if (a > ALLOC_MAX || b > ALLOC_MAX) oom();
    uint64_t r = a * b;
    if (r > ALLOC_MAX) oom();
    return (uint32_t)r;
}

/* ---- pages ------------------------------------------------------------------------ */

static void heap_init(void) {
    uint32_t base = ((uint32_t)(uintptr_t)&__heap_base + PAGE - 1) & ~(PAGE - 1);
    first_page = base >> PAGE_SHIFT;
    end_page = (uint32_t)__builtin_wasm_memory_size(0) * (WASM_PAGE / PAGE);
    if (end_page < first_page) end_page = first_page; /* (never: the linker reserves it) */
    if (end_page > ptab_cap) oom(); /* (never: the initial memory is small) */
    for (uint32_t i = first_page; i < end_page; i++) ptab[i] = PG_FREE;
    free_hint = first_page;
}

/* The page map must describe pages up to mem_end (memory has just grown there; the
 * first `used` entries are valid): a map at least twice as large, in pages of its own
 * grown at the end of memory (RAW), the old map's pages freed. */
static void grow_map(uint32_t used, uint32_t mem_end) {
    const uint32_t per = WASM_PAGE / PAGE;
    uint32_t cap = ptab_cap * 2, np, wp;
    for (;;) {
        np = (uint32_t)(((uint64_t)cap * 4 + PAGE - 1) >> PAGE_SHIFT);
        wp = (np + per - 1) / per;
        if (cap >= mem_end + wp * per) break;
        cap *= 2;
    }
    if (cap > NPAGES || __builtin_wasm_memory_grow(0, wp) == (size_t)-1) oom();
    uint32_t *map = (uint32_t *)(uintptr_t)(mem_end << PAGE_SHIFT);
    __builtin_memcpy(map, ptab, (size_t)used * 4);
    for (uint32_t i = used; i < cap; i++) map[i] = 0;
    for (uint32_t i = 0; i < wp * per; i++) map[mem_end + i] = i < np ? PG(PG_RAW, 0) : PG_FREE;
    if (ptab != ptab0) { /* the old map's own pages are free now */
        uint32_t s0 = (uint32_t)(uintptr_t)ptab >> PAGE_SHIFT;
        uint32_t n0 = (uint32_t)(((uint64_t)ptab_cap * 4 + PAGE - 1) >> PAGE_SHIFT);
        for (uint32_t k = 0; k < n0; k++) map[s0 + k] = PG_FREE;
        if (s0 < free_hint) free_hint = s0;
    }
    ptab = map;
    ptab_cap = cap;
    end_page = mem_end + wp * per;
}

/* Grow memory by at least `need` pages (a quarter of what we have, when possible). */
static void grow(uint32_t need) {
    const uint32_t per = WASM_PAGE / PAGE;
    uint64_t have = end_page / per; /* in wasm pages */
    uint64_t need_w = (need + per - 1) / per;
    uint64_t want = need_w;
    if (want < have / 4) want = have / 4;
    if ((have + want) * per > NPAGES) want = need_w;
    if ((have + need_w) * per > NPAGES) oom();
    if (__builtin_wasm_memory_grow(0, (size_t)want) == (size_t)-1) {
        want = need_w;
        if (__builtin_wasm_memory_grow(0, (size_t)want) == (size_t)-1) oom();
    }
    uint32_t old_end = end_page, new_end = end_page + (uint32_t)want * per;
    if (new_end > ptab_cap) grow_map(old_end, new_end); /* sets end_page past the map's pages */
    else end_page = new_end;
    for (uint32_t i = old_end; i < new_end; i++) ptab[i] = PG_FREE;
    if (free_hint > old_end) free_hint = old_end;
}

/* A run of n free pages, marked with `kind` (the first) and CONT (the rest). */
uint32_t take_pages(uint32_t n, uint32_t kind) {
    if (!end_page) heap_init();
    for (;;) {
        uint32_t run = 0;
        for (uint32_t i = free_hint; i < end_page; i++) {
            if (PG_KIND(ptab[i]) != PG_FREE) {
                run = 0;
                if (i == free_hint) free_hint = i + 1; /* no free page below the hint: skip it next time */
                continue;
            }
            if (++run == n) {
                uint32_t s = i + 1 - n;
                ptab[s] = PG(kind, n);
                for (uint32_t j = 1; j < n; j++) ptab[s + j] = PG(PG_CONT, j);
                if (s == free_hint) free_hint = s + n;
                return s;
            }
        }
        grow(n);
    }
}

void release_pages(uint32_t s, uint32_t n) {
    for (uint32_t j = 0; j < n; j++) ptab[s + j] = PG_FREE;
    if (s < free_hint) free_hint = s;
}

static inline PageHdr *page_hdr(uint32_t page) { return (PageHdr *)(uintptr_t)(page << PAGE_SHIFT); }

/* off / h->size, exact for any offset in a page (off < 2^14, size < 2^18), without a division */
static inline uint32_t blk_div(const PageHdr *h, uint32_t off) {
    return (uint32_t)(((uint64_t)off * h->recip) >> 32);
}

static void new_small_page(uint32_t c, uint32_t str) {
    uint32_t page = take_pages(1, PG_SMALL);
    ptab[page] = PG(PG_SMALL, c) | (str ? PG_STR : 0);
    PageHdr *h = page_hdr(page);
    uint32_t size = CLASS_SIZE[c];
    h->size = size;
    h->recip = (uint32_t)(((UINT64_C(1) << 32) + size - 1) / size);
    h->nblocks = (PAGE - HDR) / size;
    __builtin_memset(h->mark, 0, sizeof h->mark + sizeof h->alloc);
    bump_next[str][c] = (page << PAGE_SHIFT) + HDR;
    bump_end[str][c] = bump_next[str][c] + h->nblocks * size;
}

/* ---- allocation ------------------------------------------------------------------- */

static inline void account(uint64_t n) {
    allocated += n;
    if (allocated >= threshold) gc_word = 1;
}

/* Clear n bytes (a multiple of 8) at the 8-aligned p: small blocks with stores, not memory.fill
 * (a call out of the compiled code in wasmtime). */
static inline void zero_block(uint64_t *p, uint32_t n) {
    if (n > 256) {
        __builtin_memset(p, 0, n);
        return;
    }
    for (uint32_t i = 0; i < n / 8; i++) p[i] = 0;
}

__attribute__((no_builtin("memset"))) static void *alloc_in(uint64_t n, uint32_t str, uint32_t *size_out) {
    if (n > ALLOC_MAX) oom();
    if (n == 0) n = 8;
    if (n <= SMALL_MAX) {
        uint32_t c = class_of(n);
        uint32_t size = CLASS_SIZE[c], b = free_head[str][c];
        if (b) {
            free_head[str][c] = *(uint32_t *)(uintptr_t)b;
        } else {
            if (bump_next[str][c] == bump_end[str][c]) new_small_page(c, str);
            b = bump_next[str][c];
            bump_next[str][c] = b + size;
        }
        *size_out = size;
#ifdef RT_DEBUG
        uint32_t page = b >> PAGE_SHIFT, idx = (b - (page << PAGE_SHIFT) - HDR) / size;
        page_hdr(page)->alloc[idx >> 3] |= (uint8_t)(1u << (idx & 7));
#endif
        /* a string buffer's bytes are written before any slice covers them: only its header is cleared */
        zero_block((uint64_t *)(uintptr_t)b, str ? 8 : size);
        account(size);
        return (void *)(uintptr_t)b;
    }
    uint32_t np = (uint32_t)((n + PAGE - 1) >> PAGE_SHIFT);
    uint32_t s = take_pages(np, PG_LARGE);
    if (str) ptab[s] |= PG_STR;
    void *p = (void *)(uintptr_t)(s << PAGE_SHIFT);
    __builtin_memset(p, 0, (size_t)((n + 7) & ~7ull));
    account((uint64_t)np * PAGE);
    *size_out = np << PAGE_SHIFT;
    return p;
}

void *alloc(uint64_t n) {
    uint32_t size;
    return alloc_in(n, 0, &size);
}

/* A string buffer with room for at least n bytes: its bytes (after the header) and their room. */
uint8_t *alloc_str(uint64_t n, uint32_t *room) {
    uint32_t size;
    uint8_t *b = alloc_in(n + 8, 1, &size);
    *room = size - 8;
    return b + 8;
}

/* The header of the string buffer whose bytes start exactly at p (and their room), or 0. */
uint32_t *str_buffer(const uint8_t *p, uint32_t *room) {
    uint32_t a = (uint32_t)(uintptr_t)p, page = a >> PAGE_SHIFT;
    if (page < first_page || page >= end_page) return 0;
    uint32_t e = ptab[page];
    if (!(e & PG_STR)) return 0;
    if (PG_KIND(e) == PG_SMALL) {
        PageHdr *h = page_hdr(page);
        uint32_t off = a - (page << PAGE_SHIFT);
        if (off < HDR + 8 || blk_div(h, off - HDR - 8) * h->size != off - HDR - 8) return 0;
        *room = h->size - 8;
    } else if (PG_KIND(e) == PG_LARGE) {
        if (a != (page << PAGE_SHIFT) + 8) return 0;
        *room = (PG_ARG(e) << PAGE_SHIFT) - 8;
    } else {
        return 0;
    }
    return (uint32_t *)(uintptr_t)(a - 8);
}

/* Memory that is never collected: string literals, the shadow stack, the log. */
void *alloc_perm(uint64_t n) {
    if (n > ALLOC_MAX) oom();
    n = (n + 15) & ~15ull;
    if (perm_ptr + n > perm_end) {
        uint32_t np = (uint32_t)((n + PAGE - 1) >> PAGE_SHIFT);
        uint32_t s = take_pages(np, PG_PERM);
        for (uint32_t j = 1; j < np; j++) ptab[s + j] = PG(PG_PERM, 0);
        perm_ptr = s << PAGE_SHIFT;
        perm_end = perm_ptr + np * PAGE;
    }
    void *p = (void *)(uintptr_t)perm_ptr;
    perm_ptr += (uint32_t)n;
    return p; /* fresh pages are zero and perm memory is never reused */
}

EXPORT("rt_alloc") int32_t rt_alloc(int32_t n) {
    if (n < 0) oom();
    return (int32_t)(uintptr_t)alloc((uint64_t)n);
}

EXPORT("rt_alloc_perm") int32_t rt_alloc_perm(int32_t n) {
    if (n < 0) oom();
    return (int32_t)(uintptr_t)alloc_perm((uint64_t)n);
}

/* ---- finding and marking blocks --------------------------------------------------- */

/* The block holding address p: its start and the page word it is marked in. */
static int block_of(uint32_t p, uint32_t *start, uint32_t *page_out, uint32_t *idx_out) {
    uint32_t page = p >> PAGE_SHIFT;
    if (page < first_page || page >= end_page) return 0;
    uint32_t e = ptab[page];
    switch (PG_KIND(e)) {
    case PG_SMALL: {
        PageHdr *h = page_hdr(page);
        uint32_t off = p - (page << PAGE_SHIFT);
        if (off < HDR) return 0;
        uint32_t idx = blk_div(h, off - HDR);
        if (idx >= h->nblocks) return 0;
        *start = (page << PAGE_SHIFT) + HDR + idx * h->size;
        *page_out = page;
        *idx_out = idx;
        return 1;
    }
    case PG_CONT:
        page -= PG_ARG(e);
        if (PG_KIND(ptab[page]) != PG_LARGE) return 0; /* a RAW run's page */
        /* fall through */
    case PG_LARGE:
        *start = page << PAGE_SHIFT;
        *page_out = page;
        *idx_out = 0xffffffffu;
        return 1;
    default: return 0;
    }
}

/* Mark the block holding p; 1 if it was not marked before. */
int mark_block(uint32_t p) {
    uint32_t start, page, idx;
    if (!p || !block_of(p, &start, &page, &idx)) return 0;
    if (idx == 0xffffffffu) {
        if (ptab[page] & PG_MARK) return 0;
        ptab[page] |= PG_MARK;
        return 1;
    }
    uint8_t *m = &page_hdr(page)->mark[idx >> 3], bit = (uint8_t)(1u << (idx & 7));
    if (*m & bit) return 0;
    *m |= bit;
    return 1;
}

uint32_t block_size(uint32_t p) {
    uint32_t start, page, idx;
    if (!block_of(p, &start, &page, &idx)) return 0;
    if (idx != 0xffffffffu) return page_hdr(page)->size - (p - start);
    return (PG_ARG(ptab[page]) << PAGE_SHIFT) - (p - start);
}

int gc_is_marked(uint32_t p) {
    uint32_t start, page, idx;
    if (!block_of(p, &start, &page, &idx)) return 1; /* not ours: never freed */
    if (idx == 0xffffffffu) return (ptab[page] & PG_MARK) != 0;
    return (page_hdr(page)->mark[idx >> 3] >> (idx & 7)) & 1;
}

/* ---- sweeping ---------------------------------------------------------------------- */

void heap_sweep(void) {
    /* the free lists are rebuilt from every unmarked block, those never handed out too */
    for (uint32_t c = 0; c < NCLASS; c++)
        free_head[0][c] = free_head[1][c] = bump_next[0][c] = bump_end[0][c] = bump_next[1][c] = bump_end[1][c] = 0;
    uint64_t live = 0;
    for (uint32_t page = first_page; page < end_page;) {
        uint32_t e = ptab[page];
        switch (PG_KIND(e)) {
        case PG_SMALL: {
            PageHdr *h = page_hdr(page);
            uint32_t c = PG_ARG(e), size = h->size, n = h->nblocks, kept = 0, str = (e & PG_STR) != 0;
            for (uint32_t w = 0; w < (n + 7) / 8; w++) kept += (uint32_t)__builtin_popcount(h->mark[w]);
            if (!kept) {
#ifdef RT_DEBUG
                __builtin_memset((uint8_t *)h + HDR, 0xdb, PAGE - HDR);
#endif
                release_pages(page, 1);
                page++;
                break;
            }
            live += (uint64_t)kept * size;
            uint32_t base = (page << PAGE_SHIFT) + HDR;
            for (uint32_t i = n; i-- > 0;) {
                if ((h->mark[i >> 3] >> (i & 7)) & 1) continue;
                uint32_t b = base + i * size;
#ifdef RT_DEBUG
                h->alloc[i >> 3] &= (uint8_t)~(1u << (i & 7));
                __builtin_memset((void *)(uintptr_t)b, 0xdb, size);
#endif
                *(uint32_t *)(uintptr_t)b = free_head[str][c];
                free_head[str][c] = b;
            }
            __builtin_memset(h->mark, 0, sizeof h->mark);
            page++;
            break;
        }
        case PG_LARGE: {
            uint32_t n = PG_ARG(e);
            if (e & PG_MARK) {
                ptab[page] = e & ~PG_MARK;
                live += (uint64_t)n * PAGE;
            } else {
#ifdef RT_DEBUG
                __builtin_memset((void *)(uintptr_t)(page << PAGE_SHIFT), 0xdb, (size_t)n * PAGE);
#endif
                release_pages(page, n);
            }
            page += n;
            break;
        }
        default: page++; break;
        }
    }
    live_bytes = live;
}

/* After a collection: ask for the next one once the live size (at least GC_MIN) is allocated. */
void heap_collected(void) {
    allocated = 0;
    threshold = gc_debug ? 0 : live_bytes > GC_MIN ? live_bytes : GC_MIN;
    gc_word = 0;
}

EXPORT("rt_gc_word") int32_t rt_gc_word(void) { return (int32_t)(uintptr_t)&gc_word; }

/* ---- debug builds: every value an rt entry point receives must be allocated -------- */

#ifdef RT_DEBUG
static int live_block(uint32_t p) {
    uint32_t start, page, idx;
    if (!block_of(p, &start, &page, &idx)) {
        uint32_t page = p >> PAGE_SHIFT;
        return page < first_page || page >= end_page || PG_KIND(ptab[page]) == PG_PERM;
    }
    if (idx == 0xffffffffu) return 1;
    return (page_hdr(page)->alloc[idx >> 3] >> (idx & 7)) & 1;
}

V gc_check(V v) {
    uint32_t p = (uint32_t)v.p;
    switch (v.tag) {
    case T_STR:
        if (((uint64_t)v.p >> 32) && !live_block(p)) heap_corrupt();
        break;
    case T_ARRAY:
        if (!live_block(p) || (ARR(v)->cap && !live_block((uint32_t)(uintptr_t)ARR(v)->data))) heap_corrupt();
        break;
    case T_MAP:
        if (!live_block(p) || (MAPP(v)->cap && !live_block((uint32_t)(uintptr_t)MAPP(v)->e))) heap_corrupt();
        break;
    case T_BLOB:
    case T_FN:
        if (!live_block(p)) heap_corrupt();
        break;
    default: break;
    }
    return v;
}
#endif

/* ---- libc memory functions (clang may emit calls to these) ----------------------------
 * Built with -mbulk-memory, so the builtins lower to memory.copy/fill, which wasmtime runs
 * as a call out of the compiled code: short lengths (most strings, slots, entries) are
 * moved here with word loads and stores instead. */

static inline uint64_t ld8(const uint8_t *p) {
    uint64_t w;
    __builtin_memcpy(&w, p, 8);
    return w;
}
static inline void st8(uint8_t *p, uint64_t w) { __builtin_memcpy(p, &w, 8); }

/* n <= 32 bytes from s to d; every load before any store, so the two may overlap */
static inline void move_small(uint8_t *d, const uint8_t *s, size_t n) {
    if (n >= 16) {
        uint64_t a = ld8(s), b = ld8(s + 8), c = ld8(s + n - 16), e = ld8(s + n - 8);
        st8(d, a), st8(d + 8, b), st8(d + n - 16, c), st8(d + n - 8, e);
    } else if (n >= 8) {
        uint64_t a = ld8(s), b = ld8(s + n - 8);
        st8(d, a), st8(d + n - 8, b);
    } else if (n >= 4) {
        uint32_t a, b;
        __builtin_memcpy(&a, s, 4);
        __builtin_memcpy(&b, s + n - 4, 4);
        __builtin_memcpy(d, &a, 4);
        __builtin_memcpy(d + n - 4, &b, 4);
    } else if (n) {
        uint8_t a = s[0], b = s[n / 2], c = s[n - 1];
        d[0] = a, d[n / 2] = b, d[n - 1] = c;
    }
}

void *memcpy(void *d, const void *s, size_t n) {
    if (n <= 32) move_small(d, s, n);
    else __builtin_memcpy(d, s, n);
    return d;
}

void *memmove(void *d, const void *s, size_t n) {
    if (n <= 32) move_small(d, s, n);
    else __builtin_memmove(d, s, n);
    return d;
}

void *memset(void *d, int c, size_t n) {
    if (n <= 32) {
        uint8_t *p = d;
        uint64_t w = 0x0101010101010101ull * (uint8_t)c;
        if (n >= 8) {
            for (size_t i = 0; i + 8 <= n; i += 8) st8(p + i, w);
            st8(p + n - 8, w);
        } else {
            for (size_t i = 0; i < n; i++) p[i] = (uint8_t)c;
        }
    } else {
        __builtin_memset(d, c, n);
    }
    return d;
}

int memcmp(const void *a, const void *b, size_t n) {
    const uint8_t *x = a, *y = b;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) { /* 8 bytes at a time (wasm loads need no alignment) */
        uint64_t u, v;
        __builtin_memcpy(&u, x + i, 8);
        __builtin_memcpy(&v, y + i, 8);
        if (u != v) {
            unsigned k = (unsigned)__builtin_ctzll(u ^ v) / 8; /* little-endian: the first byte that differs */
            return x[i + k] < y[i + k] ? -1 : 1;
        }
    }
    for (; i < n; i++)
        if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
    return 0;
}

uint32_t cstrlen(const char *s) {
    uint32_t n = 0;
    while (s[n]) n++;
    return n;
}
