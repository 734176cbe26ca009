/* Standalone check of ringred's device reduction kernel (dev_kernel_src.h).
 *   gcc -std=c11 -O2 -Wall -Wextra -Werror -Icsrc csrc/core/reduce.c \
 *       csrc/device/dev_kernel_host.c csrc/device/dev_kernel_ptx.c \
 *       csrc/tests/dev_kernel_check.c -o /tmp/dkc -lm -ldl
 *
 *   dkc          the host build (rr_dev_kernel_host) with a second output (dst[1]) and in
 *                place (dst[0] == src[0]), against the CPU path (reduce.c)
 *   dkc --gpu    also the committed PTX on GPU 0 (driver API through dlopen, no CUDA headers):
 *                load it (JIT time, registers), compare it bit for bit with the CPU path for
 *                every dtype x op x nsrc 1..8 x scale factors x layout (aligned, same offset
 *                modulo 16, mixed offsets) x sizes x grid shapes, then time a few launches.
 * The CPU path: each input prescaled with rr_scale, folded with rr_reduce_many, postscaled
 * with rr_scale.  Only NaN payloads of float sum/prod may differ (a NaN meets a NaN).
 * Prints "dev_kernel_check: OK" and exits 0, or the first difference and exits 1. */
#define _POSIX_C_SOURCE 200809L
#include "device/dev_kernel.h"
#include "core/reduce.h"

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const dtn[] = {"u8", "i8", "i16", "i32", "i64", "f16", "bf16", "f32", "f64"};
static const char *const opn[] = {"sum", "min", "max", "prod"};
static const size_t esz[] = {1, 1, 2, 4, 8, 2, 2, 4, 8};

static uint64_t rs = 0x9e3779b97f4a7c15u;
static uint64_t rnd(void)
{
    rs ^= rs >> 12, rs ^= rs << 25, rs ^= rs >> 27;
    return rs * 0x2545f4914f6cdd1du;
}
static int isfl(int dt) { return dt >= RR_FLOAT16; }
static uint64_t ldb(int dt, const void *b, size_t i)
{
    uint64_t v = 0;
    memcpy(&v, (const char *)b + i * esz[dt], esz[dt]);
    return v;
}
static void stb(int dt, void *b, size_t i, uint64_t v)
{
    memcpy((char *)b + i * esz[dt], &v, esz[dt]);
}
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

/* random element bits: moderate values (exponents near 1), random bits, specials */
static uint64_t gen(int dt)
{
    static const uint64_t sp16[] = {0, 0x8000, 0x7c00, 0xfc00, 0x7e00, 0x7c01, 0xfe55, 1, 0x8001,
                                    0x3ff, 0x400, 0x7bff, 0xfbff, 0x3c00, 0x4c00, 0x4800};
    static const uint64_t spb16[] = {0, 0x8000, 0x7f80, 0xff80, 0x7fc0, 0x7f81, 0xffa5, 1, 0x8001,
                                     0x7f, 0x80, 0x7f7f, 0xff7f, 0x3f80, 0x3b80, 0x3f81};
    static const uint64_t sp32[] = {0, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u,
                                    0x7f800001u, 1, 0x80000001u, 0x7fffff, 0x800000, 0x7f7fffffu,
                                    0x3f800000u, 0x33800000u, 0x477fe000u, 0x1e3ce508u};
    static const uint64_t sp64[] = {0, 1ull << 63, 0x7ff0000000000000u, 0x7ff8000000000000u,
                                    0x7ff0000000000001u, 1, 0x000fffffffffffffu,
                                    0x7fefffffffffffffu, 0x3ff0000000000000u, 0x3ca0000000000000u};
    const uint64_t r = rnd(), c = r % 10;
    const int bits = (int)esz[dt] * 8;
    const uint64_t mask = bits == 64 ? ~0ull : (1ull << bits) - 1;
    if (!isfl(dt)) {
        if (c < 3)
            return (uint64_t)((int64_t)(r >> 8) % 4) & mask;
        return rnd() & mask;
    }
    if (c < 2)
        return rnd() & mask;
    if (c < 4) {
        switch (dt) {
        case RR_FLOAT16: return sp16[(r >> 8) % (sizeof sp16 / 8)];
        case RR_BFLOAT16: return spb16[(r >> 8) % (sizeof spb16 / 8)];
        case RR_FLOAT32: return sp32[(r >> 8) % (sizeof sp32 / 8)];
        default: return sp64[(r >> 8) % (sizeof sp64 / 8)];
        }
    }
    const uint64_t s = (r >> 4) & 1, m = rnd();
    switch (dt) { /* sign | exponent within 2^-6 .. 2^6 | random significand */
    case RR_FLOAT16: return s << 15 | (uint64_t)(9 + (r >> 8) % 13) << 10 | (m & 0x3ff);
    case RR_BFLOAT16: return s << 15 | (uint64_t)(121 + (r >> 8) % 13) << 7 | (m & 0x7f);
    case RR_FLOAT32: return s << 31 | (uint64_t)(121 + (r >> 8) % 13) << 23 | (m & 0x7fffff);
    default: return s << 63 | (uint64_t)(1017 + (r >> 8) % 13) << 52 | (m & 0xfffffffffffffu);
    }
}

/* the CPU path into out (tmp: n elements of scratch per input) */
static void cpu_path(int dt, int op, int ns, size_t n, void *const *src, void *out, void **tmp,
                     double pre, double post, int64_t div)
{
    const void *ins[RR_KMAX_SRCS];
    for (int j = 0; j < ns; j++) {
        if (isfl(dt) && pre != 1.0) {
            rr_scale(tmp[j], src[j], n, (rr_dtype)dt, pre, 1);
            ins[j] = tmp[j];
        } else {
            ins[j] = src[j];
        }
    }
    rr_reduce_many(out, ins, ns, n, (rr_dtype)dt, (rr_op)op);
    if (post != 1.0 || div != 1)
        rr_scale(out, out, n, (rr_dtype)dt, post, div);
}

static int same(int dt, int op, const void *got, const void *want, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++) {
        const uint64_t g = ldb(dt, got, i), w = ldb(dt, want, i);
        if (g == w || ((op == RR_SUM || op == RR_PROD) && isnanb(dt, g) && isnanb(dt, w)))
            continue;
        printf("dev_kernel_check: %s: %s %s element %zu of %zu: got %#llx, want %#llx\n", what,
               dtn[dt], opn[op], i, n, (unsigned long long)g, (unsigned long long)w);
        return 0;
    }
    return 1;
}

#define MAXN 100003
static void *srcb[RR_KMAX_SRCS], *tmpb[RR_KMAX_SRCS], *wantb, *gotb, *got2b;

static void fill(int dt, int ns, size_t n)
{
    for (int j = 0; j < ns; j++)
        for (size_t i = 0; i < n; i++)
            stb(dt, srcb[j], i, gen(dt));
}

static void scales(int dt, int ns, int s, double *pre, double *post, int64_t *div)
{
    *pre = 1.0, *post = 1.0, *div = 1;
    if (isfl(dt)) {
        if (s == 1) *pre = 0.5;
        if (s == 2) *post = 1.0 / 3;
        if (s == 3) *post = 1.0 / ns;
        if (s == 4) *pre = 0.5, *post = 1.0 / 3;
    } else {
        if (s == 1 || s == 3) *div = ns;
        if (s == 2) *div = 7;
        if (s == 4) *div = 3000000000LL; /* beyond 32-bit division */
    }
}

/* host build: second output and in place */
static int host_checks(void)
{
    static const size_t sizes[] = {1, 2, 15, 16, 17, 33, 1000};
    for (int dt = 0; dt < RR_NUM_DTYPES; dt++)
        for (int op = 0; op < RR_NUM_OPS; op++)
            for (int ns = 1; ns <= RR_KMAX_SRCS; ns++)
                for (size_t zi = 0; zi < sizeof sizes / sizeof *sizes; zi++) {
                    const size_t n = sizes[zi], es = esz[dt];
                    const int s = (int)(rnd() % 5), off = (int)(rnd() % 2) * (int)es;
                    double pre, post;
                    int64_t div;
                    scales(dt, ns, s, &pre, &post, &div);
                    fill(dt, ns, n + 1);
                    void *sp[RR_KMAX_SRCS];
                    for (int j = 0; j < ns; j++)
                        sp[j] = (char *)srcb[j] + off;
                    cpu_path(dt, op, ns, n, sp, wantb, tmpb, pre, post, div);
                    rr_kargs a = {{0}, {(uintptr_t)gotb + off, (uintptr_t)got2b + off}, n, ns,
                                  dt, op, 0, pre, post, div};
                    for (int j = 0; j < ns; j++)
                        a.src[j] = (uintptr_t)sp[j];
                    rr_dev_kernel_host(&a);
                    if (!same(dt, op, (char *)gotb + off, wantb, n, "host dst[0]") ||
                        !same(dt, op, (char *)got2b + off, wantb, n, "host dst[1]"))
                        return 0;
                    a.dst[0] = a.src[0], a.dst[1] = 0; /* in place */
                    rr_dev_kernel_host(&a);
                    if (!same(dt, op, sp[0], wantb, n, "host in place"))
                        return 0;
                }
    return 1;
}

/* ---- GPU: the driver API through dlopen ---------------------------------------------- */
typedef int CUresult;
typedef unsigned long long CUdeviceptr;
static struct {
    CUresult (*Init)(unsigned);
    CUresult (*DeviceGet)(int *, int);
    CUresult (*DeviceGetName)(char *, int, int);
    CUresult (*DeviceGetAttribute)(int *, int, int);
    CUresult (*PrimaryCtxRetain)(void **, int);
    CUresult (*CtxSetCurrent)(void *);
    CUresult (*ModuleLoadData)(void **, const void *);
    CUresult (*ModuleGetFunction)(void **, void *, const char *);
    CUresult (*FuncGetAttribute)(int *, int, void *);
    CUresult (*MemAlloc)(CUdeviceptr *, size_t);
    CUresult (*MemcpyHtoD)(CUdeviceptr, const void *, size_t);
    CUresult (*MemcpyDtoH)(void *, CUdeviceptr, size_t);
    CUresult (*MemcpyDtoD)(CUdeviceptr, CUdeviceptr, size_t);
    CUresult (*MemsetD8)(CUdeviceptr, unsigned char, size_t);
    CUresult (*LaunchKernel)(void *, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                             unsigned, void *, void **, void **);
    CUresult (*CtxSynchronize)(void);
    CUresult (*DriverGetVersion)(int *);
} cu;
static void *fn;
static int nsm;

#define CK(x)                                                                                 \
    do {                                                                                      \
        CUresult rc_ = (x);                                                                   \
        if (rc_ != 0) {                                                                       \
            printf("dev_kernel_check: %s failed: %d (line %d)\n", #x, rc_, __LINE__);         \
            return 0;                                                                         \
        }                                                                                     \
    } while (0)

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int gpu_load(void)
{
    void *lib = dlopen("libcuda.so.1", RTLD_NOW);
    if (!lib) {
        printf("dev_kernel_check: no libcuda.so.1\n");
        return 0;
    }
#define SYM(f, name)                                                                          \
    do {                                                                                      \
        *(void **)&cu.f = dlsym(lib, name);                                                   \
        if (!cu.f) {                                                                          \
            printf("dev_kernel_check: %s missing\n", name);                                   \
            return 0;                                                                         \
        }                                                                                     \
    } while (0)
    SYM(Init, "cuInit");
    SYM(DeviceGet, "cuDeviceGet");
    SYM(DeviceGetName, "cuDeviceGetName");
    SYM(DeviceGetAttribute, "cuDeviceGetAttribute");
    SYM(PrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
    SYM(CtxSetCurrent, "cuCtxSetCurrent");
    SYM(ModuleLoadData, "cuModuleLoadData");
    SYM(ModuleGetFunction, "cuModuleGetFunction");
    SYM(FuncGetAttribute, "cuFuncGetAttribute");
    SYM(MemAlloc, "cuMemAlloc_v2");
    SYM(MemcpyHtoD, "cuMemcpyHtoD_v2");
    SYM(MemcpyDtoH, "cuMemcpyDtoH_v2");
    SYM(MemcpyDtoD, "cuMemcpyDtoD_v2");
    SYM(MemsetD8, "cuMemsetD8_v2");
    SYM(LaunchKernel, "cuLaunchKernel");
    SYM(CtxSynchronize, "cuCtxSynchronize");
    SYM(DriverGetVersion, "cuDriverGetVersion");
    int dev, ver, regs, lmem;
    char name[128];
    void *ctx, *mod;
    CK(cu.Init(0));
    CK(cu.DeviceGet(&dev, 0));
    CK(cu.DeviceGetName(name, sizeof name, dev));
    CK(cu.DeviceGetAttribute(&nsm, 16 /* MULTIPROCESSOR_COUNT */, dev));
    CK(cu.DriverGetVersion(&ver));
    CK(cu.PrimaryCtxRetain(&ctx, dev));
    CK(cu.CtxSetCurrent(ctx));
    const double t0 = now();
    CK(cu.ModuleLoadData(&mod, rr_dev_kernel_ptx));
    const double t1 = now();
    CK(cu.ModuleGetFunction(&fn, mod, RR_DEV_KERNEL_NAME));
    CK(cu.FuncGetAttribute(&regs, 4 /* NUM_REGS */, fn));
    CK(cu.FuncGetAttribute(&lmem, 3 /* LOCAL_SIZE_BYTES */, fn));
    printf("dev_kernel_check: %s, %d SMs, driver API %d; PTX %zu bytes JIT-loaded in %.3f s; "
           "%d registers, %d bytes local memory per thread\n",
           name, nsm, ver, strlen(rr_dev_kernel_ptx), t1 - t0, regs, lmem);
    return 1;
}

static int launch(rr_kargs *a, unsigned blocks, unsigned threads)
{
    void *params[] = {a};
    CK(cu.LaunchKernel(fn, blocks, 1, 1, threads, 1, 1, 0, NULL, params, NULL));
    return 1;
}

/* blocks for a launch: enough threads for every 16-byte chunk, at most 8 blocks of 256 per SM */
static unsigned grid_for(size_t n, size_t es)
{
    const size_t work = (n * es + 15) / 16, b = (work + 255) / 256, cap = (size_t)nsm * 8;
    return (unsigned)(b < 1 ? 1 : b > cap ? cap : b);
}

static int gpu_checks(void)
{
    static const size_t sizes[] = {1, 7, 16, 33, 1000, MAXN};
    CUdeviceptr dsrc[RR_KMAX_SRCS], ddst, ddst2;
    const size_t cap = MAXN * 8 + 64;
    for (int j = 0; j < RR_KMAX_SRCS; j++)
        CK(cu.MemAlloc(&dsrc[j], cap));
    CK(cu.MemAlloc(&ddst, cap));
    CK(cu.MemAlloc(&ddst2, cap));
    long cases = 0;
    for (int dt = 0; dt < RR_NUM_DTYPES; dt++)
        for (int op = 0; op < RR_NUM_OPS; op++)
            for (int ns = 1; ns <= RR_KMAX_SRCS; ns++)
                for (size_t zi = 0; zi < sizeof sizes / sizeof *sizes; zi++)
                    for (int s = 0; s < 5; s++)
                        for (int lay = 0; lay < 3; lay++) {
                            const size_t n = sizes[zi], es = esz[dt];
                            if (n == MAXN && (lay != 0 || s > 1))
                                continue; /* big: aligned, two scale cases */
                            double pre, post;
                            int64_t div;
                            scales(dt, ns, s, &pre, &post, &div);
                            /* 0 aligned, 1 all one element past 16-byte alignment (head,
                             * chunks, tail), 2 offsets differ (per element only) */
                            size_t off[RR_KMAX_SRCS + 1];
                            for (int j = 0; j <= RR_KMAX_SRCS; j++)
                                off[j] = lay == 0 ? 0 : lay == 1 ? es : (size_t)(j % 2) * es;
                            fill(dt, ns, n);
                            cpu_path(dt, op, ns, n, srcb, wantb, tmpb, pre, post, div);
                            rr_kargs a = {{0}, {ddst + off[0], 0}, n, ns, dt, op, 0,
                                          pre, post, div};
                            for (int j = 0; j < ns; j++) {
                                a.src[j] = dsrc[j] + off[j + 1];
                                CK(cu.MemcpyHtoD(a.src[j], srcb[j], n * es));
                            }
                            CK(cu.MemsetD8(ddst, 0x5a, cap));
                            /* a second output, or the output in place of input 0 */
                            const int second = (int)(rnd() % 2), inplace = cases % 4 == 3;
                            if (second)
                                a.dst[1] = ddst2 + off[0];
                            if (inplace)
                                a.dst[0] = a.src[0];
                            /* grid shapes: one warp, one block, the full grid */
                            const unsigned g = cases % 3 == 0 ? 1 : grid_for(n, es);
                            const unsigned t = cases % 3 == 1 ? 32 : 256;
                            if (!launch(&a, g, t))
                                return 0;
                            CK(cu.CtxSynchronize());
                            if (inplace)
                                CK(cu.MemcpyDtoH((char *)gotb + off[0], a.dst[0], n * es));
                            else
                                CK(cu.MemcpyDtoH(gotb, ddst, n * es + off[0] + 16));
                            char what[128];
                            snprintf(what, sizeof what, "GPU nsrc=%d n=%zu pre=%g post=%g "
                                     "div=%lld layout=%d grid=%ux%u", ns, n, pre, post,
                                     (long long)div, lay, g, t);
                            if (!same(dt, op, (char *)gotb + off[0], wantb, n, what))
                                return 0;
                            for (size_t b = 0; !inplace && b < off[0] + n * es + 16; b++)
                                if ((b < off[0] || b >= off[0] + n * es) &&
                                    ((unsigned char *)gotb)[b] != 0x5a) {
                                    printf("dev_kernel_check: %s: wrote outside dst\n", what);
                                    return 0;
                                }
                            if (second) {
                                CK(cu.MemcpyDtoH(got2b, a.dst[1], n * es));
                                if (!same(dt, op, got2b, wantb, n, "GPU dst[1]"))
                                    return 0;
                            }
                            cases++;
                        }
    printf("dev_kernel_check: GPU == CPU path in %ld launches\n", cases);
    return 1;
}

static int gpu_bench(void)
{
    const size_t bytes = (size_t)256 << 20; /* per input */
    CUdeviceptr d[RR_KMAX_SRCS + 1];
    for (int j = 0; j <= RR_KMAX_SRCS; j++) {
        CK(cu.MemAlloc(&d[j], bytes));
        CK(cu.MemsetD8(d[j], (unsigned char)(0x11 * (j + 1)), bytes));
    }
    CK(cu.CtxSynchronize());
    double t0 = now();
    for (int r = 0; r < 10; r++)
        CK(cu.MemcpyDtoD(d[1], d[0], bytes));
    CK(cu.CtxSynchronize());
    printf("dev_kernel_check: bench: cuMemcpyDtoD 256 MiB: %.0f GB/s (read + write)\n",
           2.0 * bytes * 10 / (now() - t0) / 1e9);
    static const struct { int dt, op, ns, s; } cfg[] = {
        {RR_FLOAT32, RR_SUM, 2, 0}, {RR_FLOAT32, RR_SUM, 4, 0}, {RR_FLOAT32, RR_SUM, 8, 0},
        {RR_FLOAT32, RR_SUM, 8, 3}, {RR_FLOAT16, RR_SUM, 2, 0}, {RR_FLOAT16, RR_SUM, 8, 3},
        {RR_FLOAT16, RR_SUM, 8, 1}, {RR_BFLOAT16, RR_SUM, 8, 3}, {RR_FLOAT64, RR_MAX, 4, 0},
        {RR_UINT8, RR_SUM, 8, 1},   {RR_INT64, RR_SUM, 4, 1},    {RR_FLOAT32, RR_MIN, 8, 0},
    };
    for (size_t c = 0; c < sizeof cfg / sizeof *cfg; c++) {
        const int dt = cfg[c].dt, ns = cfg[c].ns;
        const size_t n = bytes / esz[dt];
        double pre, post;
        int64_t div;
        scales(dt, ns, cfg[c].s, &pre, &post, &div);
        rr_kargs a = {{0}, {d[RR_KMAX_SRCS], 0}, n, ns, dt, cfg[c].op, 0, pre, post, div};
        for (int j = 0; j < ns; j++)
            a.src[j] = d[j];
        const unsigned g = grid_for(n, esz[dt]);
        if (!launch(&a, g, 256))
            return 0;
        CK(cu.CtxSynchronize());
        t0 = now();
        for (int r = 0; r < 5; r++)
            if (!launch(&a, g, 256))
                return 0;
        CK(cu.CtxSynchronize());
        const double dt_s = (now() - t0) / 5;
        printf("dev_kernel_check: bench: %s %s nsrc=%d pre=%g post=%g div=%lld, 256 MiB per "
               "input: %.3f ms, %.0f GB/s\n", dtn[dt], opn[cfg[c].op], ns, pre, post,
               (long long)div, dt_s * 1e3, (double)(ns + 1) * bytes / dt_s / 1e9);
    }
    return 1;
}

int main(int argc, char **argv)
{
    const int gpu = argc > 1 && strcmp(argv[1], "--gpu") == 0;
    const size_t cap = MAXN * 8 + 64;
    for (int j = 0; j < RR_KMAX_SRCS; j++)
        srcb[j] = malloc(cap), tmpb[j] = malloc(cap);
    wantb = malloc(cap), gotb = malloc(cap), got2b = malloc(cap);
    if (!host_checks())
        return 1;
    printf("dev_kernel_check: host build: second output and in place OK\n");
    if (gpu && !(gpu_load() && gpu_checks() && gpu_bench()))
        return 1;
    printf("dev_kernel_check: OK\n");
    return 0;
}
