/* Collectives on device (GPU) buffers, staged through pinned host memory.
 *
 * Allreduce and broadcast run a pipeline over segments of RINGRED_DEVICE_SEGMENT_BYTES
 * through a ring of RINGRED_DEVICE_SLOTS pinned staging slots: segment g is downloaded
 * (device to host) on the download stream, reduced on the host by the normal transport
 * (rr_allreduce on the slot: the same collective on every rank, segment by segment), and
 * uploaded (host to device) on the upload stream.  Downloads run up to slots-1 segments
 * ahead, so the host reduction of g overlaps the downloads of g+1.. and the upload of g-1.
 * A slot is reused only after its upload finished: the download stream waits on the
 * slot's upload event (stream-side, the host does not block).  The copy streams wait on
 * an event recorded on the caller's (producer) stream, never on the whole device; at the
 * end the producer stream waits on an event after the last upload, and the call returns
 * once the uploads are complete, so Python sees a synchronous call.
 *
 * Allgather and reducescatter stage whole buffers (download, host collective, upload).
 * The allreduce direct path for CUDA-aware MPI is in device_direct.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coll/coll.h"
#include "device/device.h"
#include "device/device_ipc.h"
#include "core/internal.h"
#include "shm/shm.h"

const rr_dev_backend *rr_dev_backend_of(int backend)
{
    switch (backend) {
    case RR_DEVICE_CUDA: return rr_dev_cuda_backend();
    case RR_DEVICE_FAKE: return rr_dev_fake_backend();
    default: return NULL;
    }
}

rr_status rr_device_backend_available(int backend, char *why, size_t why_len)
{
    const rr_dev_backend *be = rr_dev_backend_of(backend);
    if (be == NULL) {
        if (why && why_len)
            snprintf(why, why_len, "unknown device backend %d", backend);
        return RR_ERR_INVALID;
    }
    if (why && why_len)
        why[0] = '\0';
    return be->load(why, why_len) == 0 ? RR_OK : RR_ERR_UNSUPPORTED;
}

rr_status rr_dev_fail(rr_comm *c, const rr_dev_backend *be, int code, const char *what,
                      const char *file, int line)
{
    return rr_fail(c, RR_ERR_SYSTEM, file, line, "%s: %s failed: %s (error %d)", be->name, what,
                   be->errstr(code), code);
}

/* RR_DEV (device.h), for code that must drain the copy streams before returning. */
#define DEV_GOTO(c, be, what, call, st, label) do { int e_ = (call); \
    if (e_) { st = rr_dev_fail((c), (be), e_, (what), __FILE__, __LINE__); goto label; } } while (0)

/* ------------------------------------------------------------ per-communicator state */

void rr_dev_settle(rr_device *d, rr_status st)
{
    if (st == RR_ERR_PEER || st == RR_ERR_TIMEOUT)
        d->stuck = 1;
    if (d->stuck)
        return;
    if (d->work)
        d->be->stream_sync(d->work);
    if (d->ipc)
        rr_ipc_settle(d);
}

static void device_free(rr_comm *c)
{
    rr_device *d = c->device;
    if (d == NULL)
        return;
    c->device = NULL;
    if (d->stuck) { /* streams that may never drain: leave them (and their memory) be */
        free(d);
        return;
    }
    const rr_dev_backend *be = d->be;
    void *prev = NULL;
    int entered = d->retained && be->ctx_enter(d->ctx, &prev) == 0;
    /* Errors are ignored: this runs at shutdown, possibly after the driver went away. */
    rr_ipc_free(d);
    if (d->work)
        be->stream_sync(d->work), be->stream_destroy(d->work);
    if (d->ev_done)
        be->event_destroy(d->ev_done);
    if (d->fbuf)
        be->mem_free(d->fbuf);
    if (d->zeros)
        be->host_free(d->zeros);
    if (d->segs)
        be->host_free(d->segs);
    if (d->dl)
        be->stream_sync(d->dl), be->stream_destroy(d->dl);
    if (d->ul)
        be->stream_sync(d->ul), be->stream_destroy(d->ul);
    void *evs[2 + 2 * RR_DEV_MAX_SLOTS] = {d->ev_in, d->ev_out};
    memcpy(evs + 2, d->ev_dl, sizeof d->ev_dl);
    memcpy(evs + 2 + RR_DEV_MAX_SLOTS, d->ev_ul, sizeof d->ev_ul);
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        if (evs[i])
            be->event_destroy(evs[i]);
    if (d->slots)
        be->host_free(d->slots);
    for (int i = 0; i < 2; i++)
        if (d->whole[i])
            be->host_free(d->whole[i]);
    if (entered)
        be->ctx_leave(prev);
    if (d->retained)
        be->ctx_release(d->dev, d->ctx);
    free(d);
}

static rr_status create_objects(rr_comm *c, rr_device *d)
{
    const rr_dev_backend *be = d->be;
    RR_DEV(c, be, "stream creation", be->stream_create(&d->dl));
    RR_DEV(c, be, "stream creation", be->stream_create(&d->ul));
    RR_DEV(c, be, "event creation", be->event_create(&d->ev_in));
    RR_DEV(c, be, "event creation", be->event_create(&d->ev_out));
    for (int i = 0; i < d->nslots; i++) {
        RR_DEV(c, be, "event creation", be->event_create(&d->ev_dl[i]));
        RR_DEV(c, be, "event creation", be->event_create(&d->ev_ul[i]));
    }
    void *p = NULL;
    RR_DEV(c, be, "pinned host allocation", be->host_alloc(&p, (size_t)d->nslots * d->slot_bytes));
    d->slots = p;
    return RR_OK;
}

/* The communicator's state for (backend, device), made current on this thread; *prev
 * receives the context to restore with leave(). */
rr_status rr_dev_enter(rr_comm *c, int backend, int dev, rr_device **out, void **prev)
{
    const rr_dev_backend *be = rr_dev_backend_of(backend);
    if (be == NULL)
        return RR_FAIL(c, RR_ERR_INVALID, "unknown device backend %d", backend);
    if (dev < 0)
        return RR_FAIL(c, RR_ERR_INVALID, "invalid device id %d", dev);
    char why[512] = "";
    if (be->load(why, sizeof why) != 0)
        return RR_FAIL(c, RR_ERR_UNSUPPORTED, "%s", why);
    rr_device *d = c->device;
    if (d == NULL || d->be != be || d->dev != dev) {
        device_free(c);
        d = calloc(1, sizeof *d);
        if (d == NULL)
            return RR_FAIL(c, RR_ERR_NOMEM, "cannot allocate the device state");
        d->be = be;
        d->dev = dev;
        d->nslots = c->cfg.device_slots;
        d->slot_bytes = c->cfg.device_segment_bytes & ~(size_t)63;
        c->device = d;
        c->device_free = device_free; /* the communicator's end lets it go */
        int e = be->ctx_retain(dev, &d->ctx);
        if (e) {
            device_free(c);
            return rr_dev_fail(c, be, e, "retaining the device's primary context", __FILE__,
                            __LINE__);
        }
        d->retained = 1;
        e = be->ctx_enter(d->ctx, prev);
        if (e) {
            device_free(c);
            return rr_dev_fail(c, be, e, "making the device's context current", __FILE__, __LINE__);
        }
        rr_status st = create_objects(c, d);
        if (st != RR_OK) {
            be->ctx_leave(*prev);
            device_free(c);
            return st;
        }
        *out = d;
        return RR_OK;
    }
    RR_DEV(c, be, "making the device's context current", be->ctx_enter(d->ctx, prev));
    *out = d;
    return RR_OK;
}

void rr_dev_leave(rr_device *d, void *prev) { d->be->ctx_leave(prev); }

/* Block the host until event ev has completed (polling, yielding like the MPI waits). */
rr_status rr_dev_host_wait(rr_comm *c, rr_device *d, void *ev)
{
    int spins = 0;
    for (unsigned polls = 0;; polls++) {
        int e = d->be->event_query(ev);
        if (e == 0)
            return RR_OK;
        if (e != RR_DEV_NOT_READY)
            return rr_dev_fail(c, d->be, e, "waiting for the device", __FILE__, __LINE__);
        if (c->shm && polls % 256 == 255) {
            rr_status st = rr_shm_check_peers(c);
            if (st != RR_OK) {
                d->stuck = 1;
                return st;
            }
        }
        if (polls < 4096) {
            rr_wait_pause(&spins, c->cfg.spin_count);
        } else { /* a long wait (a large kernel, a busy GPU): stop taking a core */
            struct timespec ts = {0, 20000};
            nanosleep(&ts, NULL);
        }
    }
}

/* After a failure: let every queued copy finish before the staging memory is reused. */
static void drain(rr_device *d)
{
    if (d->stuck)
        return;
    d->be->stream_sync(d->dl);
    d->be->stream_sync(d->ul);
}

/* Copy streams wait for the work queued on the producer stream so far. */
static rr_status after_producer(rr_comm *c, rr_device *d, uintptr_t prod)
{
    const rr_dev_backend *be = d->be;
    RR_DEV(c, be, "recording an event on the caller's stream", be->event_record(d->ev_in, prod));
    RR_DEV(c, be, "making the download stream wait", be->stream_wait_event(d->dl, d->ev_in));
    RR_DEV(c, be, "making the upload stream wait", be->stream_wait_event(d->ul, d->ev_in));
    return RR_OK;
}

/* Later work on the producer stream waits for the uploads; the host waits for them too. */
static rr_status before_producer(rr_comm *c, rr_device *d, uintptr_t prod)
{
    const rr_dev_backend *be = d->be;
    RR_DEV(c, be, "recording an event on the upload stream", be->event_record(d->ev_out, d->ul));
    RR_DEV(c, be, "making the caller's stream wait", be->stream_wait_event(prod, d->ev_out));
    return rr_dev_host_wait(c, d, d->ev_out);
}

/* Does a call of `bytes` take the IPC transport (set up on first use: collective)?  Never
 * when !allow or for an empty call. */
static rr_status ipc_for(rr_comm *c, rr_device *d, int allow, size_t bytes, int *ipc)
{
    *ipc = 0;
    return allow && bytes ? rr_ipc_use(c, d, bytes, ipc) : RR_OK;
}

/* ------------------------------------------------------------------ the pipeline */

typedef rr_status (*seg_fn)(rr_comm *c, void *host, size_t elems, const void *arg);

/* Run fn on every segment of count elements: download from dsend (if down), fn on the
 * host slot, upload to drecv (if up).  fn is a collective of `kind`: a device failure
 * poisons the next one so that the peers fail too. */
static rr_status pipeline(rr_comm *c, rr_device *d, int kind, uintptr_t prod, uintptr_t dsend,
                          uintptr_t drecv, size_t count, size_t es, int down, int up, seg_fn fn,
                          const void *arg)
{
    const rr_dev_backend *be = d->be;
    size_t seg = d->slot_bytes / es, nseg = (count + seg - 1) / seg;
    size_t K = (size_t)d->nslots, next = 0, reduced = 0;
    rr_status st = RR_OK;
    RR_CHECK_GOTO(after_producer(c, d, prod), st, fail);
    for (size_t g = 0; g < nseg; g++) {
        /* Keep downloads up to K-1 segments ahead of the host. */
        for (; down && next < nseg && next < g + K; next++) {
            size_t s = next % K, lo = next * seg, n = count - lo < seg ? count - lo : seg;
            if (next >= K && up) /* the slot's previous upload must be done */
                DEV_GOTO(c, be, "making the download stream wait",
                         be->stream_wait_event(d->dl, d->ev_ul[s]), st, fail);
            DEV_GOTO(c, be, "device-to-host copy",
                     be->d2h(d->slots + s * d->slot_bytes, dsend + lo * es, n * es, d->dl), st,
                     fail);
            DEV_GOTO(c, be, "recording a download event", be->event_record(d->ev_dl[s], d->dl),
                     st, fail);
        }
        size_t s = g % K, lo = g * seg, n = count - lo < seg ? count - lo : seg;
        uint8_t *slot = d->slots + s * d->slot_bytes;
        if (down)
            RR_CHECK_GOTO(rr_dev_host_wait(c, d, d->ev_dl[s]), st, fail);
        else if (up && g >= K) /* the host is about to overwrite a slot still uploading */
            RR_CHECK_GOTO(rr_dev_host_wait(c, d, d->ev_ul[s]), st, fail);
        st = fn(c, slot, n, arg);
        if (st != RR_OK)
            goto fail_collective;
        reduced++;
        if (up) {
            DEV_GOTO(c, be, "host-to-device copy", be->h2d(drecv + lo * es, slot, n * es, d->ul),
                     st, fail);
            DEV_GOTO(c, be, "recording an upload event", be->event_record(d->ev_ul[s], d->ul),
                     st, fail);
        }
    }
    RR_CHECK_GOTO(before_producer(c, d, prod), st, fail);
    return RR_OK;
fail:
    if (reduced < nseg) /* the peers will wait in the next segment's collective */
        rr_reject(c, kind, st);
fail_collective:
    drain(d);
    return st;
}

/* ---------------------------------------------------------------------- allreduce */

typedef struct ar_args {
    int dtype, op;
    double pre, post;
    int64_t div;
} ar_args;

static rr_status seg_allreduce(rr_comm *c, void *host, size_t n, const void *arg)
{
    const ar_args *a = arg;
    return rr_allreduce(c, host, host, n, a->dtype, a->op, a->pre, a->post, a->div);
}

static rr_status allreduce_body(rr_comm *c, rr_device *d, uintptr_t prod, uintptr_t dsend,
                                uintptr_t drecv, size_t count, const ar_args *a)
{
    int direct = 0;
    rr_status st = rr_device_use_direct(c, d->be, &direct);
    if (st != RR_OK)
        return rr_reject(c, RR_KIND_DEV_ALLREDUCE, st);
    direct = direct && rr_device_mpi_supports(a->dtype, a->op, a->pre, a->post, a->div);
    /* One agreement for the whole call: the per-segment agreements alone could not tell
     * ranks with different counts apart before some of them finished. */
    rr_header h = {direct ? RR_KIND_DEV_ALLREDUCE_DIRECT : RR_KIND_DEV_ALLREDUCE,
                   (uint8_t)a->dtype, (uint8_t)a->op, 0, (int32_t)a->div, (uint64_t)count,
                   a->pre, a->post, 0, 0};
    RR_CHECK(rr_agree_call(c, &h));
    if (count == 0)
        return RR_OK;
    if (!direct) {
        int ipc = 0;
        RR_CHECK(ipc_for(c, d, 1, count * rr_dtype_size(a->dtype), &ipc));
        if (ipc)
            return rr_ipc_allreduce(c, d, prod, dsend, drecv, count, a->dtype, a->op, a->pre,
                                    a->post, a->div, 1);
    }
    if (direct) {
        /* MPI reads the buffers outside any stream: wait for the producer's work first. */
        RR_DEV(c, d->be, "recording an event on the caller's stream",
            d->be->event_record(d->ev_in, prod));
        RR_CHECK(rr_dev_host_wait(c, d, d->ev_in));
        return rr_device_mpi_allreduce(c, d->be, dsend, drecv, count, a->dtype, a->op);
    }
    return pipeline(c, d, RR_KIND_ALLREDUCE, prod, dsend, drecv, count, rr_dtype_size(a->dtype),
                    1, 1, seg_allreduce, a);
}

rr_status rr_device_allreduce(rr_comm *c, int backend, int device_id, uintptr_t stream,
                              const void *dsend, void *drecv, size_t count, int dtype, int op,
                              double prescale, double postscale, int64_t avg_div)
{
    const int K = RR_KIND_DEV_ALLREDUCE;
    RR_LOCAL(c, K, rr_check_call(c, dtype, op, prescale, postscale, avg_div));
    size_t es = rr_dtype_size(dtype);
    if (count && (dsend == NULL || drecv == NULL))
        return rr_reject(c, K, RR_FAIL(c, RR_ERR_INVALID, "device allreduce: NULL buffer"));
    if (count > SIZE_MAX / es)
        return rr_reject(c, K, RR_FAIL(c, RR_ERR_INVALID,
                         "device allreduce: element count %zu overflows", count));
    rr_device *d = NULL;
    void *prev = NULL;
    rr_status st = rr_dev_enter(c, backend, device_id, &d, &prev);
    if (st != RR_OK)
        return rr_reject(c, RR_KIND_DEV_ALLREDUCE, st);
    ar_args a = {dtype, op, prescale, postscale, avg_div};
    st = allreduce_body(c, d, stream, (uintptr_t)dsend, (uintptr_t)drecv, count, &a);
    rr_dev_leave(d, prev);
    return st;
}

rr_status rr_device_direct(rr_comm *c, int backend, int *out)
{
    if (c == NULL || out == NULL)
        return RR_ERR_INVALID;
    c->errmsg[0] = '\0';
    *out = 0;
    const rr_dev_backend *be = rr_dev_backend_of(backend);
    if (be == NULL)
        return RR_FAIL(c, RR_ERR_INVALID, "unknown device backend %d", backend);
    return rr_device_use_direct(c, be, out);
}

/* ---------------------------------------------------------------------- broadcast */

typedef struct bc_args {
    int dtype, root;
} bc_args;

static rr_status seg_broadcast(rr_comm *c, void *host, size_t n, const void *arg)
{
    const bc_args *a = arg;
    return rr_broadcast(c, host, n, a->dtype, a->root);
}

rr_status rr_device_broadcast(rr_comm *c, int backend, int device_id, uintptr_t stream,
                              const void *dsend, void *drecv, size_t count, int dtype, int root)
{
    const int K = RR_KIND_DEV_BROADCAST;
    RR_LOCAL(c, K, rr_check_call(c, dtype, RR_SUM, 1.0, 1.0, 1));
    if (root < 0 || root >= c->size)
        return rr_reject(c, K, RR_FAIL(c, RR_ERR_INVALID,
                         "broadcast: root rank %d is not in [0, %d)", root, c->size));
    if (count && (drecv == NULL || (c->rank == root && dsend == NULL)))
        return rr_reject(c, K, RR_FAIL(c, RR_ERR_INVALID, "device broadcast: NULL buffer"));
    rr_device *d = NULL;
    void *prev = NULL;
    rr_status st = rr_dev_enter(c, backend, device_id, &d, &prev);
    if (st != RR_OK)
        return rr_reject(c, RR_KIND_DEV_BROADCAST, st);
    rr_header h = {RR_KIND_DEV_BROADCAST, (uint8_t)dtype, 0, 0, root, (uint64_t)count, 1.0, 1.0, 0, 0};
    st = rr_agree_call(c, &h);
    int ipc = 0;
    if (st == RR_OK)
        st = ipc_for(c, d, 1, count * rr_dtype_size(dtype), &ipc);
    if (st == RR_OK && ipc) {
        uintptr_t src = c->rank == root ? (uintptr_t)dsend : (uintptr_t)drecv;
        st = rr_ipc_broadcast(c, d, stream, src, (uintptr_t)drecv, count, dtype, root, 1);
    } else if (st == RR_OK && count) {
        int is_root = c->rank == root;
        bc_args a = {dtype, root};
        st = pipeline(c, d, RR_KIND_BROADCAST, stream, (uintptr_t)dsend, (uintptr_t)drecv, count,
                      rr_dtype_size(dtype), is_root, !is_root || dsend != drecv, seg_broadcast,
                      &a);
    }
    rr_dev_leave(d, prev);
    return st;
}

/* ------------------------------------------------- whole-buffer staging (gather, scatter) */

static rr_status whole(rr_comm *c, rr_device *d, int i, size_t bytes, uint8_t **out)
{
    if (bytes > d->whole_cap[i] || d->whole[i] == NULL) {
        if (d->whole[i])
            d->be->host_free(d->whole[i]);
        d->whole[i] = NULL;
        d->whole_cap[i] = 0;
        size_t cap = bytes < 4096 ? 4096 : bytes;
        void *p = NULL;
        RR_DEV(c, d->be, "pinned host allocation", d->be->host_alloc(&p, cap));
        d->whole[i] = p;
        d->whole_cap[i] = cap;
    }
    *out = d->whole[i];
    return RR_OK;
}

static rr_status download_all(rr_comm *c, rr_device *d, uintptr_t prod, void *host,
                              uintptr_t src, size_t bytes)
{
    RR_CHECK(after_producer(c, d, prod));
    if (bytes == 0)
        return RR_OK;
    RR_DEV(c, d->be, "device-to-host copy", d->be->d2h(host, src, bytes, d->dl));
    RR_DEV(c, d->be, "recording a download event", d->be->event_record(d->ev_dl[0], d->dl));
    return rr_dev_host_wait(c, d, d->ev_dl[0]);
}

static rr_status upload_all(rr_comm *c, rr_device *d, uintptr_t prod, uintptr_t dst,
                            const void *host, size_t bytes)
{
    if (bytes)
        RR_DEV(c, d->be, "host-to-device copy", d->be->h2d(dst, host, bytes, d->ul));
    return before_producer(c, d, prod);
}

static rr_status allgather_body(rr_comm *c, rr_device *d, uintptr_t prod, uintptr_t dsend,
                                size_t count, uintptr_t drecv, int dtype, size_t row,
                                size_t *counts)
{
    size_t es = rr_dtype_size(dtype), total = 0, off = 0;
    for (int i = 0; i < c->size; i++) {
        if (i == c->rank)
            off = total;
        total += counts[i];
    }
    if (counts[c->rank] != count)
        return rr_reject(c, RR_KIND_ALLGATHER, RR_FAIL(c, RR_ERR_INVALID,
                         "allgather: counts[%d] = %zu but count = %zu", c->rank,
                         counts[c->rank], count));
    int ipc = 0;
    RR_CHECK(ipc_for(c, d, 1, total * es, &ipc));
    if (ipc) {
        /* the data phase's agreement (a peer that could not allocate its result poisoned
         * it), then the peers' blocks straight from their scratch */
        rr_header h = {RR_KIND_ALLGATHER, (uint8_t)dtype, 0, 0, 0, (uint64_t)total, 1.0, 1.0, 0, 0};
        RR_CHECK(rr_agree_call(c, &h));
        return rr_ipc_allgather(c, d, prod, dsend, drecv, counts, dtype, 1);
    }
    uint8_t *host = NULL;
    RR_CHECK(whole(c, d, 0, total * es, &host));
    rr_status st;
    RR_CHECK_GOTO(download_all(c, d, prod, host + off * es, dsend, count * es), st, fail);
    RR_CHECK_GOTO(rr_allgather(c, host + off * es, count, host, dtype, row, counts), st, fail);
    RR_CHECK_GOTO(upload_all(c, d, prod, drecv, host, total * es), st, fail);
    return RR_OK;
fail:
    drain(d);
    return st;
}

rr_status rr_device_allgather(rr_comm *c, int backend, int device_id, uintptr_t stream,
                              const void *dsend, size_t count, void *drecv, int dtype,
                              size_t row_elems, size_t *counts_out)
{
    RR_LOCAL(c, RR_KIND_ALLGATHER, rr_check_call(c, dtype, RR_SUM, 1.0, 1.0, 1));
    if (counts_out == NULL || (drecv && count && dsend == NULL))
        return rr_reject(c, RR_KIND_ALLGATHER, RR_FAIL(c, RR_ERR_INVALID,
                         "device allgather: NULL buffer or counts"));
    rr_device *d = NULL;
    void *prev = NULL;
    rr_status st = rr_dev_enter(c, backend, device_id, &d, &prev);
    if (st != RR_OK)
        return drecv ? st : rr_reject(c, RR_KIND_ALLGATHER, st);
    if (drecv == NULL) { /* phase 1: agreement and counts, no data */
        st = rr_allgather(c, NULL, count, NULL, dtype, row_elems, counts_out);
        rr_dev_leave(d, prev);
        return st;
    }
    st = allgather_body(c, d, stream, (uintptr_t)dsend, count, (uintptr_t)drecv, dtype,
                                  row_elems, counts_out);
    rr_dev_leave(d, prev);
    return st;
}

static rr_status reducescatter_body(rr_comm *c, rr_device *d, uintptr_t prod, uintptr_t dsend,
                                    size_t count, uintptr_t drecv, const size_t *recvcounts,
                                    const ar_args *a)
{
    size_t es = rr_dtype_size(a->dtype), mine = recvcounts[c->rank];
    uint8_t *in = NULL, *out = NULL;
    rr_status st0 = whole(c, d, 0, count * es, &in);
    if (st0 == RR_OK)
        st0 = whole(c, d, 1, mine * es, &out);
    if (st0 != RR_OK)
        return rr_reject(c, RR_KIND_REDUCESCATTER, st0);
    rr_status st = download_all(c, d, prod, in, dsend, count * es);
    if (st != RR_OK) {
        drain(d);
        return rr_reject(c, RR_KIND_REDUCESCATTER, st);
    }
    RR_CHECK_GOTO(rr_reducescatter(c, in, count, out, recvcounts, a->dtype, a->op, a->pre,
                                   a->post, a->div), st, fail);
    RR_CHECK_GOTO(upload_all(c, d, prod, drecv, out, mine * es), st, fail);
    return RR_OK;
fail:
    drain(d);
    return st;
}

rr_status rr_device_reducescatter(rr_comm *c, int backend, int device_id, uintptr_t stream,
                                  const void *dsend, size_t count, void *drecv,
                                  const size_t *recvcounts, int dtype, int op, double prescale,
                                  double postscale, int64_t avg_div)
{
    const int K = RR_KIND_REDUCESCATTER;
    RR_LOCAL(c, K, rr_check_call(c, dtype, op, prescale, postscale, avg_div));
    if (recvcounts == NULL)
        return rr_reject(c, K, RR_FAIL(c, RR_ERR_INVALID, "device reducescatter: NULL recvcounts"));
    size_t total = 0;
    for (int i = 0; i < c->size; i++)
        total += recvcounts[i];
    if (total != count)
        return rr_reject(c, K, RR_FAIL(c, RR_ERR_INVALID,
                         "reducescatter: recvcounts sum to %zu, not %zu", total, count));
    if (count && (dsend == NULL || (recvcounts[c->rank] && drecv == NULL)))
        return rr_reject(c, K, RR_FAIL(c, RR_ERR_INVALID, "device reducescatter: NULL buffer"));
    rr_device *d = NULL;
    void *prev = NULL;
    rr_status st = rr_dev_enter(c, backend, device_id, &d, &prev);
    if (st != RR_OK)
        return rr_reject(c, RR_KIND_REDUCESCATTER, st);
    ar_args a = {dtype, op, prescale, postscale, avg_div};
    /* one agreement for the whole call, the split included (a hash of it) */
    uint32_t split = 2166136261u;
    for (int i = 0; i < c->size; i++)
        split = (split ^ (uint32_t)(recvcounts[i] ^ (recvcounts[i] >> 32))) * 16777619u;
    rr_header h = {RR_KIND_DEV_REDUCESCATTER, (uint8_t)dtype, (uint8_t)op, 0,
                   (int32_t)(split & 0x7fffffff), (uint64_t)count, prescale, postscale, 0, 0};
    st = rr_agree_call(c, &h);
    int ipc = 0;
    if (st == RR_OK)
        st = ipc_for(c, d, 1, count * rr_dtype_size(dtype), &ipc);
    if (st == RR_OK && ipc)
        st = rr_ipc_reducescatter(c, d, stream, (uintptr_t)dsend, count, (uintptr_t)drecv,
                                  recvcounts, dtype, op, prescale, postscale, avg_div, 1);
    else if (st == RR_OK)
        st = reducescatter_body(c, d, stream, (uintptr_t)dsend, count, (uintptr_t)drecv,
                                recvcounts, &a);
    rr_dev_leave(d, prev);
    return st;
}

/* ------------------------------------------------- agreed calls (the engine's responses) */

rr_status rr_dev_allreduce_agreed(rr_comm *c, rr_device *d, uintptr_t prod, uintptr_t dsend,
                                  uintptr_t drecv, size_t count, int dtype, int op, double pre,
                                  double post, int64_t div, int allow_ipc)
{
    if (count == 0)
        return RR_OK;
    int ipc = 0;
    RR_CHECK(ipc_for(c, d, allow_ipc, count * rr_dtype_size(dtype), &ipc));
    if (ipc)
        return rr_ipc_allreduce(c, d, prod, dsend, drecv, count, dtype, op, pre, post, div, 0);
    ar_args a = {dtype, op, pre, post, div};
    return pipeline(c, d, RR_KIND_ALLREDUCE, prod, dsend, drecv, count, rr_dtype_size(dtype), 1,
                    1, seg_allreduce, &a);
}

/* The host collectives of rr_dev_allreduce_agreed's staging pipeline, on zeros: the segments
 * are the communicator's device segment (rank 0's value, the same everywhere). */
rr_status rr_dev_allreduce_zeros(rr_comm *c, size_t count, int dtype, int op, double pre,
                                 double post, int64_t div)
{
    size_t es = rr_dtype_size(dtype), seg = (c->cfg.device_segment_bytes & ~(size_t)63) / es;
    if (count == 0)
        return RR_OK;
    if (seg == 0)
        seg = 1;
    size_t n0 = count < seg ? count : seg;
    /* not the communicator's scratch: rr_allreduce works in it */
    void *z = malloc(n0 * es);
    if (z == NULL) {
        rr_poison(c, RR_KIND_ALLREDUCE); /* the peers are in the first segment's collective */
        return RR_FAIL(c, RR_ERR_NOMEM, "cannot allocate %zu bytes", n0 * es);
    }
    rr_status st = RR_OK;
    for (size_t lo = 0; lo < count && st == RR_OK; lo += seg) {
        size_t n = count - lo < seg ? count - lo : seg;
        memset(z, 0, n * es);
        st = rr_allreduce(c, z, z, n, dtype, op, pre, post, div);
    }
    free(z);
    return st;
}

rr_status rr_dev_broadcast_agreed(rr_comm *c, rr_device *d, uintptr_t prod, uintptr_t buf,
                                  size_t count, int dtype, int root, int allow_ipc)
{
    if (count == 0)
        return RR_OK;
    int ipc = 0;
    RR_CHECK(ipc_for(c, d, allow_ipc, count * rr_dtype_size(dtype), &ipc));
    if (ipc)
        return rr_ipc_broadcast(c, d, prod, buf, buf, count, dtype, root, 0);
    bc_args a = {dtype, root};
    int is_root = c->rank == root;
    return pipeline(c, d, RR_KIND_BROADCAST, prod, buf, buf, count, rr_dtype_size(dtype),
                    is_root, !is_root, seg_broadcast, &a);
}

rr_status rr_dev_reducescatter_agreed(rr_comm *c, rr_device *d, uintptr_t prod, uintptr_t dsend,
                                      size_t count, uintptr_t drecv, const size_t *recvcounts,
                                      int dtype, int op, double pre, double post, int64_t div,
                                      int allow_ipc)
{
    int ipc = 0;
    RR_CHECK(ipc_for(c, d, allow_ipc, count * rr_dtype_size(dtype), &ipc));
    if (ipc)
        return rr_ipc_reducescatter(c, d, prod, dsend, count, drecv, recvcounts, dtype, op, pre,
                                    post, div, 0);
    ar_args a = {dtype, op, pre, post, div};
    return reducescatter_body(c, d, prod, dsend, count, drecv, recvcounts, &a);
}

rr_status rr_dev_download(rr_comm *c, rr_device *d, uintptr_t prod, void *host, uintptr_t src,
                          size_t bytes)
{
    rr_status st = download_all(c, d, prod, host, src, bytes);
    if (st != RR_OK)
        drain(d);
    return st;
}

const char *rr_device_transport(rr_comm *c, char *why, size_t why_len)
{
    const char *reason = "";
    const char *name = rr_ipc_verdict(c ? c->device : NULL, &reason);
    if (why && why_len)
        snprintf(why, why_len, "%s", reason);
    return name;
}
