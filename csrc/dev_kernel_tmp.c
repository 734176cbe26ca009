/* TEMPORARY stand-in for the device reduction kernel (dev_kernel.h) until the h-kernels
 * branch lands dev_kernel_src.h / dev_kernel_host.c / dev_kernel_ptx.c; delete this file
 * then.  It covers float32 and float64 Sum only (prescale, left fold, postscale, one or two
 * outputs); any other dtype or op fills the outputs with 0xFF bytes so that a use shows up
 * as wrong results.  The PTX text is empty: the CUDA backend refuses to launch without it. */
#include <string.h>

#include "dev_kernel.h"
#include "ringred.h"

const char rr_dev_kernel_ptx[] = "";

static void sum_f32(const rr_kargs *a)
{
    float pre = (float)a->pre, post = (float)a->post;
    for (uint64_t i = 0; i < a->n; i++) {
        float acc = 0.0f;
        for (int j = 0; j < a->nsrc; j++) {
            float v = ((const float *)(uintptr_t)a->src[j])[i];
            if (a->pre != 1.0)
                v = v * pre;
            acc = j == 0 ? v : acc + v;
        }
        if (a->post != 1.0)
            acc = acc * post;
        for (int d = 0; d < 2; d++)
            if (a->dst[d])
                ((float *)(uintptr_t)a->dst[d])[i] = acc;
    }
}

static void sum_f64(const rr_kargs *a)
{
    for (uint64_t i = 0; i < a->n; i++) {
        double acc = 0.0;
        for (int j = 0; j < a->nsrc; j++) {
            double v = ((const double *)(uintptr_t)a->src[j])[i];
            if (a->pre != 1.0)
                v = v * a->pre;
            acc = j == 0 ? v : acc + v;
        }
        if (a->post != 1.0)
            acc = acc * a->post;
        for (int d = 0; d < 2; d++)
            if (a->dst[d])
                ((double *)(uintptr_t)a->dst[d])[i] = acc;
    }
}

void rr_dev_kernel_host(const rr_kargs *a)
{
    if (a->op == RR_SUM && a->dtype == RR_FLOAT32) {
        sum_f32(a);
    } else if (a->op == RR_SUM && a->dtype == RR_FLOAT64) {
        sum_f64(a);
    } else {
        size_t bytes = (size_t)a->n * rr_dtype_size(a->dtype);
        for (int d = 0; d < 2; d++)
            if (a->dst[d])
                memset((void *)(uintptr_t)a->dst[d], 0xFF, bytes);
    }
}
