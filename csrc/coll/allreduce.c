/* Allreduce: argument checks, then the hierarchical plan or the communicator's transport
 * (core/transport.h). */
#include <stdlib.h>
#include <string.h>

#include "coll/coll.h"
#include "core/internal.h"
#include "core/reduce.h"

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
    if (c->size == 1) {
        rr_copy_in(recvbuf, sendbuf, count, dt, prescale);
        if (postscale != 1.0 || avg_div != 1)
            rr_scale(recvbuf, recvbuf, count, dt, postscale, avg_div);
        return RR_OK;
    }
    /* the plan is only ever in force over MPI (its communicator spans hosts) */
    if (c->hier && count * rr_dtype_size(dt) > c->cfg.small_bytes)
        return rr_hier_allreduce(c, sendbuf, recvbuf, count, dt, op, prescale, postscale,
                                 avg_div);
    return c->ops->allreduce(c, sendbuf, recvbuf, count, dt, op, prescale, postscale, avg_div);
}
