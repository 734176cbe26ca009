/* Agreement headers: equality and the message that names what the ranks disagree on (kept
 * apart from the transports, which all use them: MPI's rr_agree and shm's arrival). */
#include <stdio.h>
#include <string.h>

#include "core/internal.h"

int rr_header_equal(const rr_header *a, const rr_header *b)
{
    return a->kind == b->kind && a->dtype == b->dtype && a->op == b->op && a->root == b->root &&
           a->count == b->count && memcmp(&a->prescale, &b->prescale, sizeof(double)) == 0 &&
           memcmp(&a->postscale, &b->postscale, sizeof(double)) == 0 && a->tag == b->tag &&
           a->seq == b->seq;
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
