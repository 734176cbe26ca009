/* Rank 0's side of the slow path: a name -> per-rank requests table kept across cycles.
 * A tensor is ready when every rank that has not joined has submitted it; its requests are
 * then validated against each other (kind, dtype, shape, op, scale factors, root, group)
 * and become an EXEC response, or an ERROR response that names the tensor, the values and
 * the ranks.  Members of a grouped allreduce are held back until the whole group is ready.
 * The response message: evictions, responses in the order they became ready, fatal error. */
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

/* ---------------------------------------------------------------- table */

static void neg_unlink(rr_coord *c, rr_neg *g)
{
    if (g->prev)
        g->prev->next = g->next;
    else
        c->head = g->next;
    if (g->next)
        g->next->prev = g->prev;
    else
        c->tail = g->prev;
    rr_smap_del(&c->table, g->name);
}

static void neg_free(rr_neg *g, int size)
{
    for (int r = 0; r < size; r++)
        rr_desc_free(&g->req[r]);
    free(g->req);
    free(g->name);
    free(g);
}

static rr_neg *neg_get(rr_coord *c, int size, const char *name, double t)
{
    rr_neg *g = rr_smap_get(&c->table, name);
    if (g)
        return g;
    g = calloc(1, sizeof *g);
    if (g == NULL)
        return NULL;
    g->req = calloc((size_t)size, sizeof *g->req);
    g->name = strdup(name);
    if (g->req == NULL || g->name == NULL || rr_smap_put(&c->table, g->name, g) != 0) {
        free(g->req);
        free(g->name);
        free(g);
        return NULL;
    }
    g->t_first = t;
    g->prev = c->tail;
    if (c->tail)
        c->tail->next = g;
    else
        c->head = g;
    c->tail = g;
    return g;
}

void rr_coord_free(rr_coord *c, int size)
{
    while (c->head) {
        rr_neg *g = c->head;
        neg_unlink(c, g);
        neg_free(g, size);
    }
    rr_smap_free(&c->table);
    for (size_t i = 0; i < c->groups.nb; i++)
        for (rr_smap_node *x = rr_smap_chain(&c->groups, i); x; x = rr_smap_next(x)) {
            rr_group_acc *a = x->val;
            rr_resp_clear(&a->ready);
            free(a->ready.v);
            free(a->name);
            free(a);
        }
    rr_smap_free(&c->groups);
}

/* ---------------------------------------------------------------- validation */

typedef void (*fmt_fn)(const rr_desc *d, char *out, size_t cap);

static void f_kind(const rr_desc *d, char *o, size_t n) { snprintf(o, n, "%s", rr_kind_name(d->kind)); }
static void f_where(const rr_desc *d, char *o, size_t n)
{
    snprintf(o, n, "%s", d->device ? "a GPU tensor" : "a host tensor");
}
static void f_dtype(const rr_desc *d, char *o, size_t n) { snprintf(o, n, "%s", rr_dtype_label(d->dtype)); }
static void f_op(const rr_desc *d, char *o, size_t n) { snprintf(o, n, "%s", rr_op_label(d->op)); }
static void f_root(const rr_desc *d, char *o, size_t n) { snprintf(o, n, "%d", (int)d->root); }
static void f_pre(const rr_desc *d, char *o, size_t n) { snprintf(o, n, "%.17g", d->pre); }
static void f_post(const rr_desc *d, char *o, size_t n) { snprintf(o, n, "%.17g", d->post); }
static void f_div(const rr_desc *d, char *o, size_t n) { snprintf(o, n, "%lld", (long long)d->div); }
static void f_group(const rr_desc *d, char *o, size_t n)
{
    if (d->group)
        snprintf(o, n, "group '%s' of %d", d->group, (int)d->group_size);
    else
        snprintf(o, n, "no group");
}
static void f_shape(const rr_desc *d, char *o, size_t n)
{
    size_t p = (size_t)snprintf(o, n, "[");
    for (int i = 0; i < d->ndim && p < n; i++)
        p += (size_t)snprintf(o + p, n - p, "%s%lld", i ? ", " : "", (long long)d->shape[i]);
    if (p < n)
        snprintf(o + p, n - p, "]");
}
/* allgather: every dimension but the first must agree */
static void f_tail(const rr_desc *d, char *o, size_t n)
{
    rr_desc t = *d;
    t.shape[0] = 0;
    f_shape(&t, o, n);
}

/* "rank 0 sent [2, 3], ranks 1, 2 sent [3, 3]"; returns 1 if the ranks disagree. */
static int describe(const rr_neg *g, int size, fmt_fn f, char *out, size_t cap)
{
    char vi[160], vj[160], v0[160] = "";
    int first = -1, differs = 0;
    for (int r = 0; r < size; r++) {
        if (!g->req[r].name)
            continue;
        f(&g->req[r], vi, sizeof vi);
        if (first < 0) {
            first = r;
            snprintf(v0, sizeof v0, "%s", vi);
        } else if (strcmp(vi, v0) != 0) {
            differs = 1;
        }
    }
    if (!differs)
        return 0;
    size_t p = 0;
    out[0] = '\0';
    for (int r = 0; r < size && p < cap; r++) {
        if (!g->req[r].name)
            continue;
        f(&g->req[r], vi, sizeof vi);
        int seen = 0, cnt = 0;
        for (int j = 0; j < r && !seen; j++)
            if (g->req[j].name) {
                f(&g->req[j], vj, sizeof vj);
                seen = strcmp(vi, vj) == 0;
            }
        if (seen)
            continue;
        for (int j = r; j < size; j++)
            if (g->req[j].name) {
                f(&g->req[j], vj, sizeof vj);
                cnt += strcmp(vi, vj) == 0;
            }
        p += (size_t)snprintf(out + p, cap - p, "%srank%s", p ? ", " : "", cnt > 1 ? "s" : "");
        for (int j = r, m = 0; j < size && p < cap; j++)
            if (g->req[j].name) {
                f(&g->req[j], vj, sizeof vj);
                if (strcmp(vi, vj) != 0)
                    continue;
                if (m < 8)
                    p += (size_t)snprintf(out + p, cap - p, "%s%d", m ? ", " : " ", j);
                else if (m == 8)
                    p += (size_t)snprintf(out + p, cap - p, ", ...");
                m++;
            }
        if (p < cap)
            p += (size_t)snprintf(out + p, cap - p, " sent %s", vi);
    }
    return 1;
}

/* The response for a ready tensor. */
static int build_response(rr_engine *e, rr_neg *g, const uint8_t *joined, rr_resp *r)
{
    int n = e->size;
    memset(r, 0, sizeof *r);
    int first = 0;
    while (first < n && !g->req[first].name)
        first++;
    const rr_desc *b = &g->req[first];
    char what[1200], msg[1500];
    for (int k = first; k < n; k++)
        if (g->req[k].name && g->req[k].reason) {
            /* A rank refused its own arguments: the name fails everywhere with its reason. */
            if (rr_desc_copy(&r->d, &g->req[k]) != 0)
                return -1;
            snprintf(msg, sizeof msg, "tensor '%s': %s rejected locally on rank %d: %s",
                     b->name, rr_kind_name(g->req[k].kind), k, g->req[k].reason);
            r->type = RESP_ERROR;
            r->err_code = RR_ERR_MISMATCH;
            r->err_msg = strdup(msg);
            return r->err_msg ? 0 : -1;
        }
    what[0] = '\0';
    char head[96];
    if (describe(g, n, f_kind, what, sizeof what)) {
        snprintf(head, sizeof head, "Mismatched collective operations");
    } else if (describe(g, n, f_where, what, sizeof what)) {
        snprintf(head, sizeof head, "Mismatched tensor locations (host and GPU)");
    } else if (describe(g, n, f_dtype, what, sizeof what)) {
        snprintf(head, sizeof head, "Mismatched data types");
    } else if (b->kind == RR_REQ_ALLGATHER && describe(g, n, f_tail, what, sizeof what)) {
        describe(g, n, f_shape, what, sizeof what); /* show the whole shapes */
        snprintf(head, sizeof head, "Mismatched allgather tensor shapes (all dimensions but the "
                 "first must match)");
    } else if (b->kind != RR_REQ_ALLGATHER && describe(g, n, f_shape, what, sizeof what)) {
        snprintf(head, sizeof head, "Mismatched %s tensor shapes", rr_kind_name(b->kind));
    } else if ((b->kind == RR_REQ_ALLREDUCE || b->kind == RR_REQ_REDUCESCATTER) &&
               describe(g, n, f_op, what, sizeof what)) {
        snprintf(head, sizeof head, "Mismatched reduce ops");
    } else if (describe(g, n, f_pre, what, sizeof what)) {
        snprintf(head, sizeof head, "Mismatched prescale factors");
    } else if (describe(g, n, f_post, what, sizeof what)) {
        snprintf(head, sizeof head, "Mismatched postscale factors (Average and Sum mixed?)");
    } else if (describe(g, n, f_div, what, sizeof what)) {
        snprintf(head, sizeof head, "Mismatched average divisors (Average and Sum mixed?)");
    } else if (b->kind == RR_REQ_BROADCAST && describe(g, n, f_root, what, sizeof what)) {
        snprintf(head, sizeof head, "Mismatched broadcast root ranks");
    } else if (describe(g, n, f_group, what, sizeof what)) {
        snprintf(head, sizeof head, "Mismatched grouped allreduce membership");
    } else {
        head[0] = '\0';
    }
    if (rr_desc_copy(&r->d, b) != 0)
        return -1;
    if (head[0]) {
        snprintf(msg, sizeof msg, "tensor '%s': %s: %s", b->name, head, what);
        r->type = RESP_ERROR;
        r->err_code = RR_ERR_MISMATCH;
        r->err_msg = strdup(msg);
        return r->err_msg ? 0 : -1;
    }
    int njoined = 0;
    for (int k = 0; k < n; k++)
        njoined += joined[k];
    if (njoined && (b->kind == RR_REQ_BROADCAST || b->kind == RR_REQ_ALLGATHER)) {
        snprintf(msg, sizeof msg, "tensor '%s': %s is not supported while some ranks have "
                 "joined", b->name, rr_kind_name(b->kind));
        r->type = RESP_ERROR;
        r->err_code = RR_ERR_UNSUPPORTED;
        r->err_msg = strdup(msg);
        return r->err_msg ? 0 : -1;
    }
    r->type = RESP_EXEC;
    if (b->kind == RR_REQ_ALLGATHER) {
        r->counts = malloc(2 * (size_t)n * sizeof *r->counts);
        if (r->counts == NULL)
            return -1;
        for (int k = 0; k < n; k++) {
            r->counts[k] = g->req[k].count;
            r->counts[n + k] = (uint64_t)g->req[k].shape[0];
        }
    }
    return 0;
}

/* Add a response, holding back members of a group until the whole group is ready. */
static int emit(rr_coord *c, rr_resp_list *out, rr_resp *r)
{
    if (r->d.group == NULL || r->type == RESP_ERROR)
        return rr_resp_push(out, r); /* a failed member fails its group: fail_groups() */
    rr_group_acc *a = rr_smap_get(&c->groups, r->d.group);
    if (a == NULL) {
        a = calloc(1, sizeof *a);
        if (a == NULL || (a->name = strdup(r->d.group)) == NULL ||
            rr_smap_put(&c->groups, a->name, a) != 0) {
            if (a)
                free(a->name);
            free(a);
            return -1;
        }
        a->size = r->d.group_size;
    }
    if (rr_resp_push(&a->ready, r) != 0)
        return -1;
    if (++a->nready < a->size)
        return 0;
    for (size_t i = 0; i < a->ready.n; i++)
        if (rr_resp_push(out, &a->ready.v[i]) != 0)
            return -1;
    rr_smap_del(&c->groups, a->name);
    free(a->ready.v);
    free(a->name);
    free(a);
    return 0;
}

#define GROUP_MSG "tensor '%s': grouped allreduce '%s' failed: %s"
static char *group_msg(const char *name, const char *group, const char *why)
{
    int len = snprintf(NULL, 0, GROUP_MSG, name, group, why ? why : "");
    char *m = len < 0 ? NULL : malloc((size_t)len + 1);
    if (m)
        snprintf(m, (size_t)len + 1, GROUP_MSG, name, group, why ? why : "");
    return m;
}

/* A member of a grouped allreduce failed: the whole group fails on every rank, the members
 * held back for it included, and so do members that only some ranks submitted (groups of
 * different sizes), which would otherwise wait forever.  A rank submits its whole group at
 * once, so when any member is answered every rank's members are in the table. */
static int fail_groups(rr_engine *e, rr_resp_list *out)
{
    rr_coord *c = &e->coord;
    for (size_t i = 0; i < out->n; i++) {
        if (out->v[i].type != RESP_ERROR || out->v[i].d.group == NULL)
            continue;
        char grp[1024], why[1500];
        snprintf(grp, sizeof grp, "%s", out->v[i].d.group);
        snprintf(why, sizeof why, "%s", out->v[i].err_msg ? out->v[i].err_msg : "");
        int code = out->v[i].err_code;
        rr_group_acc *a = rr_smap_get(&c->groups, grp);
        if (a) {
            rr_smap_del(&c->groups, a->name);
            for (size_t j = 0; j < a->ready.n; j++) {
                rr_resp *h = &a->ready.v[j]; /* moved into out */
                free(h->counts);
                h->counts = NULL;
                h->type = RESP_ERROR;
                h->err_code = code;
                h->err_msg = group_msg(h->d.name, grp, why);
                if (h->err_msg == NULL || rr_resp_push(out, h) != 0)
                    return -1;
            }
            free(a->ready.v);
            free(a->name);
            free(a);
        }
        for (rr_neg *g = c->head, *nx; g; g = nx) {
            nx = g->next;
            int k = 0;
            while (k < e->size && !(g->req[k].name && g->req[k].group &&
                                    strcmp(g->req[k].group, grp) == 0))
                k++;
            if (k == e->size)
                continue;
            rr_resp r;
            memset(&r, 0, sizeof r);
            r.type = RESP_ERROR;
            r.err_code = code;
            if (rr_desc_copy(&r.d, &g->req[k]) != 0 ||
                (r.err_msg = group_msg(g->name, grp, why)) == NULL || rr_resp_push(out, &r) != 0) {
                rr_desc_free(&r.d);
                free(r.err_msg);
                return -1;
            }
            neg_unlink(c, g);
            neg_free(g, e->size);
        }
    }
    return 0;
}

static void stall_errors(rr_engine *e, double now, rr_resp_list *out)
{
    rr_coord *c = &e->coord;
    if (e->stall_shutdown <= 0)
        return;
    for (rr_neg *g = c->head, *nx; g; g = nx) {
        nx = g->next;
        if (now - g->t_first < e->stall_shutdown)
            continue;
        int first = 0;
        while (first < e->size && !g->req[first].name)
            first++;
        if (first == e->size)
            continue;
        char have[400], miss[400], msg[1200];
        rr_rank_list(e, g, 1, have, sizeof have);
        rr_rank_list(e, g, 0, miss, sizeof miss);
        snprintf(msg, sizeof msg, "tensor '%s' (%s) stalled: submitted by %s but not by %s "
                 "within RINGRED_STALL_SHUTDOWN_SECONDS=%g; every rank must submit the same "
                 "names", g->name, rr_kind_name(g->req[first].kind), have, miss,
                 e->stall_shutdown);
        rr_resp r;
        memset(&r, 0, sizeof r);
        r.type = RESP_ERROR;
        r.err_code = RR_ERR_STALL;
        r.err_msg = strdup(msg);
        if (rr_desc_copy(&r.d, &g->req[first]) != 0 || emit(c, out, &r) != 0) {
            rr_desc_free(&r.d);
            free(r.err_msg);
            continue;
        }
        neg_unlink(c, g);
        neg_free(g, e->size);
    }
}

/* ---------------------------------------------------------------- processing */

typedef struct u32list {
    uint32_t *v;
    size_t n, cap;
} u32list;

static void u32_add_unique(u32list *l, uint32_t x)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i] == x)
            return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        uint32_t *v = realloc(l->v, cap * sizeof *v);
        if (v == NULL)
            return;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = x;
}

/* Rank r's message: its evictions (into ev), its fatal error (appended to fatal), its
 * requests (into the negotiation table). */
static rr_status read_rank(rr_engine *e, int r, uint32_t len, double now, u32list *ev,
                           rr_buf *fatal, rr_status *fatal_code)
{
    rr_coord *c = &e->coord;
    rr_comm *cm = e->comm;
    int n = e->size;
    rr_rd rd = {e->gather + e->gdispls[r], len, 0, 0};
    uint32_t ne = rr_get_u32(&rd);
    for (uint32_t i = 0; i < ne && !rd.bad; i++) {
        uint32_t s = rr_get_u32(&rd);
        if ((int)s < e->cache.hw && e->cache.slots[s].used)
            u32_add_unique(ev, s);
    }
    rr_status code = (rr_status)rr_get_u32(&rd);
    char *err = rr_get_str(&rd);
    if (err) {
        char line[RR_ERRMSG_LEN];
        snprintf(line, sizeof line, "%srank %d: %s", fatal->n ? "; " : "", r, err);
        for (const char *p = line; *p; p++)
            rr_put_u8(fatal, (uint8_t)*p);
        if (*fatal_code == RR_OK)
            *fatal_code = code ? code : RR_ERR_PEER;
        free(err);
    }
    uint32_t nr = rr_get_u32(&rd);
    for (uint32_t i = 0; i < nr && !rd.bad; i++) {
        rr_desc d;
        if (rr_get_desc(&rd, &d) != 0)
            break;
        double age = rr_get_f64(&rd);
        int s = e->cache.cap > 0 ? rr_cache_find(&e->cache, d.name) : -1;
        if (s >= 0)
            u32_add_unique(ev, (uint32_t)s); /* a cached name sent again: invalid */
        rr_neg *g = neg_get(c, n, d.name, now - age);
        if (g == NULL) {
            rr_desc_free(&d);
            return RR_FAIL(cm, RR_ERR_NOMEM, "out of memory in the coordinator");
        }
        if (g->req[r].name) {
            rr_desc_free(&d); /* cannot happen: names are unique in flight */
            continue;
        }
        g->req[r] = d;
        g->nhave++;
        if (now - age < g->t_first)
            g->t_first = now - age;
    }
    if (rd.bad)
        return RR_FAIL(cm, RR_ERR_STATE, "engine protocol error: corrupt message from rank %d",
                       r);
    return RR_OK;
}

/* Every name that all ranks (the joined ones aside) have requested becomes a response. */
static rr_status emit_complete(rr_engine *e, const uint8_t *joined, rr_resp_list *ready)
{
    rr_coord *c = &e->coord;
    rr_comm *cm = e->comm;
    int n = e->size;
    int njoined = 0;
    for (int r = 0; r < n; r++)
        njoined += joined[r];
    if (njoined < n) {
        for (rr_neg *g = c->head, *nx; g; g = nx) {
            nx = g->next;
            int ok = 1;
            for (int r = 0; r < n && ok; r++)
                ok = joined[r] || g->req[r].name != NULL;
            if (!ok)
                continue;
            rr_resp resp;
            if (build_response(e, g, joined, &resp) != 0 || emit(c, ready, &resp) != 0) {
                return RR_FAIL(cm, RR_ERR_NOMEM, "out of memory in the coordinator");
            }
            neg_unlink(c, g);
            neg_free(g, n);
        }
    }
    return RR_OK;
}

/* The response list: evictions, responses, the fatal error (when asked), the stall note. */
static void write_responses(rr_engine *e, rr_buf *out, const u32list *ev,
                            const rr_resp_list *ready, rr_buf *fatal, rr_status fatal_code,
                            int want_errors)
{
    int n = e->size;
    rr_buf_reset(out);
    rr_put_u32(out, (uint32_t)ev->n);
    for (size_t i = 0; i < ev->n; i++)
        rr_put_u32(out, ev->v[i]);
    rr_put_u32(out, (uint32_t)ready->n);
    for (size_t i = 0; i < ready->n; i++) {
        const rr_resp *r = &ready->v[i];
        rr_put_u8(out, (uint8_t)r->type);
        rr_put_desc(out, &r->d);
        if (r->type == RESP_EXEC && r->d.kind == RR_REQ_ALLGATHER)
            for (int k = 0; k < 2 * n; k++)
                rr_put_u64(out, r->counts[k]);
        else if (r->type == RESP_ERROR) {
            rr_put_u32(out, (uint32_t)r->err_code);
            rr_put_str(out, r->err_msg);
        }
    }
    rr_put_u8(fatal, 0);
    rr_put_u32(out, (uint32_t)(want_errors ? (fatal_code ? fatal_code : RR_ERR_PEER) : 0));
    rr_put_str(out, want_errors && fatal->p && fatal->p[0] ? (const char *)fatal->p : NULL);
    rr_put_str(out, e->stall_note); /* a stall warning for every rank, or nothing */
    free(e->stall_note);
    e->stall_note = NULL;
}

rr_status rr_coord_process(rr_engine *e, const uint32_t *lens, const uint8_t *joined,
                           int want_errors, rr_buf *out)
{
    rr_comm *cm = e->comm;
    int n = e->size;
    double now = rr_now();
    u32list ev = {0};
    rr_buf fatal = {0};
    rr_status fatal_code = RR_OK;
    rr_resp_list ready = {0};
    rr_status st = RR_OK;

    for (int r = 0; r < n && st == RR_OK; r++)
        if (lens[r])
            st = read_rank(e, r, lens[r], now, &ev, &fatal, &fatal_code);
    if (st == RR_OK)
        st = emit_complete(e, joined, &ready);
    if (st == RR_OK) {
        stall_errors(e, now, &ready);
        if (fail_groups(e, &ready) != 0)
            st = RR_FAIL(cm, RR_ERR_NOMEM, "out of memory in the coordinator");
    }
    if (st == RR_OK)
        write_responses(e, out, &ev, &ready, &fatal, fatal_code, want_errors);
    rr_resp_clear(&ready);
    free(ready.v);
    free(ev.v);
    rr_buf_free(&fatal);
    return st;
}
