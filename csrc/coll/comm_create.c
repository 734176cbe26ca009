/* Communicator lifetime: duplicate the user's MPI communicator, learn the node-local
 * layout, pick the transport (and with it the table of collectives, core/transport.h), set
 * up the hierarchical plan; and the communicator's end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "coll/coll.h"
#include "core/internal.h"
#include "mpi/mpi.h"
#include "shm/shm.h"

enum { WANT_INVALID = -1, WANT_AUTO = 0, WANT_SHM = 1, WANT_MPI = 2 };

static int parse_transport(const char *t)
{
    if (t == NULL || *t == '\0' || strcasecmp(t, "auto") == 0)
        return WANT_AUTO;
    if (strcasecmp(t, "shm") == 0)
        return WANT_SHM;
    if (strcasecmp(t, "mpi") == 0)
        return WANT_MPI;
    return WANT_INVALID;
}

/* Every rank learns what every rank asked for, so that all decide alike. */
static rr_status choose_transport(rr_comm *c, const char *requested)
{
    const char *t = requested && *requested ? requested : getenv("RINGRED_TRANSPORT");
    int want = parse_transport(t);
    int mine[2] = {want, -want}, agg[2];
    RR_MPI(c, MPI_Allreduce(mine, agg, 2, MPI_INT, MPI_MAX, c->comm));
    int hi = agg[0], lo = -agg[1];
    if (want == WANT_INVALID)
        return RR_FAIL(c, RR_ERR_INVALID, "transport must be auto, shm or mpi, not '%s' "
                       "(RINGRED_TRANSPORT)", t);
    if (lo == WANT_INVALID)
        return RR_FAIL(c, RR_ERR_INVALID, "another rank asked for an unknown transport "
                       "(RINGRED_TRANSPORT must be auto, shm or mpi)");
    if (lo != hi)
        return RR_FAIL(c, RR_ERR_INVALID, "ranks ask for different transports (RINGRED_TRANSPORT "
                       "must be the same on every rank)");
    int one_host = c->local_size == c->size;
    if (want == WANT_SHM && !one_host)
        return RR_FAIL(c, RR_ERR_UNSUPPORTED, "transport shm needs every rank on one host, but "
                       "this communicator spans hosts (%d of its %d ranks share this one); use "
                       "RINGRED_TRANSPORT=mpi or auto", c->local_size, c->size);
    c->transport = RR_TRANSPORT_MPI;
    c->ops = &rr_mpi_ops;
    if (want == WANT_MPI || !one_host)
        return RR_OK;
    rr_status st = rr_shm_open(c);
    if (st != RR_OK) {
        if (want == WANT_SHM)
            return st;
        /* auto: fall back to MPI (every rank got the same failure); say why */
        snprintf(c->transport_note, sizeof c->transport_note, "%.500s", c->errmsg);
        char *where = strrchr(c->transport_note, '[');
        if (where && where > c->transport_note && where[-1] == ' ')
            where[-1] = '\0'; /* the note is for users: no source location */
        c->errmsg[0] = '\0';
        return RR_OK;
    }
    c->transport = RR_TRANSPORT_SHM;
    c->ops = &rr_shm_ops;
    return RR_OK;
}

static rr_status comm_setup(rr_comm *c, MPI_Comm user, int hosts_how)
{
    RR_MPI(c, MPI_Comm_dup(user, &c->comm));
    RR_MPI(c, MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN));
    RR_MPI(c, MPI_Comm_rank(c->comm, &c->rank));
    RR_MPI(c, MPI_Comm_size(c->comm, &c->size));
    /* liveness watches the processes of the machine we really share (whatever RINGRED_HOST
     * says): the lowest rank on it names it */
    MPI_Comm local;
    RR_MPI(c, MPI_Comm_split_type(c->comm, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &local));
    int host = c->rank;
    int e = MPI_Allreduce(&c->rank, &host, 1, MPI_INT, MPI_MIN, local);
    MPI_Comm_free(&local);
    if (e != MPI_SUCCESS)
        return rr_fail_mpi(c, e, __FILE__, __LINE__, "MPI_Allreduce(local)");
    RR_CHECK(rr_live_setup(c, host));
    /* the hosts of the algorithms: RINGRED_HOST may pose one machine as several */
    return rr_hier_hosts(c, hosts_how);
}

/* Settings that shape the protocol (which algorithm a size takes, how messages are cut):
 * every rank must use the same values, so rank 0's apply everywhere.  Purely local ones
 * (window, spin counts, timeouts) stay each rank's own. */
static rr_status agree_settings(rr_comm *c)
{
    rr_settings *s = &c->cfg;
    uint64_t v[11] = {s->small_bytes, s->segment_bytes, s->device_segment_bytes,
                      s->shm_small_bytes, s->shm_slot_bytes, s->shm_stream_bytes,
                      (uint64_t)s->device_transport, s->ipc_min_bytes, s->ipc_chunk_bytes,
                      (uint64_t)s->ipc_slots, s->ipc_oneshot_bytes};
    RR_MPI(c, MPI_Bcast(v, 11, MPI_UINT64_T, 0, c->comm));
    s->ipc_oneshot_bytes = (size_t)v[10];
    s->device_transport = (int)v[6];
    s->ipc_min_bytes = (size_t)v[7];
    s->ipc_chunk_bytes = (size_t)v[8];
    s->ipc_slots = (int)v[9];
    s->small_bytes = (size_t)v[0];
    s->segment_bytes = (size_t)v[1];
    s->device_segment_bytes = (size_t)v[2];
    s->shm_small_bytes = (size_t)v[3];
    s->shm_slot_bytes = (size_t)v[4];
    s->shm_stream_bytes = (size_t)v[5];
    return RR_OK;
}

rr_status rr_comm_create(int fcomm, rr_comm **out)
{
    return rr_comm_create_ex(fcomm, NULL, out);
}

static rr_status comm_build(MPI_Comm user, const char *transport, const rr_comm *parent,
                            int hosts_how, rr_comm **out)
{
    rr_comm *c = calloc(1, sizeof *c);
    if (c == NULL)
        return RR_ERR_NOMEM;
    c->comm = MPI_COMM_NULL;
    c->host_comm = MPI_COMM_NULL;
    c->ops = &rr_mpi_ops; /* until the transport is chosen */
    if (parent)
        c->cfg = parent->cfg;
    else
        rr_settings_load(&c->cfg);
    rr_status st = comm_setup(c, user, hosts_how);
    if (st == RR_OK)
        st = agree_settings(c);
    if (st == RR_OK)
        st = choose_transport(c, transport);
    if (st == RR_OK && parent == NULL)
        st = rr_hier_setup(c);
    if (c->host_comm != MPI_COMM_NULL)
        MPI_Comm_free(&c->host_comm);
    /* on failure the half-built comm goes back too: the caller reads the message on it */
    *out = c;
    return st;
}

rr_status rr_comm_create_child(MPI_Comm comm, const char *transport, const rr_comm *parent,
                               int one_host, rr_comm **out)
{
    *out = NULL;
    return comm_build(comm, transport, parent, one_host ? RR_HOSTS_ONE : RR_HOSTS_SPLIT, out);
}

rr_status rr_comm_create_ex(int fcomm, const char *transport, rr_comm **out)
{
    if (out == NULL)
        return RR_ERR_INVALID;
    *out = NULL;
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (!inited || finalized)
        return RR_ERR_STATE;
    MPI_Comm user = MPI_Comm_f2c((MPI_Fint)fcomm);
    if (user == MPI_COMM_NULL)
        return RR_ERR_INVALID;
    return comm_build(user, transport, NULL, RR_HOSTS_LABELS, out);
}

rr_status rr_comm_destroy(rr_comm *c)
{
    if (c == NULL)
        return RR_OK;
    rr_hier_free(c);
    rr_shm_close(c);
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (c->device_free)
        c->device_free(c); /* the device layer's state (device/device.c) */
    if (c->comm != MPI_COMM_NULL && !finalized)
        MPI_Comm_free(&c->comm);
    if (c->host_comm != MPI_COMM_NULL && !finalized)
        MPI_Comm_free(&c->host_comm);
    free(c->scratch[0]);
    free(c->scratch[1]);
    free(c->reqs);
    free(c->sts);
    free(c->outer);
    rr_live_free(&c->live);
    free(c);
    return RR_OK;
}
