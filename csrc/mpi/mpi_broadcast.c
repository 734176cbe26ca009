/* Broadcast over MPI: binomial tree for small messages, a segmented chain for large ones. */
#include "core/internal.h"
#include "mpi/mpi.h"

static rr_status bcast_binomial(rr_comm *c, void *buf, size_t bytes, int root)
{
    int n = c->size, vr = (c->rank - root + n) % n;
    int mask = 1;
    while (mask < n) {
        if (vr & mask) {
            int src = (vr - mask + root) % n;
            MPI_Request r;
            RR_MPI(c, MPI_Irecv(buf, (int)bytes, MPI_BYTE, src, RR_TAG_BCAST, c->comm, &r));
            RR_CHECK(rr_wait(c, &r));
            break;
        }
        mask <<= 1;
    }
    mask >>= 1;
    MPI_Request reqs[32];
    int nr = 0;
    while (mask > 0) {
        if (vr + mask < n) {
            int dst = (vr + mask + root) % n;
            RR_MPI(c, MPI_Isend(buf, (int)bytes, MPI_BYTE, dst, RR_TAG_BCAST, c->comm, &reqs[nr++]));
        }
        mask >>= 1;
    }
    return rr_waitall(c, nr, reqs);
}

static rr_status bcast_chain(rr_comm *c, void *buf, size_t bytes, int root)
{
    int n = c->size, vr = (c->rank - root + n) % n;
    int prev = (c->rank - 1 + n) % n, next = (c->rank + 1) % n;
    size_t seg = c->cfg.segment_bytes, nseg = (bytes + seg - 1) / seg;
    MPI_Request *req = NULL; /* [0, nseg): receives; [nseg, 2 nseg): sends */
    RR_CHECK(rr_requests(c, 2 * nseg, &req));
    uint8_t *b = buf;
    for (size_t k = 0; k < 2 * nseg; k++)
        req[k] = MPI_REQUEST_NULL;
    for (size_t k = 0; k < nseg; k++) {
        size_t lo = k * seg, len = bytes - lo < seg ? bytes - lo : seg;
        if (vr == 0) {
            RR_MPI(c, MPI_Isend(b + lo, (int)len, MPI_BYTE, next, RR_TAG_BCAST, c->comm,
                                &req[nseg + k]));
            continue;
        }
        RR_MPI(c, MPI_Irecv(b + lo, (int)len, MPI_BYTE, prev, RR_TAG_BCAST, c->comm, &req[k]));
    }
    if (vr != 0) {
        for (size_t k = 0; k < nseg; k++) {
            RR_CHECK(rr_wait(c, &req[k]));
            if (vr != n - 1) {
                size_t lo = k * seg, len = bytes - lo < seg ? bytes - lo : seg;
                RR_MPI(c, MPI_Isend(b + lo, (int)len, MPI_BYTE, next, RR_TAG_BCAST, c->comm,
                                    &req[nseg + k]));
            }
        }
    }
    return rr_waitall(c, (int)nseg, req + nseg);
}

rr_status rr_mpi_broadcast(rr_comm *c, void *buf, size_t count, rr_dtype dt, int root)
{
    size_t bytes = count * rr_dtype_size(dt);
    rr_header h = {RR_KIND_BROADCAST, (uint8_t)dt, 0, 0, root, (uint64_t)count, 1.0, 1.0, 0, 0};
    RR_CHECK(rr_agree(c, &h, NULL, 0));
    if (bytes == 0)
        return RR_OK;
    if (bytes <= c->cfg.small_bytes)
        return bcast_binomial(c, buf, bytes, root);
    return bcast_chain(c, buf, bytes, root);
}
