/* The collective front (coll/): argument checks, the choice between the hierarchical plan
 * and the communicator's transport table, and the communicator's creation.  Internal
 * header. */
#ifndef RR_COLL_H
#define RR_COLL_H

#include "core/internal.h"

/* ---- validation shared by the collectives (collectives.c) ---- */
rr_status rr_check_call(rr_comm *c, int dtype, int op, double pre, double post, int64_t div);
/* A local argument check failed with status st (message already in c->errmsg): take part in
 * the call's agreement as a rank that refused (rr_poison), so that the peers fail with
 * "rejected locally on rank r" instead of waiting, and return st with the message kept. */
rr_status rr_reject(rr_comm *c, int kind, rr_status st);
#define RR_LOCAL(c, kind, call) do { rr_status rr_l_ = (call); \
    if (rr_l_ != RR_OK) return rr_reject((c), (kind), rr_l_); } while (0)
/* Agreement on h alone over the transport in force (shm: the arrival; MPI: rr_agree); for
 * callers that move their data some other way. */
rr_status rr_agree_call(rr_comm *c, const rr_header *h);

/* ---- comm_create.c ---- */
/* A communicator inside another (hier.c): over `comm` (duplicated), with the parent's
 * settings, `transport` as for rr_comm_create_ex, never hierarchical itself; one_host: its
 * ranks share a host (the parent's grouping), else hosts come from the shared-memory split.
 * On failure *out may hold the half-built one. */
rr_status rr_comm_create_child(MPI_Comm comm, const char *transport, const rr_comm *parent,
                               int one_host, rr_comm **out);

/* ---- hier.c: hosts and the two-level plan ---- */
/* Collective on c->comm (set up): group the ranks by host (RR_HOSTS_LABELS: RINGRED_HOST
 * labels when set on every rank, else the shared-memory split; RR_HOSTS_SPLIT: the split;
 * RR_HOSTS_ONE: all on one host); sets local_rank, local_size, hosts, min_local and
 * host_comm. */
enum { RR_HOSTS_LABELS = 0, RR_HOSTS_SPLIT = 1, RR_HOSTS_ONE = 2 };
rr_status rr_hier_hosts(rr_comm *c, int how);
/* Collective, after the transport is chosen: decide RINGRED_HIERARCHICAL and build the
 * children; frees host_comm. */
rr_status rr_hier_setup(rr_comm *c);
void rr_hier_free(rr_comm *c);
/* Broadcast through the children, after the agreement on c (bytes > 0). */
rr_status rr_hier_broadcast(rr_comm *c, void *buf, size_t count, rr_dtype dt, int root);
/* Allreduce through the children (arguments checked, buffers equal or disjoint). */
rr_status rr_hier_allreduce(rr_comm *c, const void *sendbuf, void *recvbuf, size_t count,
                            rr_dtype dt, rr_op op, double prescale, double postscale,
                            int64_t avg_div);

#endif
