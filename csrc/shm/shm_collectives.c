/* Broadcast, allgather, reducescatter, barrier and poisoning over the shared segment.
 * Each starts with the arrival (header agreement); a payload that fits the small slots rides
 * along with it, larger ones go through the two pipeline slots per rank in chunks, signalled
 * with IN (chunk posted) and OUT (chunk consumed).  A slot is rewritten two chunks later,
 * after every peer's OUT of its previous chunk. */
#include <string.h>

#include "core/reduce.h"
#include "shm/shm.h"

static size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

/* ---------------------------------------------------------------- broadcast */

rr_status rr_shm_broadcast(rr_comm *c, void *buf, size_t count, rr_dtype dt, int root)
{
    rr_shm *s = c->shm;
    rr_header h = {RR_KIND_BROADCAST, (uint8_t)dt, 0, 0, root, (uint64_t)count, 1.0, 1.0, 0, 0};
    size_t bytes = count * rr_dtype_size(dt);
    int small = bytes <= s->small_bytes;
    if (small && s->me == root && bytes)
        rr_copy(rr_shm_post(s), buf, bytes);
    RR_CHECK(rr_shm_arrive(c, &h, 0, "broadcast"));
    if (bytes == 0)
        return RR_OK;
    if (small) {
        if (s->me != root)
            rr_copy(buf, rr_shm_payload(s, root), bytes);
        return RR_OK;
    }
    uint8_t *b = buf;
    size_t cb = s->slot_bytes;
    uint64_t k = (bytes + cb - 1) / cb, base = rr_shm_steps(s, k);
    for (uint64_t i = 0; i < k; i++) {
        size_t lo = (size_t)i * cb, len = min_sz(cb, bytes - lo);
        if (s->me == root) {
            if (i >= 2)
                RR_CHECK(rr_shm_wait_all(c, RR_CTR_OUT, base + i - 1));
            rr_copy(rr_shm_big(s, root, i), b + lo, len);
            rr_shm_signal(s, RR_CTR_IN, base + i + 1);
        } else {
            RR_CHECK(rr_shm_wait(c, RR_CTR_IN, root, base + i + 1));
            rr_copy(b + lo, rr_shm_big(s, root, i), len);
            rr_shm_signal(s, RR_CTR_OUT, base + i + 1);
        }
    }
    return RR_OK;
}

/* ---------------------------------------------------------------- allgather */

rr_status rr_shm_allgather_counts(rr_comm *c, size_t count, rr_dtype dt, size_t row_elems,
                                  size_t *counts)
{
    rr_shm *s = c->shm;
    rr_header h = {RR_KIND_ALLGATHER, (uint8_t)dt, 0, 0, 0, (uint64_t)row_elems, 1.0, 1.0, 0, 0};
    RR_CHECK(rr_shm_arrive(c, &h, (uint64_t)count, "allgather"));
    for (int p = 0; p < s->n; p++)
        counts[p] = (size_t)rr_shm_extra(s, p);
    return RR_OK;
}

/* Piece i (slot_bytes each) of our block: into our slot, then IN. */
static void gather_post(rr_shm *s, const uint8_t *own, size_t own_bytes, uint64_t i,
                        uint64_t base)
{
    size_t lo = (size_t)i * s->slot_bytes;
    if (lo < own_bytes)
        rr_copy(rr_shm_big(s, s->me, i), own + lo, min_sz(s->slot_bytes, own_bytes - lo));
    rr_shm_signal(s, RR_CTR_IN, base + i + 1);
}

/* Our block is already in place in recvbuf (at off[me]); counts and off are agreed. */
rr_status rr_shm_allgather(rr_comm *c, void *recvbuf, rr_dtype dt, const size_t *counts,
                           const size_t *off)
{
    rr_shm *s = c->shm;
    int n = s->n, me = s->me;
    size_t es = rr_dtype_size(dt), total = 0, maxb = 0;
    for (int p = 0; p < n; p++) {
        total += counts[p];
        maxb = counts[p] * es > maxb ? counts[p] * es : maxb;
    }
    /* root = 1 marks the data phase (the counts phase has 0) */
    rr_header h = {RR_KIND_ALLGATHER, (uint8_t)dt, 0, 0, 1, (uint64_t)total, 1.0, 1.0, 0, 0};
    uint8_t *out = recvbuf;
    const uint8_t *own = out + off[me] * es;
    size_t own_bytes = counts[me] * es;
    if (maxb <= s->small_bytes) {
        if (own_bytes)
            rr_copy(rr_shm_post(s), own, own_bytes);
        RR_CHECK(rr_shm_arrive(c, &h, 0, "allgather"));
        for (int p = 0; p < n; p++)
            if (p != me && counts[p])
                rr_copy(out + off[p] * es, rr_shm_payload(s, p), counts[p] * es);
        return RR_OK;
    }
    RR_CHECK(rr_shm_arrive(c, &h, 0, "allgather"));
    size_t cb = s->slot_bytes;
    uint64_t k = (maxb + cb - 1) / cb, base = rr_shm_steps(s, k);
    gather_post(s, own, own_bytes, 0, base);
    for (uint64_t i = 0; i < k; i++) {
        RR_CHECK(rr_shm_wait_all(c, RR_CTR_IN, base + i + 1));
        if (i + 1 < k) {
            if (i >= 1)
                RR_CHECK(rr_shm_wait_all(c, RR_CTR_OUT, base + i));
            gather_post(s, own, own_bytes, i + 1, base);
        }
        size_t lo = (size_t)i * cb;
        for (int p = 0; p < n; p++) {
            size_t pb = counts[p] * es;
            if (p != me && lo < pb)
                rr_copy(out + off[p] * es + lo, rr_shm_big(s, p, i), min_sz(cb, pb - lo));
        }
        rr_shm_signal(s, RR_CTR_OUT, base + i + 1);
    }
    return RR_OK;
}

/* ---------------------------------------------------------------- reducescatter */

typedef struct scatter {
    const uint8_t *x;
    uint8_t *y;
    size_t count, es, ce, my_lo, my_n;
    rr_dtype dt;
    rr_op op;
    double pre, post;
    int64_t div;
} scatter;

static void scatter_post(rr_shm *s, const scatter *q, uint64_t i, uint64_t base)
{
    size_t lo = (size_t)i * q->ce, len = min_sz(q->ce, q->count - lo);
    uint8_t *dst = rr_shm_big(s, s->me, i);
    if (q->pre != 1.0)
        rr_scale(dst, q->x + lo * q->es, len, q->dt, q->pre, 1);
    else
        rr_copy(dst, q->x + lo * q->es, len * q->es);
    rr_shm_signal(s, RR_CTR_IN, base + i + 1);
}

/* Reduce the part of our range [my_lo, my_lo + my_n) that chunk i (from `lo` in slot
 * memory `at(p)`) covers. */
static void scatter_reduce(rr_shm *s, const scatter *q, size_t lo, size_t len, int small,
                           uint64_t i)
{
    size_t a = lo > q->my_lo ? lo : q->my_lo;
    size_t b = min_sz(lo + len, q->my_lo + q->my_n);
    if (b <= a)
        return;
    for (int p = 0; p < s->n; p++) {
        const uint8_t *src = small ? rr_shm_payload(s, p) : rr_shm_big(s, p, i);
        s->srcs[p] = src + (a - lo) * q->es;
    }
    uint8_t *dst = q->y + (a - q->my_lo) * q->es;
    rr_reduce_many(dst, s->srcs, s->n, b - a, q->dt, q->op);
    if (q->post != 1.0 || q->div != 1)
        rr_scale(dst, dst, b - a, q->dt, q->post, q->div);
}

/* Every input shared (rr_mem_alloc): one pass, each rank reducing its range straight from
 * every input; then every rank waits until all have finished reading. */
static rr_status scatter_shared(rr_comm *c, const scatter *q)
{
    rr_shm *s = c->shm;
    uint64_t base = rr_shm_steps(s, 1);
    if (q->my_n > 0) {
        for (int p = 0; p < s->n; p++)
            s->srcs[p] = rr_arena_at(s->arena, p, rr_shm_word(s, p, 1)) + q->my_lo * q->es;
        rr_reduce_many(q->y, s->srcs, s->n, q->my_n, q->dt, q->op);
        if (q->post != 1.0 || q->div != 1)
            rr_scale(q->y, q->y, q->my_n, q->dt, q->post, q->div);
    }
    rr_shm_signal(s, RR_CTR_OUT, base + 1);
    return rr_shm_wait_all(c, RR_CTR_OUT, base + 1);
}

rr_status rr_shm_reducescatter(rr_comm *c, const void *sendbuf, size_t count, void *recvbuf,
                               const size_t *recvcounts, rr_dtype dt, rr_op op, double prescale,
                               double postscale, int64_t avg_div)
{
    rr_shm *s = c->shm;
    rr_header h = {RR_KIND_REDUCESCATTER, (uint8_t)dt, (uint8_t)op, 0, (int32_t)avg_div,
                   (uint64_t)count, prescale, postscale, 0, 0};
    size_t es = rr_dtype_size(dt), my_lo = 0;
    for (int p = 0; p < s->me; p++)
        my_lo += recvcounts[p];
    scatter q = {sendbuf, recvbuf, count, es, s->slot_bytes / es, my_lo, recvcounts[s->me],
                 dt, op, prescale, postscale, avg_div};
    if (count * es <= s->small_bytes) {
        uint8_t *slot = rr_shm_post(s);
        if (prescale != 1.0)
            rr_scale(slot, sendbuf, count, dt, prescale, 1);
        else if (count)
            rr_copy(slot, sendbuf, count * es);
        RR_CHECK(rr_shm_arrive(c, &h, 0, "reducescatter"));
        scatter_reduce(s, &q, 0, count, 1, 0);
        return RR_OK;
    }
    /* Offer the input if it is shared, not prescaled and clear of the output. */
    uint64_t words[RR_SHM_WORDS] = {0, RR_ARENA_NONE, 0};
    const uint8_t *x = sendbuf, *y = recvbuf;
    size_t in_bytes = count * es, out_bytes = q.my_n * es;
    if (prescale == 1.0 && (out_bytes == 0 || y + out_bytes <= x || x + in_bytes <= y))
        words[1] = rr_arena_offset(s->arena, x, in_bytes);
    RR_CHECK(rr_shm_arrive_words(c, &h, words, "reducescatter"));
    if (rr_shm_inputs_shared(s))
        return scatter_shared(c, &q);
    uint64_t k = (count + q.ce - 1) / q.ce, base = rr_shm_steps(s, k);
    scatter_post(s, &q, 0, base);
    for (uint64_t i = 0; i < k; i++) {
        RR_CHECK(rr_shm_wait_all(c, RR_CTR_IN, base + i + 1));
        if (i + 1 < k) {
            if (i >= 1)
                RR_CHECK(rr_shm_wait_all(c, RR_CTR_OUT, base + i));
            scatter_post(s, &q, i + 1, base);
        }
        size_t lo = (size_t)i * q.ce;
        scatter_reduce(s, &q, lo, min_sz(q.ce, count - lo), 0, i);
        rr_shm_signal(s, RR_CTR_OUT, base + i + 1);
    }
    return RR_OK;
}

/* ---------------------------------------------------------------- barrier, agreement */

rr_status rr_shm_barrier(rr_comm *c)
{
    rr_header h = {RR_KIND_BARRIER, 0, 0, 0, 0, 0, 1.0, 1.0, 0, 0};
    return rr_shm_arrive(c, &h, 0, "barrier");
}

rr_status rr_shm_agree(rr_comm *c, const rr_header *h)
{
    static const char *names[] = {"collective", "allreduce", "broadcast", "allgather",
                                  "reducescatter", "barrier"};
    int k = h->kind;
    return rr_shm_arrive(c, h, 0, k >= 1 && k <= 5 ? names[k] : names[0]);
}

const rr_transport_ops rr_shm_ops = {
    .name = "shm",
    .allreduce = rr_shm_allreduce,
    .broadcast = rr_shm_broadcast,
    .allgather_counts = rr_shm_allgather_counts,
    .allgather = rr_shm_allgather,
    .reducescatter = rr_shm_reducescatter,
    .barrier = rr_shm_barrier,
    .agree = rr_shm_agree,
};
