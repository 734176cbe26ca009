/* Segmented ring reduce-scatter and allgather over MPI point-to-point.
 *
 * The buffer is cut into `size` chunks and every chunk into segments of at most
 * cfg.segment_bytes.  Reduce-scatter step s (0..n-2): rank r sends chunk r-s-1 and
 * receives chunk r-s-2 from its left neighbour, so after n-1 steps rank r owns the
 * reduction of chunk r.  Work is a stream of (step, segment) units: the receive of a
 * unit lands in one of `window` scratch slots, is reduced, and the result is sent on
 * at once as the next step's unit, so reduction overlaps transfer and several segments
 * are always on the wire.  Allgather step t: send chunk r-t, receive chunk r-t-1
 * straight into place and forward it at the next step. */
#include <string.h>

#include "core/internal.h"
#include "core/reduce.h"
#include "mpi/mpi.h"

static inline int mod(int a, int n) { return ((a % n) + n) % n; }

typedef struct seg_plan {
    size_t seg_elems; /* elements per segment */
    size_t nseg;      /* segments per chunk (of the longest chunk) */
} seg_plan;

static seg_plan plan_segments(const rr_comm *c, const rr_chunks *ch, size_t es)
{
    size_t maxlen = 0;
    for (int i = 0; i < c->size; i++)
        if (ch->len[i] > maxlen)
            maxlen = ch->len[i];
    seg_plan p;
    p.seg_elems = c->cfg.segment_bytes / es;
    if (p.seg_elems == 0)
        p.seg_elems = 1;
    p.nseg = maxlen ? (maxlen + p.seg_elems - 1) / p.seg_elems : 0;
    return p;
}

/* Elements [*lo, *lo + return) of segment k of chunk `chunk`. */
static size_t seg_range(const rr_chunks *ch, const seg_plan *p, int chunk, size_t k, size_t *lo)
{
    size_t start = k * p->seg_elems, len = ch->len[chunk];
    *lo = ch->off[chunk] + start;
    if (start >= len)
        return 0;
    size_t n = len - start;
    return n < p->seg_elems ? n : p->seg_elems;
}

static rr_status post(rr_comm *c, int is_send, void *buf, size_t bytes, int peer, int tag,
                      MPI_Request *req)
{
    if (bytes == 0) {
        *req = MPI_REQUEST_NULL;
        return RR_OK;
    }
    if (is_send)
        RR_MPI(c, MPI_Isend(buf, (int)bytes, MPI_BYTE, peer, tag, c->comm, req));
    else
        RR_MPI(c, MPI_Irecv(buf, (int)bytes, MPI_BYTE, peer, tag, c->comm, req));
    return RR_OK;
}

rr_status rr_ring_reduce_scatter(rr_comm *c, const void *src, void *dst, const rr_chunks *ch,
                                 rr_dtype dt, rr_op op)
{
    return rr_ring_reduce_scatter_ex(c, src, dst, NULL, ch, dt, op, 1.0, 1);
}

rr_status rr_ring_reduce_scatter_ex(rr_comm *c, const void *src, void *dst, void *own_out,
                                    const rr_chunks *ch, rr_dtype dt, rr_op op, double post_f,
                                    int64_t div)
{
    int n = c->size, r = c->rank, left = mod(r - 1, n), right = mod(r + 1, n);
    size_t es = rr_dtype_size(dt);
    seg_plan p = plan_segments(c, ch, es);
    size_t K = p.nseg, U = (size_t)(n - 1) * K;
    if (U == 0)
        return RR_OK;
    int W = c->cfg.window;
    size_t slot_bytes = p.seg_elems * es;
    uint8_t *slots = NULL;
    RR_CHECK(rr_scratch(c, 0, (size_t)W * slot_bytes, (void **)&slots));
    MPI_Request *req = NULL; /* [0, W): receives by slot; [W, W+U): sends by unit */
    RR_CHECK(rr_requests(c, (size_t)W + U, &req));
    MPI_Request *rreq = req, *sreq = req + W;
    for (size_t u = 0; u < U; u++)
        sreq[u] = MPI_REQUEST_NULL;
    const uint8_t *s8 = src;
    uint8_t *d8 = dst;
    int scale = post_f != 1.0 || div != 1;

    for (size_t u = 0; u < U && u < (size_t)W; u++) {
        size_t lo, len = seg_range(ch, &p, mod(r - (int)(u / K) - 2, n), u % K, &lo);
        RR_CHECK(post(c, 0, slots + (u % W) * slot_bytes, len * es, left, RR_TAG_RS, &rreq[u % W]));
    }
    for (size_t k = 0; k < K; k++) {
        size_t lo, len = seg_range(ch, &p, mod(r - 1, n), k, &lo);
        RR_CHECK(post(c, 1, (void *)(s8 + lo * es), len * es, right, RR_TAG_RS, &sreq[k]));
    }
    for (size_t u = 0; u < U; u++) {
        int s = (int)(u / K);
        size_t k = u % K;
        int chunk = mod(r - s - 2, n);
        size_t lo, len = seg_range(ch, &p, chunk, k, &lo);
        uint8_t *slot = slots + (u % W) * slot_bytes;
        RR_CHECK(rr_wait(c, &rreq[u % W]));
        if (len) {
            int last = s == n - 2;
            uint8_t *out = d8 + lo * es;
            if (last && own_out)
                out = (uint8_t *)own_out + (lo - ch->off[chunk]) * es;
            rr_reduce2(out, s8 + lo * es, slot, len, dt, op);
            if (last && scale)
                rr_scale(out, out, len, dt, post_f, div);
            if (!last)
                RR_CHECK(post(c, 1, out, len * es, right, RR_TAG_RS, &sreq[u + K]));
        }
        if (u + W < U) {
            size_t v = u + W, lo2;
            size_t len2 = seg_range(ch, &p, mod(r - (int)(v / K) - 2, n), v % K, &lo2);
            RR_CHECK(post(c, 0, slot, len2 * es, left, RR_TAG_RS, &rreq[u % W]));
        }
    }
    return rr_waitall(c, (int)U, sreq);
}

rr_status rr_ring_allgather(rr_comm *c, void *buf, const rr_chunks *ch, size_t es)
{
    int n = c->size, r = c->rank, left = mod(r - 1, n), right = mod(r + 1, n);
    seg_plan p = plan_segments(c, ch, es);
    size_t K = p.nseg, U = (size_t)(n - 1) * K;
    if (U == 0)
        return RR_OK;
    MPI_Request *req = NULL; /* [0, U): receives; [U, 2U): sends */
    RR_CHECK(rr_requests(c, 2 * U, &req));
    MPI_Request *rreq = req, *sreq = req + U;
    uint8_t *b8 = buf;
    for (size_t u = 0; u < U; u++) {
        size_t lo, len = seg_range(ch, &p, mod(r - (int)(u / K) - 1, n), u % K, &lo);
        RR_CHECK(post(c, 0, b8 + lo * es, len * es, left, RR_TAG_AG, &rreq[u]));
        sreq[u] = MPI_REQUEST_NULL;
    }
    for (size_t k = 0; k < K; k++) {
        size_t lo, len = seg_range(ch, &p, r, k, &lo);
        RR_CHECK(post(c, 1, b8 + lo * es, len * es, right, RR_TAG_AG, &sreq[k]));
    }
    for (size_t u = 0; u < U; u++) {
        int t = (int)(u / K);
        RR_CHECK(rr_wait(c, &rreq[u]));
        if (t + 1 <= n - 2) {
            size_t lo, len = seg_range(ch, &p, mod(r - t - 1, n), u % K, &lo);
            RR_CHECK(post(c, 1, b8 + lo * es, len * es, right, RR_TAG_AG, &sreq[u + K]));
        }
    }
    return rr_waitall(c, (int)U, sreq);
}
