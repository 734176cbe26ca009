/* Standalone check of the reduction kernels (csrc/core/reduce.c).
 *   gcc -std=c11 -O2 -Wall -Wextra -Werror -Icsrc csrc/core/reduce.c csrc/core/copy.c \
 *       csrc/tests/kernel_check.c -o /tmp/kc -lm
 * 1. the scalar path against a straightforward reference (per element, written independently);
 * 2. every other path this CPU supports against the scalar path, bit for bit (for float sum/prod
 *    a NaN only has to meet a NaN), dtype x op x size x k, random data with NaN, inf, +-0,
 *    subnormals and extreme integers; dst aliasing srcs[0] too;
 * 3. float16/bfloat16 conversions on all 65536 bit patterns against a reference rounding
 *    (nearest value by search, ties to even), through sum-with(-0), scaling and random sums.
 * 4. rr_copy / rr_copy_stream (csrc/core/copy.c, compiled in) against memcpy for every destination
 *    and source offset in a cache line and lengths around the vector and alignment steps.
 * Prints "kernel_check: OK" and exits 0, or prints the first difference and exits 1. */
#include "core/copy.h"
#include "ringred.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXN 4099
#define MAXK 5
static const size_t sizes[] = {0, 1, 7, 15, 16, 17, 31, 33, 63, 64, 65, 1000, 4099};
static const char *const dtn[] = {"u8", "i8", "i16", "i32", "i64", "f16", "bf16", "f32", "f64"};
static const char *const opn[] = {"sum", "min", "max", "prod"};
static const size_t esz[] = {1, 1, 2, 4, 8, 2, 2, 4, 8};
static const char *const paths[] = {"scalar", "avx2", "avx512"};

static uint64_t rs = 0x9e3779b97f4a7c15u;
static uint64_t rnd(void)
{
    rs ^= rs >> 12, rs ^= rs << 25, rs ^= rs >> 27;
    return rs * 0x2545f4914f6cdd1du;
}

static uint64_t ldb(int dt, const void *b, size_t i)
{
    uint64_t v = 0;
    memcpy(&v, (const char *)b + i * esz[dt], esz[dt]);
    return v;
}
static void stb(int dt, void *b, size_t i, uint64_t v) { memcpy((char *)b + i * esz[dt], &v, esz[dt]); }
static int isfl(int dt) { return dt >= RR_FLOAT16; }
static int isnanb(int dt, uint64_t v)
{
    switch (dt) {
    case RR_FLOAT16: return (v & 0x7fff) > 0x7c00;
    case RR_BFLOAT16: return (v & 0x7fff) > 0x7f80;
    case RR_FLOAT32: return (v & 0x7fffffff) > 0x7f800000;
    case RR_FLOAT64: return (v & 0x7fffffffffffffffu) > 0x7ff0000000000000u;
    default: return 0;
    }
}
static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static double u2d(uint64_t u) { double d; memcpy(&d, &u, 8); return d; }
static uint64_t d2u(double d) { uint64_t u; memcpy(&u, &d, 8); return u; }

/* ---- reference float16 / bfloat16 ---- */
static double ref_h2d(unsigned h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 31 ? (m ? NAN : INFINITY) : e == 0 ? ldexp(m, -24) : ldexp(m + 1024, e - 25);
    return (h & 0x8000) ? -v : v;
}
static double ref_b2d(unsigned b)
{
    int e = (b >> 7) & 255, m = b & 127;
    double v = e == 255 ? (m ? NAN : INFINITY) : e == 0 ? ldexp(m, -133) : ldexp(m + 128, e - 134);
    return (b & 0x8000) ? -v : v;
}
static double tab16[2][0x7f81]; /* positive finite values by bit pattern, then "next" (inf) */
static const unsigned top16[2] = {0x7c00, 0x7f80};
static void ref_init(void)
{
    for (unsigned p = 0; p < top16[0]; p++) tab16[0][p] = ref_h2d(p);
    tab16[0][top16[0]] = 65536.0;
    for (unsigned p = 0; p < top16[1]; p++) tab16[1][p] = ref_b2d(p);
    tab16[1][top16[1]] = ldexp(1, 128);
}
/* nearest 16-bit value to f, ties to the even pattern; NaN -> quiet NaN (see reduce.c) */
static unsigned ref_round(float f, int bf)
{
    unsigned s = signbit(f) ? 0x8000 : 0, top = top16[bf];
    if (isnan(f)) return bf ? s | 0x7fc0 : s | 0x7e00 | ((f2u(f) >> 13) & 0x3ff);
    const double a = fabs((double)f), *t = tab16[bf];
    if (a >= (t[top - 1] + t[top]) / 2) return s | top;
    unsigned lo = 0, hi = top - 1; /* largest p with t[p] <= a */
    while (lo < hi) {
        unsigned mid = (lo + hi + 1) / 2;
        if (t[mid] <= a) lo = mid; else hi = mid - 1;
    }
    if (t[lo] == a) return s | lo;
    double d1 = a - t[lo], d2 = t[lo + 1] - a;
    return s | (d1 < d2 ? lo : d2 < d1 ? lo + 1 : (lo & 1) ? lo + 1 : lo);
}
static float ref_dec(int dt, uint64_t v) { return (float)(dt == RR_FLOAT16 ? ref_h2d((unsigned)v) : ref_b2d((unsigned)v)); }

/* ---- reference reduction of one element ---- */
static double ref_fop(int op, double a, double b, int is32)
{
    if (op == RR_SUM) return is32 ? (double)((float)a + (float)b) : a + b;
    if (op == RR_PROD) return is32 ? (double)((float)a * (float)b) : a * b;
    if (isnan(a) || isnan(b)) return NAN; /* canonicalized by the caller */
    if (a == b) {
        if (a != 0) return a;
        int neg = op == RR_MIN ? (signbit(a) || signbit(b)) : (signbit(a) && signbit(b));
        return neg ? -0.0 : 0.0;
    }
    return (op == RR_MIN) == (a < b) ? a : b;
}
static uint64_t ref_elem(int dt, int op, int k, void *const *s, size_t i)
{
    if (!isfl(dt)) {
        int64_t acc = 0;
        for (int j = 0; j < k; j++) {
            uint64_t u = ldb(dt, s[j], i);
            int sh = 64 - 8 * (int)esz[dt];
            int64_t x = dt == RR_UINT8 ? (int64_t)u : (int64_t)(u << sh) >> sh;
            if (j == 0) acc = x;
            else if (op == RR_SUM) acc = (int64_t)((uint64_t)acc + (uint64_t)x);
            else if (op == RR_PROD) acc = (int64_t)((uint64_t)acc * (uint64_t)x);
            else if (op == RR_MIN) acc = x < acc ? x : acc;
            else acc = x > acc ? x : acc;
        }
        return (uint64_t)acc & (esz[dt] == 8 ? ~0ull : (1ull << (8 * esz[dt])) - 1);
    }
    if (k == 1) return ldb(dt, s[0], i);
    double acc = 0;
    for (int j = 0; j < k; j++) {
        uint64_t u = ldb(dt, s[j], i);
        double x = dt == RR_FLOAT64 ? u2d(u) : dt == RR_FLOAT32 ? u2f((uint32_t)u) : ref_dec(dt, u);
        acc = j == 0 ? x : ref_fop(op, acc, x, dt != RR_FLOAT64);
        if ((op == RR_MIN || op == RR_MAX) && isnan(acc)) acc = u2d(0x7ff8000000000000u);
    }
    if (isnan(acc) && (op == RR_MIN || op == RR_MAX))
        return dt == RR_FLOAT64 ? 0x7ff8000000000000u : dt == RR_FLOAT32 ? 0x7fc00000u : dt == RR_FLOAT16 ? 0x7e00 : 0x7fc0;
    if (dt == RR_FLOAT64) return d2u(acc);
    if (dt == RR_FLOAT32) return f2u((float)acc);
    return ref_round((float)acc, dt == RR_BFLOAT16);
}

/* ---- random data ---- */
static uint64_t rnd_val(int dt)
{
    uint64_t r = rnd(), sel = r % 16, sgn = (r >> 8) & 1, m = rnd();
    if (!isfl(dt)) {
        const int bits = 8 * (int)esz[dt];
        const uint64_t mask = bits == 64 ? ~0ull : (1ull << bits) - 1, hib = 1ull << (bits - 1);
        const uint64_t ext[] = {0, 1, mask, hib, hib - 1, 2, hib + 1, 3};
        return (sel < 6 ? ext[(r >> 9) % 8] : sel < 9 ? (m % 7) - 3 : m) & mask;
    }
    static const int eb[] = {0, 0, 0, 0, 0, 5, 8, 8, 11}, mb[] = {0, 0, 0, 0, 0, 10, 7, 23, 52};
    const int e = eb[dt], mm = mb[dt], w = 8 * (int)esz[dt];
    const uint64_t emax = (1ull << e) - 1, mmask = (1ull << mm) - 1, s = sgn << (w - 1);
    uint64_t ex, man = m & mmask;
    switch (sel) {
    case 0: ex = emax; man |= 1ull << (mm - 1 - (int)((r >> 10) & 1)); break; /* quiet/signaling NaN */
    case 1: ex = emax; man = 0; break;
    case 2: ex = 0; man = 0; break;
    case 3: ex = 0; break;                                                   /* subnormal */
    case 4: ex = (r >> 12) & 1 ? emax - 1 : 1; break;                        /* huge / tiny normal */
    case 5: return m & (w == 64 ? ~0ull : (1ull << w) - 1);                  /* any bits */
    default: ex = emax / 2 - 3 + (r >> 12) % 7; break;                       /* moderate */
    }
    return s | (ex << mm) | man;
}

static unsigned char bufs[MAXK + 3][65536 * 2 > MAXN * 8 ? 65536 * 2 : MAXN * 8];
static int fails;
static int report(const char *what, const char *path, int dt, int op, size_t n, int k, size_t i,
                  uint64_t want, uint64_t got)
{
    printf("kernel_check: FAIL %s path=%s dtype=%s op=%s n=%zu k=%d i=%zu want=0x%llx got=0x%llx\n",
           what, path, dtn[dt], op >= 0 ? opn[op] : "-", n, k, i, (unsigned long long)want,
           (unsigned long long)got);
    return ++fails;
}
static int same(int dt, int op, uint64_t a, uint64_t b)
{
    return a == b || ((op == RR_SUM || op == RR_PROD) && isnanb(dt, a) && isnanb(dt, b));
}

static void check_reduce(const char *path, int dt, int op, size_t n, int k)
{
    void *s[MAXK];
    for (int j = 0; j < k; j++) {
        s[j] = bufs[j];
        for (size_t i = 0; i < n; i++) stb(dt, s[j], i, rnd_val(dt));
    }
    void *ref = bufs[MAXK], *out = bufs[MAXK + 1], *alias = bufs[MAXK + 2];
    const void *cs[MAXK];
    memcpy(cs, s, sizeof cs);
    if (rr_test_reduce("scalar", ref, cs, k, n, dt, op) || rr_test_reduce(path, out, cs, k, n, dt, op)) {
        report("status", path, dt, op, n, k, 0, 0, 1);
        return;
    }
    memcpy(alias, s[0], n * esz[dt]);
    cs[0] = alias;
    rr_test_reduce(path, alias, cs, k, n, dt, op);
    for (size_t i = 0; i < n; i++) {
        uint64_t r = ldb(dt, ref, i), o = ldb(dt, out, i), a = ldb(dt, alias, i);
        if (strcmp(path, "scalar") == 0 && !same(dt, op, ref_elem(dt, op, k, s, i), r)) {
            report("scalar-vs-reference", path, dt, op, n, k, i, ref_elem(dt, op, k, s, i), r);
            return;
        }
        if (!same(dt, op, r, o) || !same(dt, op, r, a)) {
            report(same(dt, op, r, o) ? "aliased-dst" : "path-vs-scalar", path, dt, op, n, k, i, r,
                   same(dt, op, r, o) ? a : o);
            return;
        }
    }
}

static uint64_t ref_scale(int dt, uint64_t u, double f, int64_t d)
{
    if (dt == RR_FLOAT64) return d2u(u2d(u) * f);
    if (dt == RR_FLOAT32) return f2u(u2f((uint32_t)u) * (float)f);
    if (isfl(dt)) return ref_round(ref_dec(dt, u) * (float)f, dt == RR_BFLOAT16);
    int sh = 64 - 8 * (int)esz[dt];
    int64_t x = dt == RR_UINT8 ? (int64_t)u : (int64_t)(u << sh) >> sh;
    uint64_t q = d == -1 ? 0 - (uint64_t)x : (uint64_t)(x / d);
    return q & (esz[dt] == 8 ? ~0ull : (1ull << (8 * esz[dt])) - 1);
}

/* scale (out of place and in place) against the reference */
static void check_scale(const char *path, int dt, const void *src, size_t n, double f, int64_t d)
{
    void *out = bufs[MAXK + 1], *inpl = bufs[MAXK + 2];
    memcpy(inpl, src, n * esz[dt]);
    if (rr_test_scale(path, out, src, n, dt, f, d) || rr_test_scale(path, inpl, inpl, n, dt, f, d)) {
        report("scale-status", path, dt, -1, n, 0, 0, 0, 1);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t w = ref_scale(dt, ldb(dt, src, i), f, d), o = ldb(dt, out, i), q = ldb(dt, inpl, i);
        if (!same(dt, RR_PROD, w, o) || !same(dt, RR_PROD, w, q)) {
            report("scale-vs-reference", path, dt, -1, n, 0, i, w, same(dt, RR_PROD, w, o) ? q : o);
            return;
        }
    }
}

static void check_copies(void)
{
    enum { CMAX = 70000 };
    static const size_t lens[] = {0, 1, 63, 64, 65, 255, 256, 257, 300, 1000, 4096, 4099, 65599,
                                  CMAX};
    uint8_t *src = malloc(CMAX + 128), *dst = malloc(CMAX + 256), *want = malloc(CMAX + 256);
    if (!src || !dst || !want) {
        printf("out of memory\n");
        fails++;
        return;
    }
    for (size_t i = 0; i < CMAX + 128; i++) src[i] = (uint8_t)rnd();
    for (int stream = 0; stream < 2 && !fails; stream++)
        for (size_t li = 0; li < sizeof lens / sizeof *lens && !fails; li++)
            for (size_t so = 0; so < 64 && !fails; so += (lens[li] > 5000 ? 13 : 1))
                for (size_t d0 = 0; d0 < 64 && !fails; d0 += (lens[li] > 5000 ? 7 : 1)) {
                    size_t n = lens[li];
                    memset(dst, 0xA5, CMAX + 256);
                    memset(want, 0xA5, CMAX + 256);
                    memcpy(want + 64 + d0, src + so, n);
                    (stream ? rr_copy_stream : rr_copy)(dst + 64 + d0, src + so, n);
                    if (memcmp(dst, want, CMAX + 256) != 0) {
                        printf("%s: length %zu, source offset %zu, destination offset %zu "
                               "differs from memcpy\n", stream ? "rr_copy_stream" : "rr_copy",
                               n, so, d0);
                        fails++;
                    }
                }
    free(src);
    free(dst);
    free(want);
}

int main(void)
{
    ref_init();
    check_copies();
    static const double factors[] = {1.0, 0.5, 3.0, 1.0 / 3.0, -0.7, 0x1p-10, 1024.0, 1e-5, 1e5, 0x1p-120, 0x1p100, 0.0};
    static const int64_t divisors[] = {1, 2, 3, -1, -7, 1000, INT64_C(1) << 40, INT64_MIN, 0x7fffffff};
    static uint16_t all[65536], negz[65536];
    for (unsigned h = 0; h < 65536; h++) all[h] = (uint16_t)h, negz[h] = 0x8000;

    for (int p = 0; p < 3 && !fails; p++) {
        const char *path = paths[p];
        if (rr_test_reduce(path, NULL, NULL, 1, 0, RR_FLOAT32, RR_SUM) == RR_ERR_UNSUPPORTED) {
            printf("kernel_check: path %s not supported by this CPU, skipped\n", path);
            continue;
        }
        for (int dt = 0; dt < RR_NUM_DTYPES && !fails; dt++) {
            for (int op = 0; op < RR_NUM_OPS && !fails; op++)
                for (size_t si = 0; si < sizeof sizes / sizeof *sizes && !fails; si++)
                    for (int k = 1; k <= MAXK && !fails; k++)
                        check_reduce(path, dt, op, sizes[si], k);
            for (size_t si = 0; si < sizeof sizes / sizeof *sizes && !fails; si++) {
                const size_t n = sizes[si], nf = isfl(dt) ? sizeof factors / sizeof *factors
                                                          : sizeof divisors / sizeof *divisors;
                for (size_t fi = 0; fi < nf && !fails; fi++) {
                    for (size_t i = 0; i < n; i++) stb(dt, bufs[0], i, rnd_val(dt));
                    if (isfl(dt)) check_scale(path, dt, bufs[0], n, factors[fi], 1);
                    else check_scale(path, dt, bufs[0], n, 1.0, divisors[fi]);
                }
            }
        }
        /* float16 / bfloat16: all bit patterns */
        for (int dt = RR_FLOAT16; dt <= RR_BFLOAT16 && !fails; dt++) {
            uint16_t *out = (uint16_t *)(void *)bufs[MAXK];
            static uint16_t big[65536];
            const void *cs[3] = {all, negz, NULL};
            rr_test_reduce(path, big, cs, 2, 65536, dt, RR_SUM); /* x + (-0) == x, NaN quieted */
            for (unsigned h = 0; h < 65536 && !fails; h++) {
                unsigned want = !isnanb(dt, h) ? h : dt == RR_FLOAT16 ? h | 0x200 : (h & 0x8000) | 0x7fc0;
                if (big[h] != want) report("roundtrip", path, dt, RR_SUM, 65536, 2, h, want, big[h]);
            }
            for (size_t fi = 0; fi < sizeof factors / sizeof *factors && !fails; fi++)
                check_scale(path, dt, all, 65536, factors[fi], 1);
            /* random sums and products of 2 and 3 patterns */
            for (int rep = 0; rep < 16 && !fails; rep++) {
                uint16_t *a = (uint16_t *)(void *)bufs[0], *b = (uint16_t *)(void *)bufs[1], *c = (uint16_t *)(void *)bufs[2];
                for (size_t i = 0; i < MAXN; i++) {
                    a[i] = (uint16_t)rnd(), b[i] = (uint16_t)rnd(), c[i] = (uint16_t)rnd();
                    if (rep & 1) b[i] = (uint16_t)((a[i] & 0xfc00) ^ (b[i] & 0x83ff)); /* close exponents */
                }
                const void *s3[3] = {a, b, c};
                for (int op = RR_SUM; op <= RR_PROD && !fails; op += RR_PROD)
                    for (int k = 2; k <= 3 && !fails; k++) {
                        rr_test_reduce(path, out, s3, k, MAXN, dt, op);
                        for (size_t i = 0; i < MAXN; i++) {
                            uint64_t w = ref_elem(dt, op, k, (void *const *)s3, i);
                            if (!same(dt, op, w, out[i])) {
                                report("random-16bit", path, dt, op, MAXN, k, i, w, out[i]);
                                break;
                            }
                        }
                    }
            }
        }
    }
    if (fails) return 1;
    printf("kernel_check: OK\n");
    return 0;
}
