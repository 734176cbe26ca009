/* MPI point-to-point helpers: waiting that yields the core, sendrecv of large byte counts. */
#include <limits.h>
#include <sched.h>

#include "internal.h"

void rr_wait_pause(int *spins, int spin_limit)
{
    if (*spins < spin_limit)
        ++*spins;
    else
        sched_yield();
}

rr_status rr_waitall(rr_comm *c, int n, MPI_Request *reqs)
{
    int spins = 0, done = 0;
    for (;;) {
        RR_MPI(c, MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE));
        if (done)
            return RR_OK;
        rr_wait_pause(&spins, c->cfg.spin_count);
    }
}

rr_status rr_wait(rr_comm *c, MPI_Request *req)
{
    return rr_waitall(c, 1, req);
}

rr_status rr_sendrecv(rr_comm *c, const void *sbuf, size_t sbytes, int dst, void *rbuf,
                      size_t rbytes, int src, int tag, size_t *got)
{
    if (sbytes > INT_MAX || rbytes > INT_MAX)
        return RR_FAIL(c, RR_ERR_INVALID, "internal: sendrecv of %zu/%zu bytes", sbytes, rbytes);
    MPI_Request r[2];
    MPI_Status st;
    RR_MPI(c, MPI_Irecv(rbuf, (int)rbytes, MPI_BYTE, src, tag, c->comm, &r[0]));
    RR_MPI(c, MPI_Isend(sbuf, (int)sbytes, MPI_BYTE, dst, tag, c->comm, &r[1]));
    int spins = 0, done = 0;
    for (;;) {
        RR_MPI(c, MPI_Test(&r[0], &done, &st));
        if (done)
            break;
        rr_wait_pause(&spins, c->cfg.spin_count);
    }
    if (got) {
        int n = 0;
        RR_MPI(c, MPI_Get_count(&st, MPI_BYTE, &n));
        *got = (size_t)n;
    }
    return rr_wait(c, &r[1]);
}
