/* Reduction kernels: dtype x op, runtime CPU dispatch.  Internal header. */
#ifndef RR_REDUCE_H
#define RR_REDUCE_H

#include <string.h>

#include "ringred.h"

/* dst[i] = a[i] op b[i].  dst may alias a or b.  float16/bfloat16: computed in float32,
 * rounded to nearest even once.  Result is independent of argument order (a op b == b op a
 * bitwise, NaN propagating for min/max). */
void rr_reduce2(void *dst, const void *a, const void *b, size_t n, rr_dtype dt, rr_op op);

/* dst[i] = srcs[0][i] op srcs[1][i] op ... op srcs[k-1][i], left to right, k >= 1.
 * float16/bfloat16 accumulate all k inputs in float32 and round once.  dst may alias srcs[0]. */
void rr_reduce_many(void *dst, const void *const *srcs, int k, size_t n, rr_dtype dt, rr_op op);

/* dst[i] = src[i] * factor (floating dtypes, computed in double for f64, float for the
 * others) and, when divisor != 1, integer dtypes: dst[i] = src[i] / divisor (C truncation).
 * dst may alias src. */
void rr_scale(void *dst, const void *src, size_t n, rr_dtype dt, double factor, int64_t divisor);

/* Fused copy+scale is rr_scale; plain copy is memcpy. */

/* dst = src * pre (rr_scale) or a plain copy when pre is 1 (nothing when dst == src). */
static inline void rr_copy_in(void *dst, const void *src, size_t count, rr_dtype dt, double pre)
{
    if (pre != 1.0)
        rr_scale(dst, src, count, dt, pre, 1);
    else if (dst != src && count)
        memcpy(dst, src, count * rr_dtype_size(dt));
}

const char *rr_reduce_path_name(void);
rr_status rr_reduce_select(const char *name); /* "auto"|"scalar"|"avx2"|"avx512" */
/* Whether this CPU runs path `name` (any case; "auto" always): 1 or 0. */
int rr_kernel_supported(const char *name);
/* Run a kernel with an explicit path without changing the global choice (tests). */
rr_status rr_reduce_many_with(const char *path, void *dst, const void *const *srcs, int k,
                              size_t n, rr_dtype dt, rr_op op);
rr_status rr_scale_with(const char *path, void *dst, const void *src, size_t n, rr_dtype dt,
                        double factor, int64_t divisor);

#endif
