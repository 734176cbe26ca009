/* MPI point-to-point helpers: waiting that yields the core and notices dead or silent peers,
 * sendrecv of large byte counts. */
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/internal.h"
#include "mpi/mpi.h"

#define CLOCK_POLLS 64 /* polls between clock reads */

static MPI_Status *statuses(rr_comm *c, int n)
{
    if ((size_t)n > c->sts_cap) {
        MPI_Status *p = realloc(c->sts, (size_t)n * sizeof *p);
        if (p == NULL)
            return NULL;
        c->sts = p;
        c->sts_cap = (size_t)n;
    }
    return c->sts;
}

rr_status rr_mpi_wait_error(rr_comm *c, int err, int n, const MPI_Status *sts, const char *what)
{
    int dead = rr_live_first_dead(c);
    if (dead >= 0)
        return rr_live_dead_error(c, dead, -1, what);
    if (err != MPI_ERR_IN_STATUS || sts == NULL)
        return rr_fail_mpi(c, err, __FILE__, __LINE__, what);
    /* Name each failed request: its peer (when MPI says) and its own error. */
    char msg[RR_ERRMSG_LEN - 64];
    size_t len = 0;
    int shown = 0;
    for (int i = 0; i < n && len + 1 < sizeof msg; i++) {
        int e = sts[i].MPI_ERROR;
        if (e == MPI_SUCCESS || e == MPI_ERR_PENDING)
            continue;
        char es[MPI_MAX_ERROR_STRING + 1];
        int el = 0;
        if (MPI_Error_string(e, es, &el) != MPI_SUCCESS)
            el = snprintf(es, sizeof es, "MPI error %d", e);
        es[el] = '\0';
        int src = sts[i].MPI_SOURCE;
        int w;
        if (src >= 0 && src < c->size)
            w = snprintf(msg + len, sizeof msg - len, "%srequest %d (rank %d): %s",
                         shown ? "; " : "", i, src, es);
        else
            w = snprintf(msg + len, sizeof msg - len, "%srequest %d: %s", shown ? "; " : "", i,
                         es);
        if (w < 0)
            break;
        len += (size_t)w < sizeof msg - len ? (size_t)w : sizeof msg - len - 1;
        shown++;
    }
    if (!shown)
        return rr_fail_mpi(c, err, __FILE__, __LINE__, what);
    return RR_FAIL(c, RR_ERR_MPI, "%s failed on rank %d: %s", what, c->rank, msg);
}

rr_status rr_waitall_peer(rr_comm *c, int n, MPI_Request *reqs, int peer)
{
    if (c->live.broken)
        return rr_live_fail_again(c);
    MPI_Status *sts = statuses(c, n);
    if (sts == NULL)
        return RR_FAIL(c, RR_ERR_NOMEM, "cannot allocate %d MPI statuses", n);
    int spins = 0, done = 0;
    unsigned polls = 0;
    double t0 = 0, next_live = 0;
    for (;;) {
        int err = MPI_Testall(n, reqs, &done, sts);
        if (err != MPI_SUCCESS)
            return rr_mpi_wait_error(c, err, n, sts, "MPI_Testall");
        if (done)
            return RR_OK;
        rr_wait_pause(&spins, c->cfg.spin_count);
        if (++polls % CLOCK_POLLS)
            continue;
        double t = rr_live_now();
        if (t0 == 0) {
            t0 = t;
            next_live = t + RR_LIVENESS_S;
            continue;
        }
        if (t >= next_live) {
            next_live = t + RR_LIVENESS_S;
            RR_CHECK(rr_live_poll(c, peer, NULL));
        }
        if (t - t0 > c->cfg.timeout_s)
            return rr_live_timeout_error(c, peer, NULL);
    }
}

rr_status rr_waitall(rr_comm *c, int n, MPI_Request *reqs)
{
    return rr_waitall_peer(c, n, reqs, -1);
}

rr_status rr_wait(rr_comm *c, MPI_Request *req)
{
    return rr_waitall_peer(c, 1, req, -1);
}

rr_status rr_sendrecv(rr_comm *c, const void *sbuf, size_t sbytes, int dst, void *rbuf,
                      size_t rbytes, int src, int tag, size_t *got)
{
    if (sbytes > INT_MAX || rbytes > INT_MAX)
        return RR_FAIL(c, RR_ERR_INVALID, "internal: sendrecv of %zu/%zu bytes", sbytes, rbytes);
    MPI_Request r[2];
    RR_MPI(c, MPI_Irecv(rbuf, (int)rbytes, MPI_BYTE, src, tag, c->comm, &r[0]));
    RR_MPI(c, MPI_Isend(sbuf, (int)sbytes, MPI_BYTE, dst, tag, c->comm, &r[1]));
    RR_CHECK(rr_waitall_peer(c, 1, &r[0], src));
    if (got) {
        int n = 0;
        RR_MPI(c, MPI_Get_count(&c->sts[0], MPI_BYTE, &n));
        *got = (size_t)n;
    }
    return rr_waitall_peer(c, 1, &r[1], dst);
}
