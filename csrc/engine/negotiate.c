/* One negotiation cycle, collective on the engine's communicator.
 *
 * 1. Drain the submission queue.  A request whose name and signature are in the response
 *    cache becomes a "hit" (its cache slot); anything else is a "miss" for the slow path.
 * 2. One small allreduce (bytes, MIN) of the cycle vector: a 12-byte field per rank (the
 *    rank writes its own, everybody else 0xFF, so MIN delivers every rank's exact value:
 *    slow-path message length, cycle number, flags) followed by one byte per cache slot
 *    (1 = I have a pending hit there; a joined rank writes 1 everywhere).  A slot whose byte
 *    comes back 1 is ready on every rank: it becomes a response, in slot order, identical on
 *    every rank.  In steady state this is the only negotiation traffic.
 * 3. Slow path, only when some rank has misses, invalidations or an error to report: the
 *    messages are gathered on rank 0 (coordinator.c), which answers with evictions, the
 *    responses that became ready (validated; mismatches become errors) and, if a rank
 *    failed, the fatal error, broadcast to every rank.
 * 4. Execute the responses (fusion.c), then apply evictions and cache insertions. */
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "mpi/mpi.h"

#define FL_JOINED 2u
#define FL_SHUTDOWN 4u
#define FL_ERROR 8u
#define FL_SLOW 16u
#define FIELD 12 /* per-rank field: u32 message length, u32 cycle, u32 flags */
#define INLINE 4096

/* ---------------------------------------------------------------- drain and classify */

static rr_entry *drain(rr_engine *e)
{
    if (atomic_load_explicit(&e->nqueued, memory_order_acquire) == 0)
        return NULL;
    pthread_mutex_lock(&e->mu);
    rr_entry *q = e->q_head;
    e->q_head = e->q_tail = NULL;
    atomic_store(&e->nqueued, 0);
    pthread_mutex_unlock(&e->mu);
    return q;
}

static void add_miss(rr_engine *e, rr_entry *ent)
{
    ent->slot = -1;
    ent->qnext = NULL;
    if (e->miss_tail)
        e->miss_tail->qnext = ent;
    else
        e->miss_head = ent;
    e->miss_tail = ent;
}

static int try_hit(rr_engine *e, const rr_entry *ent)
{
    if (e->cache.cap <= 0 || !rr_desc_cacheable(&ent->d))
        return -1;
    int s = rr_cache_find(&e->cache, ent->d.name);
    if (s < 0 || e->hit[s] != NULL || !rr_desc_same(&e->cache.slots[s].d, &ent->d))
        return -1;
    return s;
}

static void set_local_error(rr_engine *e, rr_status code, const char *msg)
{
    if (e->local_err)
        return;
    e->local_err = strdup(msg);
    e->local_err_code = code;
}

static void classify(rr_engine *e, rr_entry *q)
{
    while (q) {
        rr_entry *ent = q;
        q = q->qnext;
        if (ent->is_join) {
            e->my_joined = 1;
            e->join_new = 1;
            e->join_entry = ent;
            continue;
        }
        if (rr_smap_put(&e->pending, ent->d.name, ent) != 0) {
            rr_engine_complete(e, ent, RR_ERR_NOMEM, "out of memory in the engine");
            continue;
        }
        if (e->fault_name[0] && strcmp(ent->d.name, e->fault_name) == 0) {
            char msg[512];
            snprintf(msg, sizeof msg, "injected fault (RINGRED_TEST_FAULT) while handling "
                     "tensor '%s' on rank %d", ent->d.name, e->rank);
            set_local_error(e, RR_ERR_MPI, msg);
        }
        if (ent->d.group == NULL) {
            int s = try_hit(e, ent);
            if (s >= 0) {
                ent->slot = s;
                e->hit[s] = ent;
            } else {
                add_miss(e, ent);
            }
            continue;
        }
        /* A group was enqueued in one piece: all members hit, or all go the slow path. */
        rr_entry *members[256], **m = members;
        size_t k = 1, cap = 256;
        m[0] = ent;
        while (q && q->d.group && strcmp(q->d.group, ent->d.group) == 0 && !q->is_join) {
            if (k == cap) {
                rr_entry **nm = malloc(2 * cap * sizeof *nm);
                if (nm == NULL)
                    break;
                memcpy(nm, m, k * sizeof *nm);
                if (m != members)
                    free(m);
                m = nm;
                cap *= 2;
            }
            rr_entry *x = q;
            q = q->qnext;
            if (rr_smap_put(&e->pending, x->d.name, x) != 0) {
                rr_engine_complete(e, x, RR_ERR_NOMEM, "out of memory in the engine");
                continue;
            }
            m[k++] = x;
        }
        int all_hit = 1;
        for (size_t i = 0; i < k && all_hit; i++)
            all_hit = try_hit(e, m[i]) >= 0;
        for (size_t i = 0; i < k; i++) {
            if (all_hit) {
                int s = try_hit(e, m[i]);
                m[i]->slot = s;
                e->hit[s] = m[i];
            } else {
                add_miss(e, m[i]);
            }
        }
        if (m != members)
            free(m);
    }
}

/* Move the pending hit on `slot` (and the rest of its group) back to the slow path. */
void rr_requeue_slot(rr_engine *e, int slot)
{
    rr_entry *ent = e->hit[slot];
    if (ent == NULL)
        return;
    e->hit[slot] = NULL;
    add_miss(e, ent);
    if (ent->d.group)
        for (int s = 0; s < e->cache.hw; s++) {
            rr_entry *x = e->hit[s];
            if (x && x->d.group && strcmp(x->d.group, ent->d.group) == 0) {
                e->hit[s] = NULL;
                add_miss(e, x);
            }
        }
}

/* ---------------------------------------------------------------- slow-path message */

static void build_message(rr_engine *e, double now)
{
    rr_buf *b = &e->sbuf;
    rr_buf_reset(b);
    if (!e->miss_head && !e->n_evict_req && !e->local_err)
        return;
    rr_put_u32(b, (uint32_t)e->n_evict_req);
    for (int i = 0; i < e->n_evict_req; i++)
        rr_put_u32(b, e->evict_req[i]);
    e->n_evict_req = 0;
    rr_put_u32(b, (uint32_t)(e->local_err ? e->local_err_code : 0));
    rr_put_str(b, e->local_err);
    uint32_t n = 0;
    for (rr_entry *x = e->miss_head; x; x = x->qnext)
        n++;
    rr_put_u32(b, n);
    for (rr_entry *x = e->miss_head; x; x = x->qnext) {
        rr_put_desc(b, &x->d);
        rr_put_f64(b, now - x->t_submit);
    }
    e->miss_head = e->miss_tail = NULL; /* sent: they now wait for a slow-path response */
}

/* ---------------------------------------------------------------- fast path */

static int entry_matches(const rr_engine *e, const rr_entry *ent, const rr_resp *r)
{
    if (r->d.kind != RR_REQ_ALLGATHER)
        return rr_desc_same(&ent->d, &r->d);
    if (ent->d.kind != r->d.kind || ent->d.device != r->d.device || ent->d.dtype != r->d.dtype ||
        ent->d.ndim != r->d.ndim)
        return 0;
    for (int i = 1; i < r->d.ndim; i++)
        if (ent->d.shape[i] != r->d.shape[i])
            return 0;
    return r->counts && r->counts[e->rank] == ent->d.count;
}

static rr_status fast_path(rr_engine *e, const uint8_t *bits, int njoined, double now,
                           rr_resp_list *L)
{
    rr_cache *c = &e->cache;
    rr_smap groups = {0};
    int grouped = 0;
    for (int s = 0; s < c->hw; s++) {
        if (!bits[s] || !c->slots[s].used || c->slots[s].d.group == NULL)
            continue;
        intptr_t cnt = (intptr_t)rr_smap_get(&groups, c->slots[s].d.group);
        if (rr_smap_put(&groups, c->slots[s].d.group, (void *)(cnt + 1)) != 0) {
            rr_smap_free(&groups);
            return RR_FAIL(e->comm, RR_ERR_NOMEM, "out of memory in the engine");
        }
        grouped = 1;
    }
    for (int s = 0; s < c->hw; s++) {
        if (!bits[s] || !c->slots[s].used)
            continue;
        const rr_desc *d = &c->slots[s].d;
        if (grouped && d->group &&
            (intptr_t)rr_smap_get(&groups, d->group) < (intptr_t)d->group_size)
            continue; /* the rest of its group is not ready yet */
        rr_resp r;
        memset(&r, 0, sizeof r);
        r.type = RESP_EXEC;
        r.d = *d;
        r.cached = 1;
        r.ent = e->hit[s];
        e->hit[s] = NULL;
        if (r.ent) {
            r.ent->slot = -1;
            r.ent->t_ready = now;
        }
        if (njoined && (d->kind == RR_REQ_BROADCAST || d->kind == RR_REQ_ALLGATHER)) {
            char msg[512];
            snprintf(msg, sizeof msg, "tensor '%s': %s is not supported while some ranks have "
                     "joined", d->name, rr_kind_name(d->kind));
            r.type = RESP_ERROR;
            r.err_code = RR_ERR_UNSUPPORTED;
            r.err_msg = strdup(msg);
        }
        rr_cache_touch(c, s);
        if (rr_resp_push(L, &r) != 0) {
            free(r.err_msg);
            rr_smap_free(&groups);
            return RR_FAIL(e->comm, RR_ERR_NOMEM, "out of memory in the engine");
        }
    }
    rr_smap_free(&groups);
    return RR_OK;
}

/* ---------------------------------------------------------------- slow path */

/* Slow path, step 1: every rank's request message to rank 0, which builds the response
 * list (rr_coord_process) in e->rbuf. */
static rr_status gather_requests(rr_engine *e, int any_error)
{
    rr_comm *c = e->comm;
    int n = e->size;
    static uint8_t dummy;
    int mylen = (int)e->sbuf.n;
    void *mine = mylen ? (void *)e->sbuf.p : (void *)&dummy;
    MPI_Request req;
    if (e->rank == 0) {
        size_t total = 0;
        for (int r = 0; r < n; r++) {
            e->gcounts[r] = (int)e->lens[r];
            e->gdispls[r] = (int)total;
            total += e->lens[r];
        }
        if (total > e->gather_cap) {
            uint8_t *g = realloc(e->gather, total);
            if (g == NULL)
                return RR_FAIL(c, RR_ERR_NOMEM, "cannot allocate %zu bytes", total);
            e->gather = g;
            e->gather_cap = total;
        }
        RR_MPI(c, MPI_Igatherv(mine, mylen, MPI_BYTE, e->gather ? (void *)e->gather : &dummy,
                               e->gcounts, e->gdispls, MPI_BYTE, 0, c->comm, &req));
        RR_CHECK(rr_wait(c, &req));
        RR_CHECK(rr_coord_process(e, e->lens, e->joined_now, any_error, &e->rbuf));
        if (e->rbuf.oom)
            return RR_FAIL(c, RR_ERR_NOMEM, "out of memory building the response list");
    } else {
        RR_MPI(c, MPI_Igatherv(mine, mylen, MPI_BYTE, NULL, NULL, NULL, MPI_BYTE, 0, c->comm,
                               &req));
        RR_CHECK(rr_wait(c, &req));
    }
    return RR_OK;
}

/* Step 2: rank 0's response list to every rank (into e->rbuf); *len_out: its length. */
static rr_status bcast_responses(rr_engine *e, uint64_t *len_out)
{
    rr_comm *c = e->comm;
    MPI_Request req;
    /* Broadcast the response list: length and the first INLINE bytes in one message. */
    uint8_t bc[8 + INLINE];
    uint64_t len = e->rbuf.n;
    if (e->rank == 0) {
        memcpy(bc, &len, 8);
        memcpy(bc + 8, e->rbuf.p, len < INLINE ? len : INLINE);
    }
    RR_MPI(c, MPI_Ibcast(bc, (int)sizeof bc, MPI_BYTE, 0, c->comm, &req));
    RR_CHECK(rr_wait(c, &req));
    if (e->rank != 0) {
        memcpy(&len, bc, 8);
        rr_buf_reset(&e->rbuf);
        if (len > e->rbuf.cap) {
            uint8_t *p = realloc(e->rbuf.p, len);
            if (p == NULL)
                return RR_FAIL(c, RR_ERR_NOMEM, "cannot allocate %llu bytes",
                               (unsigned long long)len);
            e->rbuf.p = p;
            e->rbuf.cap = len;
        }
        memcpy(e->rbuf.p, bc + 8, len < INLINE ? len : INLINE);
        e->rbuf.n = len;
    }
    if (len > INLINE) {
        RR_MPI(c, MPI_Ibcast(e->rbuf.p + INLINE, (int)(len - INLINE), MPI_BYTE, 0, c->comm,
                             &req));
        RR_CHECK(rr_wait(c, &req));
    }

    *len_out = len;
    return RR_OK;
}

/* Step 3: read the response list: evictions, responses (matched to pending entries) into L,
 * the fatal error if any, rank 0's stall note. */
static rr_status parse_responses(rr_engine *e, uint64_t len, rr_resp_list *L,
                                 uint32_t **evicts, uint32_t *nevict, rr_status *fatal_code,
                                 char **fatal_text)
{
    rr_comm *c = e->comm;
    int n = e->size;
    double now = rr_now(); /* the responses are known from now on */
    rr_rd rd = {e->rbuf.p, len, 0, 0};
    uint32_t ne = rr_get_u32(&rd);
    if (ne > (uint32_t)e->cache.cap)
        rd.bad = 1;
    if (ne && !rd.bad) {
        *evicts = malloc(ne * sizeof **evicts);
        if (*evicts == NULL)
            return RR_FAIL(c, RR_ERR_NOMEM, "out of memory in the engine");
        for (uint32_t i = 0; i < ne; i++)
            (*evicts)[i] = rr_get_u32(&rd);
        *nevict = ne;
    }
    uint32_t nr = rr_get_u32(&rd);
    for (uint32_t i = 0; i < nr && !rd.bad; i++) {
        rr_resp r;
        memset(&r, 0, sizeof r);
        r.type = rr_get_u8(&rd);
        if (rr_get_desc(&rd, &r.d) != 0)
            break;
        if (r.type == RESP_EXEC && r.d.kind == RR_REQ_ALLGATHER) {
            r.counts = malloc(2 * (size_t)n * sizeof *r.counts);
            if (r.counts == NULL) {
                rr_desc_free(&r.d);
                return RR_FAIL(c, RR_ERR_NOMEM, "out of memory in the engine");
            }
            for (int k = 0; k < 2 * n; k++)
                r.counts[k] = rr_get_u64(&rd);
        } else if (r.type == RESP_ERROR) {
            r.err_code = (int)rr_get_u32(&rd);
            r.err_msg = rr_get_str(&rd);
        }
        rr_entry *ent = rr_smap_get(&e->pending, r.d.name);
        if (ent && ent->slot >= 0) {
            e->hit[ent->slot] = NULL;
            ent->slot = -1;
        }
        if (ent && r.type == RESP_EXEC && !entry_matches(e, ent, &r)) {
            /* Only possible for a joined rank's old request: keep the others safe. */
            char msg[512];
            snprintf(msg, sizeof msg, "tensor '%s': this rank's request does not match the "
                     "one the other ranks negotiated", r.d.name);
            rr_smap_del(&e->pending, ent->d.name);
            rr_engine_complete(e, ent, RR_ERR_MISMATCH, msg);
            ent = NULL;
        }
        r.ent = ent;
        if (ent)
            ent->t_ready = now;
        if (rr_resp_push(L, &r) != 0) {
            rr_desc_free(&r.d);
            free(r.counts);
            free(r.err_msg);
            return RR_FAIL(c, RR_ERR_NOMEM, "out of memory in the engine");
        }
    }
    *fatal_code = (rr_status)rr_get_u32(&rd);
    *fatal_text = rr_get_str(&rd);
    char *note = rr_get_str(&rd); /* rank 0's stall warning: queued here too */
    if (note && e->rank != 0)
        rr_engine_warn(e, note);
    free(note);
    if (rd.bad)
        return RR_FAIL(c, RR_ERR_STATE, "engine protocol error: corrupt response list");
    return RR_OK;
}

static rr_status slow_path(rr_engine *e, int any_error, rr_resp_list *L,
                           uint32_t **evicts, uint32_t *nevict, rr_status *fatal_code,
                           char **fatal_text)
{
    uint64_t len = 0;
    RR_CHECK(gather_requests(e, any_error));
    RR_CHECK(bcast_responses(e, &len));
    return parse_responses(e, len, L, evicts, nevict, fatal_code, fatal_text);
}

/* ---------------------------------------------------------------- the cycle */

static int fatal_exit(rr_engine *e, rr_status code, const char *what)
{
    char msg[RR_ERRMSG_LEN];
    snprintf(msg, sizeof msg, "ringred engine failed (%s): %.1900s", what, e->comm->errmsg);
    rr_engine_set_fatal(e, code, msg);
    return -1;
}

/* This rank's flags for the cycle: new requests drained and classified, stall checks,
 * shutdown, join and error states. */
static uint32_t cycle_flags(rr_engine *e, double now)
{
    uint32_t flags = 0;
    rr_entry *q = drain(e);
    if (q)
        classify(e, q);
    rr_stall_tick(e, now);
    if (e->stall_action) {
        e->stall_action = 0;
        rr_stall_scan_hits(e, now);
        if (e->rank == 0)
            flags |= FL_SLOW;
    }
    if (atomic_load(&e->stop_req)) {
        flags |= FL_SHUTDOWN;
        /* The process is exiting, not shutting ringred down: the peers learn why (an
         * error report stops every rank, with this rank's words, as a PeerError). */
        pthread_mutex_lock(&e->mu);
        if (e->exit_reason && !e->local_err)
            set_local_error(e, RR_ERR_PEER, e->exit_reason);
        pthread_mutex_unlock(&e->mu);
    }
    if (e->my_joined)
        flags |= FL_JOINED;
    if (e->join_new) {
        /* The set of ranks that must submit changed: the coordinator re-checks its table. */
        flags |= FL_SLOW;
        e->join_new = 0;
    }
    if (e->local_err)
        flags |= FL_ERROR;
    return flags;
}

/* The cycle vector, reduced with MIN over the ranks into e->vec: every rank's field (message
 * length, cycle number, flags; 0xFF filler in the others' fields), then one byte per cached
 * slot (1: this rank has it ready, or has joined).  0, or fatal_exit's -1. */
static int exchange_vector(rr_engine *e, uint64_t k, uint32_t flags, int hw)
{
    size_t base = (size_t)FIELD * (size_t)e->size, nv = base + (size_t)hw;
    if (nv > e->vec_cap) {
        uint8_t *v = realloc(e->vec, nv);
        if (v == NULL)
            return fatal_exit(e, RR_ERR_NOMEM, "out of memory");
        e->vec = v;
        e->vec_cap = nv;
    }
    uint8_t *vec = e->vec;
    memset(vec, 0xFF, base);
    uint32_t field[3] = {(uint32_t)e->sbuf.n, (uint32_t)k, flags};
    memcpy(vec + (size_t)FIELD * (size_t)e->rank, field, sizeof field);
    for (int s = 0; s < hw; s++)
        vec[base + (size_t)s] = (uint8_t)(e->my_joined || e->hit[s] != NULL);
    rr_status st = rr_allreduce(e->comm, vec, vec, nv, RR_UINT8, RR_MIN, 1.0, 1.0, 1);
    return st == RR_OK ? 0 : fatal_exit(e, st, "cycle negotiation");
}

/* What the reduced vector says about every rank. */
typedef struct {
    uint32_t any;      /* the union of the ranks' flags */
    int njoined;       /* ranks that have joined (e->joined_now) */
    int any_len;       /* some rank has a message for the slow path */
    int shutdown_rank; /* the first rank shutting down, or -1 */
} cycle_view;

static int read_vector(rr_engine *e, uint64_t k, cycle_view *v)
{
    *v = (cycle_view){0, 0, 0, -1};
    for (int r = 0; r < e->size; r++) {
        uint32_t field[3];
        memcpy(field, e->vec + (size_t)FIELD * (size_t)r, sizeof field);
        if (field[1] != (uint32_t)k) {
            RR_FAIL(e->comm, RR_ERR_STATE, "engine protocol error: rank %d is in cycle %u, "
                    "rank %d in cycle %u", r, field[1], e->rank, (uint32_t)k);
            return fatal_exit(e, RR_ERR_STATE, "cycle negotiation");
        }
        e->lens[r] = field[0];
        v->any |= field[2];
        v->any_len |= field[0] != 0;
        e->joined_now[r] = (field[2] & FL_JOINED) != 0;
        v->njoined += e->joined_now[r];
        if ((field[2] & FL_SHUTDOWN) && v->shutdown_rank < 0)
            v->shutdown_rank = r;
    }
    return 0;
}

/* Cache maintenance, identical on every rank: evictions, then insertions.  0, or -1. */
static int update_cache(rr_engine *e, const rr_resp_list *L, const uint32_t *evicts,
                        uint32_t nevict)
{
    for (uint32_t i = 0; i < nevict; i++) {
        int s = (int)evicts[i];
        if (s < e->cache.hw) {
            rr_requeue_slot(e, s);
            rr_cache_remove(&e->cache, s);
        }
    }
    if (e->cache.cap == 0)
        return 0;
    for (size_t i = 0; i < L->n; i++) {
        rr_resp *r = &L->v[i];
        if (r->cached || r->type != RESP_EXEC || !rr_desc_cacheable(&r->d))
            continue;
        int victim = -1;
        int s = rr_cache_insert(&e->cache, &r->d, &victim);
        if (victim >= 0)
            rr_requeue_slot(e, victim);
        if (s < 0) {
            RR_FAIL(e->comm, RR_ERR_NOMEM, "out of memory in the response cache");
            return fatal_exit(e, RR_ERR_NOMEM, "response cache");
        }
    }
    return 0;
}

/* Join: complete once every rank has joined (the last rank to join is the result). */
static void update_join(rr_engine *e, int all_joined)
{
    int n = e->size;
    if (!all_joined) {
        memcpy(e->joined_prev, e->joined_now, (size_t)n);
        return;
    }
    int last = -1;
    for (int r = 0; r < n; r++)
        if (!e->joined_prev[r])
            last = r;
    if (last < 0)
        last = n - 1;
    if (e->join_entry) {
        e->join_entry->join_last = last;
        rr_engine_complete(e, e->join_entry, RR_OK, NULL);
        e->join_entry = NULL;
    }
    e->my_joined = 0;
    memset(e->joined_prev, 0, (size_t)n);
}

/* Some rank asked for shutdown: the engine stops everywhere.  Returns -1. */
static int shut_down(rr_engine *e, int shutdown_rank)
{
    char msg[256];
    if (atomic_load(&e->stop_req))
        snprintf(msg, sizeof msg, "the ringred engine was shut down");
    else
        snprintf(msg, sizeof msg, "the ringred engine was shut down by rank %d "
                 "(ringred.shutdown())", shutdown_rank);
    rr_engine_set_fatal(e, RR_ERR_STATE, msg);
    return -1;
}

/* Some rank failed: every rank stops with that rank's own words.  Returns -1. */
static int stop_after_error(rr_engine *e, rr_status code, const char *text)
{
    char msg[RR_ERRMSG_LEN];
    snprintf(msg, sizeof msg, "ringred engine stopped after an error on another rank: %.1900s",
             text ? text : "(no message)");
    rr_engine_set_fatal(e, code ? code : RR_ERR_PEER, text ? text : msg);
    return -1;
}

int rr_cycle(rr_engine *e)
{
    uint64_t k = e->cycle++;
    atomic_fetch_add_explicit(&e->n_cycles, 1, memory_order_relaxed);
    double now = rr_now();
    if (RR_TL_ON(&e->tl))
        rr_tl_instant(&e->tl, "CYCLE_START", k);

    uint32_t flags = cycle_flags(e, now);
    build_message(e, now);
    if (e->sbuf.oom)
        return fatal_exit(e, RR_ERR_NOMEM, "out of memory");
    int hw = e->cache.hw;
    cycle_view v;
    if (exchange_vector(e, k, flags, hw) != 0 || read_vector(e, k, &v) != 0)
        return -1;
    int all_joined = v.njoined == e->size;

    rr_resp_list L = {0};
    uint32_t *evicts = NULL, nevict = 0;
    rr_status fatal_code = RR_OK, st;
    char *fatal_text = NULL;
    int slow = v.any_len || (v.any & (FL_SLOW | FL_ERROR));
    int ret = 0;
    if (!all_joined && hw > 0 && !(v.any & FL_ERROR)) {
        st = fast_path(e, e->vec + (size_t)FIELD * (size_t)e->size, v.njoined, rr_now(), &L);
        if (st != RR_OK) {
            ret = fatal_exit(e, st, "cycle negotiation");
            goto out;
        }
    }
    if (slow) {
        atomic_fetch_add_explicit(&e->n_slow, 1, memory_order_relaxed);
        st = slow_path(e, (v.any & FL_ERROR) != 0, &L, &evicts, &nevict, &fatal_code,
                       &fatal_text);
        if (st != RR_OK) {
            ret = fatal_exit(e, st, "slow-path negotiation");
            goto out;
        }
    }
    if (v.any & FL_ERROR) {
        ret = stop_after_error(e, fatal_code, fatal_text);
        goto out;
    }

    double t_exec = rr_now();
    st = rr_execute(e, &L, e->joined_now);
    double t_done = rr_now();
    rr_ph_time(e, RR_PH_NEGOTIATE, now, t_exec);
    now = t_done; /* the rest of the cycle counts as negotiation too (below) */
    if (st != RR_OK) {
        ret = fatal_exit(e, st, "execution");
        goto out;
    }
    if (update_cache(e, &L, evicts, nevict) != 0) {
        ret = -1;
        goto out;
    }
    update_join(e, all_joined);
    /* A shutdown ends the engine; otherwise go idle: whoever has something new (including
     * requests requeued above) starts the next cycle with wake messages. */
    if (v.shutdown_rank >= 0)
        ret = shut_down(e, v.shutdown_rank);
out:
    rr_ph_time(e, RR_PH_NEGOTIATE, now, rr_now());
    rr_resp_clear(&L);
    free(L.v);
    free(evicts);
    free(fatal_text);
    return ret;
}
