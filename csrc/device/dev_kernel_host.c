/* The device reduction kernel compiled as host C (dev_kernel_src.h in its C11 dialect): the
 * fake device backend runs it on its stream threads, and rr_test_dev_kernel exposes it to
 * the tests, which compare it with the CPU kernels (reduce.c). */
#include <math.h>
#include <stdint.h>

#include "device/dev_kernel.h"
#include "core/reduce.h"
#include "ringred.h"

#include "device/dev_kernel_src.h"

void rr_dev_kernel_host(const rr_kargs *a) { rrk_run(a, 0, 1); }

void rr_dev_copy_host(const rr_kcopy *segs, uint32_t nseg)
{
    for (uint32_t k = 0; k < nseg; k++)
        rrk_copy_seg(segs[k].dst, segs[k].src, segs[k].bytes, 0, 1);
}

static int dk_is_float(int dtype) { return dtype >= RR_FLOAT16 && dtype <= RR_FLOAT64; }

rr_status rr_test_dev_kernel(void *dst, const void *const *srcs, int nsrc, size_t n, int dtype,
                             int op, double prescale, double postscale, int64_t avg_div)
{
    if (dtype < 0 || dtype >= RR_NUM_DTYPES || op < 0 || op >= RR_NUM_OPS ||
        nsrc > RR_KMAX_SRCS)
        return RR_ERR_UNSUPPORTED;
    if (nsrc < 1 || avg_div < 1 || !isfinite(prescale) || !isfinite(postscale) ||
        (!dk_is_float(dtype) && (prescale != 1.0 || postscale != 1.0)))
        return RR_ERR_INVALID;
    if (n == 0)
        return RR_OK;
    const size_t es = rr_dtype_size(dtype);
    if (!dst || !srcs || n > SIZE_MAX / es || (uintptr_t)dst % es)
        return RR_ERR_INVALID;
    rr_kargs a = {{0}, {(uint64_t)(uintptr_t)dst, 0}, (uint64_t)n, nsrc, dtype, op, 0,
                  prescale, postscale, avg_div};
    for (int j = 0; j < nsrc; j++) {
        if (!srcs[j] || (uintptr_t)srcs[j] % es)
            return RR_ERR_INVALID; /* the device needs naturally aligned elements */
        a.src[j] = (uint64_t)(uintptr_t)srcs[j];
    }
    rr_dev_kernel_host(&a);
    return RR_OK;
}
