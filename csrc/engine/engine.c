/* The background engine: settings, lifecycle, completion of requests, warnings.
 * Submission and handles are in handles.c, who drives the cycles in progress.c, one cycle
 * in negotiate.c. */
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine.h"
#include "mpi/mpi.h"
#include "shm/shm.h"

static _Thread_local char tls_err[RR_ERRMSG_LEN];

rr_status rr_efail(rr_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tls_err, sizeof tls_err, fmt, ap);
    va_end(ap);
    return code;
}

const char *rr_engine_last_error(const rr_engine *eng)
{
    (void)eng;
    return tls_err;
}

double rr_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---------------------------------------------------------------- settings */

/* Settings every rank must share: rank 0's values are broadcast at creation. */
typedef struct shared_settings {
    double fusion_threshold, fusion_max_tensor, cache_cap, stall_check, stall_shutdown;
    double cold_set;
} shared_settings;

static rr_status load_settings(rr_engine *e)
{
    shared_settings s;
    s.fusion_threshold = (double)rr_set_size(RR_S_FUSION_THRESHOLD);
    s.fusion_max_tensor = (double)rr_set_size(RR_S_FUSION_MAX_TENSOR);
    s.cache_cap = rr_set_number(RR_S_CACHE_CAPACITY);
    s.stall_check = rr_set_number(RR_S_STALL_CHECK_SECONDS);
    s.stall_shutdown = rr_set_number(RR_S_STALL_SHUTDOWN_SECONDS);
    s.cold_set = (double)rr_set_size(RR_S_ENGINE_COLD_SET_BYTES);
    MPI_Request r;
    RR_MPI(e->comm, MPI_Ibcast(&s, 6, MPI_DOUBLE, 0, e->comm->comm, &r));
    RR_CHECK(rr_wait(e->comm, &r));
    /* An id for this engine, carried by its wake messages: MPI may give a later engine's
     * communicator the same context, and a wake message nobody received must not reach it. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    static atomic_ullong engines;
    e->epoch = ((uint64_t)ts.tv_nsec << 20) ^ ((uint64_t)ts.tv_sec << 40) ^
               ((uint64_t)getpid() << 8) ^ (atomic_fetch_add(&engines, 1) + 1);
    RR_MPI(e->comm, MPI_Ibcast(&e->epoch, 1, MPI_UINT64_T, 0, e->comm->comm, &r));
    RR_CHECK(rr_wait(e->comm, &r));
    e->fusion_threshold = (size_t)s.fusion_threshold;
    e->fusion_max_tensor = (size_t)s.fusion_max_tensor;
    e->cache_cap = s.cache_cap < 0 ? 0 : s.cache_cap > 1e6 ? 1000000 : (int)s.cache_cap;
    e->stall_check = s.stall_check < 0 ? 0 : s.stall_check;
    e->stall_shutdown = s.stall_shutdown < 0 ? 0 : s.stall_shutdown;
    e->cold_set_bytes = (size_t)s.cold_set;
    e->spin = e->comm->cfg.spin_count;
    e->idle_yield_s = rr_set_number(RR_S_ENGINE_YIELD_US) * 1e-6;
    e->idle_sleep_max_s = rr_set_number(RR_S_ENGINE_SLEEP_US) * 1e-6;
    e->wait_yield_s = rr_set_number(RR_S_ENGINE_WAIT_YIELD_US) * 1e-6;
    const char *fault = getenv("RINGRED_TEST_FAULT"); /* test hook: "name:rank" */
    if (fault && *fault) {
        const char *colon = strrchr(fault, ':');
        if (colon && atoi(colon + 1) == e->rank) {
            size_t n = (size_t)(colon - fault);
            if (n >= sizeof e->fault_name)
                n = sizeof e->fault_name - 1;
            memcpy(e->fault_name, fault, n);
            e->fault_name[n] = '\0';
        }
    }
    return RR_OK;
}

void rr_entry_free(rr_entry *ent)
{
    rr_desc_free(&ent->d);
    free(ent->errmsg);
    free(ent->result);
    free(ent->counts);
    free(ent);
}

/* ---------------------------------------------------------------- completion */

void rr_engine_complete(rr_engine *e, rr_entry *ent, rr_status st, const char *msg)
{
    rr_edev_release(e, ent); /* the device is done with it: its ready event is free */
    pthread_mutex_lock(&e->mu);
    ent->status = st;
    if (st != RR_OK && msg)
        ent->errmsg = strdup(msg);
    if (rr_smap_get(&e->inflight, ent->d.name) == ent)
        rr_smap_del(&e->inflight, ent->d.name);
    atomic_fetch_sub(&e->outstanding, 1);
    atomic_store_explicit(&ent->done, 1, memory_order_release);
    if (ent->refs > 0 && atomic_load_explicit(&e->waiters, memory_order_relaxed) > 0)
        pthread_cond_broadcast(&e->done_cv);
    if (ent->released && ent->refs == 0)
        rr_entry_free(ent);
    pthread_mutex_unlock(&e->mu);
}

void rr_engine_set_fatal(rr_engine *e, rr_status st, const char *msg)
{
    pthread_mutex_lock(&e->mu);
    if (!atomic_load(&e->failed)) {
        e->fatal = st;
        snprintf(e->fatal_msg, sizeof e->fatal_msg, "%s", msg);
        atomic_store(&e->failed, 1);
    }
    pthread_mutex_unlock(&e->mu);
}

/* Fail every request this rank still holds (queued or drained). [bg] */
void rr_engine_fail_all(rr_engine *e, rr_status st, const char *msg)
{
    pthread_mutex_lock(&e->mu);
    rr_entry *q = e->q_head;
    e->q_head = e->q_tail = NULL;
    atomic_store(&e->nqueued, 0);
    pthread_mutex_unlock(&e->mu);
    while (q) {
        rr_entry *nx = q->qnext;
        rr_engine_complete(e, q, st, msg);
        q = nx;
    }
    /* Drained entries live in the pending map (join entries outside it). */
    for (size_t i = 0; i < e->pending.nb; i++) {
        rr_smap_node *x = rr_smap_chain(&e->pending, i);
        while (x) {
            rr_smap_node *nx = rr_smap_next(x);
            rr_engine_complete(e, x->val, st, msg);
            x = nx;
        }
    }
    rr_smap_free(&e->pending);
    for (int s = 0; s < e->cache.cap; s++)
        e->hit[s] = NULL;
    e->miss_head = e->miss_tail = NULL;
    if (e->join_entry) {
        rr_engine_complete(e, e->join_entry, st, msg);
        e->join_entry = NULL;
    }
}

void rr_engine_warn(rr_engine *e, const char *text)
{
    rr_warning *w = malloc(sizeof *w);
    if (w == NULL)
        return;
    w->text = strdup(text);
    w->next = NULL;
    if (w->text == NULL) {
        free(w);
        return;
    }
    pthread_mutex_lock(&e->mu);
    if (e->warn_tail)
        e->warn_tail->next = w;
    else
        e->warn_head = w;
    e->warn_tail = w;
    pthread_mutex_unlock(&e->mu);
}

/* ---------------------------------------------------------------- lifecycle */

/* The steps of engine creation that involve this rank alone: tables, the wake receive, the
 * timeline file.  RR_OK, or a status with the reason in why. */
static rr_status local_setup(rr_engine *e, char *why, size_t cap)
{
    int n = e->size;
    e->joined_prev = calloc((size_t)n, 1);
    e->joined_now = calloc((size_t)n, 1);
    e->lens = calloc((size_t)n, sizeof(uint32_t));
    e->gcounts = calloc((size_t)n, sizeof(int));
    e->gdispls = calloc((size_t)n, sizeof(int));
    e->rs_counts = calloc((size_t)n, sizeof(size_t));
    e->hit = calloc((size_t)(e->cache_cap > 0 ? e->cache_cap : 1), sizeof(rr_entry *));
    if (strcmp(e->fault_name, "engine.create") == 0) { /* test hook: RINGRED_TEST_FAULT */
        snprintf(why, cap, "injected fault (RINGRED_TEST_FAULT=engine.create:%d)", e->rank);
        return RR_ERR_NOMEM;
    }
    if (!e->joined_prev || !e->joined_now || !e->lens || !e->gcounts || !e->gdispls ||
        !e->rs_counts || !e->hit || rr_cache_init(&e->cache, e->cache_cap) != 0) {
        snprintf(why, cap, "cannot allocate the engine's tables");
        return RR_ERR_NOMEM;
    }
    if (n > 1) {
        int err = MPI_Irecv(e->wake_in, 2, MPI_UINT64_T, MPI_ANY_SOURCE, RR_TAG_WAKE,
                            e->comm->comm, &e->wake_req);
        if (err != MPI_SUCCESS) {
            rr_fail_mpi(e->comm, err, __FILE__, __LINE__, "MPI_Irecv(wake)");
            snprintf(why, cap, "%s", e->comm->errmsg);
            return RR_ERR_MPI;
        }
        e->wake_posted = 1;
    }
    const char *tl = getenv("RINGRED_TIMELINE");
    if (tl && *tl && e->rank == 0) {
        char err[512];
        if (rr_tl_open(&e->tl, tl, e->rank, err, sizeof err) != RR_OK) {
            snprintf(why, cap, "RINGRED_TIMELINE: %s", err);
            return RR_ERR_SYSTEM;
        }
    }
    return RR_OK;
}

/* Every rank learns whether engine creation failed anywhere: the lowest failing rank's
 * status and reason go to all (rr_efail), or RR_OK everywhere. */
static rr_status agree_creation(rr_engine *e, rr_status mine, const char *why)
{
    rr_comm *c = e->comm;
    int in = mine != RR_OK ? e->rank : e->size, first = e->size;
    MPI_Request r;
    int err = MPI_Iallreduce(&in, &first, 1, MPI_INT, MPI_MIN, c->comm, &r);
    rr_status st = err == MPI_SUCCESS ? rr_wait(c, &r)
                                      : rr_fail_mpi(c, err, __FILE__, __LINE__, "MPI_Iallreduce");
    if (st != RR_OK)
        return rr_efail(st, "engine creation: %s", c->errmsg);
    if (first == e->size)
        return RR_OK;
    struct {
        int32_t code;
        char text[RR_ERRMSG_LEN - 8];
    } m;
    memset(&m, 0, sizeof m);
    if (first == e->rank) {
        m.code = (int32_t)mine;
        snprintf(m.text, sizeof m.text, "%.2000s", why);
    }
    err = MPI_Ibcast(&m, (int)sizeof m, MPI_BYTE, first, c->comm, &r);
    st = err == MPI_SUCCESS ? rr_wait(c, &r)
                            : rr_fail_mpi(c, err, __FILE__, __LINE__, "MPI_Ibcast");
    if (st != RR_OK)
        return rr_efail(st, "engine creation failed on rank %d, and then: %s", first,
                        c->errmsg);
    return rr_efail(m.code ? (rr_status)m.code : RR_ERR_SYSTEM, "rank %d: %s", first, m.text);
}

rr_status rr_engine_create(int fcomm, rr_engine **out)
{
    return rr_engine_create_ex(fcomm, NULL, out);
}

uint64_t rr_engine_zero_copy_calls(const rr_engine *e)
{
    return e ? rr_comm_zero_copy_calls(e->comm) : 0;
}

uint64_t rr_engine_hier_calls(const rr_engine *e)
{
    return e ? rr_comm_hier_calls(e->comm) : 0;
}

rr_status rr_engine_create_ex(int fcomm, rr_comm *arena_from, rr_engine **out)
{
    if (out == NULL)
        return rr_efail(RR_ERR_INVALID, "rr_engine_create: NULL out");
    *out = NULL;
    int inited = 0, finalized = 0, level = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (!inited || finalized)
        return rr_efail(RR_ERR_STATE, "the ringred engine needs MPI to be initialized");
    MPI_Query_thread(&level);
    if (level < MPI_THREAD_MULTIPLE)
        return rr_efail(RR_ERR_STATE, "the ringred engine needs MPI initialized with "
                     "MPI_THREAD_MULTIPLE (mpi4py's default; check mpi4py.rc.thread_level)");
    rr_engine *e = calloc(1, sizeof *e);
    if (e == NULL)
        return rr_efail(RR_ERR_NOMEM, "cannot allocate the engine");
    e->wake_req = MPI_REQUEST_NULL;
    pthread_mutex_init(&e->mu, NULL);
    pthread_mutex_init(&e->plock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&e->bg_cv, &ca);
    pthread_cond_init(&e->done_cv, &ca);
    pthread_condattr_destroy(&ca);
    rr_tl_init(&e->tl);
    rr_status st = rr_comm_create(fcomm, &e->comm);
    if (st != RR_OK) {
        rr_efail(st, "engine communicator: %s", e->comm ? e->comm->errmsg : rr_strerror(st));
        rr_engine_destroy(e);
        return st;
    }
    e->rank = e->comm->rank;
    e->size = e->comm->size;
    /* Collective, before the thread starts; not being able to share is no error. */
    if (arena_from != NULL && e->comm->shm != NULL &&
        rr_shm_share_arena(e->comm, arena_from) != RR_OK)
        e->comm->errmsg[0] = '\0';
    st = load_settings(e);
    if (st != RR_OK) {
        rr_efail(st, "engine settings: %s", e->comm->errmsg);
        rr_engine_destroy(e);
        return st;
    }
    /* Local steps first, then one agreement: creation succeeds on every rank or fails on
     * every rank with the failing rank's reason (nothing collective may block before it). */
    char why[RR_ERRMSG_LEN] = "";
    rr_status mine = local_setup(e, why, sizeof why);
    if (mine == RR_OK) {
        pthread_mutex_lock(&e->mu);
        e->go = 0; /* the thread waits for the agreement */
        pthread_mutex_unlock(&e->mu);
        int pe = pthread_create(&e->thread, NULL, rr_bg_main, e);
        if (pe != 0) {
            mine = RR_ERR_SYSTEM;
            snprintf(why, sizeof why, "cannot start the engine thread: %s", strerror(pe));
        } else {
            e->thread_started = 1;
        }
    }
    st = agree_creation(e, mine, why);
    pthread_mutex_lock(&e->mu);
    e->go = st == RR_OK ? 1 : -1;
    pthread_cond_broadcast(&e->bg_cv);
    pthread_mutex_unlock(&e->mu);
    if (st != RR_OK) {
        rr_engine_destroy(e);
        return st;
    }
    *out = e;
    return RR_OK;
}

rr_status rr_engine_stop(rr_engine *e)
{
    if (e == NULL)
        return rr_efail(RR_ERR_INVALID, "rr_engine_stop: NULL engine");
    if (!e->thread_started)
        return RR_OK;
    pthread_mutex_lock(&e->mu);
    atomic_store(&e->stop_req, 1);
    if (e->go == 0)
        e->go = -1;
    pthread_cond_broadcast(&e->bg_cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->thread, NULL);
    e->thread_started = 0;
    return RR_OK;
}

rr_status rr_engine_exit_reason(rr_engine *e, const char *why)
{
    if (e == NULL || why == NULL)
        return rr_efail(RR_ERR_INVALID, "rr_engine_exit_reason: NULL argument");
    char *copy = strdup(why);
    if (copy == NULL)
        return rr_efail(RR_ERR_NOMEM, "out of memory");
    pthread_mutex_lock(&e->mu);
    free(e->exit_reason);
    e->exit_reason = copy;
    pthread_mutex_unlock(&e->mu);
    return RR_OK;
}

rr_status rr_engine_destroy(rr_engine *e)
{
    if (e == NULL)
        return RR_OK;
    rr_engine_stop(e);
    while (atomic_load(&e->inside) > 0) /* threads still leaving rr_engine_wait */
        sched_yield();
    if (e->wake_posted) {
        MPI_Cancel(&e->wake_req);
        MPI_Wait(&e->wake_req, MPI_STATUS_IGNORE);
    }
    rr_tl_close(&e->tl);
    for (size_t i = 0; i < e->ids.nb; i++) {
        rr_hlink *x = e->ids.b[i];
        while (x) {
            rr_hlink *nx = x->next;
            rr_entry_free(RR_CONTAINER(x, rr_entry, id_link));
            x = nx;
        }
    }
    rr_htab_free(&e->ids);
    rr_smap_free(&e->inflight);
    rr_smap_free(&e->pending);
    while (e->warn_head) {
        rr_warning *w = e->warn_head;
        e->warn_head = w->next;
        free(w->text);
        free(w);
    }
    rr_coord_free(&e->coord, e->size);
    rr_cache_free(&e->cache);
    rr_fusion_free(e);
    rr_edev_free(e);
    rr_buf_free(&e->sbuf);
    rr_buf_free(&e->rbuf);
    free(e->gather);
    free(e->vec);
    free(e->joined_prev);
    free(e->joined_now);
    free(e->lens);
    free(e->stall_note);
    free(e->gcounts);
    free(e->gdispls);
    free(e->rs_counts);
    free(e->hit);
    free(e->evict_req);
    free(e->local_err);
    free(e->exit_reason);
    rr_comm_destroy(e->comm);
    pthread_mutex_destroy(&e->mu);
    pthread_mutex_destroy(&e->plock);
    pthread_cond_destroy(&e->bg_cv);
    pthread_cond_destroy(&e->done_cv);
    pthread_mutex_destroy(&e->tl.mu);
    free(e);
    return RR_OK;
}

rr_status rr_engine_timeline_start(rr_engine *e, const char *path)
{
    if (e == NULL || path == NULL)
        return rr_efail(RR_ERR_INVALID, "rr_engine_timeline_start: NULL argument");
    if (e->rank != 0)
        return RR_OK; /* rank 0 writes the timeline */
    char err[512];
    if (rr_tl_open(&e->tl, path, e->rank, err, sizeof err) != RR_OK)
        return rr_efail(RR_ERR_SYSTEM, "timeline: %s", err);
    return RR_OK;
}

rr_status rr_engine_timeline_stop(rr_engine *e)
{
    if (e == NULL)
        return rr_efail(RR_ERR_INVALID, "rr_engine_timeline_stop: NULL engine");
    rr_tl_close(&e->tl);
    return RR_OK;
}

rr_status rr_engine_phases(rr_engine *e, double *out, int n)
{
    if (e == NULL || (out == NULL && n > 0))
        return rr_efail(RR_ERR_INVALID, "rr_engine_phases: NULL argument");
    for (int i = 0; i < n && i < RR_ENGINE_NPHASES; i++) {
        uint64_t v = atomic_load_explicit(&e->ph[i], memory_order_relaxed);
        out[i] = i <= RR_PH_WAIT ? (double)v * 1e-9 : (double)v;
    }
    return RR_OK;
}

rr_status rr_engine_stats(rr_engine *e, uint64_t *cycles, uint64_t *slow_cycles)
{
    if (e == NULL || cycles == NULL || slow_cycles == NULL)
        return rr_efail(RR_ERR_INVALID, "rr_engine_stats: NULL argument");
    *cycles = atomic_load(&e->n_cycles);
    *slow_cycles = atomic_load(&e->n_slow);
    return RR_OK;
}
