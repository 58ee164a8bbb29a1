/* alloc.c - the bump allocator, the fault code and the libc memory functions.
 *
 * Nothing is ever freed: a run lives in one Store, so memory is reclaimed
 * with the Store. Fresh pages from memory.grow are zero and the allocator
 * never reuses memory, so every allocation is already zeroed.
 *
 * Every size passes through a 64-bit computation and anything past
 * ALLOC_MAX is treated as out of memory, so a hostile script can never wrap
 * a u32 size and get a short buffer.
 */
#include "rt.h"

extern unsigned char __heap_base;

#define PAGE 65536u
#define ALLOC_MAX 0x7fff0000ull /* ~2 GiB */

static uint32_t heap_ptr;  /* next free byte (0 = not initialised yet) */
static uint32_t heap_end;  /* end of the memory we have */
static int32_t fault_code; /* 1 out of memory, 2 the host stopped the run */

_Noreturn void oom(void) {
    fault_code = 1;
    __builtin_trap();
}

_Noreturn void host_stop(void) {
    if (!fault_code) fault_code = 2; /* an out-of-memory during the host call stays fault 1 */
    __builtin_trap();
}

EXPORT("rt_fault") int32_t rt_fault(void) { return fault_code; }

uint32_t sz_mul(uint64_t a, uint64_t b) {
    if (a > ALLOC_MAX || b > ALLOC_MAX) oom();
    uint64_t r = a * b;
    if (r > ALLOC_MAX) oom();
    return (uint32_t)r;
}

void *alloc(uint64_t n) {
    if (n > ALLOC_MAX) oom();
    if (heap_ptr == 0) {
        heap_ptr = ((uint32_t)(uintptr_t)&__heap_base + 7u) & ~7u;
        heap_end = (uint32_t)__builtin_wasm_memory_size(0) * PAGE;
    }
    uint64_t start = heap_ptr;
    uint64_t end = start + ((n + 7u) & ~7ull);
    if (end > heap_end) {
        uint64_t need = (end - heap_end + PAGE - 1) / PAGE;
        uint64_t have = heap_end / PAGE;
        uint64_t want = need;
        /* grow by at least a quarter of the memory to keep memory.grow rare */
        if (want < have / 4) want = have / 4;
        if (want < 4) want = 4;
        if ((uint64_t)heap_end + want * PAGE > 0xffff0000ull) want = need;
        if ((uint64_t)heap_end + need * PAGE > 0xffff0000ull) oom();
        if (__builtin_wasm_memory_grow(0, (size_t)want) == (size_t)-1) {
            want = need;
            if (__builtin_wasm_memory_grow(0, (size_t)want) == (size_t)-1) oom();
        }
        heap_end += (uint32_t)(want * PAGE);
    }
    heap_ptr = (uint32_t)end;
    return (void *)(uintptr_t)start;
}

EXPORT("rt_alloc") int32_t rt_alloc(int32_t n) {
    if (n < 0) oom();
    return (int32_t)(uintptr_t)alloc((uint64_t)n);
}

/* ---- libc memory functions (clang may emit calls to these) ----------------
 * Built with -mbulk-memory, so the builtins lower to memory.copy/fill. */

void *memcpy(void *d, const void *s, size_t n) {
    __builtin_memcpy(d, s, n);
    return d;
}

void *memmove(void *d, const void *s, size_t n) {
    __builtin_memmove(d, s, n);
    return d;
}

void *memset(void *d, int c, size_t n) {
    __builtin_memset(d, c, n);
    return d;
}

int memcmp(const void *a, const void *b, size_t n) {
    const uint8_t *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
    return 0;
}

uint32_t cstrlen(const char *s) {
    uint32_t n = 0;
    while (s[n]) n++;
    return n;
}
