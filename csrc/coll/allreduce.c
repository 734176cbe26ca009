/* Allreduce: a latency path (recursive doubling that also carries the agreement header)
 * for small messages, the segmented ring for large ones. */
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "core/reduce.h"
#include "shm/shm.h"

static void copy_in(void *dst, const void *src, size_t count, rr_dtype dt, double pre)
{
    if (pre != 1.0)
        rr_scale(dst, src, count, dt, pre, 1);
    else if (dst != src && count)
        memcpy(dst, src, count * rr_dtype_size(dt));
}

static rr_status allreduce(rr_comm *c, const void *sendbuf, void *recvbuf, size_t count,
                           rr_dtype dt, rr_op op, double prescale, double postscale,
                           int64_t avg_div);

rr_status rr_allreduce(rr_comm *c, const void *sendbuf, void *recvbuf, size_t count, int dtype,
                       int op, double prescale, double postscale, int64_t avg_div)
{
    RR_LOCAL(c, RR_KIND_ALLREDUCE, rr_check_call(c, dtype, op, prescale, postscale, avg_div));
    rr_dtype dt = (rr_dtype)dtype;
    size_t es = rr_dtype_size(dt);
    if (count && (sendbuf == NULL || recvbuf == NULL))
        return rr_reject(c, RR_KIND_ALLREDUCE, RR_FAIL(c, RR_ERR_INVALID, "allreduce: NULL buffer"));
    if (count > SIZE_MAX / es)
        return rr_reject(c, RR_KIND_ALLREDUCE, RR_FAIL(c, RR_ERR_INVALID,
                         "allreduce: element count %zu overflows", count));
    size_t bytes = count * es;
    const uint8_t *x = sendbuf, *y = recvbuf;
    if (bytes && x != y && x < y + bytes && y < x + bytes) {
        /* An output that partly overlaps the input: reduce from a copy of the input, so
         * that no element is read after it was written (NumPy's rule for overlapping
         * arguments).  Out of memory here: the peers fail too instead of waiting. */
        void *copy = malloc(bytes);
        if (copy == NULL) {
            rr_poison(c, RR_KIND_ALLREDUCE);
            return RR_FAIL(c, RR_ERR_NOMEM, "allreduce: no memory for a copy of the input "
                           "(%zu bytes; the output partly overlaps it)", bytes);
        }
        memcpy(copy, sendbuf, bytes);
        rr_status st = allreduce(c, copy, recvbuf, count, dt, (rr_op)op, prescale, postscale,
                                 avg_div);
        free(copy);
        return st;
    }
    return allreduce(c, sendbuf, recvbuf, count, dt, (rr_op)op, prescale, postscale, avg_div);
}

/* rr_allreduce after the argument checks; sendbuf and recvbuf are the same or disjoint. */
static rr_status allreduce(rr_comm *c, const void *sendbuf, void *recvbuf, size_t count,
                           rr_dtype dt, rr_op op, double prescale, double postscale,
                           int64_t avg_div)
{
    size_t es = rr_dtype_size(dt), bytes = count * es;
    int dtype = (int)dt;
    rr_header h = {RR_KIND_ALLREDUCE, (uint8_t)dtype, (uint8_t)op, 0, (int32_t)avg_div,
                   (uint64_t)count, prescale, postscale, 0, 0};
    int post = postscale != 1.0 || avg_div != 1;

    if (c->size == 1) {
        copy_in(recvbuf, sendbuf, count, dt, prescale);
        if (post)
            rr_scale(recvbuf, recvbuf, count, dt, postscale, avg_div);
        return RR_OK;
    }
    if (c->shm)
        return rr_shm_allreduce(c, sendbuf, recvbuf, count, dt, (rr_op)op, prescale, postscale,
                                avg_div);
    if (c->hier && bytes > c->cfg.small_bytes)
        return rr_hier_allreduce(c, sendbuf, recvbuf, count, dt, op, prescale, postscale,
                                 avg_div);
    if (bytes <= c->cfg.small_bytes) {
        /* Work in scratch so a mismatch found half-way leaves the user's buffers intact. */
        void *acc = NULL;
        RR_CHECK(rr_scratch(c, 1, bytes ? bytes : 1, &acc));
        copy_in(acc, sendbuf, count, dt, prescale);
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
        copy_in(recvbuf, sendbuf, count, dt, prescale);
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
