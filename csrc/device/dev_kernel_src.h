/* ringred's device reduction kernel, one source for two compilers (see dev_kernel.h).
 *
 * Dialects:
 *  - RR_KERNEL_CUDA defined: CUDA C++ for NVRTC (csrc/device/gen_ptx.py passes -DRR_KERNEL_CUDA=1;
 *    the PTX is committed as dev_kernel_ptx.c).  No headers: the fixed-width types and the
 *    argument block are declared here.  Arithmetic goes through __fadd_rn/__fmul_rn/__dadd_rn/
 *    __dmul_rn, which are never contracted to FMA (and gen_ptx.py passes --fmad=false too).
 *  - otherwise: C11, included by dev_kernel_host.c, which the fake device backend runs.
 *
 * The per-element rules are those of reduce.c, computed with the same algorithms (the same
 * branch-free float16/bfloat16 conversions, the same NaN / signed-zero rules for min and
 * max, wrap-around integer arithmetic, truncating division), so both dialects give the CPU
 * path's bits; only NaN payloads of sum/prod may differ (IEEE leaves them to the hardware).
 *
 * Shape of a launch: one loop per dtype x op (macro-generated; the dispatch happens once per
 * thread, outside the element loops).  When every address (inputs and outputs) has the same
 * offset modulo 16, a thread handles 16-byte chunks (one vector load per input, input j + 1
 * loaded while input j is folded, one vector store per output); the few elements before the
 * first 16-byte boundary and after the last one, or all elements when the offsets differ, go
 * through a per-element loop.  Both loops are grid-stride loops over consecutive
 * chunks/elements, so a warp's accesses are coalesced.  Every address must be a multiple of
 * the element size; blocks have at most RR_KMAX_THREADS threads; any grid size works. */

#ifdef RR_KERNEL_CUDA

typedef unsigned char uint8_t;
typedef signed char int8_t;
typedef unsigned short uint16_t;
typedef short int16_t;
typedef unsigned int uint32_t;
typedef int int32_t;
typedef unsigned long long uint64_t;
typedef long long int64_t;

#define RR_KMAX_SRCS 8
#define RR_KMAX_THREADS 256 /* as in dev_kernel.h */
/* Identical to the struct in dev_kernel.h (the static asserts below check the layout). */
typedef struct rr_kargs {
    uint64_t src[RR_KMAX_SRCS];
    uint64_t dst[2];
    uint64_t n;
    int32_t nsrc;
    int32_t dtype;
    int32_t op;
    int32_t pad_;
    double pre, post;
    int64_t div;
} rr_kargs;
typedef struct rr_kcopy {
    uint64_t dst, src, bytes;
} rr_kcopy;

#define RR_KFN __device__ static __forceinline__
#define RR_KSTATIC_ASSERT(c, m) static_assert(c, m)
#define RR_UNROLL _Pragma("unroll")
#define RR_NOUNROLL _Pragma("unroll 1")
#define RR_F2U(f) __float_as_uint(f)
#define RR_U2F(u) __uint_as_float(u)
#define RR_D2U(d) ((uint64_t)__double_as_longlong(d))
#define RR_U2D(u) __longlong_as_double((long long)(u))
#define RR_FADD(a, b) __fadd_rn(a, b)
#define RR_FMUL(a, b) __fmul_rn(a, b)
#define RR_DADD(a, b) __dadd_rn(a, b)
#define RR_DMUL(a, b) __dmul_rn(a, b)
#define RR_D2F(d) __double2float_rn(d)
#define RR_I2F(i) __int2float_rn(i)
#define RR_PTR(u) ((unsigned char *)(u))

#else /* host C11 */

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "device/dev_kernel.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "dev_kernel_src.h: the 16-byte lane layout assumes a little-endian host"
#endif

#define RR_KFN static inline
#define RR_KSTATIC_ASSERT(c, m) _Static_assert(c, m)
#define RR_UNROLL
#define RR_NOUNROLL
static inline uint32_t rrk_f2u(float f) { uint32_t u; memcpy(&u, &f, sizeof u); return u; }
static inline float rrk_u2f(uint32_t u) { float f; memcpy(&f, &u, sizeof f); return f; }
static inline uint64_t rrk_d2u(double d) { uint64_t u; memcpy(&u, &d, sizeof u); return u; }
static inline double rrk_u2d(uint64_t u) { double d; memcpy(&d, &u, sizeof d); return d; }
#define RR_F2U(f) rrk_f2u(f)
#define RR_U2F(u) rrk_u2f(u)
#define RR_D2U(d) rrk_d2u(d)
#define RR_U2D(u) rrk_u2d(u)
#define RR_FADD(a, b) ((a) + (b))
#define RR_FMUL(a, b) ((a) * (b))
#define RR_DADD(a, b) ((a) + (b))
#define RR_DMUL(a, b) ((a) * (b))
#define RR_D2F(d) ((float)(d))
#define RR_I2F(i) ((float)(i))
#define RR_PTR(u) ((unsigned char *)(uintptr_t)(u))

#endif

/* The layout both dialects rely on (offsets: checked on the host, where offsetof exists;
 * the CUDA struct above has the same members in the same order). */
RR_KSTATIC_ASSERT(sizeof(rr_kargs) == 128, "rr_kargs layout");
#ifndef RR_KERNEL_CUDA
RR_KSTATIC_ASSERT(offsetof(rr_kargs, dst) == 64 && offsetof(rr_kargs, n) == 80 &&
                      offsetof(rr_kargs, nsrc) == 88 && offsetof(rr_kargs, op) == 96 &&
                      offsetof(rr_kargs, pre) == 104 && offsetof(rr_kargs, div) == 120,
                  "rr_kargs layout");
#endif

/* ------------------------------------------------------------------------------------------ */
/* Memory: 16-byte chunks and single elements, as raw bits (uint32_t, uint64_t for 8 bytes).  */

typedef struct rrk_v16 {
    uint32_t w[4];
} rrk_v16;

#ifdef RR_KERNEL_CUDA
RR_KFN rrk_v16 rrk_ld16(const unsigned char *p)
{
    const uint4 u = *(const uint4 *)p;
    rrk_v16 v = {{u.x, u.y, u.z, u.w}};
    return v;
}
RR_KFN void rrk_st16(unsigned char *p, rrk_v16 v)
{
    uint4 u;
    u.x = v.w[0];
    u.y = v.w[1];
    u.z = v.w[2];
    u.w = v.w[3];
    *(uint4 *)p = u;
}
RR_KFN uint32_t rrk_sget_1(const unsigned char *p) { return *p; }
RR_KFN uint32_t rrk_sget_2(const unsigned char *p) { return *(const uint16_t *)p; }
RR_KFN uint32_t rrk_sget_4(const unsigned char *p) { return *(const uint32_t *)p; }
RR_KFN uint64_t rrk_sget_8(const unsigned char *p) { return *(const uint64_t *)p; }
RR_KFN void rrk_sput_1(unsigned char *p, uint32_t r) { *p = (uint8_t)r; }
RR_KFN void rrk_sput_2(unsigned char *p, uint32_t r) { *(uint16_t *)p = (uint16_t)r; }
RR_KFN void rrk_sput_4(unsigned char *p, uint32_t r) { *(uint32_t *)p = r; }
RR_KFN void rrk_sput_8(unsigned char *p, uint64_t r) { *(uint64_t *)p = r; }
#else
RR_KFN rrk_v16 rrk_ld16(const unsigned char *p)
{
    rrk_v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}
RR_KFN void rrk_st16(unsigned char *p, rrk_v16 v) { memcpy(p, &v, sizeof v); }
RR_KFN uint32_t rrk_sget_1(const unsigned char *p) { return *p; }
RR_KFN uint32_t rrk_sget_2(const unsigned char *p) { uint16_t r; memcpy(&r, p, 2); return r; }
RR_KFN uint32_t rrk_sget_4(const unsigned char *p) { uint32_t r; memcpy(&r, p, 4); return r; }
RR_KFN uint64_t rrk_sget_8(const unsigned char *p) { uint64_t r; memcpy(&r, p, 8); return r; }
RR_KFN void rrk_sput_1(unsigned char *p, uint32_t r) { *p = (uint8_t)r; }
RR_KFN void rrk_sput_2(unsigned char *p, uint32_t r) { uint16_t v = (uint16_t)r; memcpy(p, &v, 2); }
RR_KFN void rrk_sput_4(unsigned char *p, uint32_t r) { memcpy(p, &r, 4); }
RR_KFN void rrk_sput_8(unsigned char *p, uint64_t r) { memcpy(p, &r, 8); }
#endif

/* Lane k of a chunk (little-endian: lane 0 is the lowest address); put ORs into a zeroed chunk. */
RR_KFN uint32_t rrk_vget_1(rrk_v16 v, int k) { return (v.w[k >> 2] >> ((k & 3) * 8)) & 0xffu; }
RR_KFN uint32_t rrk_vget_2(rrk_v16 v, int k) { return (v.w[k >> 1] >> ((k & 1) * 16)) & 0xffffu; }
RR_KFN uint32_t rrk_vget_4(rrk_v16 v, int k) { return v.w[k]; }
RR_KFN uint64_t rrk_vget_8(rrk_v16 v, int k)
{
    return ((uint64_t)v.w[2 * k + 1] << 32) | v.w[2 * k];
}
RR_KFN void rrk_vput_1(rrk_v16 *v, int k, uint32_t r)
{
    v->w[k >> 2] |= (r & 0xffu) << ((k & 3) * 8);
}
RR_KFN void rrk_vput_2(rrk_v16 *v, int k, uint32_t r)
{
    v->w[k >> 1] |= (r & 0xffffu) << ((k & 1) * 16);
}
RR_KFN void rrk_vput_4(rrk_v16 *v, int k, uint32_t r) { v->w[k] = r; }
RR_KFN void rrk_vput_8(rrk_v16 *v, int k, uint64_t r)
{
    v->w[2 * k] = (uint32_t)r;
    v->w[2 * k + 1] = (uint32_t)(r >> 32);
}

/* ------------------------------------------------------------------------------------------ */
/* Scalar rules: reduce.c's helpers, same algorithms.                                          */

RR_KFN uint32_t rrk_mask(int c) { return 0u - (uint32_t)c; }
RR_KFN uint32_t rrk_sel(int c, uint32_t a, uint32_t b)
{
    return (a & rrk_mask(c)) | (b & ~rrk_mask(c));
}

#define RRK_QNAN_F32 0x7fc00000u
#define RRK_QNAN_F64 0x7ff8000000000000ull

/* float16 -> float32, exact; NaN: sign and payload kept, quiet bit set (reduce.c's rk_h2f). */
RR_KFN float rrk_h2f(uint32_t h)
{
    const uint32_t em = h & 0x7fffu, s = (h & 0x8000u) << 16, sh = em << 13;
    const uint32_t sub = RR_F2U(RR_I2F((int32_t)em)) - (24u << 23);
    const uint32_t r_inf = sh | 0x7f800000u | (rrk_mask(em > 0x7c00u) & 0x400000u);
    const uint32_t r_norm = sh + ((127u - 15u) << 23);
    const uint32_t r_sub = rrk_mask(em != 0) & sub;
    const uint32_t r = rrk_sel(em >= 0x7c00u, r_inf, rrk_sel(em >= 0x400u, r_norm, r_sub));
    return RR_U2F(s | r);
}

/* float32 -> float16, round to nearest even; NaN: sign and top payload kept, quiet bit set
 * (reduce.c's rk_f2h: subnormal results by adding 2^-1 in float32 arithmetic). */
RR_KFN uint32_t rrk_f2h(float f)
{
    const uint32_t u = RR_F2U(f), s = (u >> 16) & 0x8000u, x = u & 0x7fffffffu;
    const uint32_t nan = 0x7e00u | ((x >> 13) & 0x3ffu);
    const uint32_t norm = (x - ((127u - 15u) << 23) + 0xfffu + ((x >> 13) & 1u)) >> 13;
    const uint32_t sub = RR_F2U(RR_FADD(RR_U2F(x), 0.5f)) - 0x3f000000u;
    const uint32_t fin = rrk_sel(x >= 0x47800000u, 0x7c00u, rrk_sel(x >= 0x38800000u, norm, sub));
    const uint32_t r = rrk_sel(x > 0x7f800000u, nan, fin);
    return (s | r) & 0xffffu;
}

RR_KFN float rrk_b2f(uint32_t b) { return RR_U2F(b << 16); }

/* float32 -> bfloat16, round to nearest even; NaN -> 0x7fc0 | sign (reduce.c's rk_f2b). */
RR_KFN uint32_t rrk_f2b(float f)
{
    const uint32_t u = RR_F2U(f);
    return rrk_sel((u & 0x7fffffffu) > 0x7f800000u, ((u >> 16) & 0x8000u) | 0x7fc0u,
                   (u + 0x7fffu + ((u >> 16) & 1u)) >> 16) & 0xffffu;
}

RR_KFN float rrk_sum_f(float a, float b) { return RR_FADD(a, b); }
RR_KFN float rrk_prod_f(float a, float b) { return RR_FMUL(a, b); }
RR_KFN float rrk_min_f(float a, float b)
{
    if (a != a || b != b)
        return RR_U2F(RRK_QNAN_F32);
    return a < b ? a : b < a ? b : RR_U2F(RR_F2U(a) | RR_F2U(b));
}
RR_KFN float rrk_max_f(float a, float b)
{
    if (a != a || b != b)
        return RR_U2F(RRK_QNAN_F32);
    return a > b ? a : b > a ? b : RR_U2F(RR_F2U(a) & RR_F2U(b));
}
RR_KFN double rrk_sum_d(double a, double b) { return RR_DADD(a, b); }
RR_KFN double rrk_prod_d(double a, double b) { return RR_DMUL(a, b); }
RR_KFN double rrk_min_d(double a, double b)
{
    if (a != a || b != b)
        return RR_U2D(RRK_QNAN_F64);
    return a < b ? a : b < a ? b : RR_U2D(RR_D2U(a) | RR_D2U(b));
}
RR_KFN double rrk_max_d(double a, double b)
{
    if (a != a || b != b)
        return RR_U2D(RRK_QNAN_F64);
    return a > b ? a : b > a ? b : RR_U2D(RR_D2U(a) & RR_D2U(b));
}

/* Scaling: x * c for a finite factor c.  A NaN x comes back quieted with its sign and
 * payload, as the CPU's multiply returns it (x86 SSE, and Arm without default-NaN mode); a
 * GPU multiply would return its canonical NaN instead, which would then differ in the
 * scaled results of min/max and of nsrc == 1.  On the CPU the select changes nothing. */
RR_KFN float rrk_scale_f(float x, float c)
{
    const float r = RR_FMUL(x, c);
    return x != x ? RR_U2F(RR_F2U(x) | 0x400000u) : r;
}
RR_KFN double rrk_scale_d(double x, double c)
{
    const double r = RR_DMUL(x, c);
    return x != x ? RR_U2D(RR_D2U(x) | 0x8000000000000ull) : r;
}

/* Per launch: the scale factors in the dtype's arithmetic, and the split into a per-element
 * head, 16-byte chunks and a per-element tail. */
typedef struct rrk_launch {
    int pre, post;  /* apply the prescale / the postscale (or integer division) */
    float pf, qf;   /* (float)pre, (float)post */
    double pd, qd;  /* pre, post */
    int64_t div;    /* integer divisor, 0 replaced by 1 */
    int32_t div32;  /* div when it fits int32_t and is not -1 (then 32-bit division), else 0 */
    uint64_t head;  /* elements before the first chunk */
    uint64_t nvec;  /* 16-byte chunks */
} rrk_launch;

/* Integer types.  RAW: the element's bits zero-extended; ET: the element type; UT: its unsigned
 * type; MT: an unsigned type at least as wide as unsigned int (reduce.c's RK_SC_INT). */
#define RRK_INT(T, ET, UT, MT, RAW, IW)                                                       \
    typedef RAW rrk_raw_##T;                                                                  \
    typedef ET rrk_acc_##T;                                                                   \
    RR_KFN ET rrk_ld_##T(RAW r) { return (ET)(UT)r; }                                         \
    RR_KFN RAW rrk_st_##T(ET v) { return (RAW)(UT)v; }                                        \
    enum { rrk_vpre_##T = 0 };                                                                \
    RR_KFN RAW rrk_pre_##T(RAW r, const rrk_launch *l) { (void)l; return r; }                \
    RR_KFN RAW rrk_post_##T(RAW r, const rrk_launch *l, int vec)                              \
    {                                                                                         \
        return rrk_st_##T(rrk_div##IW##_##T(rrk_ld_##T(r), l, vec));                          \
    }                                                                                         \
    RR_KFN ET rrk_sum_##T(ET a, ET b) { return (ET)(UT)((MT)(UT)a + (MT)(UT)b); }             \
    RR_KFN ET rrk_prod_##T(ET a, ET b) { return (ET)(UT)((MT)(UT)a * (MT)(UT)b); }            \
    RR_KFN ET rrk_min_##T(ET a, ET b) { return b < a ? b : a; }                               \
    RR_KFN ET rrk_max_##T(ET a, ET b) { return a < b ? b : a; }

/* Truncating division, wrapped to the dtype (reduce.c's RK_ISCALE gives the same quotients:
 * its double division is exact for these widths).  VEC: in the chunk loop, where the plan
 * guarantees div32 != 0 (rrk_run sends other divisors to the per-element loop). */
#define RRK_DIV32(T, ET, UT)                                                                  \
    RR_KFN ET rrk_div32_##T(ET x, const rrk_launch *l, int vec)                               \
    {                                                                                         \
        if (vec || l->div32)                                                                  \
            return (ET)(UT)(uint32_t)((int32_t)x / l->div32);                                 \
        return (ET)(UT)(uint64_t)((int64_t)x / l->div);                                       \
    }
RRK_DIV32(u8, uint8_t, uint8_t)
RRK_DIV32(i8, int8_t, uint8_t)
RRK_DIV32(i16, int16_t, uint16_t)
RRK_DIV32(i32, int32_t, uint32_t)
RR_KFN int64_t rrk_div64_i64(int64_t x, const rrk_launch *l, int vec)
{
    (void)vec;
    if (l->div == -1)
        return (int64_t)(0u - (uint64_t)x);
    return x / l->div;
}

RRK_INT(u8, uint8_t, uint8_t, unsigned, uint32_t, 32)
RRK_INT(i8, int8_t, uint8_t, unsigned, uint32_t, 32)
RRK_INT(i16, int16_t, uint16_t, unsigned, uint32_t, 32)
RRK_INT(i32, int32_t, uint32_t, uint32_t, uint32_t, 32)
RRK_INT(i64, int64_t, uint64_t, uint64_t, uint64_t, 64)

/* Floating types: AT is the accumulator (float for float16/bfloat16), LD/ST convert between raw
 * bits and AT, OPS selects the float or double operations, PF/QF the scale factor fields,
 * MUL the scaling, VPRE whether the chunk loop applies a prescale (else rrk_run sends a
 * prescaled launch to the per-element loop).  rr_scale's rule: load, multiply, round to the
 * dtype. */
#define RRK_FLT(T, AT, RAW, LD, ST, OPS, PF, QF, MUL, VPRE)                                      \
    typedef RAW rrk_raw_##T;                                                                  \
    typedef AT rrk_acc_##T;                                                                   \
    RR_KFN AT rrk_ld_##T(RAW r) { return LD(r); }                                             \
    RR_KFN RAW rrk_st_##T(AT v) { return ST(v); }                                             \
    enum { rrk_vpre_##T = VPRE };                                                             \
    RR_KFN RAW rrk_pre_##T(RAW r, const rrk_launch *l) { return ST(MUL(LD(r), l->PF)); }      \
    RR_KFN RAW rrk_post_##T(RAW r, const rrk_launch *l, int vec)                              \
    {                                                                                         \
        (void)vec;                                                                            \
        return ST(MUL(LD(r), l->QF));                                                         \
    }                                                                                         \
    RR_KFN AT rrk_sum_##T(AT a, AT b) { return rrk_sum_##OPS(a, b); }                         \
    RR_KFN AT rrk_prod_##T(AT a, AT b) { return rrk_prod_##OPS(a, b); }                       \
    RR_KFN AT rrk_min_##T(AT a, AT b) { return rrk_min_##OPS(a, b); }                         \
    RR_KFN AT rrk_max_##T(AT a, AT b) { return rrk_max_##OPS(a, b); }

#define RRK_F32LD(r) RR_U2F(r)
#define RRK_F32ST(v) RR_F2U(v)
#define RRK_F64LD(r) RR_U2D(r)
#define RRK_F64ST(v) RR_D2U(v)
RRK_FLT(f16, float, uint32_t, rrk_h2f, rrk_f2h, f, pf, qf, rrk_scale_f, 0)
RRK_FLT(bf16, float, uint32_t, rrk_b2f, rrk_f2b, f, pf, qf, rrk_scale_f, 0)
RRK_FLT(f32, float, uint32_t, RRK_F32LD, RRK_F32ST, f, pf, qf, rrk_scale_f, 1)
RRK_FLT(f64, double, uint64_t, RRK_F64LD, RRK_F64ST, d, pd, qd, rrk_scale_d, 1)

/* ------------------------------------------------------------------------------------------ */
/* The loops: thread `tid` of `nthr` handles chunks tid, tid + nthr, ... then elements the    */
/* same way.  Every input of a chunk/element is read before its outputs are written, so an    */
/* output may be one of the inputs (exactly, not a partial overlap).  The inputs are folded   */
/* in a loop (not unrolled: the kernel stays small) that loads input j + 1 before it folds    */
/* input j, so two loads per thread are in flight.  The prescale and postscale tests are      */
/* uniform branches.  A prescaled float16/bfloat16 launch takes the per-element loop         */
/* throughout (rrk_run): its conversions make it compute-bound anyway, and this keeps them    */
/* out of the chunk loop, whose code and registers every launch pays for.                     */

#define RRK_IN(T, PRE, r, l) ((PRE) ? rrk_pre_##T(r, l) : (r))

#define RRK_LOOP(T, OP, ES)                                                                   \
    RR_KFN void rrk_loop_##T##_##OP(const rr_kargs *a, const rrk_launch *l, uint64_t tid,     \
                                    uint64_t nthr)                                            \
    {                                                                                         \
        enum { W = 16 / ES };                                                                 \
        const int ns = a->nsrc, vpre = rrk_vpre_##T && l->pre;                                \
        unsigned char *const d0 = RR_PTR(a->dst[0]), *const d1 = RR_PTR(a->dst[1]);           \
        const uint64_t vbase = l->head * ES, vend = l->head + l->nvec * W;                    \
        const uint64_t nrest = l->head + (a->n - vend);                                       \
        for (uint64_t c = tid; c < l->nvec; c += nthr) {                                      \
            const uint64_t off = vbase + c * 16;                                              \
            rrk_v16 cur = rrk_ld16(RR_PTR(a->src[0]) + off);                                  \
            rrk_v16 nxt = ns > 1 ? rrk_ld16(RR_PTR(a->src[1]) + off) : cur;                   \
            rrk_raw_##T r[W];                                                                 \
            if (ns == 1) {                                                                    \
                RR_UNROLL for (int k = 0; k < W; k++) r[k] =                                  \
                    RRK_IN(T, vpre, rrk_vget_##ES(cur, k), l);                                \
            } else {                                                                          \
                rrk_acc_##T acc[W];                                                           \
                RR_UNROLL for (int k = 0; k < W; k++) acc[k] =                                \
                    rrk_ld_##T(RRK_IN(T, vpre, rrk_vget_##ES(cur, k), l));                    \
                RR_NOUNROLL for (int j = 1; j < ns; j++) {                                    \
                    cur = nxt;                                                                \
                    if (j + 1 < ns)                                                           \
                        nxt = rrk_ld16(RR_PTR(a->src[j + 1]) + off);                          \
                    RR_UNROLL for (int k = 0; k < W; k++) acc[k] = rrk_##OP##_##T(            \
                        acc[k], rrk_ld_##T(RRK_IN(T, vpre, rrk_vget_##ES(cur, k), l)));       \
                }                                                                             \
                RR_UNROLL for (int k = 0; k < W; k++) r[k] = rrk_st_##T(acc[k]);              \
            }                                                                                 \
            if (l->post)                                                                      \
                RR_UNROLL for (int k = 0; k < W; k++) r[k] = rrk_post_##T(r[k], l, 1);        \
            rrk_v16 o = {{0, 0, 0, 0}};                                                       \
            RR_UNROLL for (int k = 0; k < W; k++) rrk_vput_##ES(&o, k, r[k]);                 \
            rrk_st16(d0 + off, o);                                                            \
            if (d1)                                                                           \
                rrk_st16(d1 + off, o);                                                        \
        }                                                                                     \
        /* head [0, head) and tail [vend, n) as one index space */                           \
        for (uint64_t t = tid; t < nrest; t += nthr) {                                        \
            const uint64_t off = (t < l->head ? t : vend + (t - l->head)) * ES;               \
            rrk_raw_##T r = RRK_IN(T, l->pre, rrk_sget_##ES(RR_PTR(a->src[0]) + off), l);     \
            rrk_acc_##T x = rrk_ld_##T(r);                                                    \
            RR_NOUNROLL for (int j = 1; j < ns; j++) x = rrk_##OP##_##T(                      \
                x, rrk_ld_##T(RRK_IN(T, l->pre, rrk_sget_##ES(RR_PTR(a->src[j]) + off), l))); \
            if (ns > 1)                                                                       \
                r = rrk_st_##T(x);                                                            \
            if (l->post)                                                                      \
                r = rrk_post_##T(r, l, 0);                                                    \
            rrk_sput_##ES(d0 + off, r);                                                       \
            if (d1)                                                                           \
                rrk_sput_##ES(d1 + off, r);                                                   \
        }                                                                                     \
    }

#define RRK_LOOP4(T, ES)                                                                      \
    RRK_LOOP(T, sum, ES) RRK_LOOP(T, min, ES) RRK_LOOP(T, max, ES) RRK_LOOP(T, prod, ES)
RRK_LOOP4(u8, 1)
RRK_LOOP4(i8, 1)
RRK_LOOP4(i16, 2)
RRK_LOOP4(i32, 4)
RRK_LOOP4(i64, 8)
RRK_LOOP4(f16, 2)
RRK_LOOP4(bf16, 2)
RRK_LOOP4(f32, 4)
RRK_LOOP4(f64, 8)

/* The launch plan (every thread computes the same one) and the dtype x op dispatch. */
RR_KFN void rrk_run(const rr_kargs *a, uint64_t tid, uint64_t nthr)
{
    if (a->nsrc < 1 || a->nsrc > RR_KMAX_SRCS || a->dtype < 0 || a->dtype > 8 || a->op < 0 ||
        a->op > 3 || a->n == 0)
        return;
    const int dt = a->dtype, flt = dt >= 5; /* rr_dtype: u8 i8 i16 i32 i64 f16 bf16 f32 f64 */
    const uint32_t es = 1u << ((0x39790u >> (2 * dt)) & 3u); /* log2 sizes, 2 bits per dtype */
    rrk_launch l;
    /* the host path's tests: prescale when pre != 1; postscale when post != 1 or div != 1,
     * which multiplies floats by post (also by 1) and divides integers by div */
    l.pre = flt && a->pre != 1.0;
    l.post = a->post != 1.0 || a->div != 1;
    l.pf = RR_D2F(a->pre);
    l.qf = RR_D2F(a->post);
    l.pd = a->pre;
    l.qd = a->post;
    l.div = a->div == 0 ? 1 : a->div;
    l.div32 = l.div >= -2147483647 && l.div <= 2147483647 && l.div != -1 ? (int32_t)l.div : 0;
    if (!flt)
        l.post = l.div != 1;
    /* chunks when every address has the offset of src[0] modulo 16 */
    const uint64_t mis = a->src[0] & 15u;
    uint64_t diff = 0;
    for (int j = 1; j < a->nsrc; j++)
        diff |= (a->src[j] & 15u) ^ mis;
    diff |= (a->dst[0] & 15u) ^ mis;
    if (a->dst[1])
        diff |= (a->dst[1] & 15u) ^ mis;
    /* per element throughout: a prescaled float16 launch (see above), and integers <= 32 bits
     * with a divisor that 32-bit division cannot take */
    const int slow = ((dt == 5 || dt == 6) && l.pre) || (dt <= 3 && l.post && !l.div32);
    if (diff == 0 && mis % es == 0 && !slow) {
        const uint64_t head = ((16u - mis) & 15u) / es;
        l.head = head < a->n ? head : a->n;
        l.nvec = (a->n - l.head) / (16u / es);
    } else {
        l.head = a->n;
        l.nvec = 0;
    }

#define RRK_CASE(D, T)                                                                        \
    case D:                                                                                   \
        switch (a->op) {                                                                      \
        case 0: rrk_loop_##T##_sum(a, &l, tid, nthr); break;                                  \
        case 1: rrk_loop_##T##_min(a, &l, tid, nthr); break;                                  \
        case 2: rrk_loop_##T##_max(a, &l, tid, nthr); break;                                  \
        default: rrk_loop_##T##_prod(a, &l, tid, nthr); break;                                \
        }                                                                                     \
        break;
    switch (a->dtype) {
        RRK_CASE(0, u8)
        RRK_CASE(1, i8)
        RRK_CASE(2, i16)
        RRK_CASE(3, i32)
        RRK_CASE(4, i64)
        RRK_CASE(5, f16)
        RRK_CASE(6, bf16)
        RRK_CASE(7, f32)
        RRK_CASE(8, f64)
    }
#undef RRK_CASE
}

#ifdef RR_KERNEL_CUDA
/* __grid_constant__: the loops index a.src[j] with a run-time j straight from the parameter
 * space (no copy of the block to local memory).  __launch_bounds__: blocks of at most
 * RR_KMAX_THREADS threads, and registers for 5 of them per SM (48 per thread when JIT-compiled
 * for sm_90, without spills; unbounded, the kernel took 60-67). */
extern "C" __global__ void __launch_bounds__(RR_KMAX_THREADS, 5)
    rr_reduce_kernel(const __grid_constant__ rr_kargs a)
{
    const uint64_t tid = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const uint64_t nthr = (uint64_t)gridDim.x * blockDim.x;
    rrk_run(&a, tid, nthr);
}
#endif

/* ------------------------------------------------------------------------------------------ */
/* The batched copy kernel: segment s of the table is copied by the blocks of row s of the     */
/* grid (gridDim.y rows stride over the segments), 16 bytes at a time where the segment's      */
/* addresses and length allow, else 4 or 1.                                                    */

RR_KFN void rrk_copy_seg(uint64_t dst, uint64_t src, uint64_t bytes, uint64_t tid,
                         uint64_t nthr)
{
    unsigned char *d = RR_PTR(dst);
    const unsigned char *s = RR_PTR(src);
    if (((dst | src | bytes) & 15) == 0) {
        for (uint64_t i = tid * 16; i < bytes; i += nthr * 16)
            rrk_st16(d + i, rrk_ld16(s + i));
    } else if (((dst | src | bytes) & 3) == 0) {
        for (uint64_t i = tid * 4; i < bytes; i += nthr * 4)
            rrk_sput_4(d + i, rrk_sget_4(s + i));
    } else {
        for (uint64_t i = tid; i < bytes; i += nthr)
            rrk_sput_1(d + i, rrk_sget_1(s + i));
    }
}

#ifdef RR_KERNEL_CUDA
extern "C" __global__ void __launch_bounds__(RR_KMAX_THREADS)
    rr_copy_kernel(const rr_kcopy *segs, uint32_t nseg)
{
    const uint64_t tid = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const uint64_t nthr = (uint64_t)gridDim.x * blockDim.x;
    for (uint32_t k = blockIdx.y; k < nseg; k += gridDim.y) {
        const rr_kcopy c = segs[k];
        rrk_copy_seg(c.dst, c.src, c.bytes, tid, nthr);
    }
}
#endif
