/* The background engine: lifecycle, settings, the submission queue and handles (poll /
 * wait / release).  Who drives the cycles is in progress.c; a cycle is in negotiate.c. */
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"

static _Thread_local char tls_err[RR_ERRMSG_LEN];

static rr_status efail(rr_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static rr_status efail(rr_status code, const char *fmt, ...)
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

static double env_double(const char *name, double dflt)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        return dflt;
    char *end = NULL;
    double x = strtod(v, &end);
    return end == v ? dflt : x;
}

static size_t env_bytes(const char *name, size_t dflt)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        return dflt;
    char *end = NULL;
    unsigned long long x = strtoull(v, &end, 10);
    if (end == v)
        return dflt;
    if (*end == 'k' || *end == 'K')
        x <<= 10;
    else if (*end == 'm' || *end == 'M')
        x <<= 20;
    else if (*end == 'g' || *end == 'G')
        x <<= 30;
    return (size_t)x;
}

/* Settings every rank must share: rank 0's values are broadcast at creation. */
typedef struct shared_settings {
    double fusion_threshold, fusion_max_tensor, cache_cap, stall_check, stall_shutdown;
} shared_settings;

static rr_status load_settings(rr_engine *e)
{
    shared_settings s;
    s.fusion_threshold = (double)env_bytes("RINGRED_FUSION_THRESHOLD", (size_t)64 << 20);
    s.fusion_max_tensor = (double)env_bytes("RINGRED_FUSION_MAX_TENSOR", (size_t)64 << 10);
    s.cache_cap = env_double("RINGRED_CACHE_CAPACITY", 1024);
    s.stall_check = env_double("RINGRED_STALL_CHECK_SECONDS", 60);
    s.stall_shutdown = env_double("RINGRED_STALL_SHUTDOWN_SECONDS", 0);
    MPI_Request r;
    RR_MPI(e->comm, MPI_Ibcast(&s, 5, MPI_DOUBLE, 0, e->comm->comm, &r));
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
    e->spin = e->comm->cfg.spin_count;
    e->idle_yield_s = env_double("RINGRED_ENGINE_YIELD_US", 300) * 1e-6;
    e->idle_sleep_max_s = env_double("RINGRED_ENGINE_SLEEP_US", 500) * 1e-6;
    e->wait_yield_s = env_double("RINGRED_ENGINE_WAIT_YIELD_US", 200) * 1e-6;
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

/* ---------------------------------------------------------------- entries by id [mu] */

static rr_entry **id_bucket(rr_engine *e, uint64_t id)
{
    return &e->ids[id & (e->ids_nb - 1)];
}

static int id_insert(rr_engine *e, rr_entry *ent)
{
    if (e->ids_n + 1 > e->ids_nb) {
        size_t nb = e->ids_nb ? e->ids_nb * 2 : 256;
        rr_entry **b = calloc(nb, sizeof *b);
        if (b == NULL)
            return -1;
        for (size_t i = 0; i < e->ids_nb; i++) {
            rr_entry *x = e->ids[i];
            while (x) {
                rr_entry *nx = x->id_next;
                x->id_next = b[x->id & (nb - 1)];
                b[x->id & (nb - 1)] = x;
                x = nx;
            }
        }
        free(e->ids);
        e->ids = b;
        e->ids_nb = nb;
    }
    rr_entry **b = id_bucket(e, ent->id);
    ent->id_next = *b;
    *b = ent;
    e->ids_n++;
    return 0;
}

static rr_entry *id_find(rr_engine *e, uint64_t id)
{
    if (e->ids_nb == 0)
        return NULL;
    for (rr_entry *x = *id_bucket(e, id); x; x = x->id_next)
        if (x->id == id)
            return x;
    return NULL;
}

static void id_remove(rr_engine *e, rr_entry *ent)
{
    for (rr_entry **pp = id_bucket(e, ent->id); *pp; pp = &(*pp)->id_next)
        if (*pp == ent) {
            *pp = ent->id_next;
            e->ids_n--;
            return;
        }
}

static void entry_free(rr_entry *ent)
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
    pthread_mutex_lock(&e->mu);
    ent->status = st;
    if (st != RR_OK && msg)
        ent->errmsg = strdup(msg);
    if (rr_smap_get(&e->inflight, ent->d.name) == ent)
        rr_smap_del(&e->inflight, ent->d.name);
    atomic_fetch_sub(&e->outstanding, 1);
    atomic_store_explicit(&ent->done, 1, memory_order_release);
    if (atomic_load_explicit(&e->waiters, memory_order_relaxed) > 0)
        pthread_cond_broadcast(&e->done_cv);
    if (ent->released && ent->refs == 0)
        entry_free(ent);
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
        rr_smap_node *x = e->pending.b[i];
        while (x) {
            rr_smap_node *nx = x->next;
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

rr_status rr_engine_create(int fcomm, rr_engine **out)
{
    if (out == NULL)
        return efail(RR_ERR_INVALID, "rr_engine_create: NULL out");
    *out = NULL;
    int inited = 0, finalized = 0, level = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (!inited || finalized)
        return efail(RR_ERR_STATE, "the ringred engine needs MPI to be initialized");
    MPI_Query_thread(&level);
    if (level < MPI_THREAD_MULTIPLE)
        return efail(RR_ERR_STATE, "the ringred engine needs MPI initialized with "
                     "MPI_THREAD_MULTIPLE (mpi4py's default; check mpi4py.rc.thread_level)");
    rr_engine *e = calloc(1, sizeof *e);
    if (e == NULL)
        return efail(RR_ERR_NOMEM, "cannot allocate the engine");
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
        efail(st, "engine communicator: %s", e->comm ? e->comm->errmsg : rr_strerror(st));
        rr_engine_destroy(e);
        return st;
    }
    e->rank = e->comm->rank;
    e->size = e->comm->size;
    st = load_settings(e);
    if (st != RR_OK) {
        efail(st, "engine settings: %s", e->comm->errmsg);
        rr_engine_destroy(e);
        return st;
    }
    int n = e->size;
    e->joined_prev = calloc((size_t)n, 1);
    e->joined_now = calloc((size_t)n, 1);
    e->lens = calloc((size_t)n, sizeof(uint32_t));
    e->gcounts = calloc((size_t)n, sizeof(int));
    e->gdispls = calloc((size_t)n, sizeof(int));
    e->rs_counts = calloc((size_t)n, sizeof(size_t));
    e->hit = calloc((size_t)(e->cache_cap > 0 ? e->cache_cap : 1), sizeof(rr_entry *));
    if (!e->joined_prev || !e->joined_now || !e->lens || !e->gcounts || !e->gdispls || !e->rs_counts ||
        !e->hit || rr_cache_init(&e->cache, e->cache_cap) != 0) {
        rr_engine_destroy(e);
        return efail(RR_ERR_NOMEM, "cannot allocate the engine's tables");
    }
    if (n > 1) {
        int err = MPI_Irecv(e->wake_in, 2, MPI_UINT64_T, MPI_ANY_SOURCE, RR_TAG_WAKE,
                            e->comm->comm, &e->wake_req);
        if (err != MPI_SUCCESS) {
            rr_fail_mpi(e->comm, err, __FILE__, __LINE__, "MPI_Irecv(wake)");
            efail(RR_ERR_MPI, "%s", e->comm->errmsg);
            rr_engine_destroy(e);
            return RR_ERR_MPI;
        }
        e->wake_posted = 1;
    }
    const char *tl = getenv("RINGRED_TIMELINE");
    if (tl && *tl && e->rank == 0) {
        char err[512];
        if (rr_tl_open(&e->tl, tl, e->rank, err, sizeof err) != RR_OK) {
            rr_engine_destroy(e);
            return efail(RR_ERR_SYSTEM, "RINGRED_TIMELINE: %s", err);
        }
    }
    if (pthread_create(&e->thread, NULL, rr_bg_main, e) != 0) {
        int errnum = errno;
        rr_engine_destroy(e);
        return efail(RR_ERR_SYSTEM, "cannot start the engine thread: %s", strerror(errnum));
    }
    e->thread_started = 1;
    *out = e;
    return RR_OK;
}

rr_status rr_engine_stop(rr_engine *e)
{
    if (e == NULL)
        return efail(RR_ERR_INVALID, "rr_engine_stop: NULL engine");
    if (!e->thread_started)
        return RR_OK;
    pthread_mutex_lock(&e->mu);
    atomic_store(&e->stop_req, 1);
    pthread_cond_signal(&e->bg_cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->thread, NULL);
    e->thread_started = 0;
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
    for (size_t i = 0; i < e->ids_nb; i++) {
        rr_entry *x = e->ids[i];
        while (x) {
            rr_entry *nx = x->id_next;
            entry_free(x);
            x = nx;
        }
    }
    free(e->ids);
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
    rr_buf_free(&e->sbuf);
    rr_buf_free(&e->rbuf);
    free(e->gather);
    free(e->vec);
    free(e->joined_prev);
    free(e->joined_now);
    free(e->lens);
    free(e->gcounts);
    free(e->gdispls);
    free(e->rs_counts);
    free(e->hit);
    free(e->evict_req);
    free(e->local_err);
    rr_comm_destroy(e->comm);
    pthread_mutex_destroy(&e->mu);
    pthread_mutex_destroy(&e->plock);
    pthread_cond_destroy(&e->bg_cv);
    pthread_cond_destroy(&e->done_cv);
    pthread_mutex_destroy(&e->tl.mu);
    free(e);
    return RR_OK;
}

/* ---------------------------------------------------------------- submission */

static rr_status check_request(const rr_engine *e, const rr_request *r)
{
    if (r->name == NULL || r->name[0] == '\0')
        return efail(RR_ERR_INVALID, "a tensor needs a non-empty name");
    const char *nm = r->name;
    if (r->kind < RR_REQ_ALLREDUCE || r->kind > RR_REQ_REDUCESCATTER)
        return efail(RR_ERR_INVALID, "tensor '%s': unknown request kind %d", nm, r->kind);
    if (r->dtype < 0 || r->dtype >= RR_NUM_DTYPES)
        return efail(RR_ERR_UNSUPPORTED, "tensor '%s': unsupported data type code %d", nm,
                     r->dtype);
    if (r->op < 0 || r->op >= RR_NUM_OPS)
        return efail(RR_ERR_UNSUPPORTED, "tensor '%s': unsupported reduce op code %d", nm,
                     r->op);
    if (r->ndim < 0 || r->ndim > RR_MAX_DIMS)
        return efail(RR_ERR_INVALID, "tensor '%s': %d dimensions (at most %d)", nm, r->ndim,
                     RR_MAX_DIMS);
    uint64_t prod = 1;
    for (int i = 0; i < r->ndim; i++) {
        if (r->shape[i] < 0)
            return efail(RR_ERR_INVALID, "tensor '%s': negative dimension", nm);
        prod *= (uint64_t)r->shape[i];
    }
    if (prod != r->count)
        return efail(RR_ERR_INVALID, "tensor '%s': count %zu does not match its shape", nm,
                     r->count);
    if (r->avg_div < 1)
        return efail(RR_ERR_INVALID, "tensor '%s': average divisor must be >= 1", nm);
    if (!rr_dtype_is_float(r->dtype) && (r->prescale != 1.0 || r->postscale != 1.0))
        return efail(RR_ERR_INVALID, "tensor '%s': prescale/postscale factors other than 1 "
                     "need a floating-point data type", nm);
    if (r->kind == RR_REQ_BROADCAST && (r->root < 0 || r->root >= e->size))
        return efail(RR_ERR_INVALID, "tensor '%s': broadcast root rank %d is not in [0, %d)",
                     nm, r->root, e->size);
    if ((r->kind == RR_REQ_ALLGATHER || r->kind == RR_REQ_REDUCESCATTER) && r->ndim < 1)
        return efail(RR_ERR_INVALID, "tensor '%s': %s needs at least one dimension", nm,
                     rr_kind_name(r->kind));
    if (r->count && ((r->kind != RR_REQ_BROADCAST && r->sendbuf == NULL) ||
                     (r->kind != RR_REQ_ALLGATHER && r->recvbuf == NULL)))
        return efail(RR_ERR_INVALID, "tensor '%s': NULL buffer", nm);
    if (r->group && r->group_size < 1)
        return efail(RR_ERR_INVALID, "tensor '%s': group size must be >= 1", nm);
    return RR_OK;
}

static rr_entry *entry_new(const rr_request *r, double now)
{
    rr_entry *ent = calloc(1, sizeof *ent);
    if (ent == NULL)
        return NULL;
    ent->d.name = strdup(r->name);
    ent->d.group = r->group ? strdup(r->group) : NULL;
    if (ent->d.name == NULL || (r->group && ent->d.group == NULL)) {
        entry_free(ent);
        return NULL;
    }
    ent->d.kind = r->kind;
    ent->d.dtype = r->dtype;
    ent->d.op = r->op;
    ent->d.root = r->kind == RR_REQ_BROADCAST ? r->root : 0;
    ent->d.ndim = r->ndim;
    ent->d.group_size = r->group ? r->group_size : 0;
    ent->d.pre = r->prescale;
    ent->d.post = r->postscale;
    ent->d.div = r->avg_div;
    ent->d.count = r->count;
    for (int i = 0; i < r->ndim; i++)
        ent->d.shape[i] = r->shape[i];
    ent->sendbuf = r->sendbuf;
    ent->recvbuf = r->recvbuf;
    ent->slot = -1;
    ent->t_submit = now;
    return ent;
}

static rr_status fatal_status(rr_engine *e)
{
    return efail(e->fatal, "%s", e->fatal_msg);
}

/* Enqueue entries (all or none). [mu held] */
static rr_status enqueue_locked(rr_engine *e, rr_entry **ents, size_t n, uint64_t *ids)
{
    if (atomic_load(&e->failed))
        return fatal_status(e);
    if (atomic_load(&e->stop_req))
        return efail(RR_ERR_STATE, "the ringred engine is shutting down");
    size_t i;
    for (i = 0; i < n; i++) {
        rr_entry *prev = rr_smap_get(&e->inflight, ents[i]->d.name);
        if (prev) {
            efail(RR_ERR_DUPLICATE, ents[i]->is_join
                  ? "join() is already in progress on this rank"
                  : "a tensor named '%s' is already in flight (%s); names must be unique "
                    "among outstanding requests", ents[i]->d.name, rr_kind_name(prev->d.kind));
            break;
        }
        if (rr_smap_put(&e->inflight, ents[i]->d.name, ents[i]) != 0) {
            efail(RR_ERR_NOMEM, "out of memory");
            break;
        }
    }
    if (i < n) {
        while (i-- > 0)
            rr_smap_del(&e->inflight, ents[i]->d.name);
        return RR_ERR_DUPLICATE;
    }
    for (i = 0; i < n; i++) {
        ents[i]->id = ++e->next_id;
        if (id_insert(e, ents[i]) != 0) {
            while (i-- > 0)
                id_remove(e, ents[i]);
            for (size_t j = 0; j < n; j++)
                rr_smap_del(&e->inflight, ents[j]->d.name);
            return efail(RR_ERR_NOMEM, "out of memory");
        }
    }
    for (i = 0; i < n; i++) {
        ids[i] = ents[i]->id;
        ents[i]->qnext = NULL;
        if (e->q_tail)
            e->q_tail->qnext = ents[i];
        else
            e->q_head = ents[i];
        e->q_tail = ents[i];
    }
    atomic_fetch_add(&e->outstanding, (int)n);
    atomic_fetch_add_explicit(&e->nqueued, (int)n, memory_order_release);
    if (e->bg_sleeping)
        pthread_cond_signal(&e->bg_cv);
    return RR_OK;
}

static rr_status enqueue(rr_engine *e, rr_entry **ents, size_t n, uint64_t *ids)
{
    pthread_mutex_lock(&e->mu);
    rr_status st = enqueue_locked(e, ents, n, ids);
    pthread_mutex_unlock(&e->mu);
    if (st != RR_OK)
        for (size_t i = 0; i < n; i++)
            entry_free(ents[i]);
    return st;
}

rr_status rr_engine_submit(rr_engine *e, const rr_request *reqs, size_t n, uint64_t *ids)
{
    if (e == NULL || reqs == NULL || ids == NULL)
        return efail(RR_ERR_INVALID, "rr_engine_submit: NULL argument");
    if (n == 0)
        return RR_OK;
    for (size_t i = 0; i < n; i++)
        RR_CHECK(check_request(e, &reqs[i]));
    rr_entry *stack[16], **ents = n <= 16 ? stack : calloc(n, sizeof *ents);
    if (ents == NULL)
        return efail(RR_ERR_NOMEM, "out of memory");
    double now = rr_now();
    size_t made = 0;
    for (; made < n; made++) {
        ents[made] = entry_new(&reqs[made], now);
        if (ents[made] == NULL)
            break;
    }
    rr_status st;
    if (made < n) {
        for (size_t i = 0; i < made; i++)
            entry_free(ents[i]);
        st = efail(RR_ERR_NOMEM, "out of memory");
    } else {
        st = enqueue(e, ents, n, ids);
    }
    if (ents != stack)
        free(ents);
    return st;
}

rr_status rr_engine_allreduce(rr_engine *e, const char *name, const void *sendbuf,
                              void *recvbuf, size_t count, int dtype, int op, double prescale,
                              double postscale, int64_t avg_div, int ndim, const int64_t *shape,
                              uint64_t *id)
{
    rr_request q;
    memset(&q, 0, sizeof q);
    q.name = name;
    q.kind = RR_REQ_ALLREDUCE;
    q.sendbuf = sendbuf;
    q.recvbuf = recvbuf;
    q.count = count;
    q.dtype = dtype;
    q.op = op;
    q.prescale = prescale;
    q.postscale = postscale;
    q.avg_div = avg_div;
    if (ndim < 0 || ndim > RR_MAX_DIMS || (ndim && shape == NULL))
        return efail(RR_ERR_INVALID, "tensor '%s': bad shape", name ? name : "");
    q.ndim = ndim;
    for (int i = 0; i < ndim; i++)
        q.shape[i] = shape[i];
    return rr_engine_submit(e, &q, 1, id);
}

rr_status rr_engine_join(rr_engine *e, uint64_t *id)
{
    if (e == NULL || id == NULL)
        return efail(RR_ERR_INVALID, "rr_engine_join: NULL argument");
    rr_entry *ent = calloc(1, sizeof *ent);
    if (ent == NULL || (ent->d.name = strdup("<join>")) == NULL) {
        free(ent);
        return efail(RR_ERR_NOMEM, "out of memory");
    }
    ent->is_join = 1;
    ent->slot = -1;
    ent->t_submit = rr_now();
    return enqueue(e, &ent, 1, id);
}

/* ---------------------------------------------------------------- handles */

static rr_entry *lookup(rr_engine *e, uint64_t id)
{
    pthread_mutex_lock(&e->mu);
    rr_entry *ent = id_find(e, id);
    pthread_mutex_unlock(&e->mu);
    return ent;
}

static int is_done(const rr_entry *ent)
{
    return atomic_load_explicit(&ent->done, memory_order_acquire);
}

rr_status rr_engine_poll(rr_engine *e, uint64_t id, int *done)
{
    if (e == NULL || done == NULL)
        return efail(RR_ERR_INVALID, "rr_engine_poll: NULL argument");
    pthread_mutex_lock(&e->mu);
    rr_entry *ent = id_find(e, id);
    if (ent)
        *done = is_done(ent);
    pthread_mutex_unlock(&e->mu);
    if (ent == NULL)
        return efail(RR_ERR_INVALID, "unknown request id %llu", (unsigned long long)id);
    return RR_OK;
}

rr_status rr_engine_wait(rr_engine *e, uint64_t id, double timeout_s)
{
    if (e == NULL)
        return efail(RR_ERR_INVALID, "rr_engine_wait: NULL engine");
    atomic_fetch_add(&e->inside, 1);
    pthread_mutex_lock(&e->mu);
    rr_entry *ent = id_find(e, id);
    if (ent)
        ent->refs++; /* keeps it alive if another thread releases it meanwhile */
    pthread_mutex_unlock(&e->mu);
    rr_status st;
    if (ent == NULL) {
        st = efail(RR_ERR_INVALID, "unknown request id %llu", (unsigned long long)id);
    } else {
        if (!is_done(ent))
            rr_progress_until(e, &ent->done, timeout_s);
        if (!is_done(ent)) {
            st = RR_ERR_TIMEOUT;
        } else {
            st = ent->status;
            if (st != RR_OK)
                efail(st, "%s", ent->errmsg ? ent->errmsg : rr_strerror(st));
        }
        pthread_mutex_lock(&e->mu);
        if (--ent->refs == 0 && ent->released && is_done(ent))
            entry_free(ent);
        pthread_mutex_unlock(&e->mu);
    }
    atomic_fetch_sub(&e->inside, 1);
    return st;
}

rr_status rr_engine_finish(rr_engine *e, uint64_t id, double timeout_s)
{
    rr_status st = rr_engine_wait(e, id, timeout_s);
    if (st == RR_OK)
        rr_engine_release(e, id);
    return st;
}

const char *rr_engine_error(rr_engine *e, uint64_t id)
{
    rr_entry *ent = e ? lookup(e, id) : NULL;
    if (ent == NULL)
        return "unknown request id";
    if (!is_done(ent))
        return "";
    if (ent->status == RR_OK)
        return "";
    return ent->errmsg ? ent->errmsg : rr_strerror(ent->status);
}

static rr_status done_entry(rr_engine *e, uint64_t id, rr_entry **out)
{
    rr_entry *ent = e ? lookup(e, id) : NULL;
    if (ent == NULL)
        return efail(RR_ERR_INVALID, "unknown request id %llu", (unsigned long long)id);
    if (!is_done(ent))
        return efail(RR_ERR_STATE, "request '%s' is not done", ent->d.name);
    if (ent->status != RR_OK)
        return efail(ent->status, "%s", ent->errmsg ? ent->errmsg : "failed");
    *out = ent;
    return RR_OK;
}

rr_status rr_engine_result_rows(rr_engine *e, uint64_t id, size_t *rows)
{
    rr_entry *ent;
    RR_CHECK(done_entry(e, id, &ent));
    if (ent->rows == NULL || rows == NULL)
        return efail(RR_ERR_INVALID, "request '%s' has no gathered result", ent->d.name);
    memcpy(rows, ent->rows, (size_t)e->size * sizeof *rows);
    return RR_OK;
}

rr_status rr_engine_result_copy(rr_engine *e, uint64_t id, void *dst, size_t bytes)
{
    rr_entry *ent;
    RR_CHECK(done_entry(e, id, &ent));
    if (ent->counts == NULL)
        return efail(RR_ERR_INVALID, "request '%s' has no gathered result", ent->d.name);
    if (bytes != ent->result_bytes)
        return efail(RR_ERR_INVALID, "request '%s': result has %zu bytes, not %zu", ent->d.name,
                     ent->result_bytes, bytes);
    if (bytes)
        memcpy(dst, ent->result, bytes);
    return RR_OK;
}

rr_status rr_engine_join_result(rr_engine *e, uint64_t id, int *last_rank)
{
    rr_entry *ent;
    RR_CHECK(done_entry(e, id, &ent));
    if (!ent->is_join || last_rank == NULL)
        return efail(RR_ERR_INVALID, "request %llu is not a join", (unsigned long long)id);
    *last_rank = ent->join_last;
    return RR_OK;
}

rr_status rr_engine_release(rr_engine *e, uint64_t id)
{
    if (e == NULL)
        return efail(RR_ERR_INVALID, "rr_engine_release: NULL engine");
    pthread_mutex_lock(&e->mu);
    rr_entry *ent = id_find(e, id);
    if (ent) {
        id_remove(e, ent);
        if (is_done(ent) && ent->refs == 0)
            entry_free(ent);
        else
            ent->released = 1; /* freed when done and no thread waits on it */
    }
    pthread_mutex_unlock(&e->mu);
    return RR_OK;
}

rr_status rr_engine_take_warning(rr_engine *e, char *buf, size_t cap, int *got)
{
    if (e == NULL || got == NULL)
        return efail(RR_ERR_INVALID, "rr_engine_take_warning: NULL argument");
    *got = 0;
    pthread_mutex_lock(&e->mu);
    rr_warning *w = e->warn_head;
    if (w) {
        e->warn_head = w->next;
        if (e->warn_head == NULL)
            e->warn_tail = NULL;
    }
    pthread_mutex_unlock(&e->mu);
    if (w == NULL)
        return RR_OK;
    if (buf && cap)
        snprintf(buf, cap, "%s", w->text);
    *got = 1;
    free(w->text);
    free(w);
    return RR_OK;
}

rr_status rr_engine_timeline_start(rr_engine *e, const char *path)
{
    if (e == NULL || path == NULL)
        return efail(RR_ERR_INVALID, "rr_engine_timeline_start: NULL argument");
    if (e->rank != 0)
        return RR_OK; /* rank 0 writes the timeline */
    char err[512];
    if (rr_tl_open(&e->tl, path, e->rank, err, sizeof err) != RR_OK)
        return efail(RR_ERR_SYSTEM, "timeline: %s", err);
    return RR_OK;
}

rr_status rr_engine_timeline_stop(rr_engine *e)
{
    if (e == NULL)
        return efail(RR_ERR_INVALID, "rr_engine_timeline_stop: NULL engine");
    rr_tl_close(&e->tl);
    return RR_OK;
}

rr_status rr_engine_stats(rr_engine *e, uint64_t *cycles, uint64_t *slow_cycles)
{
    if (e == NULL || cycles == NULL || slow_cycles == NULL)
        return efail(RR_ERR_INVALID, "rr_engine_stats: NULL argument");
    *cycles = atomic_load(&e->n_cycles);
    *slow_cycles = atomic_load(&e->n_slow);
    return RR_OK;
}
