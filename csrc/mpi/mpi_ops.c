/* The MPI transport's table (core/transport.h): allgather, reduce-scatter, barrier and the
 * bare agreement here; allreduce and broadcast in mpi_allreduce.c and mpi_broadcast.c. */
#include <string.h>

#include "core/internal.h"
#include "core/reduce.h"
#include "mpi/mpi.h"

/* Agree on dtype and row size, then exchange the counts. */
static rr_status allgather_counts(rr_comm *c, size_t count, rr_dtype dt, size_t row_elems,
                                  size_t *counts)
{
    int n = c->size;
    rr_header h = {RR_KIND_ALLGATHER, (uint8_t)dt, 0, 0, 0, (uint64_t)row_elems, 1.0, 1.0, 0, 0};
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

/* Agree before the data moves: a rank that could not allocate its output between the
 * phases takes part with rr_poison instead, and everyone fails instead of hanging. */
static rr_status allgather(rr_comm *c, void *recvbuf, rr_dtype dt, const size_t *counts,
                           const size_t *off)
{
    int n = c->size;
    size_t total = off[n - 1] + counts[n - 1];
    rr_header h = {RR_KIND_ALLGATHER, (uint8_t)dt, 0, 0, 1, (uint64_t)total, 1.0, 1.0, 0, 0};
    RR_CHECK(rr_agree(c, &h, NULL, 0));
    rr_chunks ch = {off, counts};
    return rr_ring_allgather(c, recvbuf, &ch, rr_dtype_size(dt));
}

/* The first phase of the ring, rank r keeping chunk r of recvcounts. */
static rr_status reducescatter(rr_comm *c, const void *sendbuf, size_t count, void *recvbuf,
                               const size_t *recvcounts, rr_dtype dt, rr_op op, double prescale,
                               double postscale, int64_t avg_div)
{
    int n = c->size;
    size_t es = rr_dtype_size(dt);
    rr_header h = {RR_KIND_REDUCESCATTER, (uint8_t)dt, (uint8_t)op, 0, (int32_t)avg_div,
                   (uint64_t)count, prescale, postscale, 0, 0};
    RR_CHECK(rr_agree(c, &h, NULL, 0));
    size_t *off = NULL;
    RR_CHECK(rr_scratch(c, 1, sizeof(size_t) * (size_t)n + count * es, (void **)&off));
    uint8_t *work = (uint8_t *)(off + n);
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        off[i] = o;
        o += recvcounts[i];
    }
    const void *src = sendbuf;
    if (prescale != 1.0) {
        rr_scale(work, sendbuf, count, dt, prescale, 1);
        src = work;
    }
    rr_chunks ch = {off, recvcounts};
    return rr_ring_reduce_scatter_ex(c, src, work, recvbuf, &ch, dt, op, postscale, avg_div);
}

static rr_status barrier(rr_comm *c)
{
    if (c->size == 1)
        return RR_OK;
    /* The agreement is itself a barrier (every rank hears, transitively, from every other),
     * and a rank calling something else meets a mismatch instead of a deadlock. */
    rr_header h = {RR_KIND_BARRIER, 0, 0, 0, 0, 0, 1.0, 1.0, 0, 0};
    return rr_agree(c, &h, NULL, 0);
}

static rr_status agree(rr_comm *c, const rr_header *h)
{
    return rr_agree(c, h, NULL, 0);
}

const rr_transport_ops rr_mpi_ops = {
    .name = "mpi",
    .allreduce = rr_mpi_allreduce,
    .broadcast = rr_mpi_broadcast,
    .allgather_counts = allgather_counts,
    .allgather = allgather,
    .reducescatter = reducescatter,
    .barrier = barrier,
    .agree = agree,
};
