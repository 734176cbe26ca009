/* Allreduce over the shared segment.
 *
 * Small messages (<= small_bytes): one synchronization.  Each rank copies its (prescaled)
 * input into its small slot beside the header and arrives; every rank then reduces all n
 * inputs itself, in rank order, straight into its output.
 *
 * Large messages: chunks of at most slot_bytes go through two slots per rank.  For chunk i
 * each rank copies into its slot the parts of its chunk that the other ranks reduce (all of
 * it when prescaling) and signals IN(i).  Once every peer's IN(i) is there, rank r does three
 * independent jobs, interleaved in steps of BLOCK bytes of its slice: it copies the peers'
 * slices of result chunk i-1 out (a peer signals IN(i) after its OUT(i-1), so they are
 * complete); it reduces slice r of chunk i from every peer's slot (its own part read from its
 * input) into result chunk i, for the peers, applies the postscale, and copies the block,
 * still in L1, into its own output; and it copies chunk i+1 in.  Then it signals OUT(i) and
 * IN(i+1).  One wait per chunk; the last chunk waits for every OUT.  Slot reuse needs no
 * other wait: a rank writes slot i+1 after every IN(i), which each peer signals after it
 * finished reading slot i-1 (its OUT(i-1)), and writes result chunk i after every IN(i),
 * which each peer signals after copying result chunk i-2 out.  Interleaving mixes the reads
 * of the input with the writes of the output, as one copy does, and nobody reads its own
 * slice back from the result chunk: 64 MiB (2 ranks, C, alternating launches) 12.2-13.0 ms
 * against 14.4-14.5 ms for the three jobs one after the other with the whole result chunk
 * copied out; 1 MiB 82-88 us against 86-94.
 *
 * Two ranks, below PAIR_BELOW (and below the streaming threshold): each rank reduces the
 * whole chunk itself.  For chunk i each rank copies all of it into its slot and signals
 * IN(i); once the peer's IN(i) is there it reduces chunk i from both (its own part straight
 * from its input) directly into its output and copies chunk i+1 in.  No result chunks and no
 * second copy, but it reads twice as much from the peer: 5-10% faster than the slice plan
 * at 256 and 512 KiB here, 5% slower from 1 MiB on.  Slot reuse: a rank writes slot i+1 (the
 * parity of i-1) after the peer's IN(i), which the peer signals after reducing chunk i-1.
 *
 * Shared buffers (shm_arena.c): when every rank's input is in its arena, nobody copies it in;
 * the ranks read each other's inputs where they are (see the plans at the end of this file).
 *
 * Every element is reduced by the same expression on every path (all inputs in rank order
 * through rr_reduce_many), so results are bit-identical on every rank and for every size. */
#include <string.h>

#include "core/reduce.h"
#include "shm/shm.h"

#define MIN_CHUNK (32u << 10) /* the pipeline's smallest chunk, bytes */
#define PIPELINE 4            /* aim for at least this many chunks */
#define PAIR_BELOW (1u << 20) /* two ranks: the pair plan below this many bytes */

static void copy_scaled(void *dst, const void *src, size_t count, rr_dtype dt, double pre)
{
    if (pre != 1.0)
        rr_scale(dst, src, count, dt, pre, 1);
    else if (count)
        rr_copy(dst, src, count * rr_dtype_size(dt));
}

static rr_status small_path(rr_comm *c, const rr_header *h, const void *sendbuf, void *recvbuf,
                            size_t count, rr_dtype dt, rr_op op, double pre, double post,
                            int64_t div)
{
    rr_shm *s = c->shm;
    copy_scaled(rr_shm_post(s), sendbuf, count, dt, pre);
    RR_CHECK(rr_shm_arrive(c, h, 0, "allreduce"));
    if (count == 0)
        return RR_OK;
    for (int p = 0; p < s->n; p++)
        s->srcs[p] = rr_shm_payload(s, p);
    rr_reduce_many(recvbuf, s->srcs, s->n, count, dt, op);
    if (post != 1.0 || div != 1)
        rr_scale(recvbuf, recvbuf, count, dt, post, div);
    return RR_OK;
}

typedef struct plan {
    const uint8_t *x;
    uint8_t *y;
    size_t count, es, ce; /* elements, element size, elements per chunk */
    rr_dtype dt;
    rr_op op;
    double pre, post;
    int64_t div;
    int stream; /* a streamed size (rank 0's threshold): the same plan on every rank */
    int nt;     /* this rank writes its output with non-temporal stores: streamed and not in
                 * place (a local choice; the stores write the same bytes either way) */
    /* shared buffers (every rank's, by rank): inputs read in place, or NULL; outputs that
     * peers copy the reduced slices from, or NULL */
    const uint8_t *const *zin;
    uint8_t *const *zout;
} plan;

static size_t chunk_len(const plan *q, uint64_t i, size_t *lo)
{
    *lo = (size_t)i * q->ce;
    size_t left = q->count - *lo;
    return left < q->ce ? left : q->ce;
}

#define BLOCK (8u << 10) /* bytes of our slice reduced per step: the result is still in L1 */

/* Chunk i as the slice plan walks it, computed once per chunk: elements [lo, lo + len) of
 * the message, our slice [a, a + mine) of the chunk, and the steps.  Step j reduces slice
 * elements [j * sstep, (j + 1) * sstep) and moves elements [j * ostep, (j + 1) * ostep) of
 * the rest (the chunk without our slice; all of it for a prescaled copy-in), both cut to
 * what there is.  Both step sizes are whole cache lines. */
typedef struct chunk {
    uint64_t i;
    size_t lo, len, a, mine, sstep, ostep, ostep_all;
} chunk;

static size_t lines_up(size_t elems, size_t es)
{
    size_t g = RR_SHM_LINE / es;
    return (elems + g - 1) / g * g;
}

static chunk chunk_at(const rr_shm *s, const plan *q, uint64_t i, unsigned steps)
{
    chunk g = {.i = i};
    g.len = chunk_len(q, i, &g.lo);
    g.mine = rr_shm_slice(g.len, q->es, s->n, s->me, &g.a);
    g.sstep = lines_up((g.mine + steps - 1) / steps, q->es);
    g.ostep = lines_up((g.len - g.mine + steps - 1) / steps, q->es);
    g.ostep_all = lines_up((g.len + steps - 1) / steps, q->es);
    return g;
}

/* Elements [from, to) of step j with the given step size over `total` elements. */
static size_t step_range(size_t total, size_t step, unsigned j, size_t *from)
{
    size_t f = (size_t)j * step;
    *from = f < total ? f : total;
    size_t t = f + step;
    return (t < total ? t : total) - *from;
}

/* Step j of the part of the chunk outside [a, a + m) (the whole chunk when m == 0), as up
 * to two ranges r[h] = {from, to} of the chunk's elements. */
static void outside(const chunk *g, size_t m, size_t step, unsigned j, size_t r[2][2])
{
    size_t from, to = step_range(g->len - m, step, j, &from) + from;
    size_t a = m ? g->a : 0;
    r[0][0] = from < a ? from : a;
    r[0][1] = to < a ? to : a;
    r[1][0] = (from < a ? a : from) + m;
    r[1][1] = (to < a ? a : to) + m;
}

/* Step j of chunk g's copy-in: part of what the peers reduce (all of the chunk when
 * prescaling, else all but our slice, which we reduce straight from the input). */
static void copy_in(rr_shm *s, const plan *q, const chunk *g, unsigned j)
{
    size_t r[2][2];
    if (q->zin)
        return; /* the peers read our input where it is */
    int pre = q->pre != 1.0;
    outside(g, pre ? 0 : g->mine, pre ? g->ostep_all : g->ostep, j, r);
    uint8_t *dst = rr_shm_big(s, s->me, g->i);
    const uint8_t *src = q->x + g->lo * q->es;
    for (int h = 0; h < 2; h++) {
        size_t off = r[h][0] * q->es, m = r[h][1] - r[h][0];
        if (m > 0 && pre)
            rr_scale(dst + off, src + off, m, q->dt, q->pre, 1);
        else if (m > 0)
            rr_copy(dst + off, src + off, m * q->es);
    }
}

/* Reduce elements [a, a + m) of chunk i (starting at element lo) from every rank's slot,
 * ours straight from the input unless prescaled, into dst, and apply the postscale. */
static void reduce_part(rr_shm *s, const plan *q, uint64_t i, size_t lo, size_t a, size_t m,
                        uint8_t *dst)
{
    for (int p = 0; p < s->n; p++)
        s->srcs[p] = q->zin ? q->zin[p] + (lo + a) * q->es : rr_shm_big(s, p, i) + a * q->es;
    if (q->pre == 1.0)
        s->srcs[s->me] = q->x + (lo + a) * q->es;
    rr_reduce_many(dst, s->srcs, s->n, m, q->dt, q->op);
    if (q->post != 1.0 || q->div != 1)
        rr_scale(dst, dst, m, q->dt, q->post, q->div);
}

/* Step j: reduce that part of our slice of chunk g into the result chunk, for the peers,
 * and copy it from there (still in L1) into our output. */
static void reduce_slice(rr_shm *s, const plan *q, const chunk *g, unsigned j)
{
    size_t b, m = step_range(g->mine, g->sstep, j, &b);
    if (m == 0)
        return;
    uint8_t *res = rr_shm_res(s, g->i) + (g->a + b) * q->es;
    reduce_part(s, q, g->i, g->lo, g->a + b, m, res);
    (q->nt ? rr_copy_stream : rr_copy)(q->y + (g->lo + g->a + b) * q->es, res, m * q->es);
}

/* Step j of copying the peers' slices of result chunk g out. */
static void copy_out(rr_shm *s, const plan *q, const chunk *g, unsigned j)
{
    size_t r[2][2];
    outside(g, g->mine, g->ostep, j, r);
    for (int h = 0; h < 2; h++) {
        size_t off = r[h][0] * q->es, m = r[h][1] - r[h][0];
        if (m > 0)
            (q->nt ? rr_copy_stream : rr_copy)(q->y + g->lo * q->es + off,
                                                   rr_shm_res(s, g->i) + off, m * q->es);
    }
}

/* Steps per chunk: our slice of a full chunk in blocks of at most BLOCK bytes. */
static unsigned steps_for(const rr_shm *s, const plan *q)
{
    size_t a, mine = rr_shm_slice(q->ce, q->es, s->n, s->me, &a) * q->es;
    return mine > BLOCK ? (unsigned)((mine + BLOCK - 1) / BLOCK) : 1;
}

static rr_status large_path(rr_comm *c, const plan *q)
{
    rr_shm *s = c->shm;
    uint64_t k = (q->count + q->ce - 1) / q->ce;
    uint64_t base = rr_shm_steps(s, k);
    unsigned steps = steps_for(s, q);
    chunk prev = {0}, cur = chunk_at(s, q, 0, steps), next = {0};
    for (unsigned j = 0; j < steps; j++)
        copy_in(s, q, &cur, j);
    rr_shm_signal(s, RR_CTR_IN, base + 1);
    for (uint64_t i = 0; i < k; i++) {
        if (i + 1 < k)
            next = chunk_at(s, q, i + 1, steps);
        /* IN(i) of a peer comes after its OUT(i-1): result chunk i-1 is complete, the
         * peers are done with slot i-1 (which chunk i+1 reuses) and with result chunk i-2
         * (which chunk i reuses).  The three jobs below are independent: interleaved in
         * small steps, the reads and writes of memory mix, as in one copy. */
        RR_CHECK(rr_shm_wait_all(c, RR_CTR_IN, base + i + 1));
        for (unsigned j = 0; j < steps; j++) {
            if (i > 0)
                copy_out(s, q, &prev, j);
            reduce_slice(s, q, &cur, j);
            if (i + 1 < k)
                copy_in(s, q, &next, j);
        }
        rr_shm_signal(s, RR_CTR_OUT, base + i + 1);
        if (i + 1 < k)
            rr_shm_signal(s, RR_CTR_IN, base + i + 2);
        prev = cur;
        cur = next;
    }
    RR_CHECK(rr_shm_wait_all(c, RR_CTR_OUT, base + k));
    for (unsigned j = 0; j < steps; j++)
        copy_out(s, q, &prev, j);
    return RR_OK;
}

/* Two ranks: the whole of chunk i into our slot. */
static void pair_copy_in(rr_shm *s, const plan *q, uint64_t i)
{
    size_t lo, len = chunk_len(q, i, &lo);
    copy_scaled(rr_shm_big(s, s->me, i), q->x + lo * q->es, len, q->dt, q->pre);
}

/* Two ranks: all of chunk i straight into the output. */
static void pair_reduce(rr_shm *s, const plan *q, uint64_t i)
{
    size_t lo, len = chunk_len(q, i, &lo);
    reduce_part(s, q, i, lo, 0, len, q->y + lo * q->es);
}

static rr_status pair_path(rr_comm *c, const plan *q)
{
    rr_shm *s = c->shm;
    uint64_t k = (q->count + q->ce - 1) / q->ce;
    uint64_t base = rr_shm_steps(s, k);
    int peer = 1 - s->me;
    pair_copy_in(s, q, 0);
    rr_shm_signal(s, RR_CTR_IN, base + 1);
    for (uint64_t i = 0; i < k; i++) {
        RR_CHECK(rr_shm_wait(c, RR_CTR_IN, peer, base + i + 1));
        pair_reduce(s, q, i);
        if (i + 1 < k) {
            pair_copy_in(s, q, i + 1);
            rr_shm_signal(s, RR_CTR_IN, base + i + 2);
        }
    }
    return RR_OK;
}

/* Two ranks, both inputs shared, private outputs: each rank reduces everything straight from
 * both inputs into its output; then both wait until the other has finished reading. */
static rr_status pair_shared(rr_comm *c, const plan *q)
{
    rr_shm *s = c->shm;
    uint64_t base = rr_shm_steps(s, 1);
    reduce_part(s, q, 0, 0, 0, q->count, q->y);
    rr_shm_signal(s, RR_CTR_OUT, base + 1);
    return rr_shm_wait(c, RR_CTR_OUT, 1 - s->me, base + 1);
}

/* Every buffer shared and in place, streamed sizes: for chunk i each rank reduces its slice
 * from every input into its own output and signals OUT(i), then copies (streaming) every
 * peer's slice of chunk i from that peer's output once the peer's OUT(i) is there.  A rank
 * overwrites the part of its input that peer p reads only after p's OUT(i), and its own
 * slice is read by nobody else.  The end: IN(k) once every copy is done; all wait for all.
 * (Also correct for separate shared outputs; they take the slice plan, which is faster.) */
static rr_status shared_path(rr_comm *c, const plan *q)
{
    rr_shm *s = c->shm;
    uint64_t k = (q->count + q->ce - 1) / q->ce;
    uint64_t base = rr_shm_steps(s, k);
    void (*copy)(void *, const void *, size_t) = q->stream ? rr_copy_stream : rr_copy;
    for (uint64_t i = 0; i < k; i++) {
        size_t lo, len = chunk_len(q, i, &lo), a;
        size_t m = rr_shm_slice(len, q->es, s->n, s->me, &a);
        if (m > 0)
            reduce_part(s, q, i, lo, a, m, q->y + (lo + a) * q->es);
        rr_shm_signal(s, RR_CTR_OUT, base + i + 1);
        for (int d = 1; d < s->n; d++) {
            int p = (s->me + d) % s->n;
            RR_CHECK(rr_shm_wait(c, RR_CTR_OUT, p, base + i + 1));
            size_t pm = rr_shm_slice(len, q->es, s->n, p, &a);
            if (pm > 0)
                copy(q->y + (lo + a) * q->es, q->zout[p] + (lo + a) * q->es, pm * q->es);
        }
    }
    rr_shm_signal(s, RR_CTR_IN, base + k);
    return rr_shm_wait_all(c, RR_CTR_IN, base + k);
}

#define SCATTER_BLOCK (8u << 10) /* bytes reduced into L1 before they are copied out */

/* Every input and output shared, below the streaming threshold: rank r alone computes slice
 * r of the message.  Block by block it reduces slice r of every input into a small buffer
 * that stays in L1 and copies the block into slice r of every rank's output.  Nobody else
 * touches slice r, so any mix of in place and separate outputs is safe (a block is read
 * before it is written, by the same rank).  One pass, no per-chunk synchronization, no line
 * that another rank has just written is read; at the end every rank waits until all have
 * written.  Measured (2 ranks, in place): 64 KiB 5.5-5.9 us against 10.6-11.6 for the
 * two-phase plan, 1 MiB 85 against 97-104 us.  From the streaming threshold on, in place,
 * the two-phase plan is faster (64 MiB 9.0-11.1 ms against 10.7-11.4 ms: half of its
 * writes go to lines it has just read, and it streams the other half). */
static rr_status scatter_path(rr_comm *c, const plan *q)
{
    rr_shm *s = c->shm;
    uint64_t base = rr_shm_steps(s, 1);
    size_t a, m = rr_shm_slice(q->count, q->es, s->n, s->me, &a);
    _Alignas(64) uint8_t tmp[SCATTER_BLOCK]; /* nothing to allocate: nothing can fail here */
    size_t be = SCATTER_BLOCK / q->es;
    for (size_t off = 0; off < m; off += be) {
        size_t len = m - off < be ? m - off : be, at = (a + off) * q->es;
        for (int p = 0; p < s->n; p++)
            s->srcs[p] = q->zin[p] + at;
        rr_reduce_many(tmp, s->srcs, s->n, len, q->dt, q->op);
        if (q->post != 1.0 || q->div != 1)
            rr_scale(tmp, tmp, len, q->dt, q->post, q->div);
        for (int d = 0; d < s->n; d++) {
            int p = (s->me + d) % s->n;
            rr_copy(q->zout[p] + at, tmp, len * q->es);
        }
    }
    rr_shm_signal(s, RR_CTR_OUT, base + 1);
    return rr_shm_wait_all(c, RR_CTR_OUT, base + 1);
}

/* After the arrival: every rank's buffers if every input is shared (and every output, for
 * zout).  All ranks see the same posted words, so all choose the same plan.  *in_place:
 * 0 no rank reduces in place, 1 some do, 2 all do. */
static void find_shared(rr_shm *s, plan *q, int *in_place)
{
    *in_place = 0;
    if (!rr_shm_inputs_shared(s))
        return;
    int all_out = 1, some = 0, all = 1;
    for (int p = 0; p < s->n; p++) {
        uint64_t in = rr_shm_word(s, p, 1), out = rr_shm_word(s, p, 2);
        all_out &= out != RR_ARENA_NONE;
        some |= out == in;
        all &= out == in;
        s->zin[p] = rr_arena_at(s->arena, p, in);
        s->zout[p] = out != RR_ARENA_NONE ? rr_arena_at(s->arena, p, out) : NULL;
    }
    *in_place = all ? 2 : some;
    q->zin = (const uint8_t *const *)s->zin;
    q->zout = all_out ? s->zout : NULL;
}

rr_status rr_shm_allreduce(rr_comm *c, const void *sendbuf, void *recvbuf, size_t count,
                           rr_dtype dt, rr_op op, double prescale, double postscale,
                           int64_t avg_div)
{
    rr_shm *s = c->shm;
    rr_header h = {RR_KIND_ALLREDUCE, (uint8_t)dt, (uint8_t)op, 0, (int32_t)avg_div,
                   (uint64_t)count, prescale, postscale, 0, 0};
    size_t es = rr_dtype_size(dt), bytes = count * es;
    if (bytes <= s->small_bytes)
        return small_path(c, &h, sendbuf, recvbuf, count, dt, op, prescale, postscale, avg_div);
    /* Chunks of slot_bytes, smaller for mid-size messages so that they still pipeline; when
     * oversubscribed, every synchronization costs context switches: fewer, larger chunks. */
    size_t pipeline = s->oversubscribed ? 1 : PIPELINE;
    size_t chunk = (bytes / pipeline + 4095) / 4096 * 4096;
    chunk = chunk < MIN_CHUNK ? MIN_CHUNK : chunk;
    chunk = chunk > s->slot_bytes ? s->slot_bytes : chunk;
    size_t stream = s->stream_bytes; /* rank 0's: the plan must be the same on every rank */
    plan q = {sendbuf, recvbuf, count, es, chunk / es, dt, op, prescale, postscale, avg_div,
              stream != 0 && bytes >= stream, 0, NULL, NULL};
    /* In place, the output lines were read moments ago and are still cached: non-temporal
     * stores would evict them first (measured, 2 ranks, 64 MiB in place: 12.2 ms streamed
     * against 10.5 ms with ordinary stores; separate outputs gain from streaming) */
    q.nt = q.stream && sendbuf != recvbuf;
    /* Offer our buffers if they are shared: the input when it is not prescaled (the peers
     * read it as it is) and the output does not partly overlap it; the output when it is
     * the input or shared too. */
    uint64_t words[RR_SHM_WORDS] = {0, RR_ARENA_NONE, RR_ARENA_NONE};
    const uint8_t *x = sendbuf, *y = recvbuf;
    if (prescale == 1.0 && (x == y || x + bytes <= y || y + bytes <= x)) {
        words[1] = rr_arena_offset(s->arena, x, bytes);
        words[2] = x == y ? words[1] : rr_arena_offset(s->arena, y, bytes);
    }
    RR_CHECK(rr_shm_arrive_words(c, &h, words, "allreduce"));
    int in_place;
    find_shared(s, &q, &in_place);
    if (q.zin == NULL)
        return s->n == 2 && bytes < PAIR_BELOW && !q.stream ? pair_path(c, &q)
                                                            : large_path(c, &q);
    /* pair_shared writes outputs while the peer still reads inputs: only when no rank
     * reduces in place (a shared output never partly overlaps its input) */
    if (s->n == 2 && !q.stream && in_place == 0)
        return pair_shared(c, &q);
    /* Every output shared: one pass below the streaming threshold; from it on, in place,
     * the two-phase plan.  Streamed sizes into separate outputs: the two-phase plan would
     * write each output line twice over (its slice with ordinary stores after reading it
     * for ownership, the rest streamed); the slice plan's single streamed copy-out is
     * faster there. */
    if (q.zout && !q.stream)
        return scatter_path(c, &q);
    if (q.zout && in_place == 2)
        return shared_path(c, &q);
    return large_path(c, &q);
}
