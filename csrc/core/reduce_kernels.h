/* Kernel template: included by reduce.c once per kernel path (no include guard on purpose).
 *
 * Before including, define
 *   RK_FN(x)      the path's name prefix, e.g. "#define RK_FN(x) avx2_##x"
 *   RK_PATH_NAME  the path's name string, e.g. "avx2"
 *   RK_SCALAR     for the scalar reference path only
 * and, for a vector path, for each dtype tag T (u8 i8 i16 i32 i64 f16 bf16 f32 f64):
 *   RK_FN(vt_T)             the accumulator vector type (float lanes for f16/bf16)
 *   RK_FN(vl_T)             elements per accumulator (a constant)
 *   RK_FN(ld_T)(p)          load vl elements at p (converted to the accumulator type)
 *   RK_FN(st_T)(p, v)       convert and store vl elements at p
 *   RK_FN(OP_T)(a, b)       OP in sum min max prod, lane-wise and bit-identical to sc_OP_T
 *   RK_FN(bc_T)(factor)     floating T only: broadcast the scale factor
 * The scalar helpers sc_acc_T, sc_ld_T, sc_st_T, sc_OP_T, sc_fac_T come from reduce.c; a
 * vector path uses them for the tail, so every path gives the same bits element by element.
 *
 * Every kernel reads all k inputs of a block before it writes that block of dst, so dst may be
 * one of the inputs (exactly, not a partial overlap). */

#ifdef RK_SCALAR

/* Blocked: one pass over memory, an L1-resident accumulator block; the element loops are
 * simple enough for the compiler to vectorize with the baseline instruction set. */
#define RK_MANY(T, ET, OP)                                                                    \
    static void RK_FN(many_##T##_##OP)(void *dst_, const void *const *srcs_, int k, size_t n) \
    {                                                                                         \
        ET *dst = (ET *)dst_;                                                                 \
        const ET *const *s = (const ET *const *)srcs_;                                        \
        sc_acc_##T acc[RK_BLOCK];                                                             \
        for (size_t i = 0; i < n; i += RK_BLOCK) {                                            \
            const size_t m = n - i < RK_BLOCK ? n - i : RK_BLOCK;                             \
            const ET *p = s[0] + i;                                                           \
            for (size_t e = 0; e < m; e++)                                                    \
                acc[e] = sc_ld_##T(p + e);                                                    \
            for (int j = 1; j < k; j++) {                                                     \
                p = s[j] + i;                                                                 \
                for (size_t e = 0; e < m; e++)                                                \
                    acc[e] = sc_##OP##_##T(acc[e], sc_ld_##T(p + e));                         \
            }                                                                                 \
            for (size_t e = 0; e < m; e++)                                                    \
                sc_st_##T(dst + i + e, acc[e]);                                               \
        }                                                                                     \
    }

#define RK_FSCALE(T, ET)                                                                      \
    static void RK_FN(scale_##T)(void *dst_, const void *src_, size_t n, double factor)      \
    {                                                                                         \
        ET *dst = (ET *)dst_;                                                                 \
        const ET *src = (const ET *)src_;                                                     \
        const sc_fac_##T f = (sc_fac_##T)factor;                                              \
        for (size_t i = 0; i < n; i++)                                                        \
            sc_st_##T(dst + i, sc_ld_##T(src + i) * f);                                       \
    }

#else /* vector path */

/* Four accumulators in registers per step; the k inputs are folded in left to right. */
#define RK_MANY(T, ET, OP)                                                                    \
    static void RK_FN(many_##T##_##OP)(void *dst_, const void *const *srcs_, int k, size_t n) \
    {                                                                                         \
        ET *dst = (ET *)dst_;                                                                 \
        const ET *const *s = (const ET *const *)srcs_;                                        \
        const size_t vl = RK_FN(vl_##T);                                                      \
        size_t i = 0;                                                                         \
        for (; i + 4 * vl <= n; i += 4 * vl) {                                                \
            const ET *p = s[0] + i;                                                           \
            RK_FN(vt_##T) a0 = RK_FN(ld_##T)(p), a1 = RK_FN(ld_##T)(p + vl);                  \
            RK_FN(vt_##T) a2 = RK_FN(ld_##T)(p + 2 * vl), a3 = RK_FN(ld_##T)(p + 3 * vl);     \
            for (int j = 1; j < k; j++) {                                                     \
                p = s[j] + i;                                                                 \
                a0 = RK_FN(OP##_##T)(a0, RK_FN(ld_##T)(p));                                   \
                a1 = RK_FN(OP##_##T)(a1, RK_FN(ld_##T)(p + vl));                              \
                a2 = RK_FN(OP##_##T)(a2, RK_FN(ld_##T)(p + 2 * vl));                          \
                a3 = RK_FN(OP##_##T)(a3, RK_FN(ld_##T)(p + 3 * vl));                          \
            }                                                                                 \
            RK_FN(st_##T)(dst + i, a0);                                                       \
            RK_FN(st_##T)(dst + i + vl, a1);                                                  \
            RK_FN(st_##T)(dst + i + 2 * vl, a2);                                              \
            RK_FN(st_##T)(dst + i + 3 * vl, a3);                                              \
        }                                                                                     \
        for (; i + vl <= n; i += vl) {                                                        \
            RK_FN(vt_##T) a0 = RK_FN(ld_##T)(s[0] + i);                                       \
            for (int j = 1; j < k; j++)                                                       \
                a0 = RK_FN(OP##_##T)(a0, RK_FN(ld_##T)(s[j] + i));                            \
            RK_FN(st_##T)(dst + i, a0);                                                       \
        }                                                                                     \
        for (; i < n; i++) {                                                                  \
            sc_acc_##T a = sc_ld_##T(s[0] + i);                                               \
            for (int j = 1; j < k; j++)                                                       \
                a = sc_##OP##_##T(a, sc_ld_##T(s[j] + i));                                    \
            sc_st_##T(dst + i, a);                                                            \
        }                                                                                     \
    }

#define RK_FSCALE(T, ET)                                                                      \
    static void RK_FN(scale_##T)(void *dst_, const void *src_, size_t n, double factor)      \
    {                                                                                         \
        ET *dst = (ET *)dst_;                                                                 \
        const ET *src = (const ET *)src_;                                                     \
        const size_t vl = RK_FN(vl_##T);                                                      \
        const RK_FN(vt_##T) vf = RK_FN(bc_##T)(factor);                                       \
        const sc_fac_##T f = (sc_fac_##T)factor;                                              \
        size_t i = 0;                                                                         \
        for (; i + 4 * vl <= n; i += 4 * vl) {                                                \
            RK_FN(vt_##T) a0 = RK_FN(ld_##T)(src + i), a1 = RK_FN(ld_##T)(src + i + vl);      \
            RK_FN(vt_##T) a2 = RK_FN(ld_##T)(src + i + 2 * vl);                               \
            RK_FN(vt_##T) a3 = RK_FN(ld_##T)(src + i + 3 * vl);                               \
            RK_FN(st_##T)(dst + i, RK_FN(prod_##T)(a0, vf));                                  \
            RK_FN(st_##T)(dst + i + vl, RK_FN(prod_##T)(a1, vf));                             \
            RK_FN(st_##T)(dst + i + 2 * vl, RK_FN(prod_##T)(a2, vf));                         \
            RK_FN(st_##T)(dst + i + 3 * vl, RK_FN(prod_##T)(a3, vf));                         \
        }                                                                                     \
        for (; i + vl <= n; i += vl)                                                          \
            RK_FN(st_##T)(dst + i, RK_FN(prod_##T)(RK_FN(ld_##T)(src + i), vf));              \
        for (; i < n; i++)                                                                    \
            sc_st_##T(dst + i, sc_ld_##T(src + i) * f);                                       \
    }

#endif /* RK_SCALAR */

#define RK_MANY4(T, ET) RK_MANY(T, ET, sum) RK_MANY(T, ET, min) RK_MANY(T, ET, max) RK_MANY(T, ET, prod)
RK_MANY4(u8, uint8_t)
RK_MANY4(i8, int8_t)
RK_MANY4(i16, int16_t)
RK_MANY4(i32, int32_t)
RK_MANY4(i64, int64_t)
RK_MANY4(f16, uint16_t)
RK_MANY4(bf16, uint16_t)
RK_MANY4(f32, float)
RK_MANY4(f64, double)
RK_FSCALE(f16, uint16_t)
RK_FSCALE(bf16, uint16_t)
RK_FSCALE(f32, float)
RK_FSCALE(f64, double)
/* Integer scaling is plain C (exact arithmetic); compiled here for the path's target. */
RK_ISCALE(RK_FN(iscale_u8), uint8_t, uint8_t)
RK_ISCALE(RK_FN(iscale_i8), int8_t, uint8_t)
RK_ISCALE(RK_FN(iscale_i16), int16_t, uint16_t)
RK_ISCALE(RK_FN(iscale_i32), int32_t, uint32_t)
RK_ISCALE(RK_FN(iscale_i64), int64_t, uint64_t)

#define RK_ROW(T)                                                                             \
    { RK_FN(many_##T##_sum), RK_FN(many_##T##_min), RK_FN(many_##T##_max),                    \
      RK_FN(many_##T##_prod) }

static const struct rk_table RK_FN(table) = {
    RK_PATH_NAME,
    {RK_ROW(u8), RK_ROW(i8), RK_ROW(i16), RK_ROW(i32), RK_ROW(i64), RK_ROW(f16), RK_ROW(bf16),
     RK_ROW(f32), RK_ROW(f64)},
    {NULL, NULL, NULL, NULL, NULL, RK_FN(scale_f16), RK_FN(scale_bf16), RK_FN(scale_f32),
     RK_FN(scale_f64)},
    {RK_FN(iscale_u8), RK_FN(iscale_i8), RK_FN(iscale_i16), RK_FN(iscale_i32), RK_FN(iscale_i64),
     NULL, NULL, NULL, NULL},
};

#undef RK_ROW
#undef RK_MANY4
#undef RK_MANY
#undef RK_FSCALE
