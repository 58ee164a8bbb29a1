/* heap.h - what the collector (gc.c) needs of the heap's pages (heap.c); private to rt.
 *
 * See heap.c for the layout: 16 KiB pages, each described by a word of the
 * page map, and gc.c for when and how garbage is found.
 */
#ifndef PEERBOX_HEAP_H
#define PEERBOX_HEAP_H

#include "rt.h"

#define PAGE 16384u             /* the collector's page: a quarter of a wasm page */
#define PAGE_SHIFT 14
#define WASM_PAGE 65536u
#define NPAGES 131072u          /* 2 GiB of pages: the whole reachable memory */
#define ALLOC_MAX 0x7fff0000ull /* ~2 GiB */
#define GC_MIN (2u << 20)       /* collect after at least 2 MiB of allocation */

enum { PG_NONE = 0, PG_SMALL, PG_LARGE, PG_CONT, PG_FREE, PG_PERM, PG_RAW };
#define PG_KIND(e) ((e) & 15u)
#define PG_STR 0x10u
#define PG_ARG(e) (((e) >> 8) & 0x7fffffu) /* class, run length or distance back */
#define PG_MARK 0x80000000u
#define PG(kind, arg) ((uint32_t)(kind) | ((uint32_t)(arg) << 8))

/* Pages: a run of n free pages marked `kind` (the rest CONT), and back. */
uint32_t take_pages(uint32_t n, uint32_t kind);
void release_pages(uint32_t s, uint32_t n);

/* Blocks: mark the block holding p (1 if it was not marked), the bytes from p to its end. */
int mark_block(uint32_t p);
uint32_t block_size(uint32_t p);

/* After marking: free every unmarked block, then learn when to ask for the next collection. */
void heap_sweep(void);
void heap_collected(void);
_Noreturn void stack_fault(void); /* fault 4: the shadow stack is as deep as allowed */

#endif
