/* Shared buffers: the per-rank arenas at the end of the shared segment, and the allocator
 * behind rr_mem_alloc / rr_mem_free.
 *
 * Every rank maps every rank's arena (one mapping, not pre-faulted: a page costs memory
 * only once it is allocated).  Only the owner allocates in its arena, so the allocator is
 * process-local: a sorted free list under a mutex.  Blocks are committed with fallocate()
 * when first handed out, so a full /dev/shm is an error from rr_mem_alloc and never a
 * SIGBUS later.  A block starts with a 64-byte header (magic, arena, length); the caller
 * gets the bytes after it, 64-byte aligned.
 *
 * Lifetime: the arena is reference-counted by the communicators that use it (its own, and
 * an engine's that shares it: rr_shm_share_arena) and by its live blocks.  When the last
 * communicator closes with blocks still alive, the mapping stays until the last
 * of them is freed (the segment's name is long gone, so nothing outlives the process), and
 * the arrays built on them stay valid memory; they are just no longer shared by anyone. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shm/shm.h"

#define BLOCK_MAGIC UINT64_C(0x72726d656d626c6b) /* "rrmemblk" */
#define HDR RR_SHM_LINE
#define PAGE 4096u

typedef struct span {
    size_t off, len;
} span;

struct rr_arena {
    pthread_mutex_t mu;
    uint8_t *base; /* every rank's arena, rank p's at base + p * each */
    size_t each;   /* bytes per rank */
    int n, me;
    int fd;            /* the segment, to commit pages of our arena */
    size_t file_off;   /* where arena 0 starts in the segment */
    size_t committed;  /* our arena's pages [0, committed) are allocated */
    size_t live;       /* blocks handed out and not yet freed */
    int owners;        /* communicators using it */
    span *free;        /* sorted by offset, coalesced */
    size_t nfree, capfree;
};

typedef struct block_hdr {
    uint64_t magic;
    rr_arena *arena;
    size_t len; /* whole block, header included */
} block_hdr;

static size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

rr_arena *rr_arena_map(int fd, size_t file_off, size_t each, int n, int me)
{
    if (each == 0)
        return NULL;
    rr_arena *a = calloc(1, sizeof *a);
    if (a == NULL)
        return NULL;
    a->free = malloc(16 * sizeof *a->free);
    void *p = a->free ? mmap(NULL, each * (size_t)n, PROT_READ | PROT_WRITE,
                             MAP_SHARED | MAP_NORESERVE, fd, (off_t)file_off)
                      : MAP_FAILED;
    if (p == MAP_FAILED) {
        free(a->free);
        free(a);
        return NULL;
    }
    pthread_mutex_init(&a->mu, NULL);
    a->base = p;
    a->each = each;
    a->n = n;
    a->me = me;
    a->fd = fd;
    a->file_off = file_off;
    a->capfree = 16;
    a->owners = 1;
    a->nfree = 1;
    a->free[0] = (span){0, each};
    return a;
}

static void destroy(rr_arena *a)
{
    munmap(a->base, a->each * (size_t)a->n);
    if (a->fd >= 0)
        close(a->fd);
    pthread_mutex_destroy(&a->mu);
    free(a->free);
    free(a);
}

void rr_arena_detach(rr_arena *a)
{
    if (a == NULL)
        return;
    pthread_mutex_lock(&a->mu);
    int last = --a->owners == 0 && a->live == 0;
    pthread_mutex_unlock(&a->mu);
    if (last)
        destroy(a);
}

rr_status rr_shm_share_arena(rr_comm *c, rr_comm *from)
{
    rr_arena *a = from && from->shm ? from->shm->arena : NULL;
    int mine = c->shm && a && c->size == from->size && a->n == c->size ? from->rank : -1;
    int *ranks = NULL;
    RR_CHECK(rr_scratch(c, 1, (size_t)c->size * sizeof *ranks, (void **)&ranks));
    RR_MPI(c, MPI_Allgather(&mine, 1, MPI_INT, ranks, 1, MPI_INT, c->comm));
    /* the same answer on every rank: rank p here must be rank p there, for every p */
    for (int p = 0; p < c->size; p++)
        if (ranks[p] != p)
            return RR_FAIL(c, RR_ERR_UNSUPPORTED, "cannot share the shared-buffer arena: rank %d "
                           "of this communicator is not rank %d there, or has no arena", p, p);
    pthread_mutex_lock(&a->mu);
    a->owners++;
    pthread_mutex_unlock(&a->mu);
    rr_arena_detach(c->shm->arena);
    c->shm->arena = a;
    return RR_OK;
}

uint64_t rr_arena_offset(const rr_arena *a, const void *p, size_t bytes)
{
    if (a == NULL || p == NULL)
        return RR_ARENA_NONE;
    const uint8_t *lo = a->base + (size_t)a->me * a->each, *q = p;
    if (q < lo || q >= lo + a->each || bytes > (size_t)(lo + a->each - q))
        return RR_ARENA_NONE;
    return (uint64_t)(q - lo);
}

uint8_t *rr_arena_at(const rr_arena *a, int rank, uint64_t off)
{
    return a->base + (size_t)rank * a->each + off;
}

int rr_shm_inputs_shared(rr_shm *s)
{
    if (s->arena == NULL)
        return 0;
    for (int p = 0; p < s->n; p++)
        if (rr_shm_word(s, p, 1) == RR_ARENA_NONE)
            return 0;
    atomic_fetch_add_explicit(&s->zero_copy_calls, 1, memory_order_relaxed);
    return 1;
}

/* Take len bytes (a multiple of 64) from the first free span that holds them. */
static int take(rr_arena *a, size_t len, size_t *off)
{
    for (size_t i = 0; i < a->nfree; i++) {
        span *s = &a->free[i];
        if (s->len < len)
            continue;
        *off = s->off;
        s->off += len;
        s->len -= len;
        if (s->len == 0) {
            memmove(s, s + 1, (a->nfree - i - 1) * sizeof *s);
            a->nfree--;
        }
        return 1;
    }
    return 0;
}

/* Give [off, off + len) back, merging with its neighbours.  Returns 0 if the list could
 * not grow (the span is then lost until the arena goes: never corrupts). */
static int give(rr_arena *a, size_t off, size_t len)
{
    size_t i = 0;
    while (i < a->nfree && a->free[i].off < off)
        i++;
    int left = i > 0 && a->free[i - 1].off + a->free[i - 1].len == off;
    int right = i < a->nfree && off + len == a->free[i].off;
    if (left && right) {
        a->free[i - 1].len += len + a->free[i].len;
        memmove(&a->free[i], &a->free[i + 1], (a->nfree - i - 1) * sizeof *a->free);
        a->nfree--;
    } else if (left) {
        a->free[i - 1].len += len;
    } else if (right) {
        a->free[i].off = off;
        a->free[i].len += len;
    } else {
        if (a->nfree == a->capfree) {
            span *g = realloc(a->free, 2 * a->capfree * sizeof *g);
            if (g == NULL)
                return 0;
            a->free = g;
            a->capfree *= 2;
        }
        memmove(&a->free[i + 1], &a->free[i], (a->nfree - i) * sizeof *a->free);
        a->free[i] = (span){off, len};
        a->nfree++;
    }
    return 1;
}

rr_status rr_arena_alloc(rr_comm *c, rr_arena *a, size_t bytes, void **out)
{
    if (bytes > a->each)
        return RR_FAIL(c, RR_ERR_NOMEM, "shared buffer of %zu bytes: larger than this rank's "
                       "arena (%zu bytes, RINGRED_SHM_ARENA_BYTES)", bytes, a->each);
    size_t len = round_up(bytes + HDR, HDR), off = 0;
    pthread_mutex_lock(&a->mu);
    if (!take(a, len, &off)) {
        pthread_mutex_unlock(&a->mu);
        return RR_FAIL(c, RR_ERR_NOMEM, "shared buffer of %zu bytes: this rank's arena "
                       "(%zu bytes, RINGRED_SHM_ARENA_BYTES) has no free run that large",
                       bytes, a->each);
    }
    size_t end = round_up(off + len, PAGE);
    if (end > a->committed) {
        size_t from = a->committed;
        int e = posix_fallocate(a->fd, (off_t)(a->file_off + (size_t)a->me * a->each + from),
                                (off_t)(end - from));
        if (e != 0) {
            give(a, off, len);
            pthread_mutex_unlock(&a->mu);
            return RR_FAIL(c, e == ENOSPC ? RR_ERR_NOMEM : RR_ERR_SYSTEM,
                           "shared buffer of %zu bytes: cannot reserve its pages in /dev/shm: "
                           "%s", bytes, strerror(e));
        }
        a->committed = end;
    }
    a->live++;
    pthread_mutex_unlock(&a->mu);
    uint8_t *blk = rr_arena_at(a, a->me, off);
    block_hdr h = {BLOCK_MAGIC, a, len};
    memcpy(blk, &h, sizeof h);
    *out = blk + HDR;
    return RR_OK;
}

rr_status rr_mem_free(void *ptr)
{
    if (ptr == NULL)
        return RR_OK;
    uint8_t *blk = (uint8_t *)ptr - HDR;
    block_hdr h;
    memcpy(&h, blk, sizeof h);
    if (h.magic != BLOCK_MAGIC || h.arena == NULL)
        return RR_ERR_INVALID;
    rr_arena *a = h.arena;
    pthread_mutex_lock(&a->mu);
    size_t off = (size_t)(blk - rr_arena_at(a, a->me, 0));
    memset(blk, 0, sizeof h); /* a second free of this block is refused */
    give(a, off, h.len);
    a->live--;
    int last = a->owners == 0 && a->live == 0;
    pthread_mutex_unlock(&a->mu);
    if (last)
        destroy(a);
    return RR_OK;
}

rr_status rr_mem_alloc(rr_comm *c, size_t bytes, void **out)
{
    if (c == NULL || out == NULL)
        return RR_ERR_INVALID;
    *out = NULL;
    if (c->shm == NULL)
        return RR_FAIL(c, RR_ERR_UNSUPPORTED, "shared buffers need the shared-memory transport; "
                       "this communicator uses %s", rr_comm_transport(c));
    if (c->shm->arena == NULL)
        return RR_FAIL(c, RR_ERR_UNSUPPORTED, "this rank has no shared arena "
                       "(RINGRED_SHM_ARENA_BYTES=0, or its address space could not be mapped)");
    return rr_arena_alloc(c, c->shm->arena, bytes, out);
}

uint64_t rr_comm_zero_copy_calls(const rr_comm *c)
{
    return c && c->shm ? atomic_load_explicit(&c->shm->zero_copy_calls, memory_order_relaxed) : 0;
}
