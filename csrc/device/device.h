/* Device (GPU) buffers: the backend interface and the per-communicator staging state.
 * Internal header.
 *
 * A backend is a table of functions with CUDA driver semantics: streams and events are
 * opaque handles carried as uintptr_t, device memory is addressed by uintptr_t, every
 * function returns 0 on success or a backend error code that errstr() turns into text.
 * Two backends exist: CUDA (device_cuda.c: the driver API loaded with dlopen, no link-time
 * or header dependency) and FAKE (device_fake.c: host memory posing as device memory,
 * worker threads posing as streams) so that the staging schedule is tested without a GPU. */
#ifndef RR_DEVICE_H
#define RR_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "device/dev_kernel.h"
#include "ringred.h"

/* Producer streams 0, 1 (CU_STREAM_LEGACY) and 2 (CU_STREAM_PER_THREAD) are the default
 * streams; any other value is a stream handle of the caller's library. */
#define RR_DEV_NOT_READY 600 /* event_query: recorded work not finished (CUDA_ERROR_NOT_READY) */
#define RR_DEV_MAX_SLOTS 16

/* An IPC handle (CUipcMemHandle / CUipcEventHandle: 64 opaque bytes). */
typedef struct rr_ipc_handle {
    unsigned char bytes[64];
} rr_ipc_handle;

typedef struct rr_dev_backend {
    const char *name;
    /* Load the backend once per process; on failure write a reason into why. */
    int (*load)(char *why, size_t len);
    /* Make device `dev`'s context current on this thread; *ctx receives the context to keep
     * (retained), *prev the one that was current so that leave() can restore it. */
    int (*ctx_retain)(int dev, void **ctx);
    int (*ctx_release)(int dev, void *ctx);
    int (*ctx_enter)(void *ctx, void **prev);
    int (*ctx_leave)(void *prev);
    int (*host_alloc)(void **p, size_t bytes); /* pinned host memory */
    int (*host_free)(void *p);
    int (*stream_create)(uintptr_t *s);
    int (*stream_destroy)(uintptr_t s);
    int (*stream_sync)(uintptr_t s);
    int (*event_create)(void **e);
    int (*event_destroy)(void *e);
    int (*event_record)(void *e, uintptr_t s);
    int (*stream_wait_event)(uintptr_t s, void *e);
    int (*event_query)(void *e); /* 0: done, RR_DEV_NOT_READY: pending, else an error */
    int (*d2h)(void *dst, uintptr_t src, size_t bytes, uintptr_t s);
    int (*h2d)(uintptr_t dst, const void *src, size_t bytes, uintptr_t s);
    const char *(*errstr)(int code);
    /* Does the MPI library take this backend's device pointers (CUDA-aware MPI)? */
    int (*mpi_aware)(void);
    /* The address to hand to MPI for device address p (the fake backend untags it). */
    void *(*mpi_ptr)(uintptr_t p);

    /* ---- device memory and device-to-device copies (the engine's fusion buffer, the IPC
     * transport's scratch); the current context's device ---- */
    int (*mem_alloc)(uintptr_t *p, size_t bytes); /* cuMemAlloc; bytes > 0 */
    int (*mem_free)(uintptr_t p);
    int (*d2d)(uintptr_t dst, uintptr_t src, size_t bytes, uintptr_t s); /* cuMemcpyDtoDAsync */

    /* ---- CUDA IPC between the processes of one host ----
     * Memory from mem_alloc is exported once and opened by peers; an interprocess event
     * (CU_EVENT_INTERPROCESS | CU_EVENT_DISABLE_TIMING) is recorded by its owner and waited
     * on by peers (stream_wait_event): a wait covers the owner's most recent record made
     * before the wait call, so callers order record-then-wait through host flags.
     * event_destroy releases created and opened events alike. */
    int (*ipc_mem_handle)(rr_ipc_handle *h, uintptr_t p);           /* cuIpcGetMemHandle */
    int (*ipc_mem_open)(uintptr_t *p, const rr_ipc_handle *h);      /* cuIpcOpenMemHandle */
    int (*ipc_mem_close)(uintptr_t p);                              /* cuIpcCloseMemHandle */
    int (*ipc_event_create)(void **e);
    int (*ipc_event_handle)(rr_ipc_handle *h, void *e);             /* cuIpcGetEventHandle */
    int (*ipc_event_open)(void **e, const rr_ipc_handle *h);        /* cuIpcOpenEventHandle */

    /* ---- ringred's reduction kernel (dev_kernel.h) on stream s, current context ---- */
    int (*launch_reduce)(const rr_kargs *a, uintptr_t s);
    /* ---- its batched copy kernel: segs (nseg entries, pinned host memory from host_alloc,
     * read when the launch runs), max_bytes the longest segment ---- */
    int (*launch_copy)(const rr_kcopy *segs, uint32_t nseg, uint64_t max_bytes, uintptr_t s);
} rr_dev_backend;

const rr_dev_backend *rr_dev_cuda_backend(void);
const rr_dev_backend *rr_dev_fake_backend(void);
/* The backend of a code (RR_DEVICE_CUDA, RR_DEVICE_FAKE); NULL for any other. */
const rr_dev_backend *rr_dev_backend_of(int backend);

/* Per-communicator device state (rr_comm.device), created on the first device call and
 * re-created when the backend or the device changes. */
typedef struct rr_device {
    const rr_dev_backend *be;
    int dev;
    void *ctx;
    int retained;                  /* ctx was retained (ctx_release on free) */
    uintptr_t dl, ul;              /* copy streams: downloads (D2H) and uploads (H2D) */
    void *ev_in, *ev_out;          /* producer stream -> copy streams, uploads -> producer */
    void *ev_dl[RR_DEV_MAX_SLOTS]; /* download of the segment in slot i finished */
    void *ev_ul[RR_DEV_MAX_SLOTS]; /* upload from slot i finished */
    int nslots;
    size_t slot_bytes;
    uint8_t *slots;                /* pinned, nslots * slot_bytes */
    uint8_t *whole[2];             /* pinned whole-buffer staging (allgather, reducescatter) */
    size_t whole_cap[2];
    /* the background engine's device work (engine_device.c), created on first use */
    uintptr_t work;                /* the engine's stream: waits on ready events, packs, ... */
    void *ev_done;                 /* recorded on `work` after a response's last copy */
    uintptr_t fbuf;                /* device fusion buffer (mem_alloc) */
    size_t fbuf_cap;
    void *zeros;                   /* pinned host zeros for a joined rank's share */
    size_t zeros_cap;
    rr_kcopy *segs;                /* pinned: the batched copy kernel's segment tables */
    size_t segs_cap;               /* entries */
    struct rr_ipc *ipc;            /* the CUDA IPC transport (device_ipc.c), NULL until used */
    /* A peer died (or went silent) while our streams may wait on its events: they may never
     * drain, so nothing synchronizes with them, destroys them or frees memory they use. */
    int stuck;
} rr_device;

/* A failed backend call as the communicator's error (RR_ERR_SYSTEM, the backend's text). */
rr_status rr_dev_fail(rr_comm *c, const rr_dev_backend *be, int code, const char *what,
                      const char *file, int line);
#define RR_DEV(c, be, what, call) do { int rr_e_ = (call); \
    if (rr_e_) return rr_dev_fail((c), (be), rr_e_, (what), __FILE__, __LINE__); } while (0)

/* ---- device.c, for the engine (engine_device.c) ----
 * The communicator's state for (backend, device), its context made current on this thread
 * (*prev: the context to restore with rr_dev_leave). */
rr_status rr_dev_enter(rr_comm *c, int backend, int dev, rr_device **out, void **prev);
void rr_dev_leave(rr_device *d, void *prev);
/* Poll event ev until it has completed (spin, yield, then short sleeps); no device-wide
 * synchronize.  With a shared-memory segment the peers' liveness is checked meanwhile (the
 * device may be waiting for a peer's event): a dead peer gives RR_ERR_PEER, d->stuck set. */
rr_status rr_dev_host_wait(rr_comm *c, rr_device *d, void *ev);
/* After a failed call: wait until the device is done with everything queued (so that no
 * copy outlives the call's buffers), unless a peer failed (d->stuck is then set). */
void rr_dev_settle(rr_device *d, rr_status st);
/* Collectives whose arguments every rank already agreed on (the engine's negotiation): no
 * agreement of their own.  Stream-ordered after the work on `prod`; when they return the
 * result is in place and later work on `prod` is ordered after it.  Every rank runs the same
 * sequence of host collectives (segment by segment), so a rank that has joined and has no
 * device buffers takes part with rr_dev_allreduce_zeros. */
rr_status rr_dev_allreduce_agreed(rr_comm *c, rr_device *d, uintptr_t prod, uintptr_t dsend,
                                  uintptr_t drecv, size_t count, int dtype, int op, double pre,
                                  double post, int64_t div, int allow_ipc);
rr_status rr_dev_allreduce_zeros(rr_comm *c, size_t count, int dtype, int op, double pre,
                                 double post, int64_t div);
rr_status rr_dev_broadcast_agreed(rr_comm *c, rr_device *d, uintptr_t prod, uintptr_t buf,
                                  size_t count, int dtype, int root, int allow_ipc);
rr_status rr_dev_reducescatter_agreed(rr_comm *c, rr_device *d, uintptr_t prod, uintptr_t dsend,
                                      size_t count, uintptr_t drecv, const size_t *recvcounts,
                                      int dtype, int op, double pre, double post, int64_t div,
                                      int allow_ipc);
/* Download bytes from device address src into host memory (after the work on prod). */
rr_status rr_dev_download(rr_comm *c, rr_device *d, uintptr_t prod, void *host, uintptr_t src,
                          size_t bytes);

/* Direct path (device_direct.c): does allreduce hand device pointers to MPI? 0 no, 1 yes;
 * RR_ERR_UNSUPPORTED when RINGRED_CUDA_AWARE=1 but the MPI library is not CUDA-aware. */
rr_status rr_device_use_direct(rr_comm *c, const rr_dev_backend *be, int *out);
/* Can MPI reduce this call by itself (an MPI type and op, no scale factors)? */
int rr_device_mpi_supports(int dtype, int op, double pre, double post, int64_t div);
/* MPI_Iallreduce on device memory, count elements (split above INT_MAX); in place when
 * dsend == drecv.  Needs rr_device_mpi_supports(). */
rr_status rr_device_mpi_allreduce(rr_comm *c, const rr_dev_backend *be, uintptr_t dsend,
                                  uintptr_t drecv, size_t count, int dtype, int op);
/* Does the MPI library report CUDA support (MPIX_Query_cuda_support and kin)? */
int rr_mpi_cuda_aware(void);

#endif
