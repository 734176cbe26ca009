/* ringred public C API.  Every exported function returns an rr_status (RR_OK == 0);
 * results come back through out-parameters; a detailed message for the last failure
 * on a communicator is kept on it (rr_comm_last_error).  Nothing here prints, aborts
 * or allocates user-visible outputs. */
#ifndef RINGRED_H
#define RINGRED_H

#include <stddef.h>
#include <stdint.h>

#define RR_VERSION_MAJOR 0
#define RR_VERSION_MINOR 1
#define RR_VERSION_PATCH 0 /* ringred/__init__.py __version__ is the source; tests check */

typedef int rr_status;
enum {
    RR_OK = 0,
    RR_ERR_INVALID = 1,     /* bad argument (caller bug) */
    RR_ERR_UNSUPPORTED = 2, /* dtype / op / feature not supported */
    RR_ERR_NOMEM = 3,
    RR_ERR_MPI = 4,         /* MPI returned an error; message has MPI's string */
    RR_ERR_MISMATCH = 5,    /* ranks disagree on count / dtype / op / root / scale */
    RR_ERR_PEER = 6,        /* a peer died or vanished */
    RR_ERR_TIMEOUT = 7,     /* waited longer than the configured limit */
    RR_ERR_STATE = 8,       /* wrong state: not initialized, shut down, ... */
    RR_ERR_SYSTEM = 9,      /* an OS call failed; message has strerror */
    RR_ERR_DUPLICATE = 10,  /* a tensor of this name is already in flight */
    RR_ERR_STALL = 11       /* stall inspector gave up waiting */
};

typedef enum {
    RR_UINT8 = 0,
    RR_INT8 = 1,
    RR_INT16 = 2,
    RR_INT32 = 3,
    RR_INT64 = 4,
    RR_FLOAT16 = 5,
    RR_BFLOAT16 = 6,
    RR_FLOAT32 = 7,
    RR_FLOAT64 = 8,
    RR_NUM_DTYPES = 9
} rr_dtype;

typedef enum {
    RR_SUM = 0,
    RR_MIN = 1,
    RR_MAX = 2,
    RR_PROD = 3,
    RR_NUM_OPS = 4
} rr_op;

typedef struct rr_comm rr_comm;

/* ---- status / info ---- */
const char *rr_strerror(rr_status code);
size_t rr_dtype_size(int dtype);
const char *rr_kernel_path(void);            /* CPU kernel path in force: "avx512", "avx2", "scalar" */
rr_status rr_set_kernel_path(const char *name); /* "auto", "scalar", "avx2", "avx512"; RR_ERR_UNSUPPORTED if the CPU lacks it */
const char *rr_build_info(void);

/* ---- settings: every RINGRED_* environment variable, in one table (settings_table.c) ----
 * rr_setting_info(i) describes entry i (0 <= i < rr_setting_count(); NULL past the end).
 * rr_setting_value(name, out) evaluates one (by name, or by its older alias) from this
 * process's environment now, exactly as the C core reads it: the value in force and whether
 * it was the default, set, clamped into range or rejected (not a number / not a choice); a
 * clamped or rejected value comes with a message naming the variable and the value used.
 * Nothing is printed: Python warns (ringred/info.py).  RR_ERR_INVALID for an unknown name. */
#define RR_SETTING_SIZE 0   /* a byte count: a number, optionally with k/m/g (KiB, MiB, GiB) */
#define RR_SETTING_NUMBER 1 /* a non-negative number (seconds, microseconds, a count) */
#define RR_SETTING_CHOICE 2 /* one word of `choices` ('|'-separated, any case) */
#define RR_SETTING_TEXT 3   /* free text (a path) */
#define RR_SETTING_COUNT 4  /* a whole number (slots, polls): clamped into range like a size */
#define RR_SCOPE_OWN 0      /* each rank uses its own value */
#define RR_SCOPE_RANK0 1    /* rank 0's value is sent to and used by every rank */
#define RR_SCOPE_SAME 2     /* must be the same on every rank, or creation fails everywhere */
#define RR_READER_C 0       /* read by the C core */
#define RR_READER_PYTHON 1  /* read by ringred's Python side (described here all the same) */
#define RR_SETTING_DEFAULT 0  /* unset or empty: the default */
#define RR_SETTING_SET 1      /* set and used as given */
#define RR_SETTING_CLAMPED 2  /* set, out of range: the nearest bound is used */
#define RR_SETTING_REJECTED 3 /* set, not valid: the default is used (RR_SETTING_STRICT: fails) */
#define RR_SETTING_STRICT 1   /* rr_setting_desc.flags: an invalid value is an error, not ignored */
#define RR_SETTING_TEXT_LEN 256
#define RR_SETTING_MSG_LEN 512
typedef struct rr_setting_desc {
    const char *name;    /* RINGRED_... */
    const char *alias;   /* an older name, read when `name` is unset; NULL if none */
    const char *group;   /* "collectives", "shm", "engine", "device", "logging" */
    int kind;            /* RR_SETTING_SIZE .. RR_SETTING_COUNT */
    int scope;           /* RR_SCOPE_* */
    int reader;          /* RR_READER_* */
    int flags;           /* RR_SETTING_STRICT or 0 */
    const char *dflt;    /* the default, as text ("" for none) */
    double min, max;     /* SIZE / NUMBER: the range (max may be infinite: no limit) */
    const char *choices; /* CHOICE: the accepted words; NULL otherwise */
    const char *help;    /* one line for users */
} rr_setting_desc;
typedef struct rr_setting_val {
    int state;                         /* RR_SETTING_DEFAULT .. RR_SETTING_REJECTED */
    double number;                     /* SIZE / NUMBER / COUNT: the value in force */
    char text[RR_SETTING_TEXT_LEN];    /* the value in force, as text */
    char raw[RR_SETTING_TEXT_LEN];     /* the environment's string ("" when unset) */
    char message[RR_SETTING_MSG_LEN];  /* CLAMPED / REJECTED: what and which value is used */
} rr_setting_val;
int rr_setting_count(void);
const rr_setting_desc *rr_setting_info(int i);
rr_status rr_setting_value(const char *name, rr_setting_val *out);

/* ---- communicators ---- */
/* fcomm: the Fortran handle of an MPI communicator (mpi4py: comm.py2f()). It is duplicated. */
rr_status rr_comm_create(int fcomm, rr_comm **out);
/* The same with an explicit transport: "auto" (shared memory when every rank is on one
 * host, MPI otherwise), "shm" (an error unless every rank is on one host) or "mpi"; NULL or
 * "" reads RINGRED_TRANSPORT (default auto).  Collective: every rank must ask for the same. */
rr_status rr_comm_create_ex(int fcomm, const char *transport, rr_comm **out);
rr_status rr_comm_destroy(rr_comm *comm);
const char *rr_comm_last_error(const rr_comm *comm);
int rr_comm_rank(const rr_comm *comm);
int rr_comm_size(const rr_comm *comm);
int rr_comm_local_rank(const rr_comm *comm);
int rr_comm_local_size(const rr_comm *comm);
const char *rr_comm_transport(const rr_comm *comm); /* "shm" or "mpi" */
/* Why auto chose MPI although every rank is on one host (the shared segment could not be
 * created or reserved, e.g. /dev/shm too small), or "" (Python warns with it). */
const char *rr_comm_transport_note(const rr_comm *comm);
/* Hosts (RINGRED_HOST or the shared-memory split) this communicator's ranks span. */
int rr_comm_hosts(const rr_comm *comm);
/* 1 if the two-level plan is in force (RINGRED_HIERARCHICAL): shared memory inside each
 * host, MPI between hosts. */
int rr_comm_hierarchical(const rr_comm *comm);
/* Collectives that took the two-level plan so far (allreduces above the small-message size). */
uint64_t rr_comm_hier_calls(const rr_comm *comm);
/* The process is exiting without finishing its collectives (an uncaught exception, the end of
 * the script): tell every peer why, without waiting.  A peer waiting in a collective on this
 * communicator then fails with RR_ERR_PEER "rank r: <why>" instead of waiting for ever. */
rr_status rr_comm_exit_notice(rr_comm *comm, const char *why);
rr_status rr_barrier(rr_comm *comm);

/* ---- shared buffers (shared-memory transport) ----
 * Memory in this rank's arena of the communicator's shared segment.  An allreduce whose
 * input is such a buffer on every rank (output in place or shared too, for the fastest
 * plan) reads the peers' buffers where they are instead of copying them through slots.
 * Any buffer works in any collective; only the copies differ.  RR_ERR_UNSUPPORTED when the
 * communicator does not use the shm transport (or RINGRED_SHM_ARENA_BYTES=0), RR_ERR_NOMEM
 * when the arena or /dev/shm is full.  The pointer is 64-byte aligned. */
rr_status rr_mem_alloc(rr_comm *comm, size_t bytes, void **out);
/* Any time, also after the communicator is destroyed.  RR_ERR_INVALID: not such a buffer. */
rr_status rr_mem_free(void *ptr);
/* Collectives on this communicator that read shared buffers in place so far. */
uint64_t rr_comm_zero_copy_calls(const rr_comm *comm);

/* ---- collectives (blocking; release the GIL around them) ----
 * Average is RR_SUM with postscale 1/size (integers: exact truncating division,
 * requested with avg_div = size; pass 1 otherwise). */
rr_status rr_allreduce(rr_comm *comm, const void *sendbuf, void *recvbuf, size_t count,
                       int dtype, int op, double prescale, double postscale, int64_t avg_div);
rr_status rr_broadcast(rr_comm *comm, void *buf, size_t count, int dtype, int root);
/* Every rank passes its own count; counts_out (size entries) receives all counts.
 * Call with recvbuf == NULL to learn the counts first (agreement + count exchange only);
 * then call again with recvbuf of sum(counts) elements. */
rr_status rr_allgather(rr_comm *comm, const void *sendbuf, size_t count, void *recvbuf,
                       int dtype, size_t row_elems, size_t *counts_out);
/* recvcounts[size]: elements each rank receives (sum == count). */
rr_status rr_reducescatter(rr_comm *comm, const void *sendbuf, size_t count, void *recvbuf,
                           const size_t *recvcounts, int dtype, int op, double prescale,
                           double postscale, int64_t avg_div);

/* Take part in the agreement of a collective of `kind` (1 allreduce, 2 broadcast,
 * 3 allgather, 4 reducescatter) with a header no peer can match, so that every rank
 * fails the call with RR_ERR_MISMATCH instead of waiting for a rank that refused its
 * arguments locally.  Returns RR_OK on the poisoning rank once the others are told. */
rr_status rr_poison(rr_comm *comm, int kind);
/* Which thread of the caller makes the next calls (a hash of its name; 0 by default) and how
 * many agreements it has made on this communicator (rr_comm_thread_seq reads the count back
 * before another thread takes over).  Both travel in every call's agreement: a call pairs up
 * only with the same call of the same thread on the other ranks, or fails with a mismatch. */
void rr_comm_set_thread(rr_comm *comm, uint32_t tag, uint32_t seq);
uint32_t rr_comm_thread_seq(const rr_comm *comm);

/* ---- device (GPU) buffers ----
 * Device pointers of `backend` on device `device_id`; `stream` is the producer stream of
 * the caller's array library (a CUstream; 0, 1 = legacy default, 2 = per-thread default).
 * The copies wait for the work queued on that stream (an event, not a device-wide
 * synchronize); later work on it is ordered after the result; the call returns when the
 * result is in place.  Outputs are allocated by the caller.  Without a CUDA-aware MPI the
 * data is staged through pinned host memory in pipelined segments; with one (and
 * RINGRED_CUDA_AWARE auto or 1) allreduce of MPI-reducible data goes to MPI directly. */
enum { RR_DEVICE_CUDA = 1, RR_DEVICE_FAKE = 2 };
/* RR_OK if the backend can run here; else why (why_len bytes) tells the reason. */
rr_status rr_device_backend_available(int backend, char *why, size_t why_len);
/* The device transport of this communicator's allreduces: "ipc" (CUDA IPC between the
 * ranks of one host, ringred's kernels), "staged" (through pinned host memory) or
 * "undecided" (no device collective yet); why: the reason IPC is not in force. */
const char *rr_device_transport(rr_comm *comm, char *why, size_t why_len);
/* *out = 1 if device allreduce goes to a CUDA-aware MPI (RINGRED_CUDA_AWARE). */
rr_status rr_device_direct(rr_comm *comm, int backend, int *out);
rr_status rr_device_allreduce(rr_comm *comm, int backend, int device_id, uintptr_t stream,
                              const void *dsend, void *drecv, size_t count, int dtype, int op,
                              double prescale, double postscale, int64_t avg_div);
/* dsend is read on the root only; every rank's result lands in drecv (may equal dsend). */
rr_status rr_device_broadcast(rr_comm *comm, int backend, int device_id, uintptr_t stream,
                              const void *dsend, void *drecv, size_t count, int dtype, int root);
/* Two phases like rr_allgather: drecv == NULL learns the counts. */
rr_status rr_device_allgather(rr_comm *comm, int backend, int device_id, uintptr_t stream,
                              const void *dsend, size_t count, void *drecv, int dtype,
                              size_t row_elems, size_t *counts_out);
rr_status rr_device_reducescatter(rr_comm *comm, int backend, int device_id, uintptr_t stream,
                                  const void *dsend, size_t count, void *drecv,
                                  const size_t *recvcounts, int dtype, int op, double prescale,
                                  double postscale, int64_t avg_div);
/* ---- background engine (asynchronous, name-matched, fused) ----
 * Its own duplicate of the communicator and a background thread that owns all its
 * communication.  Tensors are matched across ranks by name, in any submission order;
 * small allreduces with the same dtype / op / scale factors are fused.  Creation and
 * rr_engine_stop are collective. */
typedef struct rr_engine rr_engine;

enum { RR_MAX_DIMS = 8 };
enum { RR_REQ_ALLREDUCE = 1, RR_REQ_BROADCAST = 2, RR_REQ_ALLGATHER = 3,
       RR_REQ_REDUCESCATTER = 4 };

/* One submission.  Buffers belong to the caller and must stay valid and unmodified until
 * the request is done.  Average is RR_SUM with postscale / avg_div as for rr_allreduce.
 * broadcast: recvbuf holds the data (in place); allgather: the engine gathers into its own
 * buffer (rr_engine_result_rows / rr_engine_result_copy); reducescatter: rows of shape[0]
 * are split as evenly as possible, lower ranks taking the extra rows.
 * rr_engine_result_rows: each rank's first dimension (size entries). */
typedef struct rr_request {
    const char *name;
    int kind;
    const void *sendbuf;
    void *recvbuf;
    size_t count;
    int dtype;
    int op;
    double prescale;
    double postscale;
    int64_t avg_div;
    int root;
    int ndim;
    int64_t shape[RR_MAX_DIMS];
    const char *group;
    int group_size;
    /* Where the buffers live: backend 0 = host memory; RR_DEVICE_CUDA / RR_DEVICE_FAKE =
     * device memory of that backend on device `device`, produced on `stream` (as for the
     * rr_device_* calls).  A device request records a ready event on `stream` when it is
     * submitted and completes only once the device is done with its buffers (the engine
     * waits for the event, never for the whole device).  Host vs device is negotiated. */
    int backend;
    int device;
    uintptr_t stream;
} rr_request;

rr_status rr_engine_create(int fcomm, rr_engine **out);
/* The same; arena_from (or NULL): a communicator over the same ranks in the same order whose
 * shared buffers (rr_mem_alloc) the engine should read in place too, and where it puts its
 * fusion buffer.  If any rank cannot share it, every rank's engine keeps its own arena. */
rr_status rr_engine_create_ex(int fcomm, rr_comm *arena_from, rr_engine **out);
/* rr_device_transport of the engine's communicator. */
const char *rr_engine_device_transport(rr_engine *eng, char *why, size_t why_len);
/* rr_comm_hier_calls of the engine's communicator. */
uint64_t rr_engine_hier_calls(const rr_engine *eng);
/* rr_comm_zero_copy_calls of the engine's communicator (safe from any thread). */
uint64_t rr_engine_zero_copy_calls(const rr_engine *eng);
/* Collective: stop the background thread (pending requests fail); results stay readable. */
rr_status rr_engine_stop(rr_engine *eng);
/* Before rr_engine_stop when the process is exiting without ringred.shutdown() (an uncaught
 * exception, the interpreter's exit): the peers' requests then fail with RR_ERR_PEER and
 * "rank r: <why>" instead of the plain shutdown message. */
rr_status rr_engine_exit_reason(rr_engine *eng, const char *why);
rr_status rr_engine_destroy(rr_engine *eng);
/* Message of the calling thread's last failed rr_engine_* call. */
const char *rr_engine_last_error(const rr_engine *eng);
/* Submit n requests atomically (a grouped allreduce is one call); ids[i] identifies each. */
rr_status rr_engine_submit(rr_engine *eng, const rr_request *reqs, size_t n, uint64_t *ids);
/* Shortcut for one allreduce (the hot path of the Python API): the same as a request. */
rr_status rr_engine_allreduce(rr_engine *eng, const char *name, const void *sendbuf,
                              void *recvbuf, size_t count, int dtype, int op, double prescale,
                              double postscale, int64_t avg_div, int ndim, const int64_t *shape,
                              uint64_t *id);
/* The same for device buffers (the hot path of device allreduces): backend, device and
 * producer stream as in rr_request. */
rr_status rr_engine_allreduce_device(rr_engine *eng, const char *name, const void *sendbuf,
                                     void *recvbuf, size_t count, int dtype, int op,
                                     double prescale, double postscale, int64_t avg_div,
                                     int ndim, const int64_t *shape, int backend, int device,
                                     uintptr_t stream, uint64_t *id);
rr_status rr_engine_poll(rr_engine *eng, uint64_t id, int *done);
/* The request's own status once done; RR_ERR_TIMEOUT if not done within timeout_s. */
rr_status rr_engine_wait(rr_engine *eng, uint64_t id, double timeout_s);
/* rr_engine_wait, then release the request if it succeeded (its status is returned). */
rr_status rr_engine_finish(rr_engine *eng, uint64_t id, double timeout_s);
const char *rr_engine_error(rr_engine *eng, uint64_t id);
rr_status rr_engine_result_rows(rr_engine *eng, uint64_t id, size_t *rows);
rr_status rr_engine_result_copy(rr_engine *eng, uint64_t id, void *dst, size_t bytes);
rr_status rr_engine_release(rr_engine *eng, uint64_t id);
/* Refuse requests this rank cannot make (bad arguments): each name is submitted as a
 * rejection, so the other ranks' requests of that name fail with `reason` ("rejected
 * locally on rank r") instead of stalling.  rr_engine_submit does this itself when its
 * own checks fail.  Keeps the thread's last error message. */
rr_status rr_engine_reject(rr_engine *eng, const rr_request *reqs, size_t n, const char *reason);
/* Join: done once every rank has joined; rr_engine_join_result gives the last to join. */
rr_status rr_engine_join(rr_engine *eng, uint64_t *id);
rr_status rr_engine_join_result(rr_engine *eng, uint64_t id, int *last_rank);
/* Pop one queued warning (stall inspector) into buf; *got = 0 when there is none. */
rr_status rr_engine_take_warning(rr_engine *eng, char *buf, size_t cap, int *got);
rr_status rr_engine_timeline_start(rr_engine *eng, const char *path);
rr_status rr_engine_timeline_stop(rr_engine *eng);
/* Counters since creation: cycles run, and how many of them took the slow path. */
rr_status rr_engine_stats(rr_engine *eng, uint64_t *cycles, uint64_t *slow_cycles);
/* Where the engine's time went since creation (seconds, cumulative; counts as numbers):
 * out[i] for i < n and i < RR_ENGINE_NPHASES, indexed by RR_PH_*.  Cheap: the engine always
 * keeps them (two clock reads per step). */
#define RR_PH_NEGOTIATE 0 /* cycles: drain, cycle vector, slow path, bookkeeping */
#define RR_PH_COPY_IN 1   /* packing fused tensors into the fusion buffer */
#define RR_PH_REDUCE 2    /* the collectives themselves (fused and direct) */
#define RR_PH_COPY_OUT 3  /* unpacking fused results */
#define RR_PH_WAIT 4      /* user threads inside rr_engine_wait / rr_engine_finish */
#define RR_PH_FUSED 5     /* tensors reduced through the fusion buffer (count) */
#define RR_PH_DIRECT 6    /* tensors reduced where they are (count) */
#define RR_PH_FUSED_BYTES 7
#define RR_PH_DIRECT_BYTES 8
#define RR_PH_UNITS 9     /* collectives run for allreduce units (count) */
#define RR_ENGINE_NPHASES 10
rr_status rr_engine_phases(rr_engine *eng, double *out, int n);

/* ---- test hooks for the kernels ---- */
/* dst = srcs[0] op srcs[1] op ... op srcs[k-1] with the named kernel path. */
rr_status rr_test_reduce(const char *path, void *dst, const void *const *srcs, int k, size_t n,
                         int dtype, int op);
rr_status rr_test_scale(const char *path, void *dst, const void *src, size_t n, int dtype,
                        double factor, int64_t divisor);
/* The device reduction kernel (dev_kernel.h) compiled as host C, over host buffers: dst =
 * postscale(srcs[0] op ... op srcs[nsrc-1]) with each input prescaled, as one launch.
 * RR_ERR_UNSUPPORTED: dtype, op, or nsrc > 8; RR_ERR_INVALID: nsrc < 1, avg_div < 1, a
 * non-finite factor, factors != 1 on integers, or a NULL / misaligned buffer (n > 0). */
rr_status rr_test_dev_kernel(void *dst, const void *const *srcs, int nsrc, size_t n, int dtype,
                             int op, double prescale, double postscale, int64_t avg_div);

/* ---- test hooks for the fake device backend ----
 * A producer stream of the fake backend (a worker thread): its handle works as the stream
 * argument of rr_device_*.  sleep queues a pause; copy queues an asynchronous write of
 * `bytes` at dst from src (fake device addresses, tagged or not, or host memory that must
 * stay valid until the stream is synchronized); sync waits for everything queued.
 * RR_ERR_INVALID for a handle that is not such a stream. */
rr_status rr_test_fake_stream_create(uintptr_t *s);
rr_status rr_test_fake_stream_destroy(uintptr_t s);
rr_status rr_test_fake_stream_sleep(uintptr_t s, double seconds);
rr_status rr_test_fake_stream_copy(uintptr_t s, uintptr_t dst, uintptr_t src, size_t bytes);
rr_status rr_test_fake_stream_sync(uintptr_t s);

#endif
