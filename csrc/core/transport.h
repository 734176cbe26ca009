/* The transport interface: the table of operations through which the collective front
 * (coll/) moves data.  A communicator's table is chosen once, when it is created
 * (coll/comm_create.c): rr_mpi_ops (mpi/mpi.h: recursive doubling, binomial tree, segmented ring
 * and chain over MPI point-to-point) or rr_shm_ops (shm/shm.h: one shared-memory segment
 * per host).  Transports never call back into the front.
 *
 * Every operation starts with the call's agreement (a mismatch fails on every rank with the
 * same message) and is called after the front's argument checks, with c->size > 1, except
 * barrier, which is called at every size. */
#ifndef RR_TRANSPORT_H
#define RR_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "ringred.h"

struct rr_comm;
struct rr_header;

typedef struct rr_transport_ops {
    const char *name; /* "mpi", "shm" */
    /* sendbuf and recvbuf are the same or disjoint */
    rr_status (*allreduce)(struct rr_comm *c, const void *sendbuf, void *recvbuf, size_t count,
                           rr_dtype dt, rr_op op, double prescale, double postscale,
                           int64_t avg_div);
    rr_status (*broadcast)(struct rr_comm *c, void *buf, size_t count, rr_dtype dt, int root);
    /* allgather phase 1: agree on dtype and row size, learn every rank's count */
    rr_status (*allgather_counts)(struct rr_comm *c, size_t count, rr_dtype dt,
                                  size_t row_elems, size_t *counts);
    /* allgather phase 2: our block is in place in recvbuf (at off[rank]) */
    rr_status (*allgather)(struct rr_comm *c, void *recvbuf, rr_dtype dt, const size_t *counts,
                           const size_t *off);
    rr_status (*reducescatter)(struct rr_comm *c, const void *sendbuf, size_t count,
                               void *recvbuf, const size_t *recvcounts, rr_dtype dt, rr_op op,
                               double prescale, double postscale, int64_t avg_div);
    rr_status (*barrier)(struct rr_comm *c);
    /* the agreement on h alone, for callers that move their data some other way */
    rr_status (*agree)(struct rr_comm *c, const struct rr_header *h);
} rr_transport_ops;

#endif
