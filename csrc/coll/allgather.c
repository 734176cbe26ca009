/* Allgather with per-rank counts in two calls: agree on dtype and row size and exchange the
 * counts, then (with the caller's output) move the blocks in place; both through the
 * communicator's transport (core/transport.h). */
#include <string.h>

#include "coll/coll.h"
#include "core/internal.h"

rr_status rr_allgather(rr_comm *c, const void *sendbuf, size_t count, void *recvbuf, int dtype,
                       size_t row_elems, size_t *counts)
{
    RR_LOCAL(c, RR_KIND_ALLGATHER, rr_check_call(c, dtype, RR_SUM, 1.0, 1.0, 1));
    int n = c->size;
    if (counts == NULL)
        return rr_reject(c, RR_KIND_ALLGATHER, RR_FAIL(c, RR_ERR_INVALID, "allgather: NULL counts"));
    size_t es = rr_dtype_size(dtype);
    if (recvbuf == NULL) {
        /* Phase 1: agreement and counts. */
        if (row_elems && count % row_elems)
            return rr_reject(c, RR_KIND_ALLGATHER, RR_FAIL(c, RR_ERR_INVALID,
                             "allgather: count %zu is not a multiple of the row size %zu",
                             count, row_elems));
        if (n > 1)
            return c->ops->allgather_counts(c, count, (rr_dtype)dtype, row_elems, counts);
        counts[0] = count;
        return RR_OK;
    }
    /* Phase 2: data, with the counts of phase 1. */
    if (counts[c->rank] != count)
        return rr_reject(c, RR_KIND_ALLGATHER, RR_FAIL(c, RR_ERR_INVALID,
                         "allgather: counts[%d] = %zu but count = %zu", c->rank,
                         counts[c->rank], count));
    size_t *off = NULL;
    RR_CHECK(rr_scratch(c, 1, sizeof(size_t) * (size_t)n, (void **)&off));
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        off[i] = o;
        o += counts[i];
    }
    if (count)
        memmove((uint8_t *)recvbuf + off[c->rank] * es, sendbuf, count * es);
    if (n == 1)
        return RR_OK;
    return c->ops->allgather(c, recvbuf, (rr_dtype)dtype, counts, off);
}
