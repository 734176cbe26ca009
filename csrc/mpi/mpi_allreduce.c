/* Allreduce over MPI: a latency path (recursive doubling that also carries the agreement
 * header) for small messages, the segmented ring for large ones. */
#include <string.h>

#include "core/internal.h"
#include "core/reduce.h"
#include "mpi/mpi.h"

rr_status rr_mpi_allreduce(rr_comm *c, const void *sendbuf, void *recvbuf, size_t count,
                           rr_dtype dt, rr_op op, double prescale, double postscale,
                           int64_t avg_div)
{
    size_t es = rr_dtype_size(dt), bytes = count * es;
    rr_header h = {RR_KIND_ALLREDUCE, (uint8_t)dt, (uint8_t)op, 0, (int32_t)avg_div,
                   (uint64_t)count, prescale, postscale, 0, 0};
    int post = postscale != 1.0 || avg_div != 1;

    if (bytes <= c->cfg.small_bytes) {
        /* Work in scratch so a mismatch found half-way leaves the user's buffers intact. */
        void *acc = NULL;
        RR_CHECK(rr_scratch(c, 1, bytes ? bytes : 1, &acc));
        rr_copy_in(acc, sendbuf, count, dt, prescale);
        RR_CHECK(rr_agree(c, &h, acc, count));
        if (post)
            rr_scale(recvbuf, acc, count, dt, postscale, avg_div);
        else if (bytes)
            memcpy(recvbuf, acc, bytes);
        return RR_OK;
    }
    RR_CHECK(rr_agree(c, &h, NULL, 0));
    const void *src = sendbuf;
    if (prescale != 1.0) {
        rr_copy_in(recvbuf, sendbuf, count, dt, prescale);
        src = recvbuf;
    }
    size_t stack_off[64], stack_len[64];
    size_t *off = stack_off, *len = stack_len;
    void *heap = NULL;
    if (c->size > 64) {
        RR_CHECK(rr_scratch(c, 1, 2 * sizeof(size_t) * (size_t)c->size, &heap));
        off = heap;
        len = off + c->size;
    }
    rr_split_even(count, c->size, off, len);
    rr_chunks ch = {off, len};
    RR_CHECK(rr_ring_reduce_scatter_ex(c, src, recvbuf, NULL, &ch, dt, (rr_op)op, postscale,
                                       avg_div));
    return rr_ring_allgather(c, recvbuf, &ch, es);
}
