/* CUDA backend: the driver API loaded at run time with dlopen("libcuda.so.1").
 *
 * No CUDA header and no link-time dependency: the few types and constants used are
 * declared here, so ringred builds and imports on machines without CUDA and only a
 * device call needs a driver.  The `_v2` entry points are used where the driver has
 * them (those are what cuda.h's macros map the plain names to). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "device.h"

typedef int CUresult;
typedef int CUdevice;
typedef struct CUctx_st *CUcontext;
typedef struct CUstream_st *CUstream;
typedef struct CUevent_st *CUevent;
typedef unsigned long long CUdeviceptr;

#define CUDA_SUCCESS 0
#define CU_STREAM_NON_BLOCKING 0x1
#define CU_EVENT_DISABLE_TIMING 0x2

static struct {
    void *lib;
    CUresult (*Init)(unsigned);
    CUresult (*DeviceGet)(CUdevice *, int);
    CUresult (*DeviceGetCount)(int *);
    CUresult (*PrimaryCtxRetain)(CUcontext *, CUdevice);
    CUresult (*PrimaryCtxRelease)(CUdevice);
    CUresult (*CtxGetCurrent)(CUcontext *);
    CUresult (*CtxSetCurrent)(CUcontext);
    CUresult (*MemAllocHost)(void **, size_t);
    CUresult (*MemFreeHost)(void *);
    CUresult (*StreamCreate)(CUstream *, unsigned);
    CUresult (*StreamDestroy)(CUstream);
    CUresult (*StreamSynchronize)(CUstream);
    CUresult (*StreamWaitEvent)(CUstream, CUevent, unsigned);
    CUresult (*EventCreate)(CUevent *, unsigned);
    CUresult (*EventDestroy)(CUevent);
    CUresult (*EventRecord)(CUevent, CUstream);
    CUresult (*EventQuery)(CUevent);
    CUresult (*EventSynchronize)(CUevent);
    CUresult (*MemcpyDtoHAsync)(void *, CUdeviceptr, size_t, CUstream);
    CUresult (*MemcpyHtoDAsync)(CUdeviceptr, const void *, size_t, CUstream);
    CUresult (*GetErrorString)(CUresult, const char **);
    int status;    /* 0 loaded; else the CUresult or -1 (library / symbol missing) */
    char why[512]; /* reason when status != 0 */
} cu;

static pthread_once_t cu_once = PTHREAD_ONCE_INIT;

/* dlsym the first of `names` (NULL-terminated) that the driver exports. */
static int sym(void *fp, const char *const *names)
{
    for (; *names; names++) {
        void *p = dlsym(cu.lib, *names);
        if (p) {
            memcpy(fp, &p, sizeof p);
            return 1;
        }
    }
    return 0;
}

#define SYM(field, ...) do { \
    static const char *const n_[] = {__VA_ARGS__, NULL}; \
    if (!sym(&cu.field, n_)) { \
        snprintf(cu.why, sizeof cu.why, "libcuda.so.1 lacks %s (driver too old?)", n_[0]); \
        cu.status = -1; \
        return; \
    } } while (0)

static void cu_load(void)
{
    cu.lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (cu.lib == NULL) {
        const char *e = dlerror();
        snprintf(cu.why, sizeof cu.why,
                 "cannot load the CUDA driver (%s): no NVIDIA driver here",
                 e ? e : "libcuda.so.1 not found");
        cu.status = -1;
        return;
    }
    SYM(Init, "cuInit");
    SYM(DeviceGet, "cuDeviceGet");
    SYM(DeviceGetCount, "cuDeviceGetCount");
    SYM(PrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
    SYM(PrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease");
    SYM(CtxGetCurrent, "cuCtxGetCurrent");
    SYM(CtxSetCurrent, "cuCtxSetCurrent");
    SYM(MemAllocHost, "cuMemAllocHost_v2", "cuMemAllocHost");
    SYM(MemFreeHost, "cuMemFreeHost");
    SYM(StreamCreate, "cuStreamCreate");
    SYM(StreamDestroy, "cuStreamDestroy_v2", "cuStreamDestroy");
    SYM(StreamSynchronize, "cuStreamSynchronize");
    SYM(StreamWaitEvent, "cuStreamWaitEvent");
    SYM(EventCreate, "cuEventCreate");
    SYM(EventDestroy, "cuEventDestroy_v2", "cuEventDestroy");
    SYM(EventRecord, "cuEventRecord");
    SYM(EventQuery, "cuEventQuery");
    SYM(EventSynchronize, "cuEventSynchronize");
    SYM(MemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2", "cuMemcpyDtoHAsync");
    SYM(MemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2", "cuMemcpyHtoDAsync");
    SYM(GetErrorString, "cuGetErrorString");
    CUresult r = cu.Init(0);
    if (r != CUDA_SUCCESS) {
        const char *s = NULL;
        cu.GetErrorString(r, &s);
        snprintf(cu.why, sizeof cu.why, "cuInit failed: %s (%d)", s ? s : "unknown error", r);
        cu.status = r;
        return;
    }
    int n = 0;
    r = cu.DeviceGetCount(&n);
    if (r != CUDA_SUCCESS || n == 0) {
        snprintf(cu.why, sizeof cu.why, "the CUDA driver reports no device");
        cu.status = r ? r : -1;
        return;
    }
    cu.status = 0;
}

static int c_load(char *why, size_t len)
{
    pthread_once(&cu_once, cu_load);
    if (cu.status != 0 && why && len)
        snprintf(why, len, "%s", cu.why);
    return cu.status;
}

static int c_ctx_retain(int dev, void **ctx)
{
    CUdevice d;
    CUresult r = cu.DeviceGet(&d, dev);
    if (r)
        return r;
    CUcontext c = NULL;
    r = cu.PrimaryCtxRetain(&c, d);
    *ctx = c;
    return r;
}

static int c_ctx_release(int dev, void *ctx)
{
    (void)ctx;
    CUdevice d;
    CUresult r = cu.DeviceGet(&d, dev);
    return r ? r : cu.PrimaryCtxRelease(d);
}

static int c_ctx_enter(void *ctx, void **prev)
{
    CUcontext cur = NULL;
    CUresult r = cu.CtxGetCurrent(&cur);
    if (r)
        return r;
    *prev = cur;
    return cur == (CUcontext)ctx ? 0 : cu.CtxSetCurrent((CUcontext)ctx);
}

static int c_ctx_leave(void *prev)
{
    CUcontext cur = NULL;
    CUresult r = cu.CtxGetCurrent(&cur);
    if (r || cur == (CUcontext)prev)
        return r;
    return cu.CtxSetCurrent((CUcontext)prev);
}

static int c_host_alloc(void **p, size_t n) { return cu.MemAllocHost(p, n); }
static int c_host_free(void *p) { return cu.MemFreeHost(p); }

static int c_stream_create(uintptr_t *s)
{
    CUstream st = NULL;
    CUresult r = cu.StreamCreate(&st, CU_STREAM_NON_BLOCKING);
    *s = (uintptr_t)st;
    return r;
}

static int c_stream_destroy(uintptr_t s) { return cu.StreamDestroy((CUstream)s); }
static int c_stream_sync(uintptr_t s) { return cu.StreamSynchronize((CUstream)s); }

static int c_event_create(void **e)
{
    CUevent ev = NULL;
    CUresult r = cu.EventCreate(&ev, CU_EVENT_DISABLE_TIMING);
    *e = ev;
    return r;
}

static int c_event_destroy(void *e) { return cu.EventDestroy((CUevent)e); }
static int c_event_record(void *e, uintptr_t s) { return cu.EventRecord((CUevent)e, (CUstream)s); }
static int c_event_query(void *e) { return cu.EventQuery((CUevent)e); }

static int c_stream_wait_event(uintptr_t s, void *e)
{
    return cu.StreamWaitEvent((CUstream)s, (CUevent)e, 0);
}

static int c_d2h(void *dst, uintptr_t src, size_t n, uintptr_t s)
{
    return cu.MemcpyDtoHAsync(dst, (CUdeviceptr)src, n, (CUstream)s);
}

static int c_h2d(uintptr_t dst, const void *src, size_t n, uintptr_t s)
{
    return cu.MemcpyHtoDAsync((CUdeviceptr)dst, src, n, (CUstream)s);
}

static const char *c_errstr(int code)
{
    const char *s = NULL;
    if (cu.GetErrorString == NULL || cu.GetErrorString(code, &s) != CUDA_SUCCESS || s == NULL)
        return "unknown CUDA error";
    return s;
}

static void *c_mpi_ptr(uintptr_t p) { return (void *)p; }

static const rr_dev_backend cuda_backend = {
    .name = "CUDA",
    .load = c_load,
    .ctx_retain = c_ctx_retain,
    .ctx_release = c_ctx_release,
    .ctx_enter = c_ctx_enter,
    .ctx_leave = c_ctx_leave,
    .host_alloc = c_host_alloc,
    .host_free = c_host_free,
    .stream_create = c_stream_create,
    .stream_destroy = c_stream_destroy,
    .stream_sync = c_stream_sync,
    .event_create = c_event_create,
    .event_destroy = c_event_destroy,
    .event_record = c_event_record,
    .stream_wait_event = c_stream_wait_event,
    .event_query = c_event_query,
    .d2h = c_d2h,
    .h2d = c_h2d,
    .errstr = c_errstr,
    .mpi_aware = rr_mpi_cuda_aware,
    .mpi_ptr = c_mpi_ptr,
};

const rr_dev_backend *rr_dev_cuda_backend(void) { return &cuda_backend; }
