/* Internal definitions of the background engine (engine.c, negotiate.c, coordinator.c,
 * cache.c, fusion.c, stall.c, timeline.c, wire.c; its maps are core/strmap.h).  Not part of
 * the API.
 *
 * Threads: user threads call the rr_engine_* functions (submit / poll / wait / release).
 * All communication on the engine's own rr_comm happens under the progress lock, held by
 * the background thread or by a thread blocked in rr_engine_wait (progress.c).  Fields are
 * marked [mu] (engine mutex), [bg] (progress lock held) or [atomic]. */
#ifndef RR_ENGINE_H
#define RR_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "core/hmap.h"
#include "core/internal.h"
#include "core/strmap.h"

#define RR_TAG_WAKE 201 /* on the engine's communicator: wake(k) starts cycle k */

/* ---------------------------------------------------------------- wire.c */
typedef struct rr_buf {
    uint8_t *p;
    size_t n, cap;
    int oom;
} rr_buf;

typedef struct rr_rd {
    const uint8_t *p;
    size_t n, pos;
    int bad;
} rr_rd;

/* What every rank must agree on for one tensor; also a cache entry and a response. */
typedef struct rr_desc {
    char *name;  /* owned */
    char *group; /* owned; NULL unless part of a grouped allreduce */
    char *reason; /* owned; NULL unless the submitting rank rejected its own arguments: then
                   * the name fails on every rank with this reason (rr_engine_reject) */
    int32_t kind, dtype, op, root, ndim, group_size;
    int32_t device; /* 0: host buffers, 1: device (GPU) buffers: negotiated like the rest */
    double pre, post;
    int64_t div;
    uint64_t count;
    int64_t shape[RR_MAX_DIMS];
} rr_desc;

void rr_buf_reset(rr_buf *b);
void rr_buf_free(rr_buf *b);
void rr_put_u8(rr_buf *b, uint8_t v);
void rr_put_u32(rr_buf *b, uint32_t v);
void rr_put_u64(rr_buf *b, uint64_t v);
void rr_put_f64(rr_buf *b, double v);
void rr_put_str(rr_buf *b, const char *s);
void rr_put_desc(rr_buf *b, const rr_desc *d);
uint8_t rr_get_u8(rr_rd *r);
uint32_t rr_get_u32(rr_rd *r);
uint64_t rr_get_u64(rr_rd *r);
double rr_get_f64(rr_rd *r);
char *rr_get_str(rr_rd *r); /* malloc'ed; NULL for an empty string */
int rr_get_desc(rr_rd *r, rr_desc *d);

int rr_desc_copy(rr_desc *dst, const rr_desc *src); /* deep copy; -1 out of memory */
void rr_desc_free(rr_desc *d);
int rr_desc_same(const rr_desc *a, const rr_desc *b); /* same signature (name ignored) */
int rr_desc_cacheable(const rr_desc *d);
const char *rr_kind_name(int kind);
const char *rr_dtype_label(int dtype);
const char *rr_op_label(int op);

/* ---------------------------------------------------------------- entries */
typedef struct rr_entry {
    uint64_t id;
    rr_desc d;
    const void *sendbuf;
    void *recvbuf;
    int is_join;
    /* device requests (d.device == 1): backend, device id, producer stream, and the ready
     * event recorded on that stream at submission (from the engine's pool, engine_device.c) */
    int backend, dev;
    uintptr_t stream;
    void *ready_ev;
    /* [bg] */
    int slot;          /* cache slot of a pending hit, -1 otherwise */
    int stall_flagged; /* an invalidation of its slot was asked for */
    double t_submit, t_ready;
    struct rr_entry *qnext; /* submission queue, then bg lists */
    /* results: written by bg before `done`, read by users after */
    atomic_int done;
    rr_status status;
    char *errmsg;
    void *result;    /* allgather: gathered data (engine-owned) */
    size_t *counts;  /* allgather: elements from each rank */
    size_t *rows;    /* allgather: first dimension of each rank (inside counts) */
    size_t result_bytes;
    int join_last;
    /* [mu] */
    int released;
    int refs;       /* threads inside rr_engine_wait on it */
    rr_hlink id_link;      /* in rr_engine.ids, under the id */
} rr_entry;

/* A negotiated response, identical on every rank. */
enum { RESP_EXEC = 1, RESP_ERROR = 2 };
typedef struct rr_resp {
    int type;
    rr_desc d;
    uint64_t *counts; /* allgather: elements, then first dimensions, per rank (2 size) */
    int err_code;
    char *err_msg;
    int cached; /* came from the response cache (d is borrowed, not owned) */
    rr_entry *ent; /* this rank's entry, NULL if it has none (joined) */
} rr_resp;

typedef struct rr_resp_list {
    rr_resp *v;
    size_t n, cap;
} rr_resp_list;

int rr_resp_push(rr_resp_list *l, const rr_resp *r);
void rr_resp_clear(rr_resp_list *l);

/* ---------------------------------------------------------------- cache.c */
typedef struct rr_cache_slot {
    int used;
    rr_desc d;
    uint64_t stamp;
} rr_cache_slot;

typedef struct rr_cache {
    int cap, hw;          /* capacity; slots [0, hw) have ever been used */
    rr_cache_slot *slots;
    rr_smap byname;
    uint64_t clock;
    uint64_t allreduce_bytes; /* total size of the allreduce entries */
} rr_cache;

int rr_cache_init(rr_cache *c, int cap);
void rr_cache_free(rr_cache *c);
int rr_cache_find(const rr_cache *c, const char *name);
void rr_cache_touch(rr_cache *c, int slot);
void rr_cache_remove(rr_cache *c, int slot);
/* Insert d (copied); *victim gets an evicted slot or -1.  Returns the slot, -1 on OOM. */
int rr_cache_insert(rr_cache *c, const rr_desc *d, int *victim);

/* ---------------------------------------------------------------- coordinator.c (rank 0) */
typedef struct rr_neg {
    rr_desc *req;   /* size entries; req[r].name == NULL: rank r has not submitted */
    int nhave;
    double t_first, t_warned;
    struct rr_neg *prev, *next;
    char *name;     /* == the first request's name, owned */
} rr_neg;

typedef struct rr_group_acc {
    char *name;
    int size, nready;
    rr_resp_list ready;
} rr_group_acc;

typedef struct rr_coord {
    rr_smap table;  /* name -> rr_neg */
    rr_neg *head, *tail;
    rr_smap groups; /* group name -> rr_group_acc */
} rr_coord;

/* ---------------------------------------------------------------- timeline.c */
typedef struct rr_timeline {
    pthread_mutex_t mu;
    atomic_int on;
    FILE *f;
    char *fbuf;
    double t0;
    int first;
    rr_smap tids;
    int next_tid;
} rr_timeline;

void rr_tl_init(rr_timeline *t);
rr_status rr_tl_open(rr_timeline *t, const char *path, int rank, char *err, size_t errcap);
void rr_tl_close(rr_timeline *t);
void rr_tl_span(rr_timeline *t, const char *tensor, const char *what, double t_begin,
                double t_end);
void rr_tl_instant(rr_timeline *t, const char *what, uint64_t cycle);
#define RR_TL_ON(t) (atomic_load_explicit(&(t)->on, memory_order_relaxed))

/* ---------------------------------------------------------------- the engine */
typedef struct rr_wake_rec rr_wake_rec;

typedef struct rr_warning {
    char *text;
    struct rr_warning *next;
} rr_warning;

struct rr_engine {
    rr_comm *comm;
    int rank, size;
    /* settings (rank 0's, broadcast at creation) */
    size_t fusion_threshold;
    size_t fusion_max_tensor; /* larger tensors skip the fusion buffer (0: no limit) */
    size_t cold_set_bytes;    /* cached allreduces this large: stream shm outputs (0: off) */
    int cache_cap;
    double stall_check, stall_shutdown;
    int spin;
    double idle_yield_s, idle_sleep_max_s, wait_yield_s;
    char fault_name[256]; /* test hook: RINGRED_TEST_FAULT=name:rank */

    /* shared with user threads [mu] */
    pthread_mutex_t mu;
    pthread_cond_t bg_cv;   /* the background thread sleeps on it */
    pthread_cond_t done_cv; /* waiters sleep on it */
    rr_entry *q_head, *q_tail;
    atomic_int nqueued;
    rr_smap inflight;       /* name -> entry, until done */
    rr_htab ids;            /* id -> entry (rr_entry.id_link) */
    uint64_t next_id;
    atomic_int stop_req;
    int bg_sleeping;
    atomic_int waiters;
    atomic_int failed;      /* fatal error recorded: fatal / fatal_msg are final */
    rr_status fatal;
    char fatal_msg[RR_ERRMSG_LEN];
    rr_warning *warn_head, *warn_tail;
    pthread_t thread;
    int thread_started, thread_done;
    char *exit_reason; /* [mu] the process is exiting: why (rr_engine_exit_reason) */
    int go; /* the thread may run cycles: 0 not yet (creation not agreed), 1 yes, -1 never */

    /* progress lock: held by whichever thread drives the engine (progress.c) */
    pthread_mutex_t plock;
    atomic_int stopped;     /* [plock to set] the last cycle has run */
    atomic_int drivers;     /* waiting threads polling the engine themselves */
    atomic_int outstanding; /* submitted, not yet done */
    atomic_int inside;      /* threads inside rr_engine_wait */
    atomic_ullong lease_ns; /* until then a user thread that just drove is expected back */

    /* background thread [bg] */
    uint64_t cycle;         /* number of the next cycle */
    atomic_ullong n_cycles, n_slow; /* cycles run, and of those through the slow path */
    MPI_Request wake_req;
    uint64_t wake_in[2];    /* {epoch, cycle} */
    uint64_t epoch;         /* this engine's id, the same on every rank */
    struct rr_wake_rec **wake_recs; /* wake sends in flight (progress.c) */
    int n_wake_recs;
    int skipped_polls;
    int wake_posted;
    rr_smap pending;        /* name -> drained entry not yet done */
    rr_entry **hit;         /* cache slot -> pending hit (cap entries) */
    rr_entry *miss_head, *miss_tail;   /* requests to send to the coordinator */
    int n_evict_req, evict_req_cap;
    uint32_t *evict_req;    /* slots this rank asks to invalidate (stalled hits) */
    char *local_err;        /* fatal local error to tell the others about */
    rr_status local_err_code;
    int my_joined, join_new;
    rr_entry *join_entry;
    uint8_t *joined_prev;   /* per rank, as of the last cycle */
    uint8_t *joined_now;    /* per rank, this cycle */
    uint32_t *lens;         /* per rank: slow-path message length this cycle */
    int stall_action;       /* a stall timer asks for a cycle */
    char *stall_note;       /* rank 0: a stall warning for every rank, sent with the next
                             * response list (owned) */
    rr_cache cache;
    rr_coord coord;
    uint8_t *vec;
    size_t vec_cap;
    rr_buf sbuf, rbuf;      /* slow path: outgoing request message, response message */
    uint8_t *gather;        /* rank 0: gathered messages */
    size_t gather_cap;
    int *gcounts, *gdispls;
    uint8_t *fbuf;          /* fusion buffer */
    size_t fbuf_cap;
    int fbuf_shared;        /* fbuf is a shared buffer (rr_mem_alloc): reduced in place */
    size_t *rs_counts;      /* reducescatter receive counts (size entries) */
    double next_stall_check;
    double next_live_check; /* idle: when to check the peers' liveness next (progress.c) */
    rr_timeline tl;
    struct rr_evpool *evpool; /* ready events of device requests (engine_device.c) [own mutex] */
    atomic_ullong ph[RR_ENGINE_NPHASES]; /* rr_engine_phases: ns for times, else counts */
};

/* Phase counters (rr_engine_phases): any thread, relaxed. */
static inline void rr_ph_add(rr_engine *e, int i, uint64_t v)
{
    atomic_fetch_add_explicit(&e->ph[i], v, memory_order_relaxed);
}
static inline void rr_ph_time(rr_engine *e, int i, double t0, double t1)
{
    if (t1 > t0)
        rr_ph_add(e, i, (uint64_t)((t1 - t0) * 1e9));
}

/* progress.c */
#define RR_LEASE_S 100e-6
void *rr_bg_main(void *arg);
/* A thread that drove the engine in rr_engine_wait holds a lease of RR_LEASE_S: a
 * submission meanwhile need not wake the background thread, which looks again when the
 * lease runs out (a submit-then-wait loop then costs no thread wake-up per call). */
int rr_engine_lease_active(rr_engine *e, double now);
/* Drive the engine (when the progress lock is free) until *flag is set or timeout_s
 * passes (< 0: no limit); spins, yields, then sleeps on done_cv. */
void rr_progress_until(rr_engine *e, atomic_int *flag, double timeout_s);

/* engine.c */
double rr_now(void);
/* Put a message in the calling thread's rr_engine_last_error; returns code. */
rr_status rr_efail(rr_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rr_entry_free(rr_entry *ent);
void rr_engine_complete(rr_engine *e, rr_entry *ent, rr_status st, const char *msg);
void rr_engine_fail_all(rr_engine *e, rr_status st, const char *msg);
void rr_engine_set_fatal(rr_engine *e, rr_status st, const char *msg);
void rr_engine_warn(rr_engine *e, const char *text);

/* negotiate.c: one collective cycle.  Returns 0 (go idle) or -1 (the engine stops). */
int rr_cycle(rr_engine *e);
void rr_requeue_slot(rr_engine *e, int slot);

/* coordinator.c: rank 0 turns the gathered messages into the response message. */
rr_status rr_coord_process(rr_engine *e, const uint32_t *lens, const uint8_t *joined,
                           int want_errors, rr_buf *out);
void rr_coord_free(rr_coord *c, int size);

/* fusion.c */
rr_status rr_execute(rr_engine *e, rr_resp_list *l, const uint8_t *joined);
void rr_fusion_free(rr_engine *e);
/* Complete this rank's entry of a response (no-op for NULL: a joined rank has none). */
void rr_fusion_finish(rr_engine *e, rr_entry *ent, rr_status st, const char *what);
/* Timeline spans of an executed entry: marks = {start, packed, reduced, unpacked}. */
void rr_fusion_trace(rr_engine *e, const rr_entry *ent, double t_exec, const double *marks,
                     int fused);

/* engine_device.c: device (GPU) requests */
/* At submission (user thread): record the entry's ready event on its producer stream. */
rr_status rr_edev_submit(rr_engine *e, rr_entry *ent);
/* Give the entry's ready event back to the pool (at completion). */
void rr_edev_release(rr_engine *e, rr_entry *ent);
void rr_edev_free(rr_engine *e);
/* Execute device responses; like fusion.c's host functions they complete the entries and
 * return an error only when the engine cannot go on. */
rr_status rr_edev_allreduce(rr_engine *e, rr_resp *const *rs, size_t k, const uint8_t *joined);
rr_status rr_edev_broadcast(rr_engine *e, rr_resp *r);
rr_status rr_edev_allgather(rr_engine *e, rr_resp *r);
rr_status rr_edev_reducescatter(rr_engine *e, rr_resp *r); /* e->rs_counts set */

/* stall.c */
void rr_stall_tick(rr_engine *e, double now);   /* sets stall_action when a cycle is due */
void rr_stall_scan_hits(rr_engine *e, double now);
size_t rr_rank_list(const rr_engine *e, const rr_neg *g, int have, char *buf, size_t cap);

#endif
