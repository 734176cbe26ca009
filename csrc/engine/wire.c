/* Byte-buffer serialization of tensor descriptions for the slow path of negotiation, and
 * the helpers that compare and copy descriptions. */
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

void rr_buf_reset(rr_buf *b)
{
    b->n = 0;
    b->oom = 0;
}

void rr_buf_free(rr_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

static void put(rr_buf *b, const void *v, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, v, n);
    b->n += n;
}

void rr_put_u8(rr_buf *b, uint8_t v) { put(b, &v, 1); }
void rr_put_u32(rr_buf *b, uint32_t v) { put(b, &v, 4); }
void rr_put_u64(rr_buf *b, uint64_t v) { put(b, &v, 8); }
void rr_put_f64(rr_buf *b, double v) { put(b, &v, 8); }

void rr_put_str(rr_buf *b, const char *s)
{
    uint32_t n = s ? (uint32_t)strlen(s) : 0;
    rr_put_u32(b, n);
    if (n)
        put(b, s, n);
}

void rr_put_desc(rr_buf *b, const rr_desc *d)
{
    rr_put_str(b, d->name);
    rr_put_str(b, d->group);
    rr_put_str(b, d->reason);
    int32_t v[7] = {d->kind, d->dtype, d->op, d->root, d->ndim, d->group_size, d->device};
    put(b, v, sizeof v);
    rr_put_f64(b, d->pre);
    rr_put_f64(b, d->post);
    rr_put_u64(b, (uint64_t)d->div);
    rr_put_u64(b, d->count);
    for (int i = 0; i < d->ndim && i < RR_MAX_DIMS; i++)
        rr_put_u64(b, (uint64_t)d->shape[i]);
}

static int get(rr_rd *r, void *v, size_t n)
{
    if (r->bad || r->pos + n > r->n) {
        r->bad = 1;
        memset(v, 0, n);
        return -1;
    }
    memcpy(v, r->p + r->pos, n);
    r->pos += n;
    return 0;
}

uint8_t rr_get_u8(rr_rd *r) { uint8_t v; get(r, &v, 1); return v; }
uint32_t rr_get_u32(rr_rd *r) { uint32_t v; get(r, &v, 4); return v; }
uint64_t rr_get_u64(rr_rd *r) { uint64_t v; get(r, &v, 8); return v; }
double rr_get_f64(rr_rd *r) { double v; get(r, &v, 8); return v; }

char *rr_get_str(rr_rd *r)
{
    uint32_t n = rr_get_u32(r);
    if (n == 0 || r->bad)
        return NULL;
    if (r->pos + n > r->n) {
        r->bad = 1;
        return NULL;
    }
    char *s = malloc((size_t)n + 1);
    if (s == NULL) {
        r->bad = 1;
        return NULL;
    }
    memcpy(s, r->p + r->pos, n);
    s[n] = '\0';
    r->pos += n;
    return s;
}

int rr_get_desc(rr_rd *r, rr_desc *d)
{
    memset(d, 0, sizeof *d);
    d->name = rr_get_str(r);
    d->group = rr_get_str(r);
    d->reason = rr_get_str(r);
    int32_t v[7];
    get(r, v, sizeof v);
    d->kind = v[0];
    d->dtype = v[1];
    d->op = v[2];
    d->root = v[3];
    d->ndim = v[4];
    d->group_size = v[5];
    d->device = v[6];
    d->pre = rr_get_f64(r);
    d->post = rr_get_f64(r);
    d->div = (int64_t)rr_get_u64(r);
    d->count = rr_get_u64(r);
    if (d->ndim < 0 || d->ndim > RR_MAX_DIMS)
        r->bad = 1;
    for (int i = 0; i < d->ndim && !r->bad; i++)
        d->shape[i] = (int64_t)rr_get_u64(r);
    if (r->bad || d->name == NULL) {
        rr_desc_free(d);
        r->bad = 1;
        return -1;
    }
    return 0;
}

static char *dup_str(const char *s, int *oom)
{
    if (s == NULL)
        return NULL;
    char *p = strdup(s);
    if (p == NULL)
        *oom = 1;
    return p;
}

int rr_desc_copy(rr_desc *dst, const rr_desc *src)
{
    int oom = 0;
    *dst = *src;
    dst->name = dup_str(src->name, &oom);
    dst->group = dup_str(src->group, &oom);
    dst->reason = dup_str(src->reason, &oom);
    if (oom) {
        rr_desc_free(dst);
        return -1;
    }
    return 0;
}

void rr_desc_free(rr_desc *d)
{
    free(d->name);
    free(d->group);
    free(d->reason);
    d->name = d->group = d->reason = NULL;
}

static int same_str(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

int rr_desc_same(const rr_desc *a, const rr_desc *b)
{
    if (a->reason || b->reason)
        return 0; /* a rejection matches nothing */
    if (a->kind != b->kind || a->device != b->device || a->dtype != b->dtype || a->op != b->op ||
        a->root != b->root ||
        a->ndim != b->ndim || a->group_size != b->group_size || a->div != b->div ||
        a->count != b->count || memcmp(&a->pre, &b->pre, sizeof a->pre) != 0 ||
        memcmp(&a->post, &b->post, sizeof a->post) != 0 || !same_str(a->group, b->group))
        return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return 0;
    return 1;
}

int rr_desc_cacheable(const rr_desc *d)
{
    return d->reason == NULL && (d->kind == RR_REQ_ALLREDUCE || d->kind == RR_REQ_BROADCAST ||
                                 d->kind == RR_REQ_REDUCESCATTER);
}

const char *rr_kind_name(int kind)
{
    switch (kind) {
    case RR_REQ_ALLREDUCE: return "allreduce";
    case RR_REQ_BROADCAST: return "broadcast";
    case RR_REQ_ALLGATHER: return "allgather";
    case RR_REQ_REDUCESCATTER: return "reducescatter";
    default: return "unknown";
    }
}

const char *rr_dtype_label(int d)
{
    static const char *names[] = {"uint8", "int8", "int16", "int32", "int64",
                                  "float16", "bfloat16", "float32", "float64"};
    return d >= 0 && d < RR_NUM_DTYPES ? names[d] : "unknown";
}

const char *rr_op_label(int o)
{
    static const char *names[] = {"sum", "min", "max", "product"};
    return o >= 0 && o < RR_NUM_OPS ? names[o] : "unknown";
}

int rr_resp_push(rr_resp_list *l, const rr_resp *r)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        rr_resp *v = realloc(l->v, cap * sizeof *v);
        if (v == NULL)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *r;
    return 0;
}

void rr_resp_clear(rr_resp_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        rr_resp *r = &l->v[i];
        if (!r->cached)
            rr_desc_free(&r->d);
        free(r->counts);
        free(r->err_msg);
    }
    l->n = 0;
}
