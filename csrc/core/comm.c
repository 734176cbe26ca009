/* The communicator's own state: scratch memory and request arrays grown on demand, the
 * accessors of the API, and small helpers every layer uses.  Its creation is in
 * coll/comm_create.c (it picks the transport). */
#include <sched.h>
#include <stdlib.h>

#include "core/internal.h"

int rr_comm_rank(const rr_comm *c) { return c->rank; }

void rr_comm_set_thread(rr_comm *c, uint32_t tag, uint32_t seq)
{
    if (c) {
        c->thread_tag = tag;
        c->thread_seq = seq;
    }
}

uint32_t rr_comm_thread_seq(const rr_comm *c) { return c ? c->thread_seq : 0; }
int rr_comm_size(const rr_comm *c) { return c->size; }
int rr_comm_local_rank(const rr_comm *c) { return c->local_rank; }
int rr_comm_local_size(const rr_comm *c) { return c->local_size; }

const char *rr_comm_transport(const rr_comm *c)
{
    return c && c->transport == RR_TRANSPORT_SHM ? "shm" : "mpi";
}

const char *rr_comm_transport_note(const rr_comm *c)
{
    return c ? c->transport_note : "";
}

rr_status rr_scratch(rr_comm *c, int which, size_t bytes, void **out)
{
    if (bytes > c->scratch_cap[which]) {
        size_t cap = bytes < 4096 ? 4096 : bytes;
        void *p = NULL;
        if (posix_memalign(&p, 64, cap) != 0)
            return RR_FAIL(c, RR_ERR_NOMEM, "cannot allocate %zu bytes of scratch", cap);
        free(c->scratch[which]);
        c->scratch[which] = p;
        c->scratch_cap[which] = cap;
    }
    *out = c->scratch[which];
    return RR_OK;
}

rr_status rr_requests(rr_comm *c, size_t n, MPI_Request **out)
{
    if (n > c->reqs_cap) {
        MPI_Request *p = realloc(c->reqs, n * sizeof *p);
        if (p == NULL)
            return RR_FAIL(c, RR_ERR_NOMEM, "cannot allocate %zu requests", n);
        c->reqs = p;
        c->reqs_cap = n;
    }
    *out = c->reqs;
    return RR_OK;
}

void rr_split_even(size_t count, int parts, size_t *off, size_t *len)
{
    size_t base = count / (size_t)parts, extra = count % (size_t)parts, o = 0;
    for (int i = 0; i < parts; i++) {
        len[i] = base + ((size_t)i < extra ? 1 : 0);
        off[i] = o;
        o += len[i];
    }
}

void rr_wait_pause(int *spins, int spin_limit)
{
    if (*spins < spin_limit)
        ++*spins;
    else
        sched_yield();
}
