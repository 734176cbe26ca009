/* The engine's device (GPU) requests.
 *
 * Submission (user threads): a device request records a ready event on its producer
 * stream, from a pool of events of the engine's device; nothing waits.  The pool serves one
 * (backend, device) per engine: a process drives one GPU, as with Horovod and NCCL.
 *
 * Execution (the thread holding the progress lock, in the negotiated order, identical on
 * every rank): the engine's own stream on the device waits on the ready events of the
 * response's tensors, packs them into the device fusion buffer with device-to-device copies
 * (no kernels), the fused buffer is reduced by the device transport (rr_dev_allreduce_agreed:
 * no second agreement, the negotiation was one), and the results are unpacked
 * device-to-device.  A done event recorded after the last copy is polled by the host, and
 * only then are the requests completed: inputs and outputs stay alive and untouched until the
 * device is finished with them, and a completed request's results are ready for any stream.
 *
 * A rank that has joined contributes zeros.  If any rank has joined in this cycle (the same
 * on every rank), device allreduces run the staged plan, whose host collectives a joined rank
 * without device buffers can take part in (rr_dev_allreduce_zeros).
 *
 * Test hook: RINGRED_TEST_PLANT=no_ready_wait / early_done plants the two ordering bugs the
 * fake-device tests must catch (the stream does not wait on the ready events; requests
 * complete before the done event). */
#include <stdlib.h>
#include <string.h>

#include "device/device.h"
#include "engine/engine.h"

/* ---------------------------------------------------------------- the ready-event pool */

struct rr_evpool {
    pthread_mutex_t mu;
    const rr_dev_backend *be;
    int backend, dev;
    void *ctx;
    void **free_ev;
    int n, cap;
};

static rr_status pool_open(rr_engine *e, int backend, int dev, struct rr_evpool **out)
{
    pthread_mutex_lock(&e->mu);
    struct rr_evpool *p = e->evpool;
    pthread_mutex_unlock(&e->mu);
    if (p) {
        if (p->backend != backend || p->dev != dev)
            return rr_efail(RR_ERR_UNSUPPORTED, "the engine serves one GPU per process: a tensor "
                            "on device %d after tensors on device %d (%s backend)", dev, p->dev,
                            p->be->name);
        *out = p;
        return RR_OK;
    }
    const rr_dev_backend *be = rr_dev_backend_of(backend);
    if (be == NULL)
        return rr_efail(RR_ERR_INVALID, "unknown device backend %d", backend);
    char why[512] = "";
    if (be->load(why, sizeof why) != 0)
        return rr_efail(RR_ERR_UNSUPPORTED, "%s", why);
    p = calloc(1, sizeof *p);
    if (p == NULL)
        return rr_efail(RR_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&p->mu, NULL);
    p->be = be;
    p->backend = backend;
    p->dev = dev;
    int err = be->ctx_retain(dev, &p->ctx);
    if (err) {
        pthread_mutex_destroy(&p->mu);
        free(p);
        return rr_efail(RR_ERR_SYSTEM, "%s: retaining device %d's context failed: %s (error %d)",
                        be->name, dev, be->errstr(err), err);
    }
    pthread_mutex_lock(&e->mu);
    if (e->evpool == NULL) {
        e->evpool = p;
        p = NULL;
    }
    struct rr_evpool *cur = e->evpool;
    pthread_mutex_unlock(&e->mu);
    if (p) { /* another thread won the race */
        be->ctx_release(dev, p->ctx);
        pthread_mutex_destroy(&p->mu);
        free(p);
    }
    if (cur->backend != backend || cur->dev != dev)
        return pool_open(e, backend, dev, out);
    *out = cur;
    return RR_OK;
}

const char *rr_engine_device_transport(rr_engine *e, char *why, size_t why_len)
{
    return rr_device_transport(e ? e->comm : NULL, why, why_len);
}

void rr_edev_free(rr_engine *e)
{
    struct rr_evpool *p = e->evpool;
    if (p == NULL)
        return;
    e->evpool = NULL;
    void *prev = NULL;
    int entered = p->be->ctx_enter(p->ctx, &prev) == 0;
    for (int i = 0; i < p->n; i++)
        p->be->event_destroy(p->free_ev[i]);
    if (entered)
        p->be->ctx_leave(prev);
    p->be->ctx_release(p->dev, p->ctx);
    free(p->free_ev);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

rr_status rr_edev_submit(rr_engine *e, rr_entry *ent)
{
    struct rr_evpool *p = NULL;
    RR_CHECK(pool_open(e, ent->backend, ent->dev, &p));
    const rr_dev_backend *be = p->be;
    void *prev = NULL, *ev = NULL;
    int err = be->ctx_enter(p->ctx, &prev);
    if (err)
        return rr_efail(RR_ERR_SYSTEM, "%s: making device %d's context current failed: %s",
                        be->name, p->dev, be->errstr(err));
    pthread_mutex_lock(&p->mu);
    if (p->n > 0)
        ev = p->free_ev[--p->n];
    pthread_mutex_unlock(&p->mu);
    if (ev == NULL && (err = be->event_create(&ev)) != 0) {
        be->ctx_leave(prev);
        return rr_efail(RR_ERR_SYSTEM, "%s: event creation failed: %s (error %d)", be->name,
                        be->errstr(err), err);
    }
    err = be->event_record(ev, ent->stream);
    be->ctx_leave(prev);
    if (err) {
        rr_status st = rr_efail(RR_ERR_SYSTEM, "tensor '%s': recording an event on the producer "
                                "stream failed: %s (error %d)", ent->d.name, be->errstr(err),
                                err);
        ent->ready_ev = ev;
        rr_edev_release(e, ent);
        return st;
    }
    ent->ready_ev = ev;
    return RR_OK;
}

void rr_edev_release(rr_engine *e, rr_entry *ent)
{
    struct rr_evpool *p = e->evpool;
    void *ev = ent->ready_ev;
    if (ev == NULL || p == NULL)
        return;
    ent->ready_ev = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 64;
        void **v = realloc(p->free_ev, (size_t)cap * sizeof *v);
        if (v) {
            p->free_ev = v;
            p->cap = cap;
        }
    }
    if (p->n < p->cap) {
        p->free_ev[p->n++] = ev;
        ev = NULL;
    }
    pthread_mutex_unlock(&p->mu);
    if (ev) /* no room in the pool: let it go (a context need not be current for this) */
        p->be->event_destroy(ev);
}

/* ---------------------------------------------------------------- execution */

/* This rank's device for a response unit: the first entry's (NULL: none, it has joined). */
static const rr_entry *first_entry(rr_resp *const *rs, size_t k)
{
    for (size_t i = 0; i < k; i++)
        if (rs[i]->ent)
            return rs[i]->ent;
    return NULL;
}

/* The engine's stream and done event on the entered device. */
static rr_status work_objects(rr_comm *c, rr_device *d)
{
    if (d->work == 0)
        RR_DEV(c, d->be, "engine stream creation", d->be->stream_create(&d->work));
    if (d->ev_done == NULL)
        RR_DEV(c, d->be, "event creation", d->be->event_create(&d->ev_done));
    return RR_OK;
}

/* The engine stream waits for the work queued on the tensors' producer streams: on each
 * stream, the ready event recorded last covers the earlier ones (one wait per stream). */
static rr_status wait_ready(rr_comm *c, rr_device *d, rr_resp *const *rs, size_t k)
{
    if (rr_test_plant("no_ready_wait"))
        return RR_OK;
    for (size_t i = 0; i < k; i++) {
        const rr_entry *x = rs[i]->ent;
        if (x == NULL || x->ready_ev == NULL)
            continue;
        int covered = 0; /* a later submission on the same stream, or one handled before */
        for (size_t j = 0; j < k && !covered; j++) {
            const rr_entry *y = rs[j]->ent;
            covered = j != i && y && y->ready_ev && y->stream == x->stream &&
                      (y->id > x->id || (y->id == x->id && j < i));
        }
        if (!covered)
            RR_DEV(c, d->be, "making the engine stream wait for a producer",
                    d->be->stream_wait_event(d->work, x->ready_ev));
    }
    return RR_OK;
}

/* Everything queued on the engine stream so far has run. */
static rr_status done(rr_comm *c, rr_device *d)
{
    RR_DEV(c, d->be, "recording the done event", d->be->event_record(d->ev_done, d->work));
    if (rr_test_plant("early_done"))
        return RR_OK;
    return rr_dev_host_wait(c, d, d->ev_done);
}

static rr_status fusion_buffer(rr_comm *c, rr_device *d, size_t bytes)
{
    if (bytes <= d->fbuf_cap)
        return RR_OK;
    if (d->fbuf) {
        /* the old buffer may still be read by queued copies */
        RR_DEV(c, d->be, "stream synchronization", d->be->stream_sync(d->work));
        d->be->mem_free(d->fbuf);
        d->fbuf = 0;
        d->fbuf_cap = 0;
    }
    size_t cap = bytes < ((size_t)1 << 20) ? ((size_t)1 << 20) : bytes;
    uintptr_t p = 0;
    RR_DEV(c, d->be, "device fusion buffer allocation", d->be->mem_alloc(&p, cap));
    d->fbuf = p;
    d->fbuf_cap = cap;
    return RR_OK;
}

/* Pinned host zeros of at least `bytes` (a joined rank's share packed into the fusion
 * buffer; the copy kernel reads them through unified addressing). */
static rr_status host_zeros(rr_comm *c, rr_device *d, size_t bytes, const void **out)
{
    if (bytes > d->zeros_cap) {
        void *z = NULL;
        RR_DEV(c, d->be, "pinned host allocation", d->be->host_alloc(&z, bytes));
        memset(z, 0, bytes);
        /* the old zeros may be the source of a queued copy: done() waited for it */
        if (d->zeros)
            d->be->host_free(d->zeros);
        d->zeros = z;
        d->zeros_cap = bytes;
    }
    *out = d->zeros;
    return RR_OK;
}

/* Room for n segments in the pinned segment table (the previous unit's launches are done:
 * done() waited for them). */
static rr_status seg_table(rr_comm *c, rr_device *d, size_t n)
{
    if (n <= d->segs_cap)
        return RR_OK;
    size_t cap = n < 256 ? 256 : n;
    void *p = NULL;
    RR_DEV(c, d->be, "pinned host allocation", d->be->host_alloc(&p, cap * sizeof(rr_kcopy)));
    if (d->segs)
        d->be->host_free(d->segs);
    d->segs = p;
    d->segs_cap = cap;
    return RR_OK;
}

/* Copy the segments t[0..n) on the engine stream: one launch of the copy kernel, or with
 * RINGRED_DEVICE_PACK=copies one device-to-device copy per segment. */
static rr_status copy_segments(rr_comm *c, rr_device *d, const rr_kcopy *t, size_t n)
{
    if (rr_set_choice(RR_S_DEVICE_PACK) == 1 /* kernel|copies */ || d->be->launch_copy == NULL) {
        for (size_t i = 0; i < n; i++)
            if (t[i].bytes)
                RR_DEV(c, d->be, "device-to-device copy",
                        d->be->d2d((uintptr_t)t[i].dst, (uintptr_t)t[i].src, t[i].bytes,
                                   d->work));
        return RR_OK;
    }
    uint64_t longest = 0;
    size_t used = 0;
    for (size_t i = 0; i < n; i++)
        if (t[i].bytes) {
            longest = t[i].bytes > longest ? t[i].bytes : longest;
            used++;
        }
    if (used == 0)
        return RR_OK;
    RR_DEV(c, d->be, "launching the copy kernel",
            d->be->launch_copy(t, (uint32_t)n, longest, d->work));
    return RR_OK;
}

static int any_joined(const rr_engine *e, const uint8_t *joined)
{
    for (int r = 0; joined && r < e->size; r++)
        if (joined[r])
            return 1;
    return 0;
}

/* Pack, reduce, unpack on the entered device d. */
static rr_status fused_allreduce(rr_engine *e, rr_device *d, rr_resp *const *rs, size_t k,
                                 int allow_ipc, double *marks)
{
    rr_comm *c = e->comm;
    const rr_dev_backend *be = d->be;
    const rr_desc *d0 = &rs[0]->d;
    size_t es = rr_dtype_size(d0->dtype), total = 0;
    for (size_t i = 0; i < k; i++)
        total += rs[i]->d.count;
    RR_CHECK(work_objects(c, d));
    RR_CHECK(wait_ready(c, d, rs, k));
    if (k == 1 && rs[0]->ent) { /* one tensor: reduced where it is */
        const rr_entry *x = rs[0]->ent;
        marks[1] = rr_now();
        RR_CHECK(rr_dev_allreduce_agreed(c, d, d->work, (uintptr_t)x->sendbuf,
                                         (uintptr_t)x->recvbuf, total, d0->dtype, d0->op,
                                         d0->pre, d0->post, d0->div, allow_ipc));
        marks[2] = marks[3] = rr_now();
        return done(c, d);
    }
    RR_CHECK(fusion_buffer(c, d, total * es));
    RR_CHECK(seg_table(c, d, 2 * k)); /* [0, k): pack, [k, 2k): unpack */
    rr_kcopy *in = d->segs, *out = d->segs + k;
    size_t off = 0, biggest = 0;
    for (size_t i = 0; i < k; i++) {
        size_t b = rs[i]->d.count * es;
        biggest = b > biggest ? b : biggest;
    }
    const void *z = NULL;
    for (size_t i = 0; i < k; i++) {
        size_t b = rs[i]->d.count * es;
        const rr_entry *x = rs[i]->ent;
        if (x == NULL && b && z == NULL)
            RR_CHECK(host_zeros(c, d, biggest, &z));
        in[i] = (rr_kcopy){d->fbuf + off, x ? (uint64_t)(uintptr_t)x->sendbuf
                                            : (uint64_t)(uintptr_t)z, b};
        out[i] = (rr_kcopy){x ? (uint64_t)(uintptr_t)x->recvbuf : 0, d->fbuf + off,
                            x ? b : 0};
        off += b;
    }
    RR_CHECK(copy_segments(c, d, in, k));
    (void)be;
    marks[1] = rr_now();
    RR_CHECK(rr_dev_allreduce_agreed(c, d, d->work, d->fbuf, d->fbuf, total, d0->dtype, d0->op,
                                     d0->pre, d0->post, d0->div, allow_ipc));
    marks[2] = rr_now();
    RR_CHECK(copy_segments(c, d, out, k));
    marks[3] = rr_now();
    return done(c, d);
}

rr_status rr_edev_allreduce(rr_engine *e, rr_resp *const *rs, size_t k, const uint8_t *joined)
{
    rr_comm *c = e->comm;
    const rr_desc *d0 = &rs[0]->d;
    size_t total = 0;
    for (size_t i = 0; i < k; i++)
        total += rs[i]->d.count;
    double marks[4];
    marks[0] = marks[1] = marks[2] = marks[3] = rr_now();
    const rr_entry *x = first_entry(rs, k);
    rr_status st;
    if (x == NULL) {
        /* joined, nothing of ours in it: the staged plan's host collectives on zeros */
        st = rr_dev_allreduce_zeros(c, total, d0->dtype, d0->op, d0->pre, d0->post, d0->div);
    } else {
        rr_device *d = NULL;
        void *prev = NULL;
        st = rr_dev_enter(c, x->backend, x->dev, &d, &prev);
        if (st == RR_OK) {
            /* a joined rank without device buffers can only take part in the staged plan */
            st = fused_allreduce(e, d, rs, k, !any_joined(e, joined), marks);
            if (st != RR_OK)
                rr_dev_settle(d, st); /* nothing queued may outlive the request */
            rr_dev_leave(d, prev);
        }
    }
    for (size_t i = 0; i < k; i++) {
        rr_fusion_trace(e, rs[i]->ent, marks[0], marks, k > 1);
        rr_fusion_finish(e, rs[i]->ent, st, k > 1 ? "fused allreduce: " : "");
    }
    return RR_OK;
}

/* One response with a buffer of ours on the device: run fn between the ready wait and done. */
typedef rr_status (*one_fn)(rr_engine *e, rr_device *d, rr_resp *r);

static rr_status run_one(rr_engine *e, rr_resp *r, one_fn fn)
{
    rr_comm *c = e->comm;
    /* joined ranks never get here: broadcast and allgather are refused while some ranks
     * have joined, and a joined rank's reducescatter is handled by the caller */
    if (r->ent == NULL)
        return RR_FAIL(c, RR_ERR_STATE, "engine protocol error: device %s without a request",
                       rr_kind_name(r->d.kind));
    rr_device *d = NULL;
    void *prev = NULL;
    double m[4];
    m[0] = m[1] = rr_now();
    rr_status st = rr_dev_enter(c, r->ent->backend, r->ent->dev, &d, &prev);
    if (st == RR_OK) {
        st = work_objects(c, d);
        if (st == RR_OK)
            st = wait_ready(c, d, &r, 1);
        if (st == RR_OK)
            st = fn(e, d, r);
        if (st == RR_OK)
            st = done(c, d);
        else
            rr_dev_settle(d, st);
        rr_dev_leave(d, prev);
    }
    m[2] = m[3] = rr_now();
    rr_fusion_trace(e, r->ent, m[0], m, 0);
    rr_fusion_finish(e, r->ent, st, "");
    return RR_OK;
}

static rr_status bcast_fn(rr_engine *e, rr_device *d, rr_resp *r)
{
    /* never while some ranks have joined (refused then) */
    return rr_dev_broadcast_agreed(e->comm, d, d->work, (uintptr_t)r->ent->recvbuf, r->d.count,
                                   r->d.dtype, r->d.root, 1);
}

rr_status rr_edev_broadcast(rr_engine *e, rr_resp *r) { return run_one(e, r, bcast_fn); }

static rr_status gather_fn(rr_engine *e, rr_device *d, rr_resp *r)
{
    rr_comm *c = e->comm;
    rr_entry *ent = r->ent;
    int n = e->size;
    size_t es = rr_dtype_size(r->d.dtype), total = 0, off = 0;
    size_t *counts = malloc(2 * (size_t)n * sizeof *counts);
    if (counts == NULL)
        return RR_FAIL(c, RR_ERR_NOMEM, "cannot allocate the allgather counts");
    for (int q = 0; q < n; q++) {
        counts[q] = (size_t)r->counts[q];
        counts[n + q] = (size_t)r->counts[n + q];
        if (q == e->rank)
            off = total;
        total += counts[q];
    }
    uint8_t *out = malloc(total * es + 1);
    if (out == NULL) {
        free(counts);
        rr_poison(c, RR_KIND_ALLGATHER);
        return RR_FAIL(c, RR_ERR_NOMEM, "cannot allocate %zu bytes", total * es);
    }
    rr_status st = rr_dev_download(c, d, d->work, out + off * es, (uintptr_t)ent->sendbuf,
                                   counts[e->rank] * es);
    if (st != RR_OK)
        rr_poison(c, RR_KIND_ALLGATHER);
    else
        st = rr_allgather(c, out + off * es, counts[e->rank], out, r->d.dtype, 0, counts);
    ent->result = out;
    ent->counts = counts;
    ent->rows = counts + n;
    ent->result_bytes = total * es;
    return st;
}

rr_status rr_edev_allgather(rr_engine *e, rr_resp *r) { return run_one(e, r, gather_fn); }

static rr_status scatter_fn(rr_engine *e, rr_device *d, rr_resp *r)
{
    /* a joined rank takes part with the host collective: then everybody stages */
    return rr_dev_reducescatter_agreed(e->comm, d, d->work, (uintptr_t)r->ent->sendbuf,
                                       r->d.count, (uintptr_t)r->ent->recvbuf, e->rs_counts,
                                       r->d.dtype, r->d.op, r->d.pre, r->d.post, r->d.div,
                                       !any_joined(e, e->joined_now));
}

/* e->rs_counts must hold the split of this response. */
rr_status rr_edev_reducescatter(rr_engine *e, rr_resp *r)
{
    if (r->ent)
        return run_one(e, r, scatter_fn);
    /* joined: the same host collective on zeros */
    const rr_desc *d = &r->d;
    size_t es = rr_dtype_size(d->dtype), mine = e->rs_counts[e->rank];
    uint8_t *z = calloc(1, (d->count + mine) * es + 1);
    if (z == NULL)
        return RR_FAIL(e->comm, RR_ERR_NOMEM, "cannot allocate %zu bytes",
                       (d->count + mine) * es);
    rr_status st = rr_reducescatter(e->comm, z, d->count, z + d->count * es, e->rs_counts,
                                    d->dtype, d->op, d->pre, d->post, d->div);
    free(z);
    (void)st;
    return RR_OK;
}
