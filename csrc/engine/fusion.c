/* Execution of a cycle's responses, in the negotiated order, with tensor fusion.
 *
 * Ready allreduces with the same dtype, op and scale factors are packed, in response order
 * with look-ahead past misfits, into a persistent engine-owned buffer of up to
 * RINGRED_FUSION_THRESHOLD bytes, reduced with one rr_allreduce and unpacked.  A lone
 * tensor, one larger than the threshold, or one larger than RINGRED_FUSION_MAX_TENSOR, is
 * reduced directly from the caller's buffers: on CPUs, copying a large tensor in and out
 * costs more memory bandwidth than the per-call latency fusion saves.
 * The members of a grouped allreduce always form one unit.  A rank without a request for
 * a response (it has joined) contributes zeros.  Only the public collectives run here, on
 * the engine's communicator, so every transport they gain is used. */
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "shm/shm.h"

/* Timeline label of the reduction step: the collective and the transport that carried it. */
static const char *transport_label(const rr_engine *e, int kind)
{
    static const char *const labels[4][2] = {
        {"ALLREDUCE (mpi)", "ALLREDUCE (shm)"},
        {"BROADCAST (mpi)", "BROADCAST (shm)"},
        {"ALLGATHER (mpi)", "ALLGATHER (shm)"},
        {"REDUCESCATTER (mpi)", "REDUCESCATTER (shm)"},
    };
    int shm = strcmp(rr_comm_transport(e->comm), "shm") == 0;
    int row = kind == RR_REQ_BROADCAST       ? 1
              : kind == RR_REQ_ALLGATHER     ? 2
              : kind == RR_REQ_REDUCESCATTER ? 3
                                             : 0;
    return labels[row][shm];
}

static void release(void *p, int shared)
{
    if (shared)
        rr_mem_free(p);
    else
        free(p);
}

void rr_fusion_free(rr_engine *e)
{
    release(e->fbuf, e->fbuf_shared);
    e->fbuf = NULL;
    e->fbuf_cap = 0;
}

/* The fusion buffer lives in the shared segment where there is one: the shm transport then
 * reads every rank's buffer in place instead of copying it through its slots. */
static void *fusion_buffer(rr_engine *e, size_t bytes)
{
    if (bytes == 0)
        bytes = 1;
    if (bytes > e->fbuf_cap) {
        size_t cap = bytes < (1u << 16) ? (1u << 16) : bytes;
        void *p = NULL;
        int shared = e->comm->shm != NULL && rr_mem_alloc(e->comm, cap, &p) == RR_OK;
        if (!shared) {
            e->comm->errmsg[0] = '\0';
            if (posix_memalign(&p, 64, cap) != 0)
                return NULL;
        }
        release(e->fbuf, e->fbuf_shared);
        e->fbuf = p;
        e->fbuf_cap = cap;
        e->fbuf_shared = shared;
    }
    return e->fbuf;
}

/* Complete this rank's entry for a response (no-op for a joined rank without one). */
void rr_fusion_finish(rr_engine *e, rr_entry *ent, rr_status st, const char *what)
{
    if (ent == NULL)
        return;
    char msg[RR_ERRMSG_LEN];
    if (st != RR_OK) {
        snprintf(msg, sizeof msg, "tensor '%.200s': %s%.1700s", ent->d.name, what ? what : "",
                 e->comm->errmsg);
        /* Failures that are not symmetric by construction end the engine; the other ranks
         * learn this rank's message in the next cycle. */
        if (st != RR_ERR_MISMATCH && st != RR_ERR_INVALID && st != RR_ERR_UNSUPPORTED &&
            !e->local_err) {
            e->local_err = strdup(msg);
            e->local_err_code = st;
        }
    }
    rr_smap_del(&e->pending, ent->d.name);
    rr_engine_complete(e, ent, st, st == RR_OK ? NULL : msg);
}

void rr_fusion_trace(rr_engine *e, const rr_entry *ent, double t_exec, const double *marks,
                     int fused)
{
    if (ent == NULL || !RR_TL_ON(&e->tl))
        return;
    const char *nm = ent->d.name;
    rr_tl_span(&e->tl, nm, "NEGOTIATE", ent->t_submit, ent->t_ready);
    rr_tl_span(&e->tl, nm, "QUEUE", ent->t_ready, t_exec);
    if (fused)
        rr_tl_span(&e->tl, nm, "MEMCPY_IN_FUSION", marks[0], marks[1]);
    rr_tl_span(&e->tl, nm, transport_label(e, ent->d.kind), marks[1], marks[2]);
    if (fused)
        rr_tl_span(&e->tl, nm, "MEMCPY_OUT_FUSION", marks[2], marks[3]);
}

static rr_status nomem(rr_engine *e, size_t bytes)
{
    return RR_FAIL(e->comm, RR_ERR_NOMEM, "cannot allocate %zu bytes", bytes);
}

/* ---------------------------------------------------------------- allreduce */

static rr_status allreduce_direct(rr_engine *e, rr_resp *r)
{
    const rr_desc *d = &r->d;
    rr_entry *ent = r->ent;
    size_t bytes = d->count * rr_dtype_size(d->dtype);
    const void *src;
    void *dst;
    if (ent) {
        src = ent->sendbuf;
        dst = ent->recvbuf;
    } else {
        if ((dst = fusion_buffer(e, bytes)) == NULL)
            return nomem(e, bytes);
        memset(dst, 0, bytes);
        src = dst;
    }
    double m[4];
    m[0] = m[1] = rr_now();
    rr_status st = rr_allreduce(e->comm, src, dst, d->count, d->dtype, d->op, d->pre, d->post,
                                d->div);
    m[2] = m[3] = rr_now();
    rr_ph_time(e, RR_PH_REDUCE, m[1], m[2]);
    rr_ph_add(e, RR_PH_DIRECT, 1);
    rr_ph_add(e, RR_PH_DIRECT_BYTES, bytes);
    rr_ph_add(e, RR_PH_UNITS, 1);
    rr_fusion_trace(e, ent, m[0], m, 0);
    rr_fusion_finish(e, ent, st, "");
    return RR_OK;
}

/* Reduce the responses idx[0..k) (same dtype / op / scale factors) in one fused buffer. */
static rr_status allreduce_fused(rr_engine *e, rr_resp_list *L, const size_t *idx, size_t k)
{
    const rr_desc *d0 = &L->v[idx[0]].d;
    size_t es = rr_dtype_size(d0->dtype), total = 0;
    for (size_t i = 0; i < k; i++)
        total += L->v[idx[i]].d.count;
    uint8_t *fb = fusion_buffer(e, total * es);
    if (fb == NULL)
        return nomem(e, total * es);
    double m[4];
    m[0] = rr_now();
    size_t off = 0;
    for (size_t i = 0; i < k; i++) {
        rr_resp *r = &L->v[idx[i]];
        size_t b = r->d.count * es;
        if (r->ent)
            memcpy(fb + off, r->ent->sendbuf, b);
        else
            memset(fb + off, 0, b);
        off += b;
    }
    m[1] = rr_now();
    rr_status st = rr_allreduce(e->comm, fb, fb, total, d0->dtype, d0->op, d0->pre, d0->post,
                                d0->div);
    m[2] = rr_now();
    off = 0;
    for (size_t i = 0; i < k && st == RR_OK; i++) {
        rr_resp *r = &L->v[idx[i]];
        size_t b = r->d.count * es;
        if (r->ent)
            memcpy(r->ent->recvbuf, fb + off, b);
        off += b;
    }
    m[3] = rr_now();
    rr_ph_time(e, RR_PH_COPY_IN, m[0], m[1]);
    rr_ph_time(e, RR_PH_REDUCE, m[1], m[2]);
    rr_ph_time(e, RR_PH_COPY_OUT, m[2], m[3]);
    rr_ph_add(e, RR_PH_FUSED, k);
    rr_ph_add(e, RR_PH_FUSED_BYTES, total * es);
    rr_ph_add(e, RR_PH_UNITS, 1);
    for (size_t i = 0; i < k; i++) {
        rr_resp *r = &L->v[idx[i]];
        rr_fusion_trace(e, r->ent, m[0], m, 1);
        rr_fusion_finish(e, r->ent, st, "fused allreduce: ");
    }
    return RR_OK;
}

static int compatible(const rr_desc *a, const rr_desc *b)
{
    return a->dtype == b->dtype && a->op == b->op && a->div == b->div && a->device == b->device &&
           memcmp(&a->pre, &b->pre, sizeof a->pre) == 0 &&
           memcmp(&a->post, &b->post, sizeof a->post) == 0;
}

static int fusable(const rr_resp *r)
{
    return r->type == RESP_EXEC && r->d.kind == RR_REQ_ALLREDUCE && r->d.group == NULL;
}

/* ---------------------------------------------------------------- other collectives */

static rr_status broadcast(rr_engine *e, rr_resp *r)
{
    const rr_desc *d = &r->d;
    if (d->device)
        return rr_edev_broadcast(e, r);
    size_t bytes = d->count * rr_dtype_size(d->dtype);
    void *buf = r->ent ? r->ent->recvbuf : fusion_buffer(e, bytes);
    if (buf == NULL)
        return nomem(e, bytes);
    if (!r->ent)
        memset(buf, 0, bytes);
    double m[4];
    m[0] = m[1] = rr_now();
    rr_status st = rr_broadcast(e->comm, buf, d->count, d->dtype, d->root);
    m[2] = m[3] = rr_now();
    rr_fusion_trace(e, r->ent, m[0], m, 0);
    rr_fusion_finish(e, r->ent, st, "");
    return RR_OK;
}

static rr_status allgather(rr_engine *e, rr_resp *r)
{
    const rr_desc *d = &r->d;
    if (d->device)
        return rr_edev_allgather(e, r);
    int n = e->size;
    size_t es = rr_dtype_size(d->dtype), total = 0;
    size_t *counts = malloc(2 * (size_t)n * sizeof *counts);
    if (counts == NULL)
        return nomem(e, 2 * (size_t)n * sizeof *counts);
    for (int k = 0; k < n; k++) {
        counts[k] = (size_t)r->counts[k];
        counts[n + k] = (size_t)r->counts[n + k];
        total += counts[k];
    }
    rr_entry *ent = r->ent;
    void *out;
    const void *src;
    if (ent) {
        out = malloc(total * es + 1);
        src = ent->sendbuf;
    } else {
        out = fusion_buffer(e, total * es);
        src = out; /* cannot happen (allgather under join is refused); keep the ranks going */
    }
    if (out == NULL) {
        free(counts);
        return nomem(e, total * es);
    }
    double m[4];
    m[0] = m[1] = rr_now();
    rr_status st = rr_allgather(e->comm, src, counts[e->rank], out, d->dtype, 0, counts);
    m[2] = m[3] = rr_now();
    if (ent) {
        ent->result = out;
        ent->counts = counts;
        ent->rows = counts + n; /* same allocation */
        ent->result_bytes = total * es;
    } else {
        free(counts);
    }
    rr_fusion_trace(e, ent, m[0], m, 0);
    rr_fusion_finish(e, ent, st, "");
    return RR_OK;
}

/* e->rs_counts: the elements of the response's rows each rank receives. */
static void split_counts(rr_engine *e, const rr_desc *d)
{
    int n = e->size;
    uint64_t rows = d->ndim ? (uint64_t)d->shape[0] : 1;
    uint64_t row = rows ? d->count / rows : 0, base = rows / (uint64_t)n,
             extra = rows % (uint64_t)n;
    for (int k = 0; k < n; k++)
        e->rs_counts[k] = (size_t)((base + ((uint64_t)k < extra ? 1 : 0)) * row);
}

static rr_status reducescatter(rr_engine *e, rr_resp *r)
{
    const rr_desc *d = &r->d;
    size_t es = rr_dtype_size(d->dtype);
    split_counts(e, d);
    if (d->device)
        return rr_edev_reducescatter(e, r);
    const void *src;
    void *dst;
    if (r->ent) {
        src = r->ent->sendbuf;
        dst = r->ent->recvbuf;
    } else {
        size_t bytes = (d->count + e->rs_counts[e->rank]) * es;
        uint8_t *fb = fusion_buffer(e, bytes);
        if (fb == NULL)
            return nomem(e, bytes);
        memset(fb, 0, d->count * es);
        src = fb;
        dst = fb + d->count * es;
    }
    double m[4];
    m[0] = m[1] = rr_now();
    rr_status st = rr_reducescatter(e->comm, src, d->count, dst, e->rs_counts, d->dtype, d->op,
                                    d->pre, d->post, d->div);
    m[2] = m[3] = rr_now();
    rr_fusion_trace(e, r->ent, m[0], m, 0);
    rr_fusion_finish(e, r->ent, st, "");
    return RR_OK;
}

/* ---------------------------------------------------------------- the response list */

/* Reduce the responses idx[0..k) (compatible) as one unit: on the device, or on the host
 * (one tensor where it is, several through the fusion buffer). */
static rr_status run_allreduce(rr_engine *e, rr_resp_list *L, const size_t *idx, size_t k,
                               const uint8_t *joined, int fused)
{
    if (!L->v[idx[0]].d.device)
        return fused ? allreduce_fused(e, L, idx, k) : allreduce_direct(e, &L->v[idx[0]]);
    rr_resp *stack[64] = {0}, **rs = k <= 64 ? stack : malloc(k * sizeof *rs);
    if (rs == NULL)
        return nomem(e, k * sizeof *rs);
    for (size_t i = 0; i < k; i++)
        rs[i] = &L->v[idx[i]];
    rr_status st = rr_edev_allreduce(e, rs, k, joined);
    if (rs != stack)
        free(rs);
    return st;
}

/* The allreduces of L->v[i]'s group (the whole group is one unit, split only by dtype). */
static rr_status run_group(rr_engine *e, rr_resp_list *L, size_t i, uint8_t *used, size_t *idx,
                           size_t *sub, const uint8_t *joined)
{
    size_t n = L->n, k = 0;
    const char *group = L->v[i].d.group;
    idx[k++] = i;
    for (size_t j = i + 1; j < n; j++)
        if (!used[j] && L->v[j].type == RESP_EXEC && L->v[j].d.kind == RR_REQ_ALLREDUCE &&
            L->v[j].d.group && strcmp(L->v[j].d.group, group) == 0) {
            used[j] = 1;
            idx[k++] = j;
        }
    rr_status st = RR_OK;
    size_t done = 0;
    while (done < k && st == RR_OK) {
        size_t m = 0;
        const rr_desc *d0 = NULL;
        for (size_t a = 0; a < k; a++) {
            if (idx[a] == SIZE_MAX)
                continue;
            if (d0 == NULL)
                d0 = &L->v[idx[a]].d;
            if (compatible(d0, &L->v[idx[a]].d)) {
                sub[m++] = idx[a];
                idx[a] = SIZE_MAX;
            }
        }
        st = run_allreduce(e, L, sub, m, joined, 1);
        done += m;
    }
    return st;
}

/* L->v[i], an ungrouped allreduce, with the later compatible ones fused up to the threshold
 * (alone when it is too large to fuse). */
static rr_status run_fused(rr_engine *e, rr_resp_list *L, size_t i, uint8_t *used, size_t *idx,
                           const uint8_t *joined)
{
    size_t n = L->n, thr = e->fusion_threshold;
    rr_resp *r = &L->v[i];
    size_t es = rr_dtype_size(r->d.dtype), bytes = r->d.count * es;
    /* Device tensors: every call through the device transport costs a host synchronization,
     * while packing is a device-to-device copy; so they are fused whatever their size, up to
     * the threshold. */
    size_t tmax = r->d.device ? 0 : e->fusion_max_tensor;
    if (thr == 0 || bytes > thr || (tmax && bytes > tmax)) {
        idx[0] = i;
        return run_allreduce(e, L, idx, 1, joined, 0);
    }
    size_t k = 0, total = bytes;
    idx[k++] = i;
    for (size_t j = i + 1; j < n && total < thr; j++) {
        rr_resp *x = &L->v[j];
        if (used[j] || !fusable(x) || !compatible(&r->d, &x->d))
            continue;
        size_t b = x->d.count * es;
        if (total + b > thr || (tmax && b > tmax))
            continue;
        used[j] = 1;
        idx[k++] = j;
        total += b;
    }
    return run_allreduce(e, L, idx, k, joined, k > 1);
}

rr_status rr_execute(rr_engine *e, rr_resp_list *L, const uint8_t *joined)
{
    size_t n = L->n;
    if (n == 0)
        return RR_OK;
    /* A gradient set larger than the caches (the allreduces in the response cache add up to
     * cold_set_bytes) is cold when it is reduced: its outputs would not stay cached, so the
     * shared-memory transport streams them from 1 MiB on.  The cache is the same on every
     * rank, so is the choice (it picks among the plans). */
    rr_comm_stream_cold(e->comm,
                        e->cold_set_bytes && e->cache.allreduce_bytes >= e->cold_set_bytes);
    uint8_t *used = calloc(n, 1);
    size_t *idx = malloc(n * sizeof *idx), *sub = malloc(n * sizeof *sub);
    rr_status st = RR_OK;
    if (used == NULL || idx == NULL || sub == NULL) {
        st = nomem(e, n * 17);
        goto out;
    }
    for (size_t i = 0; i < n && st == RR_OK; i++) {
        if (used[i])
            continue;
        used[i] = 1;
        rr_resp *r = &L->v[i];
        if (r->type == RESP_ERROR) {
            if (r->ent) {
                rr_smap_del(&e->pending, r->ent->d.name);
                rr_engine_complete(e, r->ent, r->err_code, r->err_msg);
            }
            continue;
        }
        switch (r->d.kind) {
        case RR_REQ_ALLREDUCE:
            st = r->d.group ? run_group(e, L, i, used, idx, sub, joined)
                            : run_fused(e, L, i, used, idx, joined);
            break;
        case RR_REQ_BROADCAST:
            st = broadcast(e, r);
            break;
        case RR_REQ_ALLGATHER:
            st = allgather(e, r);
            break;
        case RR_REQ_REDUCESCATTER:
            st = reducescatter(e, r);
            break;
        default:
            st = RR_FAIL(e->comm, RR_ERR_STATE, "engine protocol error: response kind %d",
                         (int)r->d.kind);
        }
    }
out:
    free(used);
    free(idx);
    free(sub);
    return st;
}
