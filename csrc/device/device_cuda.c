/* CUDA backend: the driver API loaded at run time with dlopen("libcuda.so.1").
 *
 * No CUDA header and no link-time dependency: the few types and constants used are
 * declared here, so ringred builds and imports on machines without CUDA and only a
 * device call needs a driver.  The `_v2` entry points are used where the driver has
 * them (those are what cuda.h's macros map the plain names to).
 *
 * ringred's reduction kernel (dev_kernel.h) is JIT-compiled from its PTX text once per
 * context, on the first launch in that context (kernel table below). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "device/device.h"

typedef int CUresult;
typedef int CUdevice;
typedef struct CUctx_st *CUcontext;
typedef struct CUstream_st *CUstream;
typedef struct CUevent_st *CUevent;
typedef unsigned long long CUdeviceptr;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef int CUjit_option; /* an enum in cuda.h: int-sized */
/* 64 opaque bytes, passed BY VALUE to the open functions (cuda.h: CU_IPC_HANDLE_SIZE). */
typedef struct CUipcMemHandle {
    char reserved[64];
} CUipcMemHandle;
typedef struct CUipcEventHandle {
    char reserved[64];
} CUipcEventHandle;
_Static_assert(sizeof(CUipcMemHandle) == sizeof(rr_ipc_handle), "IPC handle size");
_Static_assert(sizeof(CUipcEventHandle) == sizeof(rr_ipc_handle), "IPC handle size");

#define CUDA_SUCCESS 0
#define CUDA_ERROR_INVALID_CONTEXT 201
#define CU_STREAM_NON_BLOCKING 0x1
#define CU_EVENT_DISABLE_TIMING 0x2
#define CU_EVENT_INTERPROCESS 0x4
#define CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS 0x1
#define CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT 16
#define CU_JIT_ERROR_LOG_BUFFER 5
#define CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES 6

/* Backend error codes of our own (CUresult values are >= 0); c_errstr knows them. */
#define ERR_NO_PTX (-2)    /* the build carries no PTX text for the kernel */
#define ERR_JIT (-3)       /* the driver refused the PTX: jit_msg has its log */
#define ERR_KTABLE (-4)    /* more contexts than the kernel table holds */

#define KERNEL_THREADS RR_KMAX_THREADS /* threads per block (the kernel's launch bounds) */
/* The grid: one full wave, i.e. as many blocks per multiprocessor as can be resident
 * (cuOccupancyMaxActiveBlocksPerMultiprocessor for the JIT-compiled kernel; this many if the
 * driver reports none); the kernel is grid-stride. */
#define KERNEL_BLOCKS_PER_SM 8

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
    CUresult (*MemAlloc)(CUdeviceptr *, size_t);
    CUresult (*MemFree)(CUdeviceptr);
    CUresult (*MemcpyDtoDAsync)(CUdeviceptr, CUdeviceptr, size_t, CUstream);
    CUresult (*IpcGetMemHandle)(CUipcMemHandle *, CUdeviceptr);
    CUresult (*IpcOpenMemHandle)(CUdeviceptr *, CUipcMemHandle, unsigned);
    CUresult (*IpcCloseMemHandle)(CUdeviceptr);
    CUresult (*IpcGetEventHandle)(CUipcEventHandle *, CUevent);
    CUresult (*IpcOpenEventHandle)(CUevent *, CUipcEventHandle);
    CUresult (*ModuleLoadDataEx)(CUmodule *, const void *, unsigned, CUjit_option *, void **);
    CUresult (*ModuleUnload)(CUmodule);
    CUresult (*ModuleGetFunction)(CUfunction *, CUmodule, const char *);
    CUresult (*CtxGetDevice)(CUdevice *);
    CUresult (*DeviceGetAttribute)(int *, int, CUdevice);
    CUresult (*OccupancyMaxActiveBlocksPerMultiprocessor)(int *, CUfunction, int, size_t);
    CUresult (*CtxGetId)(CUcontext, unsigned long long *); /* optional (CUDA 12.0) */
    CUresult (*LaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                             unsigned, unsigned, CUstream, void **, void **);
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
    SYM(MemAlloc, "cuMemAlloc_v2");
    SYM(MemFree, "cuMemFree_v2");
    SYM(MemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2");
    SYM(IpcGetMemHandle, "cuIpcGetMemHandle");
    SYM(IpcOpenMemHandle, "cuIpcOpenMemHandle_v2", "cuIpcOpenMemHandle");
    SYM(IpcCloseMemHandle, "cuIpcCloseMemHandle");
    SYM(IpcGetEventHandle, "cuIpcGetEventHandle");
    SYM(IpcOpenEventHandle, "cuIpcOpenEventHandle");
    SYM(ModuleLoadDataEx, "cuModuleLoadDataEx");
    SYM(ModuleUnload, "cuModuleUnload");
    SYM(ModuleGetFunction, "cuModuleGetFunction");
    SYM(CtxGetDevice, "cuCtxGetDevice");
    SYM(DeviceGetAttribute, "cuDeviceGetAttribute");
    SYM(LaunchKernel, "cuLaunchKernel");
    SYM(OccupancyMaxActiveBlocksPerMultiprocessor, "cuOccupancyMaxActiveBlocksPerMultiprocessor");
    static const char *const ctx_id[] = {"cuCtxGetId", NULL};
    if (!sym(&cu.CtxGetId, ctx_id))
        cu.CtxGetId = NULL;
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

/* ---- device memory, IPC ---- */

static int c_mem_alloc(uintptr_t *p, size_t n)
{
    CUdeviceptr d = 0;
    CUresult r = cu.MemAlloc(&d, n);
    *p = (uintptr_t)d;
    return r;
}

static int c_mem_free(uintptr_t p) { return cu.MemFree((CUdeviceptr)p); }

static int c_d2d(uintptr_t dst, uintptr_t src, size_t n, uintptr_t s)
{
    return cu.MemcpyDtoDAsync((CUdeviceptr)dst, (CUdeviceptr)src, n, (CUstream)s);
}

static int c_ipc_mem_handle(rr_ipc_handle *h, uintptr_t p)
{
    CUipcMemHandle mh;
    CUresult r = cu.IpcGetMemHandle(&mh, (CUdeviceptr)p);
    if (r == CUDA_SUCCESS)
        memcpy(h->bytes, mh.reserved, sizeof h->bytes);
    return r;
}

static int c_ipc_mem_open(uintptr_t *p, const rr_ipc_handle *h)
{
    CUipcMemHandle mh;
    memcpy(mh.reserved, h->bytes, sizeof mh.reserved);
    CUdeviceptr d = 0;
    CUresult r = cu.IpcOpenMemHandle(&d, mh, CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS);
    *p = (uintptr_t)d;
    return r;
}

static int c_ipc_mem_close(uintptr_t p) { return cu.IpcCloseMemHandle((CUdeviceptr)p); }

static int c_ipc_event_create(void **e)
{
    CUevent ev = NULL;
    CUresult r = cu.EventCreate(&ev, CU_EVENT_INTERPROCESS | CU_EVENT_DISABLE_TIMING);
    *e = ev;
    return r;
}

static int c_ipc_event_handle(rr_ipc_handle *h, void *e)
{
    CUipcEventHandle eh;
    CUresult r = cu.IpcGetEventHandle(&eh, (CUevent)e);
    if (r == CUDA_SUCCESS)
        memcpy(h->bytes, eh.reserved, sizeof h->bytes);
    return r;
}

static int c_ipc_event_open(void **e, const rr_ipc_handle *h)
{
    CUipcEventHandle eh;
    memcpy(eh.reserved, h->bytes, sizeof eh.reserved);
    CUevent ev = NULL;
    CUresult r = cu.IpcOpenEventHandle(&ev, eh);
    *e = ev;
    return r;
}

/* ---- the reduction kernel ----
 * Per context: the module JIT-compiled from rr_dev_kernel_ptx, its kernel and the grid
 * that fills the device once.  Loaded on the first launch in a context and never
 * unloaded (it goes with its context).  A context is known by its handle and, where the
 * driver has cuCtxGetId (CUDA 12), by its id too: a primary context released to zero and
 * created again may come back under the same handle, without the module. */
#define KTABLE_SIZE 64
static pthread_mutex_t ktab_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    CUcontext ctx;
    unsigned long long id;
    CUfunction fn;
    CUfunction copy_fn; /* the batched copy kernel */
    unsigned blocks; /* grid cap: multiprocessors x resident blocks per multiprocessor */
} ktab[KTABLE_SIZE];
static int ktab_n;
/* The first JIT failure's log (ERR_JIT); written once under ktab_mu, then only read. */
static char jit_msg[1024];
static atomic_int jit_msg_set;

static const char *cu_string(CUresult r)
{
    const char *s = NULL;
    if (cu.GetErrorString == NULL || cu.GetErrorString(r, &s) != CUDA_SUCCESS || s == NULL)
        return "unknown CUDA error";
    return s;
}

/* Load the module into the current context (ctx, id) and put it into the table at *slot,
 * or at a new slot when *slot < 0 (ktab_mu held). */
static int kernel_load(CUcontext ctx, unsigned long long id, int *slot)
{
    if (rr_dev_kernel_ptx[0] == '\0')
        return ERR_NO_PTX;
    if (*slot < 0 && ktab_n == KTABLE_SIZE)
        return ERR_KTABLE;
    char log[4096] = "";
    CUjit_option opts[2] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
    void *vals[2] = {log, (void *)(uintptr_t)sizeof log};
    CUmodule mod = NULL;
    CUresult r = cu.ModuleLoadDataEx(&mod, rr_dev_kernel_ptx, 2, opts, vals);
    if (r != CUDA_SUCCESS) {
        log[sizeof log - 1] = '\0';
        if (log[0] == '\0')
            return r;
        if (!jit_msg_set) {
            snprintf(jit_msg, sizeof jit_msg, "the driver cannot load ringred's reduction "
                     "kernel (%s, CUresult %d): %.900s", cu_string(r), r, log);
            jit_msg_set = 1;
        }
        return ERR_JIT;
    }
    CUfunction fn = NULL;
    CUdevice dev = 0;
    int sms = 0, per_sm = 0;
    CUfunction copy_fn = NULL;
    r = cu.ModuleGetFunction(&fn, mod, RR_DEV_KERNEL_NAME);
    if (r == CUDA_SUCCESS)
        r = cu.ModuleGetFunction(&copy_fn, mod, RR_DEV_COPY_NAME);
    if (r == CUDA_SUCCESS)
        r = cu.CtxGetDevice(&dev);
    if (r == CUDA_SUCCESS)
        r = cu.DeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev);
    if (r == CUDA_SUCCESS)
        r = cu.OccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, fn, KERNEL_THREADS, 0);
    if (r != CUDA_SUCCESS) {
        cu.ModuleUnload(mod);
        return r;
    }
    if (*slot < 0)
        *slot = ktab_n++;
    ktab[*slot].ctx = ctx;
    ktab[*slot].id = id;
    ktab[*slot].fn = fn;
    ktab[*slot].copy_fn = copy_fn;
    ktab[*slot].blocks = (unsigned)(sms > 0 ? sms : 1) *
                         (unsigned)(per_sm > 0 ? per_sm : KERNEL_BLOCKS_PER_SM);
    return CUDA_SUCCESS;
}

/* The current context's table slot (its module loaded), under ktab_mu; <0: an error r. */
static int kernel_slot(CUresult *rp)
{
    CUcontext ctx = NULL;
    CUresult r = cu.CtxGetCurrent(&ctx);
    if (r == CUDA_SUCCESS && ctx == NULL)
        r = CUDA_ERROR_INVALID_CONTEXT;
    unsigned long long id = 0;
    if (r == CUDA_SUCCESS && cu.CtxGetId)
        r = cu.CtxGetId(ctx, &id);
    int slot = -1;
    if (r == CUDA_SUCCESS) {
        for (int i = 0; i < ktab_n && slot < 0; i++)
            if (ktab[i].ctx == ctx)
                slot = i;
        if (slot < 0 || ktab[slot].id != id)
            r = kernel_load(ctx, id, &slot);
    }
    *rp = r;
    return r == CUDA_SUCCESS ? slot : -1;
}

static int c_launch_copy(const rr_kcopy *segs, uint32_t nseg, uint64_t max_bytes, uintptr_t s)
{
    if (nseg == 0)
        return CUDA_SUCCESS;
    CUresult r;
    pthread_mutex_lock(&ktab_mu);
    int slot = kernel_slot(&r);
    CUfunction fn = slot >= 0 ? ktab[slot].copy_fn : NULL;
    pthread_mutex_unlock(&ktab_mu);
    if (r != CUDA_SUCCESS)
        return r;
    /* x: blocks per segment (four 16-byte steps per thread for the longest), y: segments */
    uint64_t per = (uint64_t)KERNEL_THREADS * 16 * 4;
    uint64_t gx = (max_bytes + per - 1) / per;
    unsigned grid_x = (unsigned)(gx < 1 ? 1 : gx > 64 ? 64 : gx);
    unsigned grid_y = nseg < 65535 ? nseg : 65535;
    const rr_kcopy *table = segs; /* pinned host memory: the device reads it (UVA) */
    void *params[2] = {&table, &nseg};
    return cu.LaunchKernel(fn, grid_x, grid_y, 1, KERNEL_THREADS, 1, 1, 0, (CUstream)s, params,
                           NULL);
}

static int c_launch_reduce(const rr_kargs *a, uintptr_t s)
{
    if (a->n == 0)
        return CUDA_SUCCESS;
    CUcontext ctx = NULL;
    CUresult r = cu.CtxGetCurrent(&ctx);
    if (r != CUDA_SUCCESS)
        return r;
    if (ctx == NULL)
        return CUDA_ERROR_INVALID_CONTEXT;
    unsigned long long id = 0;
    if (cu.CtxGetId && (r = cu.CtxGetId(ctx, &id)) != CUDA_SUCCESS)
        return r;
    pthread_mutex_lock(&ktab_mu);
    int slot = -1;
    for (int i = 0; i < ktab_n && slot < 0; i++)
        if (ktab[i].ctx == ctx)
            slot = i;
    if (slot < 0 || ktab[slot].id != id)
        r = kernel_load(ctx, id, &slot);
    CUfunction fn = r == CUDA_SUCCESS ? ktab[slot].fn : NULL;
    uint64_t cap = r == CUDA_SUCCESS ? ktab[slot].blocks : 0;
    pthread_mutex_unlock(&ktab_mu);
    if (r != CUDA_SUCCESS)
        return r;
    uint64_t blocks = (a->n + KERNEL_THREADS - 1) / KERNEL_THREADS;
    unsigned grid = (unsigned)(blocks < cap ? blocks : cap);
    rr_kargs args = *a; /* the driver copies the parameter at launch */
    void *params[1] = {&args};
    return cu.LaunchKernel(fn, grid, 1, 1, KERNEL_THREADS, 1, 1, 0, (CUstream)s, params, NULL);
}

static const char *c_errstr(int code)
{
    switch (code) {
    case ERR_NO_PTX:
        return "this build of ringred carries no PTX for its reduction kernel";
    case ERR_JIT:
        return jit_msg_set ? jit_msg : "the driver cannot load ringred's reduction kernel";
    case ERR_KTABLE:
        return "too many CUDA contexts for ringred's kernel table";
    default:
        break;
    }
    return cu_string(code);
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
    .mem_alloc = c_mem_alloc,
    .mem_free = c_mem_free,
    .d2d = c_d2d,
    .ipc_mem_handle = c_ipc_mem_handle,
    .ipc_mem_open = c_ipc_mem_open,
    .ipc_mem_close = c_ipc_mem_close,
    .ipc_event_create = c_ipc_event_create,
    .ipc_event_handle = c_ipc_event_handle,
    .ipc_event_open = c_ipc_event_open,
    .launch_reduce = c_launch_reduce,
    .launch_copy = c_launch_copy,
};

const rr_dev_backend *rr_dev_cuda_backend(void) { return &cuda_backend; }
