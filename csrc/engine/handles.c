/* Submission (the queue, duplicate names) and handles: poll / wait / results / release.
 * Entries are found by id in the core hash table (core/hmap.h) under the engine mutex; a
 * thread waiting on an entry holds a reference so that a concurrent release cannot free it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

/* ---------------------------------------------------------------- entries by id [mu] */

static int id_insert(rr_engine *e, rr_entry *ent)
{
    return rr_htab_insert(&e->ids, &ent->id_link, ent->id, 256);
}

static rr_entry *id_find(rr_engine *e, uint64_t id)
{
    for (rr_hlink *x = rr_htab_chain(&e->ids, id); x; x = x->next) {
        rr_entry *ent = RR_CONTAINER(x, rr_entry, id_link);
        if (ent->id == id)
            return ent;
    }
    return NULL;
}

static void id_remove(rr_engine *e, rr_entry *ent)
{
    rr_htab_remove(&e->ids, &ent->id_link);
}

/* ---------------------------------------------------------------- submission */

static rr_status check_request(const rr_engine *e, const rr_request *r)
{
    if (r->name == NULL || r->name[0] == '\0')
        return rr_efail(RR_ERR_INVALID, "a tensor needs a non-empty name");
    const char *nm = r->name;
    if (r->kind < RR_REQ_ALLREDUCE || r->kind > RR_REQ_REDUCESCATTER)
        return rr_efail(RR_ERR_INVALID, "tensor '%s': unknown request kind %d", nm, r->kind);
    if (r->dtype < 0 || r->dtype >= RR_NUM_DTYPES)
        return rr_efail(RR_ERR_UNSUPPORTED, "tensor '%s': unsupported data type code %d", nm,
                     r->dtype);
    if (r->op < 0 || r->op >= RR_NUM_OPS)
        return rr_efail(RR_ERR_UNSUPPORTED, "tensor '%s': unsupported reduce op code %d", nm,
                     r->op);
    if (r->ndim < 0 || r->ndim > RR_MAX_DIMS)
        return rr_efail(RR_ERR_INVALID, "tensor '%s': %d dimensions (at most %d)", nm, r->ndim,
                     RR_MAX_DIMS);
    uint64_t prod = 1;
    for (int i = 0; i < r->ndim; i++) {
        if (r->shape[i] < 0)
            return rr_efail(RR_ERR_INVALID, "tensor '%s': negative dimension", nm);
        prod *= (uint64_t)r->shape[i];
    }
    if (prod != r->count)
        return rr_efail(RR_ERR_INVALID, "tensor '%s': count %zu does not match its shape", nm,
                     r->count);
    if (r->avg_div < 1)
        return rr_efail(RR_ERR_INVALID, "tensor '%s': average divisor must be >= 1", nm);
    if (!isfinite(r->prescale) || !isfinite(r->postscale))
        return rr_efail(RR_ERR_INVALID, "tensor '%s': scale factors must be finite", nm);
    if (r->kind == RR_REQ_BROADCAST && (r->root < 0 || r->root >= e->size))
        return rr_efail(RR_ERR_INVALID, "tensor '%s': broadcast root rank %d is not in [0, %d)",
                     nm, r->root, e->size);
    if ((r->kind == RR_REQ_ALLGATHER || r->kind == RR_REQ_REDUCESCATTER) && r->ndim < 1)
        return rr_efail(RR_ERR_INVALID, "tensor '%s': %s needs at least one dimension", nm,
                     rr_kind_name(r->kind));
    if (r->count && ((r->kind != RR_REQ_BROADCAST && r->sendbuf == NULL) ||
                     (r->kind != RR_REQ_ALLGATHER && r->recvbuf == NULL)))
        return rr_efail(RR_ERR_INVALID, "tensor '%s': NULL buffer", nm);
    if (r->group && r->group_size < 1)
        return rr_efail(RR_ERR_INVALID, "tensor '%s': group size must be >= 1", nm);
    if (r->backend != 0 && r->backend != RR_DEVICE_CUDA && r->backend != RR_DEVICE_FAKE)
        return rr_efail(RR_ERR_INVALID, "tensor '%s': unknown device backend %d", nm, r->backend);
    if (r->backend != 0 && r->device < 0)
        return rr_efail(RR_ERR_INVALID, "tensor '%s': invalid device id %d", nm, r->device);
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
        rr_entry_free(ent);
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
    ent->d.device = r->backend != 0;
    ent->backend = r->backend;
    ent->dev = r->device;
    ent->stream = r->stream;
    ent->slot = -1;
    ent->t_submit = now;
    return ent;
}

static rr_status fatal_status(rr_engine *e)
{
    return rr_efail(e->fatal, "%s", e->fatal_msg);
}

/* Enqueue entries (all or none). [mu held] */
static rr_status enqueue_locked(rr_engine *e, rr_entry **ents, size_t n, uint64_t *ids)
{
    if (atomic_load(&e->failed))
        return fatal_status(e);
    if (atomic_load(&e->stop_req))
        return rr_efail(RR_ERR_STATE, "the ringred engine is shutting down");
    size_t i;
    for (i = 0; i < n; i++) {
        rr_entry *prev = rr_smap_get(&e->inflight, ents[i]->d.name);
        if (prev) {
            rr_efail(RR_ERR_DUPLICATE, ents[i]->is_join
                  ? "join() is already in progress on this rank"
                  : "a tensor named '%s' is already in flight (%s); names must be unique "
                    "among outstanding requests", ents[i]->d.name, rr_kind_name(prev->d.kind));
            break;
        }
        if (rr_smap_put(&e->inflight, ents[i]->d.name, ents[i]) != 0) {
            rr_efail(RR_ERR_NOMEM, "out of memory");
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
            return rr_efail(RR_ERR_NOMEM, "out of memory");
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
    if (e->bg_sleeping && !rr_engine_lease_active(e, rr_now()))
        pthread_cond_signal(&e->bg_cv); /* at once (see the lease in engine.h) */
    return RR_OK;
}

static rr_status enqueue(rr_engine *e, rr_entry **ents, size_t n, uint64_t *ids)
{
    pthread_mutex_lock(&e->mu);
    rr_status st = enqueue_locked(e, ents, n, ids);
    pthread_mutex_unlock(&e->mu);
    if (st != RR_OK)
        for (size_t i = 0; i < n; i++) {
            rr_edev_release(e, ents[i]);
            rr_entry_free(ents[i]);
        }
    return st;
}

/* Submit a rejection of `r`'s name (and group) carrying `reason`, released at once: the other
 * ranks' requests of that name fail with the reason instead of waiting for a tensor that will
 * never come.  The caller's own error message (thread-local) is kept. */
static void reject_one(rr_engine *e, const rr_request *r, const char *reason)
{
    if (r->name == NULL || r->name[0] == '\0')
        return; /* no name to match: nothing the peers could be waiting on */
    rr_request q;
    memset(&q, 0, sizeof q);
    q.name = r->name;
    q.kind = r->kind >= RR_REQ_ALLREDUCE && r->kind <= RR_REQ_REDUCESCATTER ? r->kind
                                                                            : RR_REQ_ALLREDUCE;
    q.avg_div = 1;
    q.prescale = q.postscale = 1.0;
    q.group = r->group && r->group_size >= 1 ? r->group : NULL;
    q.group_size = q.group ? r->group_size : 0;
    rr_entry *ent = entry_new(&q, rr_now());
    if (ent == NULL)
        return;
    ent->d.reason = strdup(reason && reason[0] ? reason : "invalid arguments");
    uint64_t id = 0;
    if (ent->d.reason == NULL || enqueue(e, &ent, 1, &id) != RR_OK)
        return; /* enqueue frees the entry; a duplicate name stays the caller's error */
    rr_engine_release(e, id);
}

rr_status rr_engine_reject(rr_engine *e, const rr_request *reqs, size_t n, const char *reason)
{
    if (e == NULL || reqs == NULL)
        return rr_efail(RR_ERR_INVALID, "rr_engine_reject: NULL argument");
    char keep[RR_ERRMSG_LEN];
    snprintf(keep, sizeof keep, "%s", rr_engine_last_error(e));
    for (size_t i = 0; i < n; i++)
        reject_one(e, &reqs[i], reason);
    rr_efail(RR_OK, "%s", keep);
    return RR_OK;
}

rr_status rr_engine_submit(rr_engine *e, const rr_request *reqs, size_t n, uint64_t *ids)
{
    if (e == NULL || reqs == NULL || ids == NULL)
        return rr_efail(RR_ERR_INVALID, "rr_engine_submit: NULL argument");
    if (n == 0)
        return RR_OK;
    for (size_t i = 0; i < n; i++) {
        rr_status bad = check_request(e, &reqs[i]);
        if (bad != RR_OK) {
            char why[RR_ERRMSG_LEN];
            snprintf(why, sizeof why, "%s", rr_engine_last_error(e));
            rr_engine_reject(e, reqs, n, why);
            return bad;
        }
    }
    rr_entry *stack[16], **ents = n <= 16 ? stack : calloc(n, sizeof *ents);
    if (ents == NULL)
        return rr_efail(RR_ERR_NOMEM, "out of memory");
    double now = rr_now();
    size_t made = 0;
    for (; made < n; made++) {
        ents[made] = entry_new(&reqs[made], now);
        if (ents[made] == NULL)
            break;
    }
    rr_status st = RR_OK;
    if (made < n) {
        st = rr_efail(RR_ERR_NOMEM, "out of memory");
    } else {
        /* device requests: ready events on their producer streams, before anyone can run them */
        for (size_t i = 0; i < n && st == RR_OK; i++)
            if (ents[i]->d.device)
                st = rr_edev_submit(e, ents[i]);
    }
    if (st != RR_OK) {
        for (size_t i = 0; i < made; i++) {
            rr_edev_release(e, ents[i]);
            rr_entry_free(ents[i]);
        }
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
    return rr_engine_allreduce_device(e, name, sendbuf, recvbuf, count, dtype, op, prescale,
                                      postscale, avg_div, ndim, shape, 0, 0, 0, id);
}

rr_status rr_engine_allreduce_device(rr_engine *e, const char *name, const void *sendbuf,
                                     void *recvbuf, size_t count, int dtype, int op,
                                     double prescale, double postscale, int64_t avg_div,
                                     int ndim, const int64_t *shape, int backend, int device,
                                     uintptr_t stream, uint64_t *id)
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
        return rr_efail(RR_ERR_INVALID, "tensor '%s': bad shape", name ? name : "");
    q.ndim = ndim;
    for (int i = 0; i < ndim; i++)
        q.shape[i] = shape[i];
    q.backend = backend;
    q.device = device;
    q.stream = stream;
    return rr_engine_submit(e, &q, 1, id);
}

rr_status rr_engine_join(rr_engine *e, uint64_t *id)
{
    if (e == NULL || id == NULL)
        return rr_efail(RR_ERR_INVALID, "rr_engine_join: NULL argument");
    rr_entry *ent = calloc(1, sizeof *ent);
    if (ent == NULL || (ent->d.name = strdup("<join>")) == NULL) {
        free(ent);
        return rr_efail(RR_ERR_NOMEM, "out of memory");
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
        return rr_efail(RR_ERR_INVALID, "rr_engine_poll: NULL argument");
    pthread_mutex_lock(&e->mu);
    rr_entry *ent = id_find(e, id);
    if (ent)
        *done = is_done(ent);
    pthread_mutex_unlock(&e->mu);
    if (ent == NULL)
        return rr_efail(RR_ERR_INVALID, "unknown request id %llu", (unsigned long long)id);
    return RR_OK;
}

rr_status rr_engine_wait(rr_engine *e, uint64_t id, double timeout_s)
{
    if (e == NULL)
        return rr_efail(RR_ERR_INVALID, "rr_engine_wait: NULL engine");
    atomic_fetch_add(&e->inside, 1);
    pthread_mutex_lock(&e->mu);
    rr_entry *ent = id_find(e, id);
    if (ent)
        ent->refs++; /* keeps it alive if another thread releases it meanwhile */
    pthread_mutex_unlock(&e->mu);
    rr_status st;
    if (ent == NULL) {
        st = rr_efail(RR_ERR_INVALID, "unknown request id %llu", (unsigned long long)id);
    } else {
        if (!is_done(ent)) {
            double t0 = rr_now();
            rr_progress_until(e, &ent->done, timeout_s);
            rr_ph_time(e, RR_PH_WAIT, t0, rr_now());
        }
        if (!is_done(ent)) {
            st = RR_ERR_TIMEOUT;
        } else {
            st = ent->status;
            if (st != RR_OK)
                rr_efail(st, "%s", ent->errmsg ? ent->errmsg : rr_strerror(st));
        }
        pthread_mutex_lock(&e->mu);
        if (--ent->refs == 0 && ent->released && is_done(ent))
            rr_entry_free(ent);
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
        return rr_efail(RR_ERR_INVALID, "unknown request id %llu", (unsigned long long)id);
    if (!is_done(ent))
        return rr_efail(RR_ERR_STATE, "request '%s' is not done", ent->d.name);
    if (ent->status != RR_OK)
        return rr_efail(ent->status, "%s", ent->errmsg ? ent->errmsg : "failed");
    *out = ent;
    return RR_OK;
}

rr_status rr_engine_result_rows(rr_engine *e, uint64_t id, size_t *rows)
{
    rr_entry *ent;
    RR_CHECK(done_entry(e, id, &ent));
    if (ent->rows == NULL || rows == NULL)
        return rr_efail(RR_ERR_INVALID, "request '%s' has no gathered result", ent->d.name);
    memcpy(rows, ent->rows, (size_t)e->size * sizeof *rows);
    return RR_OK;
}

rr_status rr_engine_result_copy(rr_engine *e, uint64_t id, void *dst, size_t bytes)
{
    rr_entry *ent;
    RR_CHECK(done_entry(e, id, &ent));
    if (ent->counts == NULL)
        return rr_efail(RR_ERR_INVALID, "request '%s' has no gathered result", ent->d.name);
    if (bytes != ent->result_bytes)
        return rr_efail(RR_ERR_INVALID, "request '%s': result has %zu bytes, not %zu", ent->d.name,
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
        return rr_efail(RR_ERR_INVALID, "request %llu is not a join", (unsigned long long)id);
    *last_rank = ent->join_last;
    return RR_OK;
}

rr_status rr_engine_release(rr_engine *e, uint64_t id)
{
    if (e == NULL)
        return rr_efail(RR_ERR_INVALID, "rr_engine_release: NULL engine");
    pthread_mutex_lock(&e->mu);
    rr_entry *ent = id_find(e, id);
    if (ent) {
        id_remove(e, ent);
        if (is_done(ent) && ent->refs == 0)
            rr_entry_free(ent);
        else
            ent->released = 1; /* freed when done and no thread waits on it */
    }
    pthread_mutex_unlock(&e->mu);
    return RR_OK;
}

rr_status rr_engine_take_warning(rr_engine *e, char *buf, size_t cap, int *got)
{
    if (e == NULL || got == NULL)
        return rr_efail(RR_ERR_INVALID, "rr_engine_take_warning: NULL argument");
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

