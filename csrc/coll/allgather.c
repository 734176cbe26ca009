/* Allgather with per-rank counts: agree on dtype and row size, exchange counts, then the
 * segmented ring allgather moves the blocks in place. */
#include <string.h>

#include "core/internal.h"
#include "shm/shm.h"

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
        if (n > 1 && c->shm)
            return rr_shm_allgather_counts(c, count, (rr_dtype)dtype, row_elems, counts);
        rr_header h = {RR_KIND_ALLGATHER, (uint8_t)dtype, 0, 0, 0, (uint64_t)row_elems, 1.0, 1.0, 0, 0};
        if (n > 1)
            RR_CHECK(rr_agree(c, &h, NULL, 0));
        uint64_t mine = count, *all = NULL;
        RR_CHECK(rr_scratch(c, 0, sizeof(uint64_t) * (size_t)n, (void **)&all));
        MPI_Request r;
        RR_MPI(c, MPI_Iallgather(&mine, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, c->comm, &r));
        RR_CHECK(rr_wait(c, &r));
        for (int i = 0; i < n; i++)
            counts[i] = (size_t)all[i];
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
    if (c->shm) /* its arrival is the agreement */
        return rr_shm_allgather(c, recvbuf, (rr_dtype)dtype, counts, off);
    /* Agree before the data moves: a rank that could not allocate its output between the
     * phases takes part with rr_poison instead, and everyone fails instead of hanging. */
    rr_header h = {RR_KIND_ALLGATHER, (uint8_t)dtype, 0, 0, 1, (uint64_t)o, 1.0, 1.0, 0, 0};
    RR_CHECK(rr_agree(c, &h, NULL, 0));
    rr_chunks ch = {off, counts};
    return rr_ring_allgather(c, recvbuf, &ch, es);
}
