/* Agreement before data moves.  A recursive-doubling exchange carries each rank's header
 * (collective, dtype, op, root, count, scale factors); every rank compares what it receives
 * with its own and ORs a mismatch flag that travels with the next message, so after
 * log2(n) steps every rank knows whether all agree.  Small allreduces ride along in the
 * same messages: agreement and data cost one exchange per step. */
#include <stdio.h>
#include <string.h>

#include "core/internal.h"
#include "core/reduce.h"

#define HDR sizeof(rr_header)

int rr_header_equal(const rr_header *a, const rr_header *b)
{
    return a->kind == b->kind && a->dtype == b->dtype && a->op == b->op && a->root == b->root &&
           a->count == b->count && memcmp(&a->prescale, &b->prescale, sizeof(double)) == 0 &&
           memcmp(&a->postscale, &b->postscale, sizeof(double)) == 0 && a->tag == b->tag &&
           a->seq == b->seq;
}

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

/* ---------------------------------------------------------------- diagnosis */

static const char *kind_name(int k)
{
    switch (k) {
    case RR_KIND_ALLREDUCE: return "allreduce";
    case RR_KIND_BROADCAST: return "broadcast";
    case RR_KIND_ALLGATHER: return "allgather";
    case RR_KIND_REDUCESCATTER: return "reducescatter";
    case RR_KIND_BARRIER: return "barrier";
    case RR_KIND_DEV_ALLREDUCE: return "allreduce(device)";
    case RR_KIND_DEV_ALLREDUCE_DIRECT: return "allreduce(device,cuda-aware-mpi)";
    case RR_KIND_DEV_BROADCAST: return "broadcast(device)";
    case RR_KIND_DEV_REDUCESCATTER: return "reducescatter(device)";
    default: return "unknown";
    }
}

static const char *dtype_name(int d)
{
    static const char *names[] = {"uint8", "int8", "int16", "int32", "int64",
                                  "float16", "bfloat16", "float32", "float64"};
    if (d == RR_DTYPE_INVALID)
        return "(rejected locally)";
    return d >= 0 && d < RR_NUM_DTYPES ? names[d] : "unknown";
}

static const char *op_name(int o)
{
    static const char *names[] = {"sum", "min", "max", "product"};
    return o >= 0 && o < RR_NUM_OPS ? names[o] : "unknown";
}

typedef void (*fmt_fn)(const rr_header *h, char *out, size_t cap);
static void f_kind(const rr_header *h, char *o, size_t n) { snprintf(o, n, "%s", kind_name(h->kind)); }
static void f_dtype(const rr_header *h, char *o, size_t n) { snprintf(o, n, "%s", dtype_name(h->dtype)); }
static void f_op(const rr_header *h, char *o, size_t n) { snprintf(o, n, "%s", op_name(h->op)); }
static void f_root(const rr_header *h, char *o, size_t n) { snprintf(o, n, "%d", (int)h->root); }
static void f_count(const rr_header *h, char *o, size_t n)
{
    snprintf(o, n, "%llu", (unsigned long long)h->count);
}
static void f_pre(const rr_header *h, char *o, size_t n) { snprintf(o, n, "%.17g", h->prescale); }
static void f_post(const rr_header *h, char *o, size_t n) { snprintf(o, n, "%.17g", h->postscale); }
static void f_tag(const rr_header *h, char *o, size_t n) { snprintf(o, n, "%08x", (unsigned)h->tag); }
static void f_seq(const rr_header *h, char *o, size_t n) { snprintf(o, n, "%u", (unsigned)h->seq); }

/* Append "field: v1 on ranks a, b; v2 on rank c" for a field that differs. */
static size_t describe(const rr_header *all, int n, const char *field, fmt_fn f, char *out,
                       size_t cap, size_t pos)
{
    char v0[64], vi[64];
    f(&all[0], v0, sizeof v0);
    int differs = 0;
    for (int i = 1; i < n && !differs; i++) {
        f(&all[i], vi, sizeof vi);
        differs = strcmp(v0, vi) != 0;
    }
    if (!differs || pos >= cap)
        return pos;
    pos += (size_t)snprintf(out + pos, cap - pos, "%smismatched %s:", pos ? "; " : "", field);
    for (int i = 0; i < n && pos < cap; i++) {
        f(&all[i], vi, sizeof vi);
        int first = 1;
        for (int j = 0; j < i; j++) {
            char vj[64];
            f(&all[j], vj, sizeof vj);
            if (strcmp(vi, vj) == 0) {
                first = 0;
                break;
            }
        }
        if (!first)
            continue;
        int cnt = 0;
        for (int j = i; j < n; j++) {
            char vj[64];
            f(&all[j], vj, sizeof vj);
            cnt += strcmp(vi, vj) == 0;
        }
        pos += (size_t)snprintf(out + pos, cap - pos, " %s on rank%s", vi, cnt > 1 ? "s" : "");
        for (int j = i, k = 0; j < n && pos < cap; j++) {
            char vj[64];
            f(&all[j], vj, sizeof vj);
            if (strcmp(vi, vj) == 0) {
                if (k < 8)
                    pos += (size_t)snprintf(out + pos, cap - pos, "%s%d", k ? "," : " ", j);
                else if (k == 8)
                    pos += (size_t)snprintf(out + pos, cap - pos, ",...");
                k++;
            }
        }
        if (pos < cap)
            pos += (size_t)snprintf(out + pos, cap - pos, ";");
    }
    if (pos < cap && out[pos - 1] == ';')
        out[--pos] = '\0';
    return pos;
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

rr_status rr_mismatch_report(rr_comm *c, const rr_header *all, const rr_header *h)
{
    int n = c->size;
    char msg[RR_ERRMSG_LEN - 64];
    size_t pos = 0, cap = sizeof msg;
    msg[0] = '\0';
    int poisoned = 0;
    for (int i = 0; i < n; i++)
        poisoned += all[i].dtype == RR_DTYPE_INVALID;
    if (poisoned) {
        /* "<call> rejected locally on rank(s) r, ...": those ranks raised their own reason. */
        int k = 0;
        while (k < n && all[k].dtype == RR_DTYPE_INVALID)
            k++;
        pos += (size_t)snprintf(msg, cap, "%s rejected locally on rank%s",
                                kind_name(k < n ? all[k].kind : h->kind), poisoned > 1 ? "s" : "");
        for (int i = 0, m = 0; i < n && pos < cap; i++)
            if (all[i].dtype == RR_DTYPE_INVALID)
                pos += (size_t)snprintf(msg + pos, cap - pos, "%s%d", m++ ? ", " : " ", i);
        if (pos < cap)
            snprintf(msg + pos, cap - pos, " (its arguments failed a check there; that rank "
                     "raised the reason)");
        return RR_FAIL(c, RR_ERR_MISMATCH, "%s", msg);
    }
    pos = describe(all, n, "calling thread (hash of its name)", f_tag, msg, cap, pos);
    if (!pos)
        pos = describe(all, n, "call number of the calling thread", f_seq, msg, cap, pos);
    if (pos) {
        /* Different calls met: the ranks ran their threads' calls in different orders (or
         * one rank made a call the others did not).  Nothing else about them is meaningful. */
        if (pos < cap)
            snprintf(msg + pos, cap - pos, "; the ranks paired different calls: synchronous "
                     "calls from several threads pair up by thread name and call number, and "
                     "these ranks made them in different orders (serialize them, or use named "
                     "*_async calls)");
        return RR_FAIL(c, RR_ERR_MISMATCH, "%s", msg);
    }
    pos = describe(all, n, "collective", f_kind, msg, cap, pos);
    pos = describe(all, n, "data type", f_dtype, msg, cap, pos);
    pos = describe(all, n, "element count", f_count, msg, cap, pos);
    if (h->kind == RR_KIND_ALLREDUCE || h->kind == RR_KIND_REDUCESCATTER ||
        h->kind == RR_KIND_DEV_ALLREDUCE || h->kind == RR_KIND_DEV_ALLREDUCE_DIRECT ||
        h->kind == RR_KIND_DEV_REDUCESCATTER) {
        pos = describe(all, n, "reduce op", f_op, msg, cap, pos);
        pos = describe(all, n, "prescale factor", f_pre, msg, cap, pos);
        pos = describe(all, n, "postscale factor", f_post, msg, cap, pos);
    }
    if (h->kind == RR_KIND_BROADCAST || h->kind == RR_KIND_DEV_BROADCAST)
        pos = describe(all, n, "root rank", f_root, msg, cap, pos);
    if (h->kind == RR_KIND_DEV_REDUCESCATTER)
        pos = describe(all, n, "split of the rows (hash)", f_root, msg, cap, pos);
    if (pos == 0)
        snprintf(msg, cap, "ranks disagree on the call (settings differ between ranks?)");
    return RR_FAIL(c, RR_ERR_MISMATCH, "%s", msg);
}
