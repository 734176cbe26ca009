/* The MPI transport (mpi/): point-to-point waits, the agreement by recursive doubling,
 * the segmented ring, and its table of collectives.  Internal header. */
#ifndef RR_MPI_H
#define RR_MPI_H

#include "core/internal.h"

/* ---- p2p.c: MPI point-to-point helpers (byte counts may exceed INT_MAX) ---- */
/* Wait for requests: spin, then sched_yield; every RR_LIVENESS_S check that the peers on this
 * host are alive and the timeout (RINGRED_TIMEOUT_SECONDS): RR_ERR_PEER / RR_ERR_TIMEOUT
 * (and the communicator marked broken).  An MPI failure names the failed request's peer. */
rr_status rr_waitall(rr_comm *c, int n, MPI_Request *reqs);
rr_status rr_wait(rr_comm *c, MPI_Request *req);
/* The same, knowing which rank the requests wait for (messages name it). */
rr_status rr_waitall_peer(rr_comm *c, int n, MPI_Request *reqs, int peer);
/* Explain a failed MPI_Test/Testall (err) of reqs with their statuses sts (NULL: none): a
 * dead peer if there is one, else each failed request's peer and MPI error string. */
rr_status rr_mpi_wait_error(rr_comm *c, int err, int n, const MPI_Status *sts, const char *what);
rr_status rr_sendrecv(rr_comm *c, const void *sbuf, size_t sbytes, int dst, void *rbuf,
                      size_t rbytes, int src, int tag, size_t *got);

/* ---- agree.c ---- */
/* Small-message recursive doubling that carries the header: checks that every rank's
 * header equals ours and, when payload != NULL, allreduces payload (count elements)
 * in place at the same time.  On disagreement returns RR_ERR_MISMATCH on every rank
 * with a message naming the values and the ranks. */
rr_status rr_agree(rr_comm *c, const rr_header *h, void *payload, size_t count);
/* Gather every rank's header and describe the disagreement (slow path). */
rr_status rr_diagnose(rr_comm *c, const rr_header *h);

/* ---- ring.c: segmented ring phases over a chunked buffer ---- */
/* Chunk layout: chunk i of the buffer starts at off[i] elements and holds len[i] elements. */
typedef struct rr_chunks {
    const size_t *off, *len; /* size entries each */
} rr_chunks;
/* Reduce-scatter: after it, rank r holds the reduction of chunk r in dst (at off[r]).
 * src: this rank's input (whole buffer); dst: whole-buffer work/output area (may equal src);
 * partial sums of other chunks are written into dst as they pass through. */
rr_status rr_ring_reduce_scatter(rr_comm *c, const void *src, void *dst, const rr_chunks *ch,
                                 rr_dtype dt, rr_op op);
/* Same, with the final chunk r written to own_out (NULL: dst + off[r]) and scaled by
 * post_f (floating) or divided by div (integers) as it is produced. */
rr_status rr_ring_reduce_scatter_ex(rr_comm *c, const void *src, void *dst, void *own_out,
                                    const rr_chunks *ch, rr_dtype dt, rr_op op, double post_f,
                                    int64_t div);
/* Allgather: rank r's chunk r of buf is sent around so that every rank has every chunk. */
rr_status rr_ring_allgather(rr_comm *c, void *buf, const rr_chunks *ch, size_t elem_size);

/* ---- mpi_ops.c: the transport's table (mpi_allreduce.c, mpi_broadcast.c) ---- */
extern const rr_transport_ops rr_mpi_ops;
rr_status rr_mpi_allreduce(rr_comm *c, const void *sendbuf, void *recvbuf, size_t count,
                           rr_dtype dt, rr_op op, double prescale, double postscale,
                           int64_t avg_div);
rr_status rr_mpi_broadcast(rr_comm *c, void *buf, size_t count, rr_dtype dt, int root);

#endif
