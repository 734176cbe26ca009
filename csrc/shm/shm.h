/* Same-host shared-memory transport: the segment, its synchronization, and the collectives
 * built on it.  Internal header.
 *
 * Segment layout (every offset a multiple of 64, the same in every process):
 *   control line      magic, geometry (written by the leader before anyone else maps it)
 *   ctr[n][3]         one line per counter: ARRIVE (calls posted), IN (chunks posted),
 *                     OUT (chunks consumed); each written by its rank only, release/acquire
 *   small[n][2]       per rank, two small slots (by call parity): 64-byte line with the
 *                     agreement header, then up to small_bytes of payload
 *   big[n][2]         per rank, two pipeline slots of slot_bytes
 *   res[2]            two result chunks of slot_bytes (allreduce: every rank writes its slice)
 *
 * Every collective starts with one arrival: each rank writes its header (and a small payload)
 * into its slot for this call's parity, bumps ARRIVE to the call number, waits for every
 * peer's ARRIVE and checks that all headers agree.  So when a rank is in call s, every peer
 * has finished call s-2 (the last user of this parity) and every chunked phase of call s-1:
 * slots need no other protection across calls.  Chunk counters carry values base+i+1 with a
 * base that grows by the chunk count of every call, identical on all ranks, so a counter
 * left behind by an earlier call can never satisfy a wait of a later one. */
#ifndef RR_SHM_H
#define RR_SHM_H

#include <stdatomic.h>
#include <sys/types.h>

#include "core/internal.h"

#define RR_SHM_LINE 64
#define RR_SHM_HDR_BYTES 64 /* header line at the start of a small slot */

enum { RR_CTR_ARRIVE = 0, RR_CTR_IN = 1, RR_CTR_OUT = 2,
       /* the CUDA IPC transport's chunk steps (device_ipc.c): copied in, reduced, gathered */
       RR_CTR_IPC_IN = 3, RR_CTR_IPC_RED = 4, RR_CTR_IPC_OUT = 5, RR_NCTR = 6 };

/* A counter, written by its rank only, and the number of peers asleep on it (a futex on
 * the counter's low 32 bits) so that the writer knows when to wake them. */
typedef struct rr_shm_line {
    _Atomic uint64_t v;
    _Atomic uint32_t sleepers;
    char pad[RR_SHM_LINE - sizeof(uint64_t) - sizeof(uint32_t)];
} rr_shm_line;

struct rr_shm {
    uint8_t *base;
    size_t bytes;
    int n, me;
    size_t small_bytes, slot_bytes; /* the leader's geometry */
    size_t stream_bytes;            /* streaming threshold in force (picks among the plans) */
    rr_shm_line *ctr;               /* ctr[rank * RR_NCTR + which] */
    uint8_t *small, *big, *res;
    size_t small_stride; /* one small slot: header line + payload */
    uint64_t call;       /* calls made (== our ARRIVE) */
    uint64_t step;       /* chunk counter base */
    const char *what;    /* collective in progress, for messages */
    const void **srcs;   /* n pointers: reduction inputs */
    uint8_t **zin, **zout; /* n pointers each: peers' shared buffers in the current call */
    /* waiting */
    double spin_s;       /* poll this long before yielding (adaptive) */
    double spin_max_s;   /* ... at most this long */
    int oversubscribed;  /* some rank has fewer CPUs than the host has ranks (all agree) */
    int yields;          /* sched_yield()s before sleeping on the counter */
    double timeout_s;     /* RINGRED_TIMEOUT_SECONDS (peers' liveness: c->live) */
    struct rr_arena *arena; /* shared buffers (shm_arena.c); NULL: none on this rank */
    _Atomic uint64_t zero_copy_calls; /* calls that read shared buffers in place (any thread
                                         * may read it) */
};

/* ---- shm_arena.c: shared buffers ---- */
typedef struct rr_arena rr_arena;
#define RR_ARENA_NONE UINT64_MAX
/* Map every rank's arena (each bytes per rank, from file_off of segment fd); takes fd.
 * NULL if each == 0 or the mapping fails (fd then still the caller's). */
rr_arena *rr_arena_map(int fd, size_t file_off, size_t each, int n, int me);
/* The communicator lets go; the mapping lives on while blocks do. */
void rr_arena_detach(rr_arena *a);
/* Offset of [p, p + bytes) in our own arena, or RR_ARENA_NONE. */
uint64_t rr_arena_offset(const rr_arena *a, const void *p, size_t bytes);
uint8_t *rr_arena_at(const rr_arena *a, int rank, uint64_t off);
/* After an arrival in which every rank posted its input's arena offset as word 1: whether
 * every input is shared (then the call is counted as read in place). */
int rr_shm_inputs_shared(rr_shm *s);
rr_status rr_arena_alloc(rr_comm *c, rr_arena *a, size_t bytes, void **out);
/* Collective over c: use from's arena instead of c's own (both shm, the same ranks in the
 * same order), so that buffers allocated from `from` are read in place by c's collectives.
 * RR_ERR_UNSUPPORTED on every rank (nothing changed) if any rank cannot. */
rr_status rr_shm_share_arena(rr_comm *c, rr_comm *from);

/* ---- shm.c: segment and synchronization ---- */
/* Collective over c->comm (all ranks on one host): create/map the segment or fail on every
 * rank.  On failure c->shm stays NULL and the message is on c. */
rr_status rr_shm_open(rr_comm *c);
void rr_shm_close(rr_comm *c);

static inline uint8_t *rr_shm_small_slot(const rr_shm *s, int rank, uint64_t call)
{
    return s->small + ((size_t)rank * 2 + (call & 1)) * s->small_stride;
}
/* Payload area of our slot for the next call (write it before rr_shm_arrive). */
static inline uint8_t *rr_shm_post(const rr_shm *s)
{
    return rr_shm_small_slot(s, s->me, s->call + 1) + RR_SHM_HDR_BYTES;
}
/* Payload of `rank` in the call that just arrived. */
static inline const uint8_t *rr_shm_payload(const rr_shm *s, int rank)
{
    return rr_shm_small_slot(s, rank, s->call) + RR_SHM_HDR_BYTES;
}
/* The 8-byte values a rank posted beside its header in the call that just arrived (word 0:
 * rr_shm_arrive's `extra`, the allgather count; allreduce: where its buffers are in its
 * arena). */
#define RR_SHM_WORDS 3
uint64_t rr_shm_word(const rr_shm *s, int rank, int i);
static inline uint64_t rr_shm_extra(const rr_shm *s, int rank) { return rr_shm_word(s, rank, 0); }
static inline uint8_t *rr_shm_big(const rr_shm *s, int rank, uint64_t chunk)
{
    return s->big + ((size_t)rank * 2 + (chunk & 1)) * s->slot_bytes;
}
static inline uint8_t *rr_shm_res(const rr_shm *s, uint64_t chunk)
{
    return s->res + (chunk & 1) * s->slot_bytes;
}

/* Start a call: publish header h (flags ignored) and `extra` in our slot (its payload must be
 * written already), wait for every peer, check that all headers agree.  A disagreement
 * returns RR_ERR_MISMATCH on every rank with the usual message.  what: "allreduce", ... */
rr_status rr_shm_arrive(rr_comm *c, const rr_header *h, uint64_t extra, const char *what);
/* The same, posting RR_SHM_WORDS values (read them with rr_shm_word). */
rr_status rr_shm_arrive_words(rr_comm *c, const rr_header *h,
                              const uint64_t words[RR_SHM_WORDS], const char *what);
/* Reserve k chunk steps for this call; chunk i of it is signalled with base + i + 1. */
static inline uint64_t rr_shm_steps(rr_shm *s, uint64_t k)
{
    uint64_t b = s->step;
    s->step += k;
    return b;
}
void rr_shm_wake(rr_shm_line *line);
static inline void rr_shm_signal(rr_shm *s, int which, uint64_t v)
{
    rr_shm_line *line = &s->ctr[s->me * RR_NCTR + which];
    /* seq_cst store then load, against the sleeper's increment then re-check: either it
     * sees the new value or we see it asleep */
    atomic_store_explicit(&line->v, v, memory_order_seq_cst);
    if (atomic_load_explicit(&line->sleepers, memory_order_seq_cst))
        rr_shm_wake(line);
}
/* Wait until counter `which` of `peer` (of every other rank) reaches v. */
rr_status rr_shm_wait(rr_comm *c, int which, int peer, uint64_t v);
rr_status rr_shm_wait_all(rr_comm *c, int which, uint64_t v);
/* RR_ERR_PEER (and the transport marked broken) if a peer has died; for callers that wait
 * on something else than a counter (a device event fed by peers). */
rr_status rr_shm_check_peers(rr_comm *c);

/* Split len elements of es bytes into n slices on 64-byte boundaries: slice p is
 * [*lo, *lo + return). */
size_t rr_shm_slice(size_t len, size_t es, int n, int p, size_t *lo);

/* ---- shm_allreduce.c, shm_collectives.c: called by the entry points after validation
 * (size > 1, arguments checked) ---- */
rr_status rr_shm_allreduce(rr_comm *c, const void *sendbuf, void *recvbuf, size_t count,
                           rr_dtype dt, rr_op op, double prescale, double postscale,
                           int64_t avg_div);
rr_status rr_shm_broadcast(rr_comm *c, void *buf, size_t count, rr_dtype dt, int root);
rr_status rr_shm_allgather_counts(rr_comm *c, size_t count, rr_dtype dt, size_t row_elems,
                                  size_t *counts);
/* Our block must already be in place in recvbuf (at off[rank]). */
rr_status rr_shm_allgather(rr_comm *c, void *recvbuf, rr_dtype dt, const size_t *counts,
                           const size_t *off);
rr_status rr_shm_reducescatter(rr_comm *c, const void *sendbuf, size_t count, void *recvbuf,
                               const size_t *recvcounts, rr_dtype dt, rr_op op, double prescale,
                               double postscale, int64_t avg_div);
rr_status rr_shm_barrier(rr_comm *c);
/* The arrival alone (rr_agree_call, rr_poison). */
rr_status rr_shm_agree(rr_comm *c, const rr_header *h);
/* The transport's table of these (core/transport.h). */
extern const rr_transport_ops rr_shm_ops;

/* ---- shm.c: the streaming threshold ---- */
/* cold = 1: the next allreduces' outputs will not stay cached; a shared-memory communicator
 * then streams outputs (non-temporal stores) from an eighth of RINGRED_SHM_STREAM_BYTES on
 * (1 MiB by default) instead of from the setting itself.  cold = 0 restores the setting; with
 * the setting 0 nothing is ever streamed.  The threshold picks among the plans, so every
 * rank must pass the same value before the same call. */
void rr_comm_stream_cold(rr_comm *c, int cold);

#endif
