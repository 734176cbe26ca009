/* Reduction kernels (dtype x op) with runtime CPU dispatch.
 *
 * Paths: "scalar" (portable C, the reference), "avx2" (AVX2 + F16C intrinsics) and "avx512"
 * (AVX-512 F/BW/VL intrinsics).  The kernels themselves come from reduce_kernels.h, instantiated
 * once per path; a vector path handles the tail with the scalar helpers below, and every vector
 * operation is chosen to give exactly the bits of its scalar helper, so all paths agree bit for
 * bit (NaN payloads of sum/prod excepted: IEEE leaves them to the hardware).  No FMA is used
 * anywhere, and there is no a*b+c expression that a compiler could contract.
 *
 * Semantics, all paths:
 *  - integers wrap modulo 2^bits (computed in the unsigned type);
 *  - float16/bfloat16 are widened to float32, every op is done in float32 (rr_reduce_many folds
 *    all k inputs into one float32 accumulator) and the result is rounded to nearest-even once;
 *  - min/max propagate NaN and are symmetric bit for bit: any NaN input gives the canonical
 *    quiet NaN of the dtype (positive sign, quiet bit, zero payload: 0x7e00, 0x7fc0, 0x7fc00000,
 *    0x7ff8000000000000); between zeros of opposite sign min gives -0 and max gives +0;
 *  - k == 1 is an exact copy of srcs[0] (no NaN quieting, no rounding), for every dtype and op;
 *  - float16 <-> float32 conversions match F16C (and NumPy for every value NumPy can produce
 *    here): a NaN keeps its sign and top payload bits and gets the quiet bit;
 *  - float32 -> bfloat16 matches ml_dtypes: round to nearest even, NaN -> 0x7fc0 / 0xffc0 (sign
 *    kept); bfloat16 -> float32 is exact (a shift).  avx512bf16 is not used: its conversion
 *    flushes subnormals.
 * The conversions and the float arithmetic assume the default MXCSR (no FTZ/DAZ, round to
 * nearest), like NumPy does. */

#include "core/reduce.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <strings.h>

#if !defined(RR_NO_SIMD) && (defined(__x86_64__) || defined(__i386__)) && \
    (defined(__GNUC__) || defined(__clang__))
#define RK_X86 1
#include <immintrin.h>
#else
#define RK_X86 0
#endif

typedef void (*rk_many_fn)(void *, const void *const *, int, size_t);
typedef void (*rk_fscale_fn)(void *, const void *, size_t, double);
typedef void (*rk_iscale_fn)(void *, const void *, size_t, int64_t);

struct rk_table {
    const char *name;
    rk_many_fn many[RR_NUM_DTYPES][RR_NUM_OPS];
    rk_fscale_fn fscale[RR_NUM_DTYPES]; /* floating dtypes */
    rk_iscale_fn iscale[RR_NUM_DTYPES]; /* integer dtypes */
};

#define RK_BLOCK 256 /* scalar path: elements per accumulator block */

/* ------------------------------------------------------------------------------------------ */
/* Scalar helpers (also the vector paths' tails).                                              */

static inline uint32_t rk_f2u(float f) { uint32_t u; memcpy(&u, &f, sizeof u); return u; }
static inline float rk_u2f(uint32_t u) { float f; memcpy(&f, &u, sizeof f); return f; }
static inline uint64_t rk_d2u(double d) { uint64_t u; memcpy(&u, &d, sizeof u); return u; }
static inline double rk_u2d(uint64_t u) { double d; memcpy(&d, &u, sizeof d); return d; }

/* all ones if c else 0; c ? a : b as bit operations (keeps the loops branch-free) */
static inline uint32_t rk_mask(int c) { return 0u - (uint32_t)c; }
static inline uint32_t rk_sel(int c, uint32_t a, uint32_t b)
{
    return (a & rk_mask(c)) | (b & ~rk_mask(c));
}

#define RK_QNAN_F32 0x7fc00000u
#define RK_QNAN_F64 UINT64_C(0x7ff8000000000000)

/* float16 -> float32, exact; NaN: sign and payload kept, quiet bit set (as VCVTPH2PS).
 * Branch-free (selects only) so that the scalar path vectorizes. */
static inline float rk_h2f(uint16_t h)
{
    const uint32_t em = h & 0x7fffu, s = (uint32_t)(h & 0x8000u) << 16, sh = em << 13;
    /* subnormal: (float)m is exact and normal; take 24 off its exponent (m * 2^-24) */
    const uint32_t sub = rk_f2u((float)(int32_t)em) - (24u << 23);
    const uint32_t r_inf = sh | 0x7f800000u | (rk_mask(em > 0x7c00u) & 0x400000u);
    const uint32_t r_norm = sh + ((127u - 15u) << 23);
    const uint32_t r_sub = rk_mask(em != 0) & sub;
    const uint32_t r = rk_sel(em >= 0x7c00u, r_inf, rk_sel(em >= 0x400u, r_norm, r_sub));
    return rk_u2f(s | r);
}

/* float32 -> float16, round to nearest even; NaN: sign and top payload kept, quiet bit set
 * (as VCVTPS2PH).  Branch-free.  A result below 2^-14 (subnormal or zero) is rounded by adding
 * 2^-1 in float32 arithmetic, whose rounding (nearest even) leaves the half's subnormal
 * significand in the low bits; that add never sees a subnormal nor makes one. */
static inline uint16_t rk_f2h(float f)
{
    const uint32_t u = rk_f2u(f), s = (u >> 16) & 0x8000u, x = u & 0x7fffffffu;
    const uint32_t nan = 0x7e00u | ((x >> 13) & 0x3ffu);
    /* normal: rebias the exponent by (127 - 15) << 23 and round on bit 13; a carry out of the
     * significand goes into the exponent, up to 0x7c00 (inf) from 65520 on */
    const uint32_t norm = (x - ((127u - 15u) << 23) + 0xfffu + ((x >> 13) & 1u)) >> 13;
    const uint32_t sub = rk_f2u(rk_u2f(x) + 0.5f) - 0x3f000000u;
    const uint32_t r = rk_sel(x > 0x7f800000u, nan,
                              rk_sel(x >= 0x47800000u, 0x7c00u, rk_sel(x >= 0x38800000u, norm, sub)));
    return (uint16_t)(s | r);
}

static inline float rk_b2f(uint16_t b) { return rk_u2f((uint32_t)b << 16); }

/* float32 -> bfloat16, round to nearest even; NaN -> 0x7fc0 | sign (as ml_dtypes). */
static inline uint16_t rk_f2b(float f)
{
    const uint32_t u = rk_f2u(f);
    return (uint16_t)rk_sel((u & 0x7fffffffu) > 0x7f800000u, ((u >> 16) & 0x8000u) | 0x7fc0u,
                            (u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* float ops; min/max: NaN -> canonical quiet NaN, min(+0,-0) = -0, max(+0,-0) = +0. */
static inline float rk_sum_f(float a, float b) { return a + b; }
static inline float rk_prod_f(float a, float b) { return a * b; }
static inline float rk_min_f(float a, float b)
{
    if (a != a || b != b)
        return rk_u2f(RK_QNAN_F32);
    return a < b ? a : b < a ? b : rk_u2f(rk_f2u(a) | rk_f2u(b));
}
static inline float rk_max_f(float a, float b)
{
    if (a != a || b != b)
        return rk_u2f(RK_QNAN_F32);
    return a > b ? a : b > a ? b : rk_u2f(rk_f2u(a) & rk_f2u(b));
}
static inline double rk_sum_d(double a, double b) { return a + b; }
static inline double rk_prod_d(double a, double b) { return a * b; }
static inline double rk_min_d(double a, double b)
{
    if (a != a || b != b)
        return rk_u2d(RK_QNAN_F64);
    return a < b ? a : b < a ? b : rk_u2d(rk_d2u(a) | rk_d2u(b));
}
static inline double rk_max_d(double a, double b)
{
    if (a != a || b != b)
        return rk_u2d(RK_QNAN_F64);
    return a > b ? a : b > a ? b : rk_u2d(rk_d2u(a) & rk_d2u(b));
}

/* Integer ops.  MT: an unsigned type at least as wide as unsigned int, so the multiply cannot
 * overflow a promoted signed int. */
#define RK_SC_INT(T, ET, UT, MT)                                                              \
    typedef ET sc_acc_##T;                                                                    \
    static inline ET sc_ld_##T(const ET *p) { return *p; }                                    \
    static inline void sc_st_##T(ET *p, ET v) { *p = v; }                                     \
    static inline ET sc_sum_##T(ET a, ET b) { return (ET)(UT)((MT)(UT)a + (MT)(UT)b); }       \
    static inline ET sc_prod_##T(ET a, ET b) { return (ET)(UT)((MT)(UT)a * (MT)(UT)b); }      \
    static inline ET sc_min_##T(ET a, ET b) { return b < a ? b : a; }                         \
    static inline ET sc_max_##T(ET a, ET b) { return a < b ? b : a; }
RK_SC_INT(u8, uint8_t, uint8_t, unsigned)
RK_SC_INT(i8, int8_t, uint8_t, unsigned)
RK_SC_INT(i16, int16_t, uint16_t, unsigned)
RK_SC_INT(i32, int32_t, uint32_t, uint32_t)
RK_SC_INT(i64, int64_t, uint64_t, uint64_t)

#define RK_SC_FLT(T, ET, AT, LD, ST, OPS)                                                     \
    typedef AT sc_acc_##T;                                                                    \
    typedef AT sc_fac_##T;                                                                    \
    static inline AT sc_ld_##T(const ET *p) { return LD(*p); }                                \
    static inline void sc_st_##T(ET *p, AT v) { *p = ST(v); }                                 \
    static inline AT sc_sum_##T(AT a, AT b) { return rk_sum_##OPS(a, b); }                    \
    static inline AT sc_prod_##T(AT a, AT b) { return rk_prod_##OPS(a, b); }                  \
    static inline AT sc_min_##T(AT a, AT b) { return rk_min_##OPS(a, b); }                    \
    static inline AT sc_max_##T(AT a, AT b) { return rk_max_##OPS(a, b); }
#define RK_ID(x) (x)
RK_SC_FLT(f16, uint16_t, float, rk_h2f, rk_f2h, f)
RK_SC_FLT(bf16, uint16_t, float, rk_b2f, rk_f2b, f)
RK_SC_FLT(f32, float, float, RK_ID, RK_ID, f)
RK_SC_FLT(f64, double, double, RK_ID, RK_ID, d)

/* Integer scaling: dst = src / d with C truncation, wrapped to the dtype.  d == 0 (a caller bug,
 * refused by rr_scale_with) copies.  For dtypes of at most 32 bits the quotient is computed as
 * trunc((double)x / d), which is exact: |x| < 2^53 makes the rounding error of the division
 * smaller than the distance 1/|d| of a non-integral quotient to the next integer, and it lets
 * the compiler vectorize. */
#define RK_ISCALE(NAME, ET, UT)                                                               \
    static void NAME(void *dst_, const void *src_, size_t n, int64_t d)                       \
    {                                                                                         \
        ET *dst = (ET *)dst_;                                                                 \
        const ET *src = (const ET *)src_;                                                     \
        if (d == 1 || d == 0) {                                                               \
            if (dst != src)                                                                   \
                memmove(dst, src, n * sizeof(ET));                                            \
        } else if (d == -1) {                                                                 \
            for (size_t i = 0; i < n; i++)                                                    \
                dst[i] = (ET)(UT)(0u - (UT)src[i]);                                           \
        } else if (sizeof(ET) <= 4 && d >= -(INT64_C(1) << 53) && d <= (INT64_C(1) << 53)) { \
            const double dd = (double)d;                                                      \
            for (size_t i = 0; i < n; i++)                                                    \
                dst[i] = (ET)(UT)(uint32_t)(int32_t)((double)src[i] / dd);                    \
        } else {                                                                              \
            for (size_t i = 0; i < n; i++)                                                    \
                dst[i] = (ET)(UT)(uint64_t)((int64_t)src[i] / d);                             \
        }                                                                                     \
    }

/* ------------------------------------------------------------------------------------------ */
/* Scalar reference path.                                                                      */

#define RK_SCALAR
#define RK_FN(x) scalar_##x
#define RK_PATH_NAME "scalar"
#include "core/reduce_kernels.h"
#undef RK_SCALAR
#undef RK_FN
#undef RK_PATH_NAME

#if RK_X86

#if defined(__clang__)
#define RK_TARGET_PUSH(s)                                                                     \
    _Pragma(RK_STR(clang attribute push(__attribute__((target(s))), apply_to = function)))
#define RK_TARGET_POP _Pragma("clang attribute pop")
#else
#define RK_TARGET_PUSH(s) _Pragma("GCC push_options") _Pragma(RK_STR(GCC target(s)))
#define RK_TARGET_POP _Pragma("GCC pop_options")
#endif
#define RK_STR(x) #x

/* ------------------------------------------------------------------------------------------ */
/* AVX2 + F16C path.                                                                           */

RK_TARGET_PUSH("avx2,f16c")

#define RK_AVX2_INT(T, ET, VL)                                                                \
    typedef __m256i avx2_vt_##T;                                                              \
    enum { avx2_vl_##T = VL };                                                                \
    static inline __m256i avx2_ld_##T(const ET *p)                                            \
    {                                                                                         \
        return _mm256_loadu_si256((const __m256i *)(const void *)p);                          \
    }                                                                                         \
    static inline void avx2_st_##T(ET *p, __m256i v) { _mm256_storeu_si256((__m256i *)(void *)p, v); }
RK_AVX2_INT(u8, uint8_t, 32)
RK_AVX2_INT(i8, int8_t, 32)
RK_AVX2_INT(i16, int16_t, 16)
RK_AVX2_INT(i32, int32_t, 8)
RK_AVX2_INT(i64, int64_t, 4)

/* low byte of each byte product: even bytes from a 16-bit multiply, odd bytes shifted down */
static inline __m256i avx2_mul8(__m256i a, __m256i b)
{
    const __m256i even = _mm256_mullo_epi16(a, b);
    const __m256i odd = _mm256_mullo_epi16(_mm256_srli_epi16(a, 8), _mm256_srli_epi16(b, 8));
    return _mm256_or_si256(_mm256_and_si256(even, _mm256_set1_epi16(0xff)), _mm256_slli_epi16(odd, 8));
}
/* low 64 bits of a 64x64 product from 32x32->64 multiplies */
static inline __m256i avx2_mul64(__m256i a, __m256i b)
{
    const __m256i cross = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(a, 32), b),
                                           _mm256_mul_epu32(a, _mm256_srli_epi64(b, 32)));
    return _mm256_add_epi64(_mm256_mul_epu32(a, b), _mm256_slli_epi64(cross, 32));
}
static inline __m256i avx2_sum_u8(__m256i a, __m256i b) { return _mm256_add_epi8(a, b); }
static inline __m256i avx2_min_u8(__m256i a, __m256i b) { return _mm256_min_epu8(a, b); }
static inline __m256i avx2_max_u8(__m256i a, __m256i b) { return _mm256_max_epu8(a, b); }
static inline __m256i avx2_min_i8(__m256i a, __m256i b) { return _mm256_min_epi8(a, b); }
static inline __m256i avx2_max_i8(__m256i a, __m256i b) { return _mm256_max_epi8(a, b); }
static inline __m256i avx2_sum_i16(__m256i a, __m256i b) { return _mm256_add_epi16(a, b); }
static inline __m256i avx2_min_i16(__m256i a, __m256i b) { return _mm256_min_epi16(a, b); }
static inline __m256i avx2_max_i16(__m256i a, __m256i b) { return _mm256_max_epi16(a, b); }
static inline __m256i avx2_prod_i16(__m256i a, __m256i b) { return _mm256_mullo_epi16(a, b); }
static inline __m256i avx2_sum_i32(__m256i a, __m256i b) { return _mm256_add_epi32(a, b); }
static inline __m256i avx2_min_i32(__m256i a, __m256i b) { return _mm256_min_epi32(a, b); }
static inline __m256i avx2_max_i32(__m256i a, __m256i b) { return _mm256_max_epi32(a, b); }
static inline __m256i avx2_prod_i32(__m256i a, __m256i b) { return _mm256_mullo_epi32(a, b); }
static inline __m256i avx2_sum_i64(__m256i a, __m256i b) { return _mm256_add_epi64(a, b); }
static inline __m256i avx2_min_i64(__m256i a, __m256i b)
{
    return _mm256_blendv_epi8(a, b, _mm256_cmpgt_epi64(a, b));
}
static inline __m256i avx2_max_i64(__m256i a, __m256i b)
{
    return _mm256_blendv_epi8(a, b, _mm256_cmpgt_epi64(b, a));
}
#define avx2_prod_u8 avx2_mul8
#define avx2_sum_i8 avx2_sum_u8
#define avx2_prod_i8 avx2_mul8
#define avx2_prod_i64 avx2_mul64

/* float32 lanes (also the f16/bf16 accumulators) */
static inline __m256 avx2_sum_f32(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
static inline __m256 avx2_prod_f32(__m256 a, __m256 b) { return _mm256_mul_ps(a, b); }
static inline __m256 avx2_min_f32(__m256 a, __m256 b)
{ /* MINPS gives b unless a < b; equal values: OR in a (only -0/+0 differ) */
    __m256 r = _mm256_min_ps(a, b);
    r = _mm256_or_ps(r, _mm256_and_ps(_mm256_cmp_ps(a, b, _CMP_EQ_OQ), a));
    return _mm256_blendv_ps(r, _mm256_castsi256_ps(_mm256_set1_epi32((int)RK_QNAN_F32)),
                            _mm256_cmp_ps(a, b, _CMP_UNORD_Q));
}
static inline __m256 avx2_max_f32(__m256 a, __m256 b)
{ /* MAXPS gives b unless a > b; equal values: AND in a */
    __m256 r = _mm256_max_ps(a, b);
    r = _mm256_and_ps(r, _mm256_or_ps(_mm256_cmp_ps(a, b, _CMP_NEQ_UQ), a));
    return _mm256_blendv_ps(r, _mm256_castsi256_ps(_mm256_set1_epi32((int)RK_QNAN_F32)),
                            _mm256_cmp_ps(a, b, _CMP_UNORD_Q));
}
static inline __m256 avx2_bc_f32(double f) { return _mm256_set1_ps((float)f); }
typedef __m256 avx2_vt_f32;
enum { avx2_vl_f32 = 8 };
static inline __m256 avx2_ld_f32(const float *p) { return _mm256_loadu_ps(p); }
static inline void avx2_st_f32(float *p, __m256 v) { _mm256_storeu_ps(p, v); }

typedef __m256 avx2_vt_f16;
enum { avx2_vl_f16 = 8 };
static inline __m256 avx2_ld_f16(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));
}
static inline void avx2_st_f16(uint16_t *p, __m256 v)
{
    _mm_storeu_si128((__m128i *)(void *)p, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}

/* bfloat16: 16 elements as two float32 vectors.  Unpacking with zeros below each element gives
 * lo = elements 0..3, 8..11 and hi = 4..7, 12..15 (per 128-bit lane); packing lo and hi back
 * per lane restores the order, so no lane-crossing shuffle is needed. */
typedef struct { __m256 lo, hi; } avx2_vt_bf16;
enum { avx2_vl_bf16 = 16 };
static inline avx2_vt_bf16 avx2_ld_bf16(const uint16_t *p)
{
    const __m256i w = _mm256_loadu_si256((const __m256i *)(const void *)p), z = _mm256_setzero_si256();
    const avx2_vt_bf16 v = {_mm256_castsi256_ps(_mm256_unpacklo_epi16(z, w)),
                            _mm256_castsi256_ps(_mm256_unpackhi_epi16(z, w))};
    return v;
}
/* round to nearest even, 32-bit lanes with the bfloat16 in the low half; NaN -> sign | 0x7fc0 */
static inline __m256i avx2_rne_bf16(__m256 v)
{
    const __m256i x = _mm256_castps_si256(v), hi = _mm256_srli_epi32(x, 16);
    const __m256i bias = _mm256_add_epi32(_mm256_set1_epi32(0x7fff),
                                          _mm256_and_si256(hi, _mm256_set1_epi32(1)));
    const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(x, bias), 16);
    const __m256i nan = _mm256_or_si256(_mm256_and_si256(hi, _mm256_set1_epi32(0x8000)),
                                        _mm256_set1_epi32(0x7fc0));
    return _mm256_blendv_epi8(r, nan, _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
}
static inline void avx2_st_bf16(uint16_t *p, avx2_vt_bf16 v)
{
    _mm256_storeu_si256((__m256i *)(void *)p,
                        _mm256_packus_epi32(avx2_rne_bf16(v.lo), avx2_rne_bf16(v.hi)));
}
#define RK_AVX2_PAIR(OP)                                                                      \
    static inline avx2_vt_bf16 avx2_##OP##_bf16(avx2_vt_bf16 a, avx2_vt_bf16 b)               \
    {                                                                                         \
        const avx2_vt_bf16 r = {avx2_##OP##_f32(a.lo, b.lo), avx2_##OP##_f32(a.hi, b.hi)};    \
        return r;                                                                             \
    }
RK_AVX2_PAIR(sum)
RK_AVX2_PAIR(prod)
RK_AVX2_PAIR(min)
RK_AVX2_PAIR(max)
static inline avx2_vt_bf16 avx2_bc_bf16(double f)
{
    const avx2_vt_bf16 r = {avx2_bc_f32(f), avx2_bc_f32(f)};
    return r;
}
#define RK_AVX2_F32_ALIAS(T)                                                                  \
    static inline __m256 avx2_sum_##T(__m256 a, __m256 b) { return avx2_sum_f32(a, b); }      \
    static inline __m256 avx2_prod_##T(__m256 a, __m256 b) { return avx2_prod_f32(a, b); }    \
    static inline __m256 avx2_min_##T(__m256 a, __m256 b) { return avx2_min_f32(a, b); }      \
    static inline __m256 avx2_max_##T(__m256 a, __m256 b) { return avx2_max_f32(a, b); }      \
    static inline __m256 avx2_bc_##T(double f) { return avx2_bc_f32(f); }
RK_AVX2_F32_ALIAS(f16)

typedef __m256d avx2_vt_f64;
enum { avx2_vl_f64 = 4 };
static inline __m256d avx2_ld_f64(const double *p) { return _mm256_loadu_pd(p); }
static inline void avx2_st_f64(double *p, __m256d v) { _mm256_storeu_pd(p, v); }
static inline __m256d avx2_sum_f64(__m256d a, __m256d b) { return _mm256_add_pd(a, b); }
static inline __m256d avx2_prod_f64(__m256d a, __m256d b) { return _mm256_mul_pd(a, b); }
static inline __m256d avx2_min_f64(__m256d a, __m256d b)
{
    __m256d r = _mm256_min_pd(a, b);
    r = _mm256_or_pd(r, _mm256_and_pd(_mm256_cmp_pd(a, b, _CMP_EQ_OQ), a));
    return _mm256_blendv_pd(r, _mm256_castsi256_pd(_mm256_set1_epi64x((long long)RK_QNAN_F64)),
                            _mm256_cmp_pd(a, b, _CMP_UNORD_Q));
}
static inline __m256d avx2_max_f64(__m256d a, __m256d b)
{
    __m256d r = _mm256_max_pd(a, b);
    r = _mm256_and_pd(r, _mm256_or_pd(_mm256_cmp_pd(a, b, _CMP_NEQ_UQ), a));
    return _mm256_blendv_pd(r, _mm256_castsi256_pd(_mm256_set1_epi64x((long long)RK_QNAN_F64)),
                            _mm256_cmp_pd(a, b, _CMP_UNORD_Q));
}
static inline __m256d avx2_bc_f64(double f) { return _mm256_set1_pd(f); }

#define RK_FN(x) avx2_##x
#define RK_PATH_NAME "avx2"
#include "core/reduce_kernels.h"
#undef RK_FN
#undef RK_PATH_NAME

RK_TARGET_POP

/* ------------------------------------------------------------------------------------------ */
/* AVX-512 F/BW/VL path.                                                                       */

RK_TARGET_PUSH("avx512f,avx512bw,avx512vl,avx2,f16c")

#define RK_AVX512_INT(T, ET, VL)                                                              \
    typedef __m512i avx512_vt_##T;                                                            \
    enum { avx512_vl_##T = VL };                                                              \
    static inline __m512i avx512_ld_##T(const ET *p) { return _mm512_loadu_si512((const void *)p); } \
    static inline void avx512_st_##T(ET *p, __m512i v) { _mm512_storeu_si512((void *)p, v); }
RK_AVX512_INT(u8, uint8_t, 64)
RK_AVX512_INT(i8, int8_t, 64)
RK_AVX512_INT(i16, int16_t, 32)
RK_AVX512_INT(i32, int32_t, 16)
RK_AVX512_INT(i64, int64_t, 8)

static inline __m512i avx512_mul8(__m512i a, __m512i b)
{
    const __m512i even = _mm512_mullo_epi16(a, b);
    const __m512i odd = _mm512_mullo_epi16(_mm512_srli_epi16(a, 8), _mm512_srli_epi16(b, 8));
    return _mm512_or_si512(_mm512_and_si512(even, _mm512_set1_epi16(0xff)), _mm512_slli_epi16(odd, 8));
}
static inline __m512i avx512_mul64(__m512i a, __m512i b)
{ /* avoids AVX512DQ's vpmullq */
    const __m512i cross = _mm512_add_epi64(_mm512_mul_epu32(_mm512_srli_epi64(a, 32), b),
                                           _mm512_mul_epu32(a, _mm512_srli_epi64(b, 32)));
    return _mm512_add_epi64(_mm512_mul_epu32(a, b), _mm512_slli_epi64(cross, 32));
}
static inline __m512i avx512_sum_u8(__m512i a, __m512i b) { return _mm512_add_epi8(a, b); }
static inline __m512i avx512_min_u8(__m512i a, __m512i b) { return _mm512_min_epu8(a, b); }
static inline __m512i avx512_max_u8(__m512i a, __m512i b) { return _mm512_max_epu8(a, b); }
static inline __m512i avx512_min_i8(__m512i a, __m512i b) { return _mm512_min_epi8(a, b); }
static inline __m512i avx512_max_i8(__m512i a, __m512i b) { return _mm512_max_epi8(a, b); }
static inline __m512i avx512_sum_i16(__m512i a, __m512i b) { return _mm512_add_epi16(a, b); }
static inline __m512i avx512_min_i16(__m512i a, __m512i b) { return _mm512_min_epi16(a, b); }
static inline __m512i avx512_max_i16(__m512i a, __m512i b) { return _mm512_max_epi16(a, b); }
static inline __m512i avx512_prod_i16(__m512i a, __m512i b) { return _mm512_mullo_epi16(a, b); }
static inline __m512i avx512_sum_i32(__m512i a, __m512i b) { return _mm512_add_epi32(a, b); }
static inline __m512i avx512_min_i32(__m512i a, __m512i b) { return _mm512_min_epi32(a, b); }
static inline __m512i avx512_max_i32(__m512i a, __m512i b) { return _mm512_max_epi32(a, b); }
static inline __m512i avx512_prod_i32(__m512i a, __m512i b) { return _mm512_mullo_epi32(a, b); }
static inline __m512i avx512_sum_i64(__m512i a, __m512i b) { return _mm512_add_epi64(a, b); }
static inline __m512i avx512_min_i64(__m512i a, __m512i b) { return _mm512_min_epi64(a, b); }
static inline __m512i avx512_max_i64(__m512i a, __m512i b) { return _mm512_max_epi64(a, b); }
#define avx512_prod_u8 avx512_mul8
#define avx512_sum_i8 avx512_sum_u8
#define avx512_prod_i8 avx512_mul8
#define avx512_prod_i64 avx512_mul64

static inline __m512 avx512_sum_f32(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
static inline __m512 avx512_prod_f32(__m512 a, __m512 b) { return _mm512_mul_ps(a, b); }
static inline __m512 avx512_min_f32(__m512 a, __m512 b)
{
    __m512i r = _mm512_castps_si512(_mm512_min_ps(a, b));
    r = _mm512_mask_or_epi32(r, _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ), r, _mm512_castps_si512(a));
    r = _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q),
                              _mm512_set1_epi32((int)RK_QNAN_F32));
    return _mm512_castsi512_ps(r);
}
static inline __m512 avx512_max_f32(__m512 a, __m512 b)
{
    __m512i r = _mm512_castps_si512(_mm512_max_ps(a, b));
    r = _mm512_mask_and_epi32(r, _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ), r, _mm512_castps_si512(a));
    r = _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q),
                              _mm512_set1_epi32((int)RK_QNAN_F32));
    return _mm512_castsi512_ps(r);
}
static inline __m512 avx512_bc_f32(double f) { return _mm512_set1_ps((float)f); }
typedef __m512 avx512_vt_f32;
enum { avx512_vl_f32 = 16 };
static inline __m512 avx512_ld_f32(const float *p) { return _mm512_loadu_ps(p); }
static inline void avx512_st_f32(float *p, __m512 v) { _mm512_storeu_ps(p, v); }

typedef __m512 avx512_vt_f16;
enum { avx512_vl_f16 = 16 };
static inline __m512 avx512_ld_f16(const uint16_t *p)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)p));
}
static inline void avx512_st_f16(uint16_t *p, __m512 v)
{
    _mm256_storeu_si256((__m256i *)(void *)p,
                        _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

/* bfloat16: 32 elements as two float32 vectors, same lane trick as avx2_vt_bf16. */
typedef struct { __m512 lo, hi; } avx512_vt_bf16;
enum { avx512_vl_bf16 = 32 };
static inline avx512_vt_bf16 avx512_ld_bf16(const uint16_t *p)
{
    const __m512i w = _mm512_loadu_si512((const void *)p), z = _mm512_setzero_si512();
    const avx512_vt_bf16 v = {_mm512_castsi512_ps(_mm512_unpacklo_epi16(z, w)),
                              _mm512_castsi512_ps(_mm512_unpackhi_epi16(z, w))};
    return v;
}
static inline __m512i avx512_rne_bf16(__m512 v)
{
    const __m512i x = _mm512_castps_si512(v), hi = _mm512_srli_epi32(x, 16);
    const __m512i bias = _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                                          _mm512_and_si512(hi, _mm512_set1_epi32(1)));
    const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(x, bias), 16);
    const __m512i nan = _mm512_or_si512(_mm512_and_si512(hi, _mm512_set1_epi32(0x8000)),
                                        _mm512_set1_epi32(0x7fc0));
    return _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), nan);
}
static inline void avx512_st_bf16(uint16_t *p, avx512_vt_bf16 v)
{
    _mm512_storeu_si512((void *)p, _mm512_packus_epi32(avx512_rne_bf16(v.lo), avx512_rne_bf16(v.hi)));
}
#define RK_AVX512_PAIR(OP)                                                                    \
    static inline avx512_vt_bf16 avx512_##OP##_bf16(avx512_vt_bf16 a, avx512_vt_bf16 b)       \
    {                                                                                         \
        const avx512_vt_bf16 r = {avx512_##OP##_f32(a.lo, b.lo), avx512_##OP##_f32(a.hi, b.hi)}; \
        return r;                                                                             \
    }
RK_AVX512_PAIR(sum)
RK_AVX512_PAIR(prod)
RK_AVX512_PAIR(min)
RK_AVX512_PAIR(max)
static inline avx512_vt_bf16 avx512_bc_bf16(double f)
{
    const avx512_vt_bf16 r = {avx512_bc_f32(f), avx512_bc_f32(f)};
    return r;
}
#define RK_AVX512_F32_ALIAS(T)                                                                \
    static inline __m512 avx512_sum_##T(__m512 a, __m512 b) { return avx512_sum_f32(a, b); }  \
    static inline __m512 avx512_prod_##T(__m512 a, __m512 b) { return avx512_prod_f32(a, b); }\
    static inline __m512 avx512_min_##T(__m512 a, __m512 b) { return avx512_min_f32(a, b); }  \
    static inline __m512 avx512_max_##T(__m512 a, __m512 b) { return avx512_max_f32(a, b); }  \
    static inline __m512 avx512_bc_##T(double f) { return avx512_bc_f32(f); }
RK_AVX512_F32_ALIAS(f16)

typedef __m512d avx512_vt_f64;
enum { avx512_vl_f64 = 8 };
static inline __m512d avx512_ld_f64(const double *p) { return _mm512_loadu_pd(p); }
static inline void avx512_st_f64(double *p, __m512d v) { _mm512_storeu_pd(p, v); }
static inline __m512d avx512_sum_f64(__m512d a, __m512d b) { return _mm512_add_pd(a, b); }
static inline __m512d avx512_prod_f64(__m512d a, __m512d b) { return _mm512_mul_pd(a, b); }
static inline __m512d avx512_min_f64(__m512d a, __m512d b)
{
    __m512i r = _mm512_castpd_si512(_mm512_min_pd(a, b));
    r = _mm512_mask_or_epi64(r, _mm512_cmp_pd_mask(a, b, _CMP_EQ_OQ), r, _mm512_castpd_si512(a));
    r = _mm512_mask_mov_epi64(r, _mm512_cmp_pd_mask(a, b, _CMP_UNORD_Q),
                              _mm512_set1_epi64((long long)RK_QNAN_F64));
    return _mm512_castsi512_pd(r);
}
static inline __m512d avx512_max_f64(__m512d a, __m512d b)
{
    __m512i r = _mm512_castpd_si512(_mm512_max_pd(a, b));
    r = _mm512_mask_and_epi64(r, _mm512_cmp_pd_mask(a, b, _CMP_EQ_OQ), r, _mm512_castpd_si512(a));
    r = _mm512_mask_mov_epi64(r, _mm512_cmp_pd_mask(a, b, _CMP_UNORD_Q),
                              _mm512_set1_epi64((long long)RK_QNAN_F64));
    return _mm512_castsi512_pd(r);
}
static inline __m512d avx512_bc_f64(double f) { return _mm512_set1_pd(f); }

#define RK_FN(x) avx512_##x
#define RK_PATH_NAME "avx512"
#include "core/reduce_kernels.h"
#undef RK_FN
#undef RK_PATH_NAME

RK_TARGET_POP

#endif /* RK_X86 */

/* ------------------------------------------------------------------------------------------ */
/* Dispatch.                                                                                   */

enum { RK_PATH_SCALAR, RK_PATH_AVX2, RK_PATH_AVX512, RK_NUM_PATHS };
static const char *const rk_path_names[RK_NUM_PATHS] = {"scalar", "avx2", "avx512"};

static const struct rk_table *rk_table_of(int path)
{
    switch (path) {
    case RK_PATH_SCALAR:
        return &scalar_table;
#if RK_X86
    case RK_PATH_AVX2:
        return &avx2_table;
    case RK_PATH_AVX512:
        return &avx512_table;
#endif
    default:
        return NULL;
    }
}

static int rk_cpu_has(int path)
{
    if (path == RK_PATH_SCALAR)
        return 1;
#if RK_X86
    __builtin_cpu_init();
    const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
    if (path == RK_PATH_AVX2)
        return avx2;
    if (path == RK_PATH_AVX512)
        return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl");
#endif
    return 0;
}

static const struct rk_table *rk_best(void)
{
    for (int p = RK_NUM_PATHS - 1; p > RK_PATH_SCALAR; p--)
        if (rk_table_of(p) && rk_cpu_has(p))
            return rk_table_of(p);
    return &scalar_table;
}

/* name -> table; NULL when the name is unknown or the CPU lacks the path. */
static const struct rk_table *rk_lookup(const char *name)
{
    if (strcasecmp(name, "auto") == 0)
        return rk_best();
    for (int p = 0; p < RK_NUM_PATHS; p++)
        if (strcasecmp(name, rk_path_names[p]) == 0)
            return rk_table_of(p) && rk_cpu_has(p) ? rk_table_of(p) : NULL;
    return NULL;
}

int rr_kernel_supported(const char *name)
{
    return name != NULL && rk_lookup(name) != NULL;
}

static _Atomic(const struct rk_table *) rk_current; /* NULL until first use */

/* The table in force.  First use: $RINGRED_KERNEL_PATH (auto|scalar|avx2|avx512), falling back
 * to auto when unset, unknown or unsupported by this CPU.  Racing first uses compute the same
 * value; a concurrent rr_reduce_select wins over the environment. */
static const struct rk_table *rk_get(void)
{
    const struct rk_table *t = atomic_load_explicit(&rk_current, memory_order_acquire);
    if (t)
        return t;
    /* the row RINGRED_KERNEL_PATH of settings_table.c (reduce.c builds without it: the
     * kernel checks compile this file alone) */
    const char *env = getenv("RINGRED_KERNEL_PATH");
    const struct rk_table *want = env && *env ? rk_lookup(env) : NULL;
    if (!want)
        want = rk_best();
    const struct rk_table *expected = NULL;
    if (atomic_compare_exchange_strong_explicit(&rk_current, &expected, want,
                                                memory_order_acq_rel, memory_order_acquire))
        return want;
    return expected;
}

static int rk_dtype_ok(int dt) { return dt >= 0 && dt < RR_NUM_DTYPES; }
static int rk_is_float(int dt) { return dt >= RR_FLOAT16 && dt <= RR_FLOAT64; }

size_t rr_dtype_size(int dtype)
{
    static const unsigned char sizes[RR_NUM_DTYPES] = {1, 1, 2, 4, 8, 2, 2, 4, 8};
    return rk_dtype_ok(dtype) ? sizes[dtype] : 0;
}

static void rk_many(const struct rk_table *t, void *dst, const void *const *srcs, int k, size_t n,
                    rr_dtype dt, rr_op op)
{
    if (n == 0)
        return;
    if (k == 1) {
        if (dst != srcs[0])
            memmove(dst, srcs[0], n * rr_dtype_size(dt));
        return;
    }
    t->many[dt][op](dst, srcs, k, n);
}

/* Integer data with a scale factor (Horovod's semantics): each element is multiplied in
 * double precision and truncated toward zero, saturating at the type's range. */
#define RK_ISF(T, LO, HI)                                                                    \
    do {                                                                                     \
        const T *s_ = (const T *)src;                                                        \
        T *d_ = (T *)dst;                                                                    \
        for (size_t i = 0; i < n; i++) {                                                     \
            double v = trunc((double)s_[i] * f);                                             \
            d_[i] = v <= (double)(LO) ? (T)(LO) : v >= (double)(HI) ? (T)(HI) : (T)v;        \
        }                                                                                    \
    } while (0)

static void rk_iscale_factor(void *dst, const void *src, size_t n, rr_dtype dt, double f)
{
    switch (dt) {
    case RR_UINT8: RK_ISF(uint8_t, 0, UINT8_MAX); break;
    case RR_INT8: RK_ISF(int8_t, INT8_MIN, INT8_MAX); break;
    case RR_INT16: RK_ISF(int16_t, INT16_MIN, INT16_MAX); break;
    case RR_INT32: RK_ISF(int32_t, INT32_MIN, INT32_MAX); break;
    case RR_INT64: RK_ISF(int64_t, INT64_MIN, INT64_MAX); break;
    default: break;
    }
}
#undef RK_ISF

static void rk_scale(const struct rk_table *t, void *dst, const void *src, size_t n, rr_dtype dt,
                     double factor, int64_t divisor)
{
    if (n == 0)
        return;
    if (rk_is_float(dt)) {
        t->fscale[dt](dst, src, n, factor);
        return;
    }
    if (factor != 1.0) { /* with an average: one factor, factor / divisor, as Horovod does */
        rk_iscale_factor(dst, src, n, dt, factor / (double)divisor);
        return;
    }
    t->iscale[dt](dst, src, n, divisor);
}

void rr_reduce_many(void *dst, const void *const *srcs, int k, size_t n, rr_dtype dt, rr_op op)
{
    if (!rk_dtype_ok((int)dt) || (int)op < 0 || (int)op >= RR_NUM_OPS || k < 1)
        return;
    rk_many(rk_get(), dst, srcs, k, n, dt, op);
}

void rr_reduce2(void *dst, const void *a, const void *b, size_t n, rr_dtype dt, rr_op op)
{
    const void *srcs[2] = {a, b};
    rr_reduce_many(dst, srcs, 2, n, dt, op);
}

void rr_scale(void *dst, const void *src, size_t n, rr_dtype dt, double factor, int64_t divisor)
{
    if (!rk_dtype_ok((int)dt))
        return;
    rk_scale(rk_get(), dst, src, n, dt, factor, divisor);
}

const char *rr_reduce_path_name(void) { return rk_get()->name; }

rr_status rr_reduce_select(const char *name)
{
    if (!name)
        return RR_ERR_INVALID;
    const struct rk_table *t = rk_lookup(name);
    if (!t)
        return RR_ERR_UNSUPPORTED;
    atomic_store_explicit(&rk_current, t, memory_order_release);
    return RR_OK;
}

/* path NULL: the path in force. */
static rr_status rk_path_table(const char *path, const struct rk_table **out)
{
    *out = path ? rk_lookup(path) : rk_get();
    return *out ? RR_OK : RR_ERR_UNSUPPORTED;
}

rr_status rr_reduce_many_with(const char *path, void *dst, const void *const *srcs, int k,
                              size_t n, rr_dtype dt, rr_op op)
{
    if (!rk_dtype_ok((int)dt) || (int)op < 0 || (int)op >= RR_NUM_OPS || k < 1)
        return RR_ERR_INVALID;
    const struct rk_table *t;
    rr_status st = rk_path_table(path, &t);
    if (st != RR_OK)
        return st;
    if (n > 0) {
        if (!dst || !srcs)
            return RR_ERR_INVALID;
        for (int j = 0; j < k; j++)
            if (!srcs[j])
                return RR_ERR_INVALID;
    }
    rk_many(t, dst, srcs, k, n, dt, op);
    return RR_OK;
}

rr_status rr_scale_with(const char *path, void *dst, const void *src, size_t n, rr_dtype dt,
                        double factor, int64_t divisor)
{
    if (!rk_dtype_ok((int)dt) || (!rk_is_float((int)dt) && divisor == 0))
        return RR_ERR_INVALID;
    const struct rk_table *t;
    rr_status st = rk_path_table(path, &t);
    if (st != RR_OK)
        return st;
    if (n > 0 && (!dst || !src))
        return RR_ERR_INVALID;
    rk_scale(t, dst, src, n, dt, factor, divisor);
    return RR_OK;
}

const char *rr_kernel_path(void) { return rr_reduce_path_name(); }

rr_status rr_set_kernel_path(const char *name) { return rr_reduce_select(name); }

rr_status rr_test_reduce(const char *path, void *dst, const void *const *srcs, int k, size_t n,
                         int dtype, int op)
{
    if (!rk_dtype_ok(dtype) || op < 0 || op >= RR_NUM_OPS)
        return RR_ERR_INVALID;
    return rr_reduce_many_with(path, dst, srcs, k, n, (rr_dtype)dtype, (rr_op)op);
}

rr_status rr_test_scale(const char *path, void *dst, const void *src, size_t n, int dtype,
                        double factor, int64_t divisor)
{
    if (!rk_dtype_ok(dtype))
        return RR_ERR_INVALID;
    return rr_scale_with(path, dst, src, n, (rr_dtype)dtype, factor, divisor);
}
