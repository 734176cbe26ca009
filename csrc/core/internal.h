/* Internal definitions of the core layer, shared by every layer above it (see
 * docs/design.md, "Layers").  Not installed, not part of the API. */
#ifndef RR_INTERNAL_H
#define RR_INTERNAL_H

#include <mpi.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/copy.h"
#include "core/transport.h"
#include "ringred.h"

#define RR_ERRMSG_LEN 2048

/* Collective kinds carried in the agreement header. */
enum { RR_KIND_ALLREDUCE = 1, RR_KIND_BROADCAST = 2, RR_KIND_ALLGATHER = 3,
       RR_KIND_REDUCESCATTER = 4, RR_KIND_BARRIER = 5,
       /* device buffers (device.c): the whole-call agreement of the staged pipeline and of
        * the direct (CUDA-aware MPI) path; a host and a device call do not match */
       RR_KIND_DEV_ALLREDUCE = 6, RR_KIND_DEV_ALLREDUCE_DIRECT = 7, RR_KIND_DEV_BROADCAST = 8,
       /* device reducescatter: the whole call, with a hash of the split in `root` */
       RR_KIND_DEV_REDUCESCATTER = 9 };

/* Settings read once from RINGRED_* environment variables (see settings.c). */
typedef struct rr_settings {
    size_t small_bytes;   /* messages up to this go through the latency path */
    size_t segment_bytes; /* pipeline segment of the ring */
    int window;           /* segments in flight per direction */
    int spin_count;       /* polls before sched_yield */
    size_t device_segment_bytes; /* device staging: bytes per pipeline segment (slot) */
    int device_slots;     /* device staging: pinned slots in the ring */
    int cuda_aware;       /* RINGRED_CUDA_AWARE: -1 auto, 0 never, 1 always */
    /* same-host GPU transport (device_ipc.c); rank 0's values */
    int device_transport; /* RINGRED_DEVICE_TRANSPORT: 0 auto, 1 ipc, 2 staged */
    size_t ipc_min_bytes; /* allreduces below this stay staged */
    size_t ipc_chunk_bytes; /* bytes per scratch slot */
    int ipc_slots;        /* scratch slots per rank */
    size_t ipc_oneshot_bytes; /* chunks up to this are reduced in one shot */
    /* shared-memory transport (shm.c); the leader's geometry is used by every rank */
    size_t shm_small_bytes; /* messages up to this ride in the one-sync small slots */
    size_t shm_slot_bytes;  /* pipeline chunk of the large path (two slots per rank) */
    size_t shm_stream_bytes; /* allreduce outputs from this size on: non-temporal stores */
    double timeout_s;       /* RINGRED_TIMEOUT_SECONDS (alias RINGRED_SHM_TIMEOUT_SECONDS): give
                             * up waiting for a live peer after this long (0: never) */
    double shm_spin_us;     /* a shm wait polls this long before yielding */
    size_t shm_arena_bytes; /* per-rank arena for shared buffers (rr_mem_alloc; 0: none) */
} rr_settings;

/* The agreement header: what every rank must agree on before data moves. */
typedef struct rr_header {
    uint8_t kind, dtype, op, flags;
    int32_t root;
    uint64_t count;
    double prescale, postscale;
    uint32_t tag; /* the calling thread (rr_comm_set_thread); set by the agreement itself */
    uint32_t seq; /* that thread's count of agreements on this communicator: calls pair up
                   * only with the same call of the same thread, never a neighbour's */
} rr_header;
#define RR_HDR_MISMATCH 0x1
#define RR_DTYPE_INVALID 0xFF /* header of a rank that refused its arguments */

/* Transports (rr_comm.transport). */
enum { RR_TRANSPORT_MPI = 0, RR_TRANSPORT_SHM = 1 };
typedef struct rr_shm rr_shm; /* shm.h */

#define RR_NOTICE_LEN 512
/* Peers' processes (liveness.c): pid and start time of every rank, learnt at creation;
 * watch[p]: rank p runs on this host, in our pid namespace, so its death can be seen. */
typedef struct rr_live {
    pid_t *pid;
    unsigned long long *start; /* 0: unknown (kill() alone) */
    unsigned char *watch;
    int broken;                /* a peer died or timed out: every later wait fails */
    rr_status broken_code;
    /* exit notices: a receive from any rank, posted at creation (rr_live_poll tests it) */
    MPI_Request notice_req;
    char notice_in[RR_NOTICE_LEN];
    char *notice_out;          /* our own notice, sent at exit (never freed: MPI may read it) */
} rr_live;

struct rr_comm {
    MPI_Comm comm;        /* our own duplicate */
    int transport;        /* RR_TRANSPORT_* in force */
    const rr_transport_ops *ops; /* the transport's collectives (core/transport.h), chosen
                                  * at creation with `transport` */
    rr_shm *shm;          /* same-host segment when transport == RR_TRANSPORT_SHM */
    int rank, size;
    int local_rank, local_size;
    uint32_t thread_tag;  /* rr_comm_set_thread: which thread of the caller makes the calls */
    uint32_t thread_seq;  /* and how many agreements it has made here (rr_header.seq) */
    rr_settings cfg;
    /* scratch owned by the communicator, grown on demand */
    void *scratch[2];     /* [0]: message slots, [1]: work / accumulation */
    size_t scratch_cap[2];
    MPI_Request *reqs;
    size_t reqs_cap;
    struct rr_device *device; /* device staging state (device.c), NULL until first used */
    void (*device_free)(struct rr_comm *c); /* set by device.c with `device`: lets it go */
    rr_live live;         /* peers' liveness (liveness.c) */
    MPI_Status *sts;      /* statuses of the MPI waits (p2p.c), grown on demand */
    size_t sts_cap;
    /* shm could not be used (auto fell back to MPI): why, for the caller to warn about */
    char transport_note[512];
    /* hierarchical plan (hier.c): the ranks of this host (shm) and the ranks with our local
     * index on the other hosts (MPI); NULL when the plan is off or we take no part */
    struct rr_comm *hier_local, *hier_cross;
    int hier;             /* the plan is in force on this communicator */
    int hosts;            /* hosts the ranks span (RINGRED_HOST or shared-memory split) */
    int min_local;        /* fewest ranks on any host: local indices below it cross hosts */
    uint64_t hier_calls;  /* collectives that took the hierarchical plan */
    size_t hier_piece;    /* RINGRED_HIER_PIECE_BYTES (rank 0's): the plan runs piece by piece */
    MPI_Comm host_comm;   /* during creation only: the ranks of this host */
    int *outer;           /* a child's ranks as its parent numbers them (messages), or NULL */
    const struct rr_comm *live_parent; /* a child's parent: its waits watch the parent's
                                        * peers too (a death anywhere ends every step) */
    int *hier_table;      /* hierarchical: per rank {host, local rank, rank in its cross child} */
    char errmsg[RR_ERRMSG_LEN];
};

/* ---- errors (status.c) ---- */
rr_status rr_fail(rr_comm *c, rr_status code, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
rr_status rr_fail_mpi(rr_comm *c, int mpierr, const char *file, int line, const char *what);
#define RR_FAIL(c, code, ...) rr_fail((c), (code), __FILE__, __LINE__, __VA_ARGS__)
#define RR_CHECK(call) do { rr_status rr_s_ = (call); if (rr_s_ != RR_OK) return rr_s_; } while (0)
#define RR_CHECK_GOTO(call, st, label) do { st = (call); if (st != RR_OK) goto label; } while (0)
#define RR_MPI(c, call) do { int rr_e_ = (call); \
    if (rr_e_ != MPI_SUCCESS) return rr_fail_mpi((c), rr_e_, __FILE__, __LINE__, #call); } while (0)

/* ---- settings.c, settings_table.c ----
 * Every RINGRED_* setting is a row of rr_settings_table (settings_table.c), by index: */
enum {
    RR_S_TRANSPORT, RR_S_SMALL_BYTES, RR_S_SEGMENT_BYTES, RR_S_WINDOW, RR_S_SPIN_COUNT,
    RR_S_TIMEOUT_SECONDS, RR_S_KERNEL_PATH, RR_S_HOST, RR_S_HIERARCHICAL, RR_S_HIER_PIECE_BYTES,
    RR_S_SHM_SMALL_BYTES, RR_S_SHM_SLOT_BYTES, RR_S_SHM_STREAM_BYTES, RR_S_SHM_SPIN_US,
    RR_S_SHM_ARENA_BYTES,
    RR_S_FUSION_THRESHOLD, RR_S_FUSION_MAX_TENSOR, RR_S_CACHE_CAPACITY,
    RR_S_STALL_CHECK_SECONDS, RR_S_STALL_SHUTDOWN_SECONDS, RR_S_ENGINE_COLD_SET_BYTES,
    RR_S_TIMELINE, RR_S_ENGINE_YIELD_US, RR_S_ENGINE_SLEEP_US, RR_S_ENGINE_WAIT_YIELD_US,
    RR_S_RESULT_POOL_BYTES, RR_S_RESULT_POOL_MIN_BYTES,
    RR_S_DEVICE_SEGMENT_BYTES, RR_S_DEVICE_SLOTS, RR_S_CUDA_AWARE, RR_S_DEVICE_TRANSPORT,
    RR_S_DEVICE_PACK, RR_S_IPC_MIN_BYTES, RR_S_IPC_CHUNK_BYTES, RR_S_IPC_ONESHOT_BYTES,
    RR_S_IPC_SLOTS,
    RR_S_LOG,
    RR_S_COUNT
};
extern const rr_setting_desc rr_settings_table[RR_S_COUNT];
void rr_settings_load(rr_settings *s);
/* The value in force of setting `id` (RR_S_*), read from the environment now. */
size_t rr_set_size(int id);
double rr_set_number(int id);
int rr_set_choice(int id); /* the index in its choices of the word in force */
/* Test hook: is the ordering bug `what` planted (RINGRED_TEST_PLANT=what)?  The tests set it
 * to show that their checks catch a missing wait; nothing else ever does. */
int rr_test_plant(const char *what);

/* ---- comm.c: the communicator's own memory ---- */
rr_status rr_scratch(rr_comm *c, int which, size_t bytes, void **out);
rr_status rr_requests(rr_comm *c, size_t n, MPI_Request **out);

/* Tags (each collective uses its own so a mismatch cannot mix payloads). */
enum { RR_TAG_AGREE = 101, RR_TAG_SMALL = 102, RR_TAG_RS = 103, RR_TAG_AG = 104,
       RR_TAG_BCAST = 105, RR_TAG_DIAG = 106,
       RR_TAG_EXIT = 107 /* a rank's exit notice (liveness.c) */ };

/* ---- mismatch.c: agreement headers (every transport's agreement uses them) ---- */
/* Describe the disagreement among all[0..size) (every rank's header, flags ignored) as seen
 * by the rank whose own header is h; returns RR_ERR_MISMATCH with the message. */
rr_status rr_mismatch_report(rr_comm *c, const rr_header *all, const rr_header *h);
int rr_header_equal(const rr_header *a, const rr_header *b);

/* ---- liveness.c ---- */
int rr_proc_stat(pid_t pid, char *state, unsigned long long *start);
/* Collective: learn every rank's pid, start time and host (ranks with the same `host` value
 * share this host).  Fills c->live. */
rr_status rr_live_setup(rr_comm *c, int host);
void rr_live_free(rr_live *l);
int rr_live_dead(const rr_comm *c, int p);   /* rank p (watched) has died */
int rr_live_first_dead(const rr_comm *c);    /* the lowest dead peer, or -1 */
/* In a wait: RR_ERR_PEER (communicator marked broken) if a peer on this host died or a peer
 * sent an exit notice (rr_comm_exit_notice), else RR_OK. */
rr_status rr_live_poll(rr_comm *c, int waited_for, const char *what);
double rr_live_now(void);                    /* CLOCK_MONOTONIC seconds */
#define RR_LIVENESS_S 0.02                   /* seconds between liveness checks in a wait */
/* Mark the communicator unusable and return code. */
rr_status rr_live_broken(rr_comm *c, rr_status code);
rr_status rr_live_fail_again(rr_comm *c);
/* RR_ERR_PEER naming the dead rank (and the one waited for, -1: unknown); marks broken. */
rr_status rr_live_dead_error(rr_comm *c, int dead, int waited_for, const char *what);
/* RR_ERR_TIMEOUT after RINGRED_TIMEOUT_SECONDS; marks broken. */
rr_status rr_live_timeout_error(rr_comm *c, int waited_for, const char *what);

/* ---- helpers ---- */
void rr_split_even(size_t count, int parts, size_t *off, size_t *len);
void rr_wait_pause(int *spins, int spin_limit);

#endif
