/* Hosts and the two-level (hierarchical) plan.
 *
 * Ranks are grouped by host: the shared-memory split of MPI, or RINGRED_HOST (a label per
 * rank) so that one machine can pose as several hosts of any sizes.  A communicator that
 * spans hosts, some with more than one rank (RINGRED_HIERARCHICAL=auto; 1 forces it, 0 turns
 * it off), owns two children: `hier_local`, the ranks of its host over shared memory, and
 * `hier_cross`, the ranks with the same local index on every host over MPI.  Only local
 * indices below min_local (the fewest ranks on any host) have a cross child, so hosts of
 * unequal sizes (3+1, 2+1+1) share one plan: the slices of the reduce-scatter inside a host
 * go to local ranks 0..min_local-1 only (with min_local 1, that is a reduce to the leader and
 * the allgather a broadcast from it).
 *
 * Allreduce: agreement on the whole communicator (a mismatch fails on every rank, as on the
 * flat path), reduce-scatter inside the host, allreduce of this rank's slice across hosts,
 * allgather inside the host.  Every element is produced once, by the cross allreduce of its
 * slice (whose ring copies the final value to every member), and copied from there: every
 * rank gets the same bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "coll/coll.h"
#include "core/internal.h"
#include "core/reduce.h"

#define HOST_LABEL_MAX 255

rr_status rr_hier_hosts(rr_comm *c, int how)
{
    if (how == RR_HOSTS_ONE) {
        RR_MPI(c, MPI_Comm_dup(c->comm, &c->host_comm));
        c->local_rank = c->rank;
        c->local_size = c->min_local = c->size;
        c->hosts = 1;
        return RR_OK;
    }
    const char *label = how == RR_HOSTS_LABELS ? getenv("RINGRED_HOST") : NULL;
    int have = label != NULL && *label != '\0';
    size_t len = have ? strlen(label) : 0;
    int mine[4] = {have, -have, len > HOST_LABEL_MAX, (int)(len > HOST_LABEL_MAX ? 0 : len)};
    int agg[4];
    RR_MPI(c, MPI_Allreduce(mine, agg, 4, MPI_INT, MPI_MAX, c->comm));
    if (agg[2])
        return RR_FAIL(c, RR_ERR_INVALID, "RINGRED_HOST is longer than %d characters on %s",
                       HOST_LABEL_MAX, mine[2] ? "this rank" : "another rank");
    if (agg[0] != -agg[1])
        return RR_FAIL(c, RR_ERR_INVALID, "RINGRED_HOST is set on some ranks but not on others "
                       "(%s here): set it on every rank or on none", have ? "set" : "unset");
    if (!agg[0]) {
        RR_MPI(c, MPI_Comm_split_type(c->comm, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL,
                                      &c->host_comm));
    } else {
        /* every rank's label, padded: the host is named by its lowest rank */
        int w = agg[3] + 1;
        char *all = calloc((size_t)c->size + 1, (size_t)w);
        if (all == NULL)
            return RR_FAIL(c, RR_ERR_NOMEM, "no memory for %d host labels", c->size);
        char *own = all + (size_t)c->size * (size_t)w;
        memcpy(own, label, len);
        int e = MPI_Allgather(own, w, MPI_CHAR, all, w, MPI_CHAR, c->comm);
        int color = c->rank;
        for (int p = 0; e == MPI_SUCCESS && p < c->size; p++)
            if (memcmp(all + (size_t)p * (size_t)w, own, (size_t)w) == 0) {
                color = p;
                break;
            }
        free(all);
        if (e != MPI_SUCCESS)
            return rr_fail_mpi(c, e, __FILE__, __LINE__, "MPI_Allgather(RINGRED_HOST)");
        RR_MPI(c, MPI_Comm_split(c->comm, color, c->rank, &c->host_comm));
    }
    RR_MPI(c, MPI_Comm_rank(c->host_comm, &c->local_rank));
    RR_MPI(c, MPI_Comm_size(c->host_comm, &c->local_size));
    int leader = c->local_rank == 0, neg = -c->local_size;
    RR_MPI(c, MPI_Allreduce(&leader, &c->hosts, 1, MPI_INT, MPI_SUM, c->comm));
    RR_MPI(c, MPI_Allreduce(&neg, &c->min_local, 1, MPI_INT, MPI_MAX, c->comm));
    c->min_local = -c->min_local;
    return RR_OK;
}

enum { HIER_INVALID = -1, HIER_AUTO = 0, HIER_OFF = 1, HIER_ON = 2 };

static int parse_hier(const char *v)
{
    if (v == NULL || *v == '\0' || strcasecmp(v, "auto") == 0)
        return HIER_AUTO;
    if (strcmp(v, "0") == 0 || strcasecmp(v, "off") == 0 || strcasecmp(v, "no") == 0)
        return HIER_OFF;
    if (strcmp(v, "1") == 0 || strcasecmp(v, "on") == 0 || strcasecmp(v, "yes") == 0)
        return HIER_ON;
    return HIER_INVALID;
}

/* The child's ranks as c numbers them (its messages name those). */
static rr_status map_outer(rr_comm *c, rr_comm *child)
{
    child->live_parent = c;
    child->outer = malloc(sizeof(int) * (size_t)child->size);
    if (child->outer == NULL)
        return RR_FAIL(c, RR_ERR_NOMEM, "no memory for %d ranks", child->size);
    RR_MPI(c, MPI_Allgather(&c->rank, 1, MPI_INT, child->outer, 1, MPI_INT, child->comm));
    return RR_OK;
}

void rr_hier_free(rr_comm *c)
{
    rr_comm_destroy(c->hier_local);
    rr_comm_destroy(c->hier_cross);
    c->hier_local = c->hier_cross = NULL;
    free(c->hier_table);
    c->hier_table = NULL;
    c->hier = 0;
}

rr_status rr_hier_setup(rr_comm *c)
{
    const char *v = getenv("RINGRED_HIERARCHICAL");
    int want = parse_hier(v);
    int mine[3] = {want, -want, c->local_size}, agg[3];
    RR_MPI(c, MPI_Allreduce(mine, agg, 3, MPI_INT, MPI_MAX, c->comm));
    if (want == HIER_INVALID)
        return RR_FAIL(c, RR_ERR_INVALID, "RINGRED_HIERARCHICAL must be auto, 0 or 1, not '%s'", v);
    if (-agg[1] == HIER_INVALID)
        return RR_FAIL(c, RR_ERR_INVALID, "another rank's RINGRED_HIERARCHICAL is not auto, 0 "
                       "or 1");
    if (agg[0] != -agg[1])
        return RR_FAIL(c, RR_ERR_INVALID, "ranks ask for different RINGRED_HIERARCHICAL (it must "
                       "be the same on every rank)");
    int max_local = agg[2];
    if (c->hosts < 2 || want == HIER_OFF || (want == HIER_AUTO && max_local < 2))
        return RR_OK;
    /* Both children are attempted whatever the other gave, so that no rank waits in a
     * creation its peers skipped; the outcome is agreed below. */
    MPI_Comm cross = MPI_COMM_NULL;
    int color = c->local_rank < c->min_local ? c->local_rank : MPI_UNDEFINED;
    RR_MPI(c, MPI_Comm_split(c->comm, color, c->rank, &cross));
    rr_status st = RR_OK, st2 = RR_OK;
    const char *why = "";
    if (c->local_size > 1) {
        st = rr_comm_create_child(c->host_comm, "auto", c, 1, &c->hier_local);
        if (st == RR_OK)
            st = map_outer(c, c->hier_local);
        if (st != RR_OK)
            why = c->hier_local ? c->hier_local->errmsg : "no memory";
    }
    if (cross != MPI_COMM_NULL) {
        st2 = rr_comm_create_child(cross, "mpi", c, 0, &c->hier_cross);
        if (st2 == RR_OK)
            st2 = map_outer(c, c->hier_cross);
        if (st2 != RR_OK && st == RR_OK) {
            st = st2;
            why = c->hier_cross ? c->hier_cross->errmsg : "no memory";
        }
        MPI_Comm_free(&cross);
    }
    int bad[2] = {st != RR_OK, c->hier_local != NULL &&
                  c->hier_local->transport != RR_TRANSPORT_SHM}, any[2];
    int e = MPI_Allreduce(bad, any, 2, MPI_INT, MPI_MAX, c->comm);
    if (e != MPI_SUCCESS || any[0]) {
        rr_status code = st != RR_OK ? st : RR_ERR_MPI;
        if (st != RR_OK)
            RR_FAIL(c, code, "hierarchical setup (RINGRED_HIERARCHICAL): %.1500s", why);
        else if (e != MPI_SUCCESS)
            rr_fail_mpi(c, e, __FILE__, __LINE__, "MPI_Allreduce(hierarchical setup)");
        else
            RR_FAIL(c, code, "hierarchical setup (RINGRED_HIERARCHICAL) failed on another rank");
        rr_hier_free(c);
        return code;
    }
    if (any[1]) {
        /* some host could not get shared memory: the flat MPI plan, and say why */
        if (c->hier_local && c->hier_local->transport_note[0])
            snprintf(c->transport_note, sizeof c->transport_note, "hierarchical plan off: %.450s",
                     c->hier_local->transport_note);
        else
            snprintf(c->transport_note, sizeof c->transport_note, "hierarchical plan off: "
                     "another host could not use shared memory");
        rr_hier_free(c);
        return RR_OK;
    }
    /* who is where: host (its lowest rank), local rank, rank in the cross child */
    c->hier_table = malloc(3 * sizeof(int) * (size_t)c->size);
    int who[3] = {0, c->local_rank, -1};
    if (c->hier_cross)
        who[2] = c->hier_cross->rank;
    e = c->hier_table ? MPI_Allreduce(&c->rank, &who[0], 1, MPI_INT, MPI_MIN, c->host_comm)
                      : MPI_SUCCESS;
    if (e == MPI_SUCCESS && c->hier_table)
        e = MPI_Allgather(who, 3, MPI_INT, c->hier_table, 3, MPI_INT, c->comm);
    int fine = c->hier_table != NULL && e == MPI_SUCCESS, all_fine = 0;
    RR_MPI(c, MPI_Allreduce(&fine, &all_fine, 1, MPI_INT, MPI_MIN, c->comm));
    if (!all_fine) {
        rr_hier_free(c);
        return RR_FAIL(c, RR_ERR_NOMEM, "hierarchical setup: no memory for the rank table, or "
                       "an MPI call failed, on %s", fine ? "another rank" : "this rank");
    }
    /* pieces small enough that a piece is still in cache when its allgather reads it */
    uint64_t piece = rr_set_size(RR_S_HIER_PIECE_BYTES);
    RR_MPI(c, MPI_Bcast(&piece, 1, MPI_UINT64_T, 0, c->comm));
    c->hier_piece = (size_t)piece;
    c->hier = 1;
    return RR_OK;
}

/* A child failed: its message (ranks named as we number them), said where, becomes ours. */
static rr_status child_failed(rr_comm *c, const rr_comm *child, const char *step, rr_status st)
{
    snprintf(c->errmsg, sizeof c->errmsg, "%.1900s [hierarchical allreduce: %s]", child->errmsg,
             step);
    return st;
}

/* One piece: reduce-scatter inside the host, the slice across hosts, allgather inside. */
static rr_status piece(rr_comm *c, const uint8_t *x, uint8_t *y, size_t count, rr_dtype dt,
                       rr_op op, double prescale, double postscale, int64_t avg_div, size_t *off,
                       size_t *len)
{
    size_t es = rr_dtype_size(dt);
    int n = c->local_size, me = c->local_rank, m = c->min_local;
    rr_split_even(count, m, off, len);
    for (int i = m; i < n; i++) {
        off[i] = count;
        len[i] = 0;
    }
    uint8_t *mine = y + off[me] * es;
    rr_status st;
    if (c->hier_local) {
        st = c->hier_local->ops->reducescatter(c->hier_local, x, count, mine, len, dt, op,
                                               prescale, 1.0, 1);
        if (st != RR_OK)
            return child_failed(c, c->hier_local, "reduce-scatter inside the host", st);
    } else if (prescale != 1.0) {
        rr_scale(y, x, count, dt, prescale, 1);
    } else if (y != x && count) {
        memcpy(y, x, count * es);
    }
    if (c->hier_cross && len[me]) {
        st = rr_allreduce(c->hier_cross, mine, mine, len[me], (int)dt, (int)op, 1.0, postscale,
                          avg_div);
        if (st != RR_OK)
            return child_failed(c, c->hier_cross, "allreduce across hosts", st);
    }
    if (c->hier_local) {
        st = c->hier_local->ops->allgather(c->hier_local, y, dt, len, off);
        if (st != RR_OK)
            return child_failed(c, c->hier_local, "allgather inside the host", st);
    }
    return RR_OK;
}

rr_status rr_hier_allreduce(rr_comm *c, const void *sendbuf, void *recvbuf, size_t count,
                            rr_dtype dt, rr_op op, double prescale, double postscale,
                            int64_t avg_div)
{
    rr_header h = {RR_KIND_ALLREDUCE, (uint8_t)dt, (uint8_t)op, 0, (int32_t)avg_div,
                   (uint64_t)count, prescale, postscale, 0, 0};
    RR_CHECK(c->ops->agree(c, &h));
    c->hier_calls++;
    size_t es = rr_dtype_size(dt);
    int n = c->local_size;
    size_t stack[128], *off = stack;
    if (n > 64) {
        void *p = NULL;
        RR_CHECK(rr_scratch(c, 1, 2 * sizeof(size_t) * (size_t)n, &p));
        off = p;
    }
    /* every rank cuts the same pieces: count and the setting are agreed */
    size_t step = c->hier_piece / es;
    if (step == 0 || step >= count)
        step = count ? count : 1;
    const uint8_t *x = sendbuf;
    uint8_t *y = recvbuf;
    size_t lo = 0;
    do {
        size_t k = count - lo < step ? count - lo : step;
        RR_CHECK(piece(c, x + lo * es, y + lo * es, k, dt, op, prescale, postscale, avg_div,
                       off, off + n));
        lo += k;
    } while (lo < count);
    return RR_OK;
}

/* Inside the root's host a shared-memory broadcast from the root; across hosts, slice j
 * (of min_local slices) broadcast on cross child j from the root's host; then inside every
 * other host an allgather of the slices. */
rr_status rr_hier_broadcast(rr_comm *c, void *buf, size_t count, rr_dtype dt, int root)
{
    c->hier_calls++;
    size_t es = rr_dtype_size(dt);
    int n = c->local_size, me = c->local_rank, m = c->min_local;
    const int *t = c->hier_table;
    int root_host = t[3 * root], mine = t[3 * c->rank] == root_host;
    size_t stack[128], *off = stack;
    if (n > 64) {
        void *p = NULL;
        RR_CHECK(rr_scratch(c, 1, 2 * sizeof(size_t) * (size_t)n, &p));
        off = p;
    }
    size_t *len = off + n;
    rr_split_even(count, m, off, len);
    for (int i = m; i < n; i++) {
        off[i] = count;
        len[i] = 0;
    }
    rr_status st;
    if (mine && c->hier_local) {
        st = c->hier_local->ops->broadcast(c->hier_local, buf, count, dt, t[3 * root + 1]);
        if (st != RR_OK)
            return child_failed(c, c->hier_local, "broadcast inside the root's host", st);
    }
    if (c->hier_cross && len[me]) {
        int from = -1; /* the rank with our local index on the root's host */
        for (int p = 0; p < c->size && from < 0; p++)
            if (t[3 * p] == root_host && t[3 * p + 1] == me)
                from = t[3 * p + 2];
        st = rr_broadcast(c->hier_cross, (uint8_t *)buf + off[me] * es, len[me], (int)dt, from);
        if (st != RR_OK)
            return child_failed(c, c->hier_cross, "broadcast across hosts", st);
    }
    if (!mine && c->hier_local) {
        st = c->hier_local->ops->allgather(c->hier_local, buf, dt, len, off);
        if (st != RR_OK)
            return child_failed(c, c->hier_local, "allgather inside the host", st);
    }
    return RR_OK;
}

int rr_comm_hierarchical(const rr_comm *c) { return c ? c->hier : 0; }
int rr_comm_hosts(const rr_comm *c) { return c ? c->hosts : 0; }
uint64_t rr_comm_hier_calls(const rr_comm *c) { return c ? c->hier_calls : 0; }
