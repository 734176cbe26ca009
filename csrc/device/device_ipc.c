/* Same-host GPU transport: ranks reduce each other's device buffers through CUDA IPC.
 *
 * Setup (once per communicator, collective): every rank allocates its scratch ring (K slots
 * of `chunk` bytes, device memory of the transport's backend) and 3K interprocess events,
 * exchanges the IPC handles with MPI_Allgather and opens the peers'.  If any rank cannot,
 * every rank falls back to staging (or, with RINGRED_DEVICE_TRANSPORT=ipc, fails).
 *
 * Allreduce, per chunk g of the call (global chunk number, the same on every rank), slot
 * s = g mod K, on the transport's stream T of every rank r:
 *   1. free:   wait OUT(p) >= g-K+1 for every peer p (host flag), then T waits ev_out[p][s]
 *              (p has finished reading slot s of every rank for chunk g-K);
 *   2. in:     copy the chunk of the input into slot s; record ev_in[r][s]; flag IN = g+1;
 *   3. reduce: wait IN(p) >= g+1, T waits ev_in[p][s] for every peer; the kernel reduces
 *              slice r of the chunk from every rank's slot s (rank order) into slot s and
 *              into the output; record ev_red[r][s]; flag RED = g+1;
 *   4. gather: wait RED(p) >= g+1, T waits ev_red[p][s], copy slice p from p's slot s into
 *              the output, for every peer; record ev_out[r][s]; flag OUT = g+1.
 * A flag is raised after the event record it announces, and an event is recorded again only
 * after every peer has waited on its previous record (each re-record sits behind a flag
 * that the waiter raises after its wait), so a wait always covers the record it was meant
 * for.  The host only orders enqueues: it never waits for the device inside the protocol,
 * and no kernel ever spins on memory another process writes (ranks that share one GPU are
 * time-sliced).  The per-element arithmetic is reduce.c's, in the same rank order as the
 * shared-memory transport, so results are bit-identical to the host and staged paths. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device/device_ipc.h"
#include "shm/shm.h"

enum { EV_IN = 0, EV_RED = 1, EV_OUT = 2, NEV = 3 };

typedef struct rr_ipc {
    int state; /* 0 undecided, 1 in force, -1 not available */
    char why[320];
    int n, me, K;
    size_t chunk;
    size_t oneshot; /* chunks up to this many bytes are reduced in one shot */
    uintptr_t mine;                      /* this rank's scratch (mem_alloc) */
    uintptr_t at[RR_KMAX_SRCS];          /* every rank's scratch as mapped here */
    void *ev[RR_KMAX_SRCS][NEV][RR_IPC_MAX_SLOTS]; /* own (created) and peers' (opened) */
    uintptr_t stream;
    void *ev_start, *ev_end;             /* ordinary events: prod -> T, T -> prod */
    uint64_t chunks;                     /* chunks run so far (the same on every rank) */
} rr_ipc;

/* What each rank publishes at setup. */
typedef struct ipc_card {
    int32_t ok;
    int32_t pad_;
    rr_ipc_handle mem;
    rr_ipc_handle ev[NEV][RR_IPC_MAX_SLOTS];
    char why[200];
} ipc_card;


const char *rr_ipc_verdict(const rr_device *d, const char **why)
{
    const rr_ipc *x = d ? d->ipc : NULL;
    if (why)
        *why = x && x->state < 0 ? x->why : "";
    if (x == NULL || x->state == 0)
        return "undecided";
    return x->state > 0 ? "ipc" : "staged";
}

static void release(rr_device *d, rr_ipc *x)
{
    const rr_dev_backend *be = d->be;
    if (x->stream)
        be->stream_sync(x->stream), be->stream_destroy(x->stream);
    for (int r = 0; r < x->n && r < RR_KMAX_SRCS; r++) {
        for (int k = 0; k < NEV; k++)
            for (int s = 0; s < RR_IPC_MAX_SLOTS; s++)
                if (x->ev[r][k][s])
                    be->event_destroy(x->ev[r][k][s]);
        if (r != x->me && x->at[r])
            be->ipc_mem_close(x->at[r]);
    }
    if (x->mine)
        be->mem_free(x->mine);
    if (x->ev_start)
        be->event_destroy(x->ev_start);
    if (x->ev_end)
        be->event_destroy(x->ev_end);
    memset(x->ev, 0, sizeof x->ev);
    memset(x->at, 0, sizeof x->at);
    x->mine = x->stream = 0;
    x->ev_start = x->ev_end = NULL;
}

void rr_ipc_settle(rr_device *d)
{
    if (d->ipc && d->ipc->stream)
        d->be->stream_sync(d->ipc->stream);
}

void rr_ipc_free(rr_device *d)
{
    if (d->ipc == NULL)
        return;
    release(d, d->ipc);
    free(d->ipc);
    d->ipc = NULL;
}

/* This rank's part of the setup: scratch, events, their handles.  0 or a reason. */
static int make_local(rr_device *d, rr_ipc *x, ipc_card *card)
{
    const rr_dev_backend *be = d->be;
    int e = 0;
    const char *what = "";
    if ((e = be->mem_alloc(&x->mine, (size_t)x->K * x->chunk)) != 0)
        what = "allocating the scratch ring";
    else if ((e = be->ipc_mem_handle(&card->mem, x->mine)) != 0)
        what = "exporting the scratch ring (cuIpcGetMemHandle)";
    for (int k = 0; k < NEV && !e; k++)
        for (int s = 0; s < x->K && !e; s++) {
            if ((e = be->ipc_event_create(&x->ev[x->me][k][s])) != 0)
                what = "creating an interprocess event";
            else if ((e = be->ipc_event_handle(&card->ev[k][s], x->ev[x->me][k][s])) != 0)
                what = "exporting an interprocess event (cuIpcGetEventHandle)";
        }
    if (!e && (e = be->stream_create(&x->stream)) != 0)
        what = "creating the transport's stream";
    if (!e && (e = be->event_create(&x->ev_start)) != 0)
        what = "creating an event";
    if (!e && (e = be->event_create(&x->ev_end)) != 0)
        what = "creating an event";
    x->at[x->me] = x->mine;
    if (e)
        snprintf(card->why, sizeof card->why, "rank %d: %s: %s (error %d)", x->me, what,
                 be->errstr(e), e);
    return e;
}

/* Open every peer's scratch and events.  0 or a reason. */
static int open_peers(rr_device *d, rr_ipc *x, const ipc_card *cards, char *why, size_t cap)
{
    const rr_dev_backend *be = d->be;
    for (int p = 0; p < x->n; p++) {
        if (p == x->me)
            continue;
        int e = be->ipc_mem_open(&x->at[p], &cards[p].mem);
        if (e) {
            snprintf(why, cap, "rank %d cannot open rank %d's device memory "
                     "(cuIpcOpenMemHandle): %s (error %d)", x->me, p, be->errstr(e), e);
            x->at[p] = 0;
            return e;
        }
        for (int k = 0; k < NEV; k++)
            for (int s = 0; s < x->K; s++)
                if ((e = be->ipc_event_open(&x->ev[p][k][s], &cards[p].ev[k][s])) != 0) {
                    x->ev[p][k][s] = NULL;
                    snprintf(why, cap, "rank %d cannot open rank %d's events "
                             "(cuIpcOpenEventHandle): %s (error %d)", x->me, p, be->errstr(e),
                             e);
                    return e;
                }
    }
    return 0;
}

/* Collective: the verdict of every rank, the first reason against. */
static rr_status agree(rr_comm *c, int ok, const char *why, int *all_ok, char *out, size_t cap)
{
    struct { int32_t ok; char why[200]; } mine, *all = NULL;
    memset(&mine, 0, sizeof mine);
    mine.ok = ok;
    snprintf(mine.why, sizeof mine.why, "%s", why);
    all = calloc((size_t)c->size, sizeof *all);
    if (all == NULL)
        return RR_FAIL(c, RR_ERR_NOMEM, "out of memory");
    int err = MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE,
                            c->comm);
    if (err != MPI_SUCCESS) {
        free(all);
        return rr_fail_mpi(c, err, __FILE__, __LINE__, "MPI_Allgather(IPC verdict)");
    }
    *all_ok = 1;
    for (int p = 0; p < c->size && *all_ok; p++)
        if (!all[p].ok) {
            *all_ok = 0;
            snprintf(out, cap, "%s", all[p].why);
        }
    free(all);
    return RR_OK;
}

static rr_status setup(rr_comm *c, rr_device *d, rr_ipc *x)
{
    x->n = c->size;
    x->me = c->rank;
    x->K = c->cfg.ipc_slots < 2 ? 2 : c->cfg.ipc_slots > RR_IPC_MAX_SLOTS ? RR_IPC_MAX_SLOTS
                                                                          : c->cfg.ipc_slots;
    x->chunk = c->cfg.ipc_chunk_bytes & ~(size_t)255;
    x->oneshot = c->cfg.ipc_oneshot_bytes;
    if (c->cfg.device_transport == 2) {
        snprintf(x->why, sizeof x->why, "RINGRED_DEVICE_TRANSPORT=staged");
        x->state = -1;
        return RR_OK;
    }
    if (c->shm == NULL) {
        snprintf(x->why, sizeof x->why, "the ranks do not share one host's shared-memory "
                 "segment (ranks on several hosts, or RINGRED_TRANSPORT=mpi)");
        x->state = -1;
    } else if (c->size > RR_KMAX_SRCS) {
        snprintf(x->why, sizeof x->why, "%d ranks on the host: the IPC transport takes at most "
                 "%d", c->size, RR_KMAX_SRCS);
        x->state = -1;
    } else if (d->be->ipc_mem_open == NULL || d->be->launch_reduce == NULL) {
        snprintf(x->why, sizeof x->why, "the %s backend has no IPC", d->be->name);
        x->state = -1;
    }
    if (x->state == 0) { /* every rank got here (the conditions above are the same) */
        ipc_card *cards = calloc((size_t)c->size, sizeof *cards), card;
        if (cards == NULL)
            return RR_FAIL(c, RR_ERR_NOMEM, "out of memory");
        memset(&card, 0, sizeof card);
        card.ok = make_local(d, x, &card) == 0;
        int err = MPI_Allgather(&card, (int)sizeof card, MPI_BYTE, cards, (int)sizeof card,
                                MPI_BYTE, c->comm);
        if (err != MPI_SUCCESS) {
            free(cards);
            release(d, x);
            return rr_fail_mpi(c, err, __FILE__, __LINE__, "MPI_Allgather(IPC handles)");
        }
        int all = 1; /* the same on every rank: every card is everywhere */
        char why[200] = "";
        for (int p = 0; p < c->size && all; p++)
            if (!cards[p].ok) {
                all = 0;
                snprintf(why, sizeof why, "%s", cards[p].why);
            }
        int every = 0;
        if (all) { /* every rank opens every peer's handles, or nobody uses them */
            int opened = open_peers(d, x, cards, why, sizeof why) == 0;
            rr_status st = agree(c, opened, why, &every, x->why, sizeof x->why);
            if (st != RR_OK) {
                free(cards);
                release(d, x);
                return st;
            }
        } else {
            snprintf(x->why, sizeof x->why, "%s", why);
        }
        free(cards);
        x->state = all && every ? 1 : -1;
        if (x->state < 0)
            release(d, x);
    }
    if (x->state < 0 && c->cfg.device_transport == 1)
        return RR_FAIL(c, RR_ERR_UNSUPPORTED, "RINGRED_DEVICE_TRANSPORT=ipc, but the CUDA IPC "
                       "transport is not available: %s", x->why);
    return RR_OK;
}

rr_status rr_ipc_use(rr_comm *c, rr_device *d, size_t bytes, int *use)
{
    *use = 0;
    if (d->ipc == NULL) {
        d->ipc = calloc(1, sizeof *d->ipc);
        if (d->ipc == NULL)
            return RR_FAIL(c, RR_ERR_NOMEM, "out of memory");
    }
    rr_ipc *x = d->ipc;
    if (x->state == 0)
        RR_CHECK(setup(c, d, x));
    if (x->state < 0 && c->cfg.device_transport == 1)
        return RR_FAIL(c, RR_ERR_UNSUPPORTED, "RINGRED_DEVICE_TRANSPORT=ipc, but the CUDA IPC "
                       "transport is not available: %s", x->why);
    *use = x->state > 0 && bytes >= c->cfg.ipc_min_bytes;
    return RR_OK;
}

/* ---------------------------------------------------------------- the protocol */

typedef struct ar_call {
    uintptr_t in, out;
    size_t count, es;
    int dtype, op;
    double pre, post;
    int64_t div;
} ar_call;

/* T waits for what every peer announced with flag `which` >= v (their event k of slot s). */
static rr_status wait_peers(rr_comm *c, rr_device *d, rr_ipc *x, int which, uint64_t v, int k,
                            int s)
{
    /* planted bugs (tests): reduce before the peers' copies are done, or wait on whatever
     * the peers recorded last instead of the record the flag announces */
    int no_event = k == EV_IN && rr_test_plant("ipc_no_event_wait");
    int no_flag = k == EV_IN && rr_test_plant("ipc_no_flag_wait");
    for (int p = 0; p < x->n; p++) {
        if (p == x->me)
            continue;
        if (!no_flag)
            RR_CHECK(rr_shm_wait(c, which, p, v));
        if (!no_event)
            RR_DEV(c, d->be, "making the stream wait for a peer",
                     d->be->stream_wait_event(x->stream, x->ev[p][k][s]));
    }
    return RR_OK;
}

/* Record our event k of slot s, then raise flag `which` to v. */
static rr_status announce(rr_comm *c, rr_device *d, rr_ipc *x, int which, uint64_t v, int k,
                          int s)
{
    RR_DEV(c, d->be, "recording an interprocess event",
             d->be->event_record(x->ev[x->me][k][s], x->stream));
    rr_shm_signal(c->shm, which, v);
    return RR_OK;
}

static void kargs(rr_kargs *k, const rr_ipc *x, const ar_call *a, size_t off, size_t from,
                  size_t n, uintptr_t dst0, uintptr_t dst1)
{
    memset(k, 0, sizeof *k);
    for (int p = 0; p < x->n; p++)
        k->src[p] = (uint64_t)(x->at[p] + off + from * a->es);
    k->dst[0] = (uint64_t)dst0;
    k->dst[1] = (uint64_t)dst1;
    k->n = n;
    k->nsrc = x->n;
    k->dtype = a->dtype;
    k->op = a->op;
    k->pre = a->pre;
    k->post = a->post;
    k->div = a->div;
}

/* A small chunk in one shot: every rank reduces the whole chunk from every rank's slot into
 * its output (n times the reads, one cross-process step instead of two: latency wins). */
static rr_status one_shot(rr_comm *c, rr_device *d, rr_ipc *x, const ar_call *a, uint64_t g,
                          int s, size_t lo, size_t m)
{
    size_t off = (size_t)s * x->chunk;
    if (m) {
        rr_kargs k;
        kargs(&k, x, a, off, 0, m, a->out + lo * a->es, 0);
        RR_DEV(c, d->be, "launching the reduction kernel",
                 d->be->launch_reduce(&k, x->stream));
    }
    return announce(c, d, x, RR_CTR_IPC_OUT, g + 1, EV_OUT, s);
}

static rr_status one_chunk(rr_comm *c, rr_device *d, rr_ipc *x, const ar_call *a, uint64_t g,
                           size_t lo, size_t m)
{
    const rr_dev_backend *be = d->be;
    int s = (int)(g % (uint64_t)x->K);
    size_t es = a->es, off = (size_t)s * x->chunk;
    if (g >= (uint64_t)x->K) /* 1. the slot's previous chunk is gathered by every peer */
        RR_CHECK(wait_peers(c, d, x, RR_CTR_IPC_OUT, g - (uint64_t)x->K + 1, EV_OUT, s));
    if (m)                    /* 2. copy in */
        RR_DEV(c, be, "device-to-device copy",
                 be->d2d(x->mine + off, a->in + lo * es, m * es, x->stream));
    RR_CHECK(announce(c, d, x, RR_CTR_IPC_IN, g + 1, EV_IN, s));
    RR_CHECK(wait_peers(c, d, x, RR_CTR_IPC_IN, g + 1, EV_IN, s)); /* 3. reduce our slice */
    if (m * es <= x->oneshot)
        return one_shot(c, d, x, a, g, s, lo, m);
    size_t a0 = 0, na = rr_shm_slice(m, es, x->n, x->me, &a0);
    if (na) {
        rr_kargs k;
        kargs(&k, x, a, off, a0, na, x->mine + off + a0 * es, a->out + (lo + a0) * es);
        RR_DEV(c, be, "launching the reduction kernel", be->launch_reduce(&k, x->stream));
    }
    RR_CHECK(announce(c, d, x, RR_CTR_IPC_RED, g + 1, EV_RED, s));
    for (int p = 0; p < x->n; p++) { /* 4. gather the peers' slices */
        if (p == x->me)
            continue;
        RR_CHECK(rr_shm_wait(c, RR_CTR_IPC_RED, p, g + 1));
        RR_DEV(c, be, "making the stream wait for a peer",
                 be->stream_wait_event(x->stream, x->ev[p][EV_RED][s]));
        size_t ap = 0, np_ = rr_shm_slice(m, es, x->n, p, &ap);
        if (np_)
            RR_DEV(c, be, "device-to-device copy from a peer",
                     be->d2d(a->out + (lo + ap) * es, x->at[p] + off + ap * es, np_ * es,
                             x->stream));
    }
    return announce(c, d, x, RR_CTR_IPC_OUT, g + 1, EV_OUT, s);
}

rr_status rr_ipc_allreduce(rr_comm *c, rr_device *d, uintptr_t prod, uintptr_t dsend,
                           uintptr_t drecv, size_t count, int dtype, int op, double pre,
                           double post, int64_t div, int sync)
{
    rr_ipc *x = d->ipc;
    const rr_dev_backend *be = d->be;
    if (x == NULL || x->state <= 0)
        return RR_FAIL(c, RR_ERR_STATE, "the IPC transport is not set up");
    if (count == 0)
        return RR_OK;
    ar_call a = {dsend, drecv, count, rr_dtype_size(dtype), dtype, op, pre, post, div};
    size_t per = x->chunk / a.es, nchunks = (count + per - 1) / per;
    c->shm->what = "allreduce (CUDA IPC transport)";
    RR_DEV(c, be, "recording an event on the caller's stream",
             be->event_record(x->ev_start, prod));
    RR_DEV(c, be, "making the transport's stream wait",
             be->stream_wait_event(x->stream, x->ev_start));
    rr_status st = RR_OK;
    for (size_t j = 0; j < nchunks && st == RR_OK; j++) {
        size_t lo = j * per, m = count - lo < per ? count - lo : per;
        st = one_chunk(c, d, x, &a, x->chunks + j, lo, m);
    }
    /* The chunk numbers advance even after a failure: the peers count the same (a failure
     * here is a dead or silent peer, or a device error, and the transport is done for). */
    x->chunks += nchunks;
    if (st != RR_OK) {
        rr_dev_settle(d, st);
        return st;
    }
    RR_DEV(c, be, "recording an event on the transport's stream",
             be->event_record(x->ev_end, x->stream));
    if (sync) { /* first, so that a dead peer is noticed here (and not in a stream wait) */
        rr_status st2 = rr_dev_host_wait(c, d, x->ev_end);
        if (st2 != RR_OK) {
            rr_dev_settle(d, st2);
            return st2;
        }
    }
    RR_DEV(c, be, "making the caller's stream wait", be->stream_wait_event(prod, x->ev_end));
    return RR_OK;
}

/* ------------------------------------------------ broadcast, reducescatter, allgather
 * The same slots, events and flags: chunk g of a call uses slot g mod K, a rank writes its
 * slot only after every peer announced OUT for the slot's previous chunk, and reads a peer's
 * slot only after the peer announced IN for this chunk (and its stream waited on the event).
 * Every rank runs every chunk (the chunk count comes from agreed sizes), raising IN only where
 * it wrote its slot and OUT always. */

/* Chunk j of a call of `total` elements, `per` to a chunk: its global number g, its slot s
 * (at byte offset off of a scratch ring), its elements [lo, lo + m). */
#define CHUNK(x, j, per, total)                                                             \
    const uint64_t g = (x)->chunks + (j);                                                   \
    const int s = (int)(g % (uint64_t)(x)->K);                                              \
    const size_t lo = (size_t)(j) * (per);                                                  \
    const size_t m = (total) - lo < (per) ? (total) - lo : (per);                           \
    const size_t off = (size_t)s * (x)->chunk

/* Slot s free for chunk g: every peer is done with the chunk that used it before. */
static rr_status slot_free(rr_comm *c, rr_device *d, rr_ipc *x, uint64_t g, int s)
{
    if (g < (uint64_t)x->K)
        return RR_OK;
    return wait_peers(c, d, x, RR_CTR_IPC_OUT, g - (uint64_t)x->K + 1, EV_OUT, s);
}

/* The stream waits until peer p has copied chunk g into its slot s. */
static rr_status peer_in(rr_comm *c, rr_device *d, rr_ipc *x, int p, uint64_t g, int s)
{
    RR_CHECK(rr_shm_wait(c, RR_CTR_IPC_IN, p, g + 1));
    RR_DEV(c, d->be, "making the stream wait for a peer",
             d->be->stream_wait_event(x->stream, x->ev[p][EV_IN][s]));
    return RR_OK;
}

static rr_status d2d(rr_comm *c, rr_device *d, rr_ipc *x, uintptr_t dst, uintptr_t src,
                     size_t bytes)
{
    if (bytes)
        RR_DEV(c, d->be, "device-to-device copy", d->be->d2d(dst, src, bytes, x->stream));
    return RR_OK;
}

/* Start a call on the transport's stream (after prod's work); returns the chunk count. */
static rr_status begin(rr_comm *c, rr_device *d, rr_ipc *x, uintptr_t prod, const char *what)
{
    if (x == NULL || x->state <= 0)
        return RR_FAIL(c, RR_ERR_STATE, "the IPC transport is not set up");
    c->shm->what = what;
    RR_DEV(c, d->be, "recording an event on the caller's stream",
             d->be->event_record(x->ev_start, prod));
    RR_DEV(c, d->be, "making the transport's stream wait",
             d->be->stream_wait_event(x->stream, x->ev_start));
    return RR_OK;
}

/* End a call: prod waits for the transport's stream (and, with sync, the host too). */
static rr_status end(rr_comm *c, rr_device *d, rr_ipc *x, uintptr_t prod, rr_status st,
                     uint64_t nchunks, int sync)
{
    x->chunks += nchunks; /* the peers count the same, failed or not */
    if (st == RR_OK) {
        RR_DEV(c, d->be, "recording an event on the transport's stream",
                 d->be->event_record(x->ev_end, x->stream));
        if (sync)
            st = rr_dev_host_wait(c, d, x->ev_end);
        if (st == RR_OK)
            RR_DEV(c, d->be, "making the caller's stream wait",
                     d->be->stream_wait_event(prod, x->ev_end));
    }
    if (st != RR_OK)
        rr_dev_settle(d, st);
    return st;
}

/* [lo, lo + m) of a call's elements intersected with [b0, b0 + bn): *a .. return. */
static size_t overlap(size_t lo, size_t m, size_t b0, size_t bn, size_t *a)
{
    size_t s = lo > b0 ? lo : b0, e = lo + m < b0 + bn ? lo + m : b0 + bn;
    *a = s;
    return e > s ? e - s : 0;
}

rr_status rr_ipc_broadcast(rr_comm *c, rr_device *d, uintptr_t prod, uintptr_t src,
                           uintptr_t drecv, size_t count, int dtype, int root, int sync)
{
    rr_ipc *x = d->ipc;
    RR_CHECK(begin(c, d, x, prod, "broadcast (CUDA IPC transport)"));
    size_t es = rr_dtype_size(dtype), per = x->chunk / es;
    uint64_t nchunks = (count + per - 1) / per;
    rr_status st = RR_OK;
    for (uint64_t j = 0; j < nchunks && st == RR_OK; j++) {
        CHUNK(x, j, per, count);
        st = slot_free(c, d, x, g, s);
        if (st == RR_OK && x->me == root) {
            st = d2d(c, d, x, x->mine + off, src + lo * es, m * es);
            if (st == RR_OK && drecv != src)
                st = d2d(c, d, x, drecv + lo * es, src + lo * es, m * es);
            if (st == RR_OK)
                st = announce(c, d, x, RR_CTR_IPC_IN, g + 1, EV_IN, s);
        } else if (st == RR_OK) {
            st = peer_in(c, d, x, root, g, s);
            if (st == RR_OK)
                st = d2d(c, d, x, drecv + lo * es, x->at[root] + off, m * es);
        }
        if (st == RR_OK)
            st = announce(c, d, x, RR_CTR_IPC_OUT, g + 1, EV_OUT, s);
    }
    return end(c, d, x, prod, st, nchunks, sync);
}

rr_status rr_ipc_reducescatter(rr_comm *c, rr_device *d, uintptr_t prod, uintptr_t dsend,
                               size_t count, uintptr_t drecv, const size_t *recvcounts,
                               int dtype, int op, double pre, double post, int64_t div,
                               int sync)
{
    rr_ipc *x = d->ipc;
    RR_CHECK(begin(c, d, x, prod, "reducescatter (CUDA IPC transport)"));
    ar_call a = {dsend, drecv, count, rr_dtype_size(dtype), dtype, op, pre, post, div};
    size_t es = a.es, per = x->chunk / es, b0 = 0;
    for (int p = 0; p < x->me; p++)
        b0 += recvcounts[p];
    size_t bn = recvcounts[x->me];
    uint64_t nchunks = (count + per - 1) / per;
    rr_status st = RR_OK;
    for (uint64_t j = 0; j < nchunks && st == RR_OK; j++) {
        CHUNK(x, j, per, count);
        st = slot_free(c, d, x, g, s);
        if (st == RR_OK)
            st = d2d(c, d, x, x->mine + off, dsend + lo * es, m * es);
        if (st == RR_OK)
            st = announce(c, d, x, RR_CTR_IPC_IN, g + 1, EV_IN, s);
        if (st == RR_OK)
            st = wait_peers(c, d, x, RR_CTR_IPC_IN, g + 1, EV_IN, s);
        size_t at = 0, n = overlap(lo, m, b0, bn, &at);
        if (st == RR_OK && n) { /* our rows of this chunk, from every rank's slot */
            rr_kargs k;
            kargs(&k, x, &a, off, at - lo, n, drecv + (at - b0) * es, 0);
            RR_DEV(c, d->be, "launching the reduction kernel",
                     d->be->launch_reduce(&k, x->stream));
        }
        if (st == RR_OK)
            st = announce(c, d, x, RR_CTR_IPC_OUT, g + 1, EV_OUT, s);
    }
    return end(c, d, x, prod, st, nchunks, sync);
}

rr_status rr_ipc_allgather(rr_comm *c, rr_device *d, uintptr_t prod, uintptr_t dsend,
                           uintptr_t drecv, const size_t *counts, int dtype, int sync)
{
    rr_ipc *x = d->ipc;
    RR_CHECK(begin(c, d, x, prod, "allgather (CUDA IPC transport)"));
    size_t es = rr_dtype_size(dtype), per = x->chunk / es, total = 0, b[RR_KMAX_SRCS];
    for (int p = 0; p < x->n; p++) {
        b[p] = total;
        total += counts[p];
    }
    uint64_t nchunks = (total + per - 1) / per;
    rr_status st = RR_OK;
    for (uint64_t j = 0; j < nchunks && st == RR_OK; j++) {
        CHUNK(x, j, per, total);
        size_t at = 0, n = overlap(lo, m, b[x->me], counts[x->me], &at);
        st = slot_free(c, d, x, g, s);
        if (st == RR_OK) /* our piece of the chunk into our slot, and into our output */
            st = d2d(c, d, x, x->mine + off + (at - lo) * es, dsend + (at - b[x->me]) * es,
                     n * es);
        if (st == RR_OK)
            st = d2d(c, d, x, drecv + at * es, dsend + (at - b[x->me]) * es, n * es);
        if (st == RR_OK)
            st = announce(c, d, x, RR_CTR_IPC_IN, g + 1, EV_IN, s);
        for (int p = 0; p < x->n && st == RR_OK; p++) {
            size_t ap = 0, np_ = p == x->me ? 0 : overlap(lo, m, b[p], counts[p], &ap);
            if (np_ == 0)
                continue;
            st = peer_in(c, d, x, p, g, s);
            if (st == RR_OK)
                st = d2d(c, d, x, drecv + ap * es, x->at[p] + off + (ap - lo) * es, np_ * es);
        }
        if (st == RR_OK)
            st = announce(c, d, x, RR_CTR_IPC_OUT, g + 1, EV_OUT, s);
    }
    return end(c, d, x, prod, st, nchunks, sync);
}
