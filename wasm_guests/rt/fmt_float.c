/* fmt_float.c - the display form of a float, inside the guest.
 *
 * f64_repr(x, out) writes exactly what Python's repr(x) gives (peerbox's
 * display form of a float), except that a NaN is spelled `NaN`:
 * `0.0`, `-0.0`, `1.0`, `0.30000000000000004`, `123456789012345.0`,
 * `1e+16`, `1e-05`, `1.5e+300`, `5e-324`, `inf`, `-inf`, `NaN`.
 *
 * Digits: the shortest decimal that reads back as the same double, and of
 * those the one closest to it (round-half-even on the IEEE interval), found
 * with Ryu (Ulf Adams, "Ryu: fast float-to-string conversion", PLDI 2018):
 * the d2s algorithm with the small lookup tables (d2s_small_table.h) and the
 * 64-bit-only arithmetic (RYU_ONLY_64_BIT_OPS), since a -nostdlib wasm32
 * build has no compiler-rt for unsigned __int128 (__multi3, __lshrti3).
 * Python's dtoa mode 0 picks the same digits.
 *
 * Layout (Python's float_repr_style 'short', format code 'r'): with the
 * scientific exponent x (value = d.ddd * 10^x), exponent notation when
 * x < -4 or x >= 16 (`d[.ddd]e±XX`, at least two exponent digits),
 * otherwise positional with at least one digit after the point.
 *
 * The Ryu parts below are ported from github.com/ulfjack/ryu (ryu/d2s.c,
 * ryu/d2s_small_table.h, ryu/d2s_intrinsics.h, ryu/common.h), under this
 * notice:
 *
 *   Copyright 2018 Ulf Adams
 *
 *   The contents of this file may be used under the terms of the Apache
 *   License, Version 2.0.
 *
 *      (See accompanying file LICENSE-Apache or copy at
 *       http://www.apache.org/licenses/LICENSE-2.0)
 *
 *   Alternatively, the contents of this file may be used under the terms of
 *   the Boost Software License, Version 1.0.
 *      (See accompanying file LICENSE-Boost or copy at
 *       https://www.boost.org/LICENSE_1_0.txt)
 *
 *   Unless required by applicable law or agreed to in writing, this software
 *   is distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF
 *   ANY KIND, either express or implied.
 *
 * Changes from upstream: C11 without libc (no assert/memcpy/malloc), only the
 * 64-bit-only code paths, and Python's layout instead of Ryu's `1.5E300`.
 */
#include "rt.h"

#define DOUBLE_MANTISSA_BITS 52
#define DOUBLE_EXPONENT_BITS 11
#define DOUBLE_BIAS 1023

/* ---- ryu/common.h ---------------------------------------------------------- */

/* e == 0 ? 1 : ceil(log_2(5^e)); requires 0 <= e <= 3528. */
static inline int32_t pow5bits(const int32_t e) {
    return (int32_t)((((uint32_t)e * 1217359) >> 19) + 1);
}

/* floor(log_10(2^e)); requires 0 <= e <= 1650. */
static inline uint32_t log10Pow2(const int32_t e) { return ((uint32_t)e * 78913) >> 18; }

/* floor(log_10(5^e)); requires 0 <= e <= 2620. */
static inline uint32_t log10Pow5(const int32_t e) { return ((uint32_t)e * 732923) >> 20; }

/* ---- ryu/d2s_intrinsics.h (64-bit-only paths) ------------------------------ */

static inline uint64_t umul128(const uint64_t a, const uint64_t b, uint64_t *const productHi) {
    const uint32_t aLo = (uint32_t)a;
    const uint32_t aHi = (uint32_t)(a >> 32);
    const uint32_t bLo = (uint32_t)b;
    const uint32_t bHi = (uint32_t)(b >> 32);

    const uint64_t b00 = (uint64_t)aLo * bLo;
    const uint64_t b01 = (uint64_t)aLo * bHi;
    const uint64_t b10 = (uint64_t)aHi * bLo;
    const uint64_t b11 = (uint64_t)aHi * bHi;

    const uint32_t b00Lo = (uint32_t)b00;
    const uint32_t b00Hi = (uint32_t)(b00 >> 32);

    const uint64_t mid1 = b10 + b00Hi;
    const uint32_t mid1Lo = (uint32_t)(mid1);
    const uint32_t mid1Hi = (uint32_t)(mid1 >> 32);

    const uint64_t mid2 = b01 + mid1Lo;
    const uint32_t mid2Lo = (uint32_t)(mid2);
    const uint32_t mid2Hi = (uint32_t)(mid2 >> 32);

    *productHi = b11 + mid1Hi + mid2Hi;
    return ((uint64_t)mid2Lo << 32) | b00Lo;
}

/* (hi:lo) >> dist for 0 < dist < 64 (d2s only needs that range). */
static inline uint64_t shiftright128(const uint64_t lo, const uint64_t hi, const uint32_t dist) {
    return (hi << (64 - dist)) | (lo >> dist);
}

static inline uint32_t pow5Factor(uint64_t value) {
    const uint64_t m_inv_5 = 14757395258967641293u; /* 5 * m_inv_5 = 1 (mod 2^64) */
    const uint64_t n_div_5 = 3689348814741910323u;  /* #{ n | n = 0 (mod 2^64) } = 2^64 / 5 */
    uint32_t count = 0;
    for (;;) {
        value *= m_inv_5;
        if (value > n_div_5) break;
        ++count;
    }
    return count;
}

static inline int multipleOfPowerOf5(const uint64_t value, const uint32_t p) {
    return pow5Factor(value) >= p;
}

static inline int multipleOfPowerOf2(const uint64_t value, const uint32_t p) {
    return (value & ((1ull << p) - 1)) == 0;
}

static inline uint64_t mulShiftAll64(uint64_t m, const uint64_t *const mul, const int32_t j,
                                     uint64_t *const vp, uint64_t *const vm, const uint32_t mmShift) {
    m <<= 1;
    /* m is at most 55 bits */
    uint64_t tmp;
    const uint64_t lo = umul128(m, mul[0], &tmp);
    uint64_t hi;
    const uint64_t mid = tmp + umul128(m, mul[1], &hi);
    hi += mid < tmp; /* overflow into hi */

    const uint64_t lo2 = lo + mul[0];
    const uint64_t mid2 = mid + mul[1] + (lo2 < lo);
    const uint64_t hi2 = hi + (mid2 < mid);
    *vp = shiftright128(mid2, hi2, (uint32_t)(j - 64 - 1));

    if (mmShift == 1) {
        const uint64_t lo3 = lo - mul[0];
        const uint64_t mid3 = mid - mul[1] - (lo3 > lo);
        const uint64_t hi3 = hi - (mid3 > mid);
        *vm = shiftright128(mid3, hi3, (uint32_t)(j - 64 - 1));
    } else {
        const uint64_t lo3 = lo + lo;
        const uint64_t mid3 = mid + mid + (lo3 < lo);
        const uint64_t hi3 = hi + hi + (mid3 < mid);
        const uint64_t lo4 = lo3 - mul[0];
        const uint64_t mid4 = mid3 - mul[1] - (lo4 > lo3);
        const uint64_t hi4 = hi3 - (mid4 > mid3);
        *vm = shiftright128(mid4, hi4, (uint32_t)(j - 64));
    }
    return shiftright128(mid, hi, (uint32_t)(j - 64 - 1));
}

/* ---- ryu/d2s_small_table.h --------------------------------------------------- */

/* These tables are generated by Ryu's PrintDoubleLookupTable. */
#define DOUBLE_POW5_INV_BITCOUNT 125
#define DOUBLE_POW5_BITCOUNT 125

static const uint64_t DOUBLE_POW5_INV_SPLIT2[15][2] = {
    {1u, 2305843009213693952u},
    {5955668970331000884u, 1784059615882449851u},
    {8982663654677661702u, 1380349269358112757u},
    {7286864317269821294u, 2135987035920910082u},
    {7005857020398200553u, 1652639921975621497u},
    {17965325103354776697u, 1278668206209430417u},
    {8928596168509315048u, 1978643211784836272u},
    {10075671573058298858u, 1530901034580419511u},
    {597001226353042382u, 1184477304306571148u},
    {1527430471115325346u, 1832889850782397517u},
    {12533209867169019542u, 1418129833677084982u},
    {5577825024675947042u, 2194449627517475473u},
    {11006974540203867551u, 1697873161311732311u},
    {10313493231639821582u, 1313665730009899186u},
    {12701016819766672773u, 2032799256770390445u},
};
static const uint32_t POW5_INV_OFFSETS[19] = {
    0x54544554, 0x04055545, 0x10041000, 0x00400414, 0x40010000, 0x41155555, 0x00000454,
    0x00010044, 0x40000000, 0x44000041, 0x50454450, 0x55550054, 0x51655554, 0x40004000,
    0x01000001, 0x00010500, 0x51515411, 0x05555554, 0x00000000,
};

static const uint64_t DOUBLE_POW5_SPLIT2[13][2] = {
    {0u, 1152921504606846976u},
    {0u, 1490116119384765625u},
    {1032610780636961552u, 1925929944387235853u},
    {7910200175544436838u, 1244603055572228341u},
    {16941905809032713930u, 1608611746708759036u},
    {13024893955298202172u, 2079081953128979843u},
    {6607496772837067824u, 1343575221513417750u},
    {17332926989895652603u, 1736530273035216783u},
    {13037379183483547984u, 2244412773384604712u},
    {1605989338741628675u, 1450417759929778918u},
    {9630225068416591280u, 1874621017369538693u},
    {665883850346957067u, 1211445438634777304u},
    {14931890668723713708u, 1565756531257009982u},
};
static const uint32_t POW5_OFFSETS[21] = {
    0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x40000000, 0x59695995, 0x55545555,
    0x56555515, 0x41150504, 0x40555410, 0x44555145, 0x44504540, 0x45555550, 0x40004000,
    0x96440440, 0x55565565, 0x54454045, 0x40154151, 0x55559155, 0x51405555, 0x00000105,
};

#define POW5_TABLE_SIZE 26
static const uint64_t DOUBLE_POW5_TABLE[POW5_TABLE_SIZE] = {
    1ull, 5ull, 25ull, 125ull, 625ull, 3125ull, 15625ull, 78125ull, 390625ull,
    1953125ull, 9765625ull, 48828125ull, 244140625ull, 1220703125ull, 6103515625ull,
    30517578125ull, 152587890625ull, 762939453125ull, 3814697265625ull,
    19073486328125ull, 95367431640625ull, 476837158203125ull,
    2384185791015625ull, 11920928955078125ull, 59604644775390625ull,
    298023223876953125ull,
};

/* 5^i in the form Ryu needs. */
static inline void double_computePow5(const uint32_t i, uint64_t *const result) {
    const uint32_t base = i / POW5_TABLE_SIZE;
    const uint32_t base2 = base * POW5_TABLE_SIZE;
    const uint32_t offset = i - base2;
    const uint64_t *const mul = DOUBLE_POW5_SPLIT2[base];
    if (offset == 0) {
        result[0] = mul[0];
        result[1] = mul[1];
        return;
    }
    const uint64_t m = DOUBLE_POW5_TABLE[offset];
    uint64_t high1;
    const uint64_t low1 = umul128(m, mul[1], &high1);
    uint64_t high0;
    const uint64_t low0 = umul128(m, mul[0], &high0);
    const uint64_t sum = high0 + low1;
    if (sum < high0) ++high1; /* overflow into high1 */
    /* high1 | sum | low0 */
    const uint32_t delta = (uint32_t)(pow5bits((int32_t)i) - pow5bits((int32_t)base2));
    result[0] = shiftright128(low0, sum, delta) + ((POW5_OFFSETS[i / 16] >> ((i % 16) << 1)) & 3);
    result[1] = shiftright128(sum, high1, delta);
}

/* 5^-i in the form Ryu needs. */
static inline void double_computeInvPow5(const uint32_t i, uint64_t *const result) {
    const uint32_t base = (i + POW5_TABLE_SIZE - 1) / POW5_TABLE_SIZE;
    const uint32_t base2 = base * POW5_TABLE_SIZE;
    const uint32_t offset = base2 - i;
    const uint64_t *const mul = DOUBLE_POW5_INV_SPLIT2[base]; /* 1/5^base2 */
    if (offset == 0) {
        result[0] = mul[0];
        result[1] = mul[1];
        return;
    }
    const uint64_t m = DOUBLE_POW5_TABLE[offset];
    uint64_t high1;
    const uint64_t low1 = umul128(m, mul[1], &high1);
    uint64_t high0;
    const uint64_t low0 = umul128(m, mul[0] - 1, &high0);
    const uint64_t sum = high0 + low1;
    if (sum < high0) ++high1; /* overflow into high1 */
    /* high1 | sum | low0 */
    const uint32_t delta = (uint32_t)(pow5bits((int32_t)base2) - pow5bits((int32_t)i));
    result[0] = shiftright128(low0, sum, delta) + 1 + ((POW5_INV_OFFSETS[i / 16] >> ((i % 16) << 1)) & 3);
    result[1] = shiftright128(sum, high1, delta);
}

/* ---- ryu/d2s.c ------------------------------------------------------------------ */

/* A floating decimal representing mantissa * 10^exponent. */
typedef struct {
    uint64_t mantissa;
    int32_t exponent; /* -324 to 308 */
} Decimal;

/* The shortest, closest decimal of the finite nonzero double with the given
 * IEEE mantissa and biased exponent. */
static Decimal d2d(const uint64_t ieeeMantissa, const uint32_t ieeeExponent) {
    int32_t e2;
    uint64_t m2;
    if (ieeeExponent == 0) {
        /* We subtract 2 so that the bounds computation has 2 additional bits. */
        e2 = 1 - DOUBLE_BIAS - DOUBLE_MANTISSA_BITS - 2;
        m2 = ieeeMantissa;
    } else {
        e2 = (int32_t)ieeeExponent - DOUBLE_BIAS - DOUBLE_MANTISSA_BITS - 2;
        m2 = (1ull << DOUBLE_MANTISSA_BITS) | ieeeMantissa;
    }
    const int even = (m2 & 1) == 0;
    const int acceptBounds = even;

    /* Step 2: Determine the interval of valid decimal representations. */
    const uint64_t mv = 4 * m2;
    const uint32_t mmShift = ieeeMantissa != 0 || ieeeExponent <= 1;

    /* Step 3: Convert to a decimal power base using 128-bit arithmetic. */
    uint64_t vr, vp, vm;
    int32_t e10;
    int vmIsTrailingZeros = 0;
    int vrIsTrailingZeros = 0;
    if (e2 >= 0) {
        const uint32_t q = log10Pow2(e2) - (e2 > 3);
        e10 = (int32_t)q;
        const int32_t k = DOUBLE_POW5_INV_BITCOUNT + pow5bits((int32_t)q) - 1;
        const int32_t i = -e2 + (int32_t)q + k;
        uint64_t pow5[2];
        double_computeInvPow5(q, pow5);
        vr = mulShiftAll64(m2, pow5, i, &vp, &vm, mmShift);
        if (q <= 21) {
            /* Only one of mp, mv, and mm can be a multiple of 5, if any. */
            const uint32_t mvMod5 = ((uint32_t)mv) - 5 * ((uint32_t)(mv / 5));
            if (mvMod5 == 0) {
                vrIsTrailingZeros = multipleOfPowerOf5(mv, q);
            } else if (acceptBounds) {
                vmIsTrailingZeros = multipleOfPowerOf5(mv - 1 - mmShift, q);
            } else {
                vp -= (uint64_t)multipleOfPowerOf5(mv + 2, q);
            }
        }
    } else {
        const uint32_t q = log10Pow5(-e2) - (-e2 > 1);
        e10 = (int32_t)q + e2;
        const int32_t i = -e2 - (int32_t)q;
        const int32_t k = pow5bits(i) - DOUBLE_POW5_BITCOUNT;
        const int32_t j = (int32_t)q - k;
        uint64_t pow5[2];
        double_computePow5((uint32_t)i, pow5);
        vr = mulShiftAll64(m2, pow5, j, &vp, &vm, mmShift);
        if (q <= 1) {
            /* {vr,vp,vm} is trailing zeros if {mv,mp,mm} has at least q trailing 0 bits.
             * mv = 4 * m2, so it always has at least two trailing 0 bits. */
            vrIsTrailingZeros = 1;
            if (acceptBounds) {
                /* mm = mv - 1 - mmShift, so it has 1 trailing 0 bit iff mmShift == 1. */
                vmIsTrailingZeros = mmShift == 1;
            } else {
                /* mp = mv + 2, so it always has at least one trailing 0 bit. */
                --vp;
            }
        } else if (q < 63) {
            vrIsTrailingZeros = multipleOfPowerOf2(mv, q);
        }
    }

    /* Step 4: Find the shortest decimal representation in the interval. */
    int32_t removed = 0;
    uint8_t lastRemovedDigit = 0;
    uint64_t output;
    if (vmIsTrailingZeros || vrIsTrailingZeros) {
        /* General case, which happens rarely (~0.7%). */
        for (;;) {
            const uint64_t vpDiv10 = vp / 10;
            const uint64_t vmDiv10 = vm / 10;
            if (vpDiv10 <= vmDiv10) break;
            const uint32_t vmMod10 = ((uint32_t)vm) - 10 * ((uint32_t)vmDiv10);
            const uint64_t vrDiv10 = vr / 10;
            const uint32_t vrMod10 = ((uint32_t)vr) - 10 * ((uint32_t)vrDiv10);
            vmIsTrailingZeros &= vmMod10 == 0;
            vrIsTrailingZeros &= lastRemovedDigit == 0;
            lastRemovedDigit = (uint8_t)vrMod10;
            vr = vrDiv10;
            vp = vpDiv10;
            vm = vmDiv10;
            ++removed;
        }
        if (vmIsTrailingZeros) {
            for (;;) {
                const uint64_t vmDiv10 = vm / 10;
                const uint32_t vmMod10 = ((uint32_t)vm) - 10 * ((uint32_t)vmDiv10);
                if (vmMod10 != 0) break;
                const uint64_t vpDiv10 = vp / 10;
                const uint64_t vrDiv10 = vr / 10;
                const uint32_t vrMod10 = ((uint32_t)vr) - 10 * ((uint32_t)vrDiv10);
                vrIsTrailingZeros &= lastRemovedDigit == 0;
                lastRemovedDigit = (uint8_t)vrMod10;
                vr = vrDiv10;
                vp = vpDiv10;
                vm = vmDiv10;
                ++removed;
            }
        }
        if (vrIsTrailingZeros && lastRemovedDigit == 5 && vr % 2 == 0) {
            /* Round even if the exact number is .....50..0. */
            lastRemovedDigit = 4;
        }
        /* Take vr + 1 if vr is outside bounds or we need to round up. */
        output = vr + ((vr == vm && (!acceptBounds || !vmIsTrailingZeros)) || lastRemovedDigit >= 5);
    } else {
        /* Specialized for the common case (~99.3%). */
        int roundUp = 0;
        const uint64_t vpDiv100 = vp / 100;
        const uint64_t vmDiv100 = vm / 100;
        if (vpDiv100 > vmDiv100) { /* Optimization: remove two digits at a time (~86.2%). */
            const uint64_t vrDiv100 = vr / 100;
            const uint32_t vrMod100 = ((uint32_t)vr) - 100 * ((uint32_t)vrDiv100);
            roundUp = vrMod100 >= 50;
            vr = vrDiv100;
            vp = vpDiv100;
            vm = vmDiv100;
            removed += 2;
        }
        for (;;) {
            const uint64_t vpDiv10 = vp / 10;
            const uint64_t vmDiv10 = vm / 10;
            if (vpDiv10 <= vmDiv10) break;
            const uint64_t vrDiv10 = vr / 10;
            const uint32_t vrMod10 = ((uint32_t)vr) - 10 * ((uint32_t)vrDiv10);
            roundUp = vrMod10 >= 5;
            vr = vrDiv10;
            vp = vpDiv10;
            vm = vmDiv10;
            ++removed;
        }
        /* Take vr + 1 if vr is outside bounds or we need to round up. */
        output = vr + (vr == vm || roundUp);
    }
    Decimal fd;
    fd.exponent = e10 + removed;
    fd.mantissa = output;
    return fd;
}

/* Integers in [1, 2^53) exactly (1 and *v set), without d2d; else 0. The
 * mantissa keeps its trailing decimal zeros. */
static int d2d_small_int(const uint64_t ieeeMantissa, const uint32_t ieeeExponent, Decimal *const v) {
    const uint64_t m2 = (1ull << DOUBLE_MANTISSA_BITS) | ieeeMantissa;
    const int32_t e2 = (int32_t)ieeeExponent - DOUBLE_BIAS - DOUBLE_MANTISSA_BITS;
    if (e2 > 0) return 0;   /* f = m2 * 2^e2 >= 2^53 */
    if (e2 < -52) return 0; /* f < 1 */
    const uint64_t mask = (1ull << -e2) - 1;
    if ((m2 & mask) != 0) return 0; /* a fraction */
    v->mantissa = m2 >> -e2;
    v->exponent = 0;
    return 1;
}

/* ---- Python's layout ------------------------------------------------------------ */

static uint32_t put(uint8_t *out, uint32_t n, const char *s) {
    while (*s) out[n++] = (uint8_t)*s++;
    return n;
}

int32_t f64_repr(double x, uint8_t *out) {
    uint64_t bits;
    __builtin_memcpy(&bits, &x, 8);
    const int sign = (int)(bits >> 63);
    const uint64_t ieeeMantissa = bits & ((1ull << DOUBLE_MANTISSA_BITS) - 1);
    const uint32_t ieeeExponent =
        (uint32_t)((bits >> DOUBLE_MANTISSA_BITS) & ((1u << DOUBLE_EXPONENT_BITS) - 1));
    uint32_t n = 0;
    if (ieeeExponent == (1u << DOUBLE_EXPONENT_BITS) - 1) {
        if (ieeeMantissa) return (int32_t)put(out, 0, "NaN");
        return (int32_t)put(out, 0, sign ? "-inf" : "inf");
    }
    if (sign) out[n++] = '-';
    if (ieeeExponent == 0 && ieeeMantissa == 0) return (int32_t)put(out, n, "0.0");

    Decimal v;
    if (d2d_small_int(ieeeMantissa, ieeeExponent, &v)) {
        /* move the integer's trailing zeros into the exponent */
        while (v.mantissa % 10 == 0) {
            v.mantissa /= 10;
            ++v.exponent;
        }
    } else {
        v = d2d(ieeeMantissa, ieeeExponent);
    }

    /* the digits, most significant first (at most 17) */
    uint8_t dig[20];
    int32_t nd = 0;
    for (uint64_t m = v.mantissa; m; m /= 10) dig[nd++] = (uint8_t)('0' + m % 10);
    for (int32_t i = 0; i < nd / 2; i++) {
        uint8_t t = dig[i];
        dig[i] = dig[nd - 1 - i];
        dig[nd - 1 - i] = t;
    }
    /* value = 0.d1d2...dn * 10^decpt; the scientific exponent is decpt - 1 */
    const int32_t decpt = v.exponent + nd;
    const int32_t sci = decpt - 1;

    if (sci < -4 || sci >= 16) {
        out[n++] = dig[0];
        if (nd > 1) {
            out[n++] = '.';
            for (int32_t i = 1; i < nd; i++) out[n++] = dig[i];
        }
        out[n++] = 'e';
        int32_t e = sci;
        out[n++] = e < 0 ? '-' : '+';
        if (e < 0) e = -e;
        if (e >= 100) out[n++] = (uint8_t)('0' + e / 100);
        out[n++] = (uint8_t)('0' + e / 10 % 10);
        out[n++] = (uint8_t)('0' + e % 10);
    } else if (decpt <= 0) {
        out[n++] = '0';
        out[n++] = '.';
        for (int32_t i = decpt; i < 0; i++) out[n++] = '0';
        for (int32_t i = 0; i < nd; i++) out[n++] = dig[i];
    } else if (decpt < nd) {
        for (int32_t i = 0; i < decpt; i++) out[n++] = dig[i];
        out[n++] = '.';
        for (int32_t i = decpt; i < nd; i++) out[n++] = dig[i];
    } else {
        for (int32_t i = 0; i < nd; i++) out[n++] = dig[i];
        for (int32_t i = nd; i < decpt; i++) out[n++] = '0';
        out[n++] = '.';
        out[n++] = '0';
    }
    return (int32_t)n;
}
