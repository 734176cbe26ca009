/* Agreement before data moves.  A recursive-doubling exchange carries each rank's header
 * (collective, dtype, op, root, count, scale factors); every rank compares what it receives
 * with its own and ORs a mismatch flag that travels with the next message, so after
 * log2(n) steps every rank knows whether all agree.  Small allreduces ride along in the
 * same messages: agreement and data cost one exchange per step. */
#include <stdio.h>
#include <string.h>

#include "core/internal.h"
#include "core/reduce.h"
#include "mpi/mpi.h"

#define HDR sizeof(rr_header)

/* One exchange with `partner`: send our header(+payload), receive theirs, fold the flags.
 * Returns the received payload pointer in *rpay (valid until the next exchange). */
static rr_status exchange(rr_comm *c, const rr_header *mine, uint8_t *flags, const void *payload,
                          size_t pbytes, int partner, uint8_t *sbuf, uint8_t *rbuf, size_t rcap,
                          int send, int recv)
{
    rr_header h = *mine;
    h.flags = *flags;
    memcpy(sbuf, &h, HDR);
    if (pbytes)
        memcpy(sbuf + HDR, payload, pbytes);
    size_t got = 0;
    if (send && recv) {
        RR_CHECK(rr_sendrecv(c, sbuf, HDR + pbytes, partner, rbuf, rcap, partner, RR_TAG_SMALL,
                             &got));
    } else if (send) {
        MPI_Request r;
        RR_MPI(c, MPI_Isend(sbuf, (int)(HDR + pbytes), MPI_BYTE, partner, RR_TAG_SMALL, c->comm,
                            &r));
        return rr_waitall_peer(c, 1, &r, partner);
    } else {
        MPI_Request r;
        RR_MPI(c, MPI_Irecv(rbuf, (int)rcap, MPI_BYTE, partner, RR_TAG_SMALL, c->comm, &r));
        RR_CHECK(rr_waitall_peer(c, 1, &r, partner)); /* its status in c->sts[0] */
        int n = 0;
        RR_MPI(c, MPI_Get_count(&c->sts[0], MPI_BYTE, &n));
        got = (size_t)n;
    }
    rr_header theirs;
    if (got < HDR)
        return RR_FAIL(c, RR_ERR_MPI, "agreement: short message (%zu bytes) from rank %d", got,
                       partner);
    memcpy(&theirs, rbuf, HDR);
    *flags |= theirs.flags;
    if (!rr_header_equal(mine, &theirs) || got != HDR + pbytes)
        *flags |= RR_HDR_MISMATCH;
    return RR_OK;
}

rr_status rr_agree(rr_comm *c, const rr_header *h, void *payload, size_t count)
{
    int n = c->size, r = c->rank;
    if (n == 1)
        return RR_OK;
    rr_header me = *h;
    me.tag = c->thread_tag;
    me.seq = c->thread_seq++;
    h = &me;
    size_t es = payload ? rr_dtype_size(h->dtype) : 0;
    size_t pbytes = count * es;
    size_t rcap = HDR + (c->cfg.small_bytes > pbytes ? c->cfg.small_bytes : pbytes);
    uint8_t *buf = NULL;
    RR_CHECK(rr_scratch(c, 0, 2 * rcap, (void **)&buf));
    uint8_t *sbuf = buf, *rbuf = buf + rcap;
    rr_dtype dt = (rr_dtype)h->dtype;
    rr_op op = (rr_op)h->op;
    uint8_t flags = 0;
    int p = 1;
    while (p * 2 <= n)
        p *= 2;
    int rem = n - p, newrank;

    if (r < 2 * rem) {
        if ((r & 1) == 0) {
            /* Fold into the odd neighbour, then receive the final result from it. */
            RR_CHECK(exchange(c, h, &flags, payload, pbytes, r + 1, sbuf, rbuf, rcap, 1, 0));
            RR_CHECK(exchange(c, h, &flags, NULL, 0, r + 1, sbuf, rbuf, rcap, 0, 1));
            /* The final message's length is checked against ours only by its header. */
            flags &= (uint8_t)~RR_HDR_MISMATCH;
            rr_header fin;
            memcpy(&fin, rbuf, HDR);
            flags |= fin.flags;
            if (!rr_header_equal(h, &fin))
                flags |= RR_HDR_MISMATCH;
            if (!flags && pbytes)
                memcpy(payload, rbuf + HDR, pbytes);
            goto done;
        }
        RR_CHECK(exchange(c, h, &flags, NULL, 0, r - 1, sbuf, rbuf, rcap, 0, 1));
        /* exchange() compared the length against an empty payload; redo it properly. */
        {
            rr_header theirs;
            memcpy(&theirs, rbuf, HDR);
            flags = theirs.flags;
            if (!rr_header_equal(h, &theirs))
                flags |= RR_HDR_MISMATCH;
        }
        if (!flags && pbytes)
            rr_reduce2(payload, rbuf + HDR, payload, count, dt, op);
        newrank = r / 2;
    } else {
        newrank = r - rem;
    }

    for (int mask = 1; mask < p; mask <<= 1) {
        int pn = newrank ^ mask;
        int partner = pn < rem ? pn * 2 + 1 : pn + rem;
        RR_CHECK(exchange(c, h, &flags, payload, pbytes, partner, sbuf, rbuf, rcap, 1, 1));
        if (!flags && pbytes) {
            /* Lower rank's data first: every rank evaluates the same expression tree. */
            if (pn < newrank)
                rr_reduce2(payload, rbuf + HDR, payload, count, dt, op);
            else
                rr_reduce2(payload, payload, rbuf + HDR, count, dt, op);
        }
    }
    if (r < 2 * rem)
        RR_CHECK(exchange(c, h, &flags, flags ? NULL : payload, flags ? 0 : pbytes, r - 1, sbuf,
                          rbuf, rcap, 1, 0));
done:
    if (flags & RR_HDR_MISMATCH)
        return rr_diagnose(c, h);
    return RR_OK;
}

rr_status rr_diagnose(rr_comm *c, const rr_header *h)
{
    int n = c->size;
    rr_header *all = NULL;
    RR_CHECK(rr_scratch(c, 0, (size_t)n * HDR, (void **)&all));
    rr_header mine = *h;
    mine.flags = 0;
    MPI_Request req;
    RR_MPI(c, MPI_Iallgather(&mine, (int)HDR, MPI_BYTE, all, (int)HDR, MPI_BYTE, c->comm, &req));
    RR_CHECK(rr_wait(c, &req));
    return rr_mismatch_report(c, all, h);
}
