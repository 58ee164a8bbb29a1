/* msort.h - the stable merge sort shared by sort.c and sort_keyed.c.
 *
 * DEFINE_MSORT(NAME, T, GT) defines `static int NAME(T *x, T *tmp, uint32_t n, Ctx *ctx)`:
 * a bottom-up merge sort with insertion-sorted runs of RUN, stable, O(n log n);
 * GT(a, b) is "a sorts after b". `Ctx` is the including file's context type, with
 * an `int err` field: a GT that sets it stops the sort (the function returns -1).
 * The sequence of GT questions depends only on n and the previous answers, so
 * two GTs that give the same answers give the same order.
 */
#ifndef PEERBOX_MSORT_H
#define PEERBOX_MSORT_H

#define RUN 16

static inline uint32_t umin(uint32_t a, uint32_t b) { return a < b ? a : b; }

#define DEFINE_MSORT(NAME, T, GT)                                                         \
    static int NAME(T *x, T *tmp, uint32_t n, Ctx *ctx) {                                 \
        (void)ctx;                                                                        \
        for (uint32_t lo = 0; lo < n; lo += RUN) {                                        \
            uint32_t hi = umin(lo + RUN, n);                                              \
            for (uint32_t i = lo + 1; i < hi; i++) {                                      \
                T v = x[i];                                                               \
                uint32_t j = i;                                                           \
                while (j > lo && GT(x[j - 1], v)) {                                       \
                    x[j] = x[j - 1];                                                      \
                    j--;                                                                  \
                }                                                                         \
                x[j] = v;                                                                 \
                if (ctx->err) return -1;                                                  \
            }                                                                             \
        }                                                                                 \
        T *src = x, *dst = tmp;                                                           \
        for (uint64_t w = RUN; w < n; w *= 2) {                                           \
            for (uint64_t lo64 = 0; lo64 < n; lo64 += 2 * w) {                            \
                uint32_t lo = (uint32_t)lo64;                                             \
                uint32_t mid = (uint32_t)(lo64 + w < n ? lo64 + w : n);                   \
                uint32_t hi = (uint32_t)(lo64 + 2 * w < n ? lo64 + 2 * w : n);            \
                uint32_t i = lo, j = mid, k = lo;                                         \
                while (i < mid && j < hi) {                                               \
                    if (GT(src[i], src[j])) dst[k++] = src[j++];                          \
                    else dst[k++] = src[i++];                                             \
                    if (ctx->err) return -1;                                              \
                }                                                                         \
                while (i < mid) dst[k++] = src[i++];                                      \
                while (j < hi) dst[k++] = src[j++];                                       \
            }                                                                             \
            T *t = src;                                                                   \
            src = dst;                                                                    \
            dst = t;                                                                      \
        }                                                                                 \
        if (src != x) memcpy(x, src, (size_t)n * sizeof(T));                              \
        return 0;                                                                         \
    }

#endif
