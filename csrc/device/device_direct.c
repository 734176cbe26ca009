/* Direct path for device buffers: when the MPI library is CUDA-aware, allreduce hands the
 * device pointers to MPI (MPI_Iallreduce) and MPI reduces them.  ringred has no GPU kernels
 * (the driver API alone would need PTX), so this path covers what MPI can reduce by itself:
 * integer and float32/float64 data with Sum, Min, Max or Product and no scale factors.
 * Everything else, and every call when MPI is not CUDA-aware, is staged through host memory
 * (device.c).  RINGRED_CUDA_AWARE: auto (default) uses the direct path when MPI reports CUDA
 * support, 0 never, 1 always (an error when MPI does not report it). */
#include <dlfcn.h>
#include <limits.h>
#include <string.h>

#include "device/device.h"
#include "core/internal.h"
#include "mpi/mpi.h"

/* Look an MPI extension up in the library that holds MPI_Init, without declaring it (not
 * every MPI has it, and their prototypes differ). */
static void *mpi_sym(const char *name)
{
    Dl_info info;
    if (dladdr((void *)&MPI_Init, &info) == 0 || info.dli_fname == NULL)
        return NULL;
    void *h = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
    if (h == NULL)
        return NULL;
    void *p = dlsym(h, name);
    dlclose(h);
    return p;
}

int rr_mpi_cuda_aware(void)
{
    void *p = mpi_sym("MPIX_Query_cuda_support"); /* Open MPI, MPICH >= 4.1 */
    if (p) {
        int (*query)(void);
        memcpy(&query, &p, sizeof p);
        return query() != 0;
    }
    p = mpi_sym("MPIX_GPU_query_support"); /* MPICH */
    if (p) {
        int (*query)(int, int *);
        memcpy(&query, &p, sizeof p);
        int yes = 0;
        return query(0 /* MPIX_GPU_SUPPORT_CUDA */, &yes) == MPI_SUCCESS && yes;
    }
    return 0;
}

rr_status rr_device_use_direct(rr_comm *c, const rr_dev_backend *be, int *out)
{
    *out = 0;
    if (c->cfg.cuda_aware == 0)
        return RR_OK;
    int aware = be->mpi_aware();
    if (c->cfg.cuda_aware == 1 && !aware)
        return RR_FAIL(c, RR_ERR_UNSUPPORTED,
                       "RINGRED_CUDA_AWARE=1 but the MPI library does not report %s support "
                       "(MPIX_Query_cuda_support / MPIX_GPU_query_support); set "
                       "RINGRED_CUDA_AWARE=auto or 0 to stage device buffers through host memory",
                       be->name);
    *out = aware;
    return RR_OK;
}

static MPI_Datatype mpi_type(int dtype)
{
    switch (dtype) {
    case RR_UINT8: return MPI_UINT8_T;
    case RR_INT8: return MPI_INT8_T;
    case RR_INT16: return MPI_INT16_T;
    case RR_INT32: return MPI_INT32_T;
    case RR_INT64: return MPI_INT64_T;
    case RR_FLOAT32: return MPI_FLOAT;
    case RR_FLOAT64: return MPI_DOUBLE;
    default: return MPI_DATATYPE_NULL;
    }
}

static MPI_Op mpi_op(int op)
{
    switch (op) {
    case RR_SUM: return MPI_SUM;
    case RR_MIN: return MPI_MIN;
    case RR_MAX: return MPI_MAX;
    case RR_PROD: return MPI_PROD;
    default: return MPI_OP_NULL;
    }
}

int rr_device_mpi_supports(int dtype, int op, double pre, double post, int64_t div)
{
    return mpi_type(dtype) != MPI_DATATYPE_NULL && mpi_op(op) != MPI_OP_NULL && pre == 1.0 &&
           post == 1.0 && div == 1;
}

rr_status rr_device_mpi_allreduce(rr_comm *c, const rr_dev_backend *be, uintptr_t dsend,
                                  uintptr_t drecv, size_t count, int dtype, int op)
{
    MPI_Datatype t = mpi_type(dtype);
    MPI_Op o = mpi_op(op);
    size_t es = rr_dtype_size(dtype);
    uint8_t *s = be->mpi_ptr(dsend), *r = be->mpi_ptr(drecv);
    for (size_t done = 0; done < count;) {
        size_t n = count - done < (size_t)INT_MAX ? count - done : (size_t)INT_MAX;
        MPI_Request req;
        const void *from = s == r ? MPI_IN_PLACE : (const void *)(s + done * es);
        RR_MPI(c, MPI_Iallreduce(from, r + done * es, (int)n, t, o, c->comm, &req));
        RR_CHECK(rr_wait(c, &req));
        done += n;
    }
    return RR_OK;
}
