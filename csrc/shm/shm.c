/* The same-host shared segment (see shm.h for its layout and protocol): creation by the
 * leader, mapping by the peers, the arrival that starts every collective, and waiting.
 *
 * A waiting rank polls the peer's counter for up to RINGRED_SHM_SPIN_US microseconds (about
 * one when the host's ranks outnumber our CPUs), then yields its core twice, then sleeps on
 * the counter (futex, woken by the writer), so that a peer that is not running (an
 * oversubscribed host, a busy machine) gets the CPU instead of a spinning waiter.  The spin
 * adapts: it doubles after a wait that spinning ended and halves after one that had to
 * sleep, so a rank whose peers share its CPU soon stops burning it.  Every few
 * milliseconds of waiting it checks that the peers are alive and the timeout. */
#include "shm/shm.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#endif

#define RR_SHM_MAGIC UINT64_C(0x72696e6772656431) /* "ringred1" */
#define RR_SHM_PREFIX "/ringred-"
#define SPIN_CLOCK 64         /* polls between clock reads while spinning */
#define SLEEP_NS 5000000L     /* longest single sleep on a counter */
#define YIELDS 2              /* sched_yield()s between spinning and sleeping */
#define SPIN_MIN_S 2e-6       /* adaptive spinning never goes below this */
#define OVERSUBSCRIBED_SPIN_US 1.0 /* spin this long at most when ranks outnumber CPUs */

typedef struct shm_control {
    uint64_t magic;
    uint64_t n, small_bytes, slot_bytes, bytes;
} shm_control;

/* What rank 0 tells the others. */
typedef struct shm_announce {
    char name[64];
    uint64_t small_bytes, slot_bytes, bytes;
    uint64_t arena_bytes; /* per rank, after the control part (0: no arenas) */
    uint64_t shm_free; /* bytes free in /dev/shm when the leader failed (UINT64_MAX: unknown) */
    int32_t err; /* errno of the leader's failure, 0 if the segment exists */
    int32_t pad;
} shm_announce;

typedef struct shm_layout {
    size_t ctr, small, stride, big, res, bytes; /* the control part */
    size_t arena, file;                               /* arenas start there; file size */
} shm_layout;

static size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

#define ARENA_ALIGN ((size_t)2 << 20)

static shm_layout layout(int n, size_t small, size_t slot, size_t arena)
{
    shm_layout l;
    size_t off = RR_SHM_LINE; /* control line */
    l.ctr = off;
    off += (size_t)n * RR_NCTR * RR_SHM_LINE;
    l.small = off;
    l.stride = RR_SHM_HDR_BYTES + small;
    off = round_up(off + (size_t)n * 2 * l.stride, 4096);
    l.big = off;
    off += (size_t)n * 2 * slot;
    l.res = off;
    off += 2 * slot;
    l.bytes = off;
    l.arena = round_up(off, ARENA_ALIGN);
    l.file = arena ? l.arena + (size_t)n * arena : l.bytes;
    return l;
}

/* A name nobody can guess: the prefix, our pid, 128 random bits. */
static int make_name(char *name, size_t cap)
{
    unsigned char rnd[16];
    size_t got = 0;
    while (got < sizeof rnd) {
        ssize_t r = getrandom(rnd + got, sizeof rnd - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        got += (size_t)r;
    }
    if (got < sizeof rnd) {
        int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return -1;
        ssize_t r = read(fd, rnd, sizeof rnd);
        close(fd);
        if (r != (ssize_t)sizeof rnd) {
            errno = EIO;
            return -1;
        }
    }
    int pos = snprintf(name, cap, RR_SHM_PREFIX "%d-", (int)getpid());
    for (size_t i = 0; i < sizeof rnd && (size_t)pos + 2 < cap; i++)
        pos += snprintf(name + pos, cap - (size_t)pos, "%02x", rnd[i]);
    return 0;
}

static void *map_fd(int fd, size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* Leader: create, size, map and format the segment.  Returns the mapping of the control
 * part (its descriptor in *fd_out) or NULL (errno). */
static void *create_segment(shm_announce *a, const shm_layout *l, int n, int *fd_out)
{
    int fd = -1;
    for (int tries = 0; tries < 8 && fd < 0; tries++) {
        if (make_name(a->name, sizeof a->name) != 0)
            return NULL;
        fd = shm_open(a->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST)
            return NULL;
    }
    if (fd < 0)
        return NULL;
    /* Reserve every page of the control part now (the arenas' pages are reserved when
     * buffers are allocated, shm_arena.c): a full /dev/shm is an error here, which makes
     * auto fall back to MPI, and never a SIGBUS in some later collective. */
    void *p = NULL;
    int reserve = ftruncate(fd, (off_t)l->file) != 0 ? errno : 0;
    if (reserve == 0) {
        reserve = posix_fallocate(fd, 0, (off_t)l->bytes);
        if (reserve == EINVAL || reserve == EOPNOTSUPP)
            reserve = 0; /* a file system that cannot reserve: map it as it is */
    }
    if (reserve == 0)
        p = map_fd(fd, l->bytes);
    if (p == NULL) {
        int e = reserve ? reserve : errno;
        close(fd);
        shm_unlink(a->name);
        errno = e;
        return NULL;
    }
    *fd_out = fd;
    shm_control ctl = {RR_SHM_MAGIC, (uint64_t)n, a->small_bytes, a->slot_bytes, l->bytes};
    memcpy(p, &ctl, sizeof ctl);
    return p;
}

static void *attach_segment(const shm_announce *a, const shm_layout *l, int *err, int *fd_out)
{
    int fd = shm_open(a->name, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) {
        *err = errno;
        return NULL;
    }
    struct stat st;
    void *p = NULL;
    if (fstat(fd, &st) != 0)
        *err = errno;
    else if ((uint64_t)st.st_size != l->file)
        *err = EINVAL;
    else if ((p = map_fd(fd, a->bytes)) == NULL)
        *err = errno;
    if (p == NULL)
        close(fd);
    else
        *fd_out = fd;
    return p;
}

static int oversubscribed(const rr_comm *c)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 0;
    return CPU_COUNT(&set) < c->local_size;
}

static void free_shm(rr_shm *s)
{
    if (s == NULL)
        return;
    if (s->base)
        munmap(s->base, s->bytes);
    rr_arena_detach(s->arena);
    free(s->srcs);
    free(s->zin);
    free(s->zout);
    free(s);
}

/* Rank 0: create and reserve the segment, filling the announcement (its name, sizes, or
 * the error and the free space of /dev/shm).  The mapping, or NULL. */
static void *leader_create(rr_comm *c, shm_announce *a, int *fd)
{
    int n = c->size;
    a->small_bytes = round_up(c->cfg.shm_small_bytes, RR_SHM_LINE);
    a->slot_bytes = round_up(c->cfg.shm_slot_bytes, 4096);
    a->arena_bytes = round_up(c->cfg.shm_arena_bytes, ARENA_ALIGN);
    shm_layout l = layout(n, a->small_bytes, a->slot_bytes, a->arena_bytes);
    a->bytes = l.bytes; /* the control part, arenas or not */
    struct rlimit rl;   /* beyond RLIMIT_FSIZE, ftruncate would raise SIGXFSZ */
    int fits = getrlimit(RLIMIT_FSIZE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
               (uint64_t)rl.rlim_cur >= (uint64_t)l.file;
    void *base = fits ? create_segment(a, &l, n, fd) : NULL;
    if (base == NULL && a->arena_bytes) {
        /* no room for a file that large (a file size limit, say): no arenas, shm still */
        a->arena_bytes = 0;
        l = layout(n, a->small_bytes, a->slot_bytes, 0);
        base = create_segment(a, &l, n, fd);
    }
    if (base == NULL) {
        a->err = errno ? errno : EIO;
        struct statvfs vs;
        a->shm_free = statvfs("/dev/shm", &vs) == 0 ? (uint64_t)vs.f_bavail * vs.f_frsize
                                                    : UINT64_MAX;
    }
    return base;
}

/* The transport's view of a mapped segment, and its waiting policy. */
static void fill(rr_shm *s, const rr_comm *c, const shm_announce *a, const shm_layout *l,
                 void *base, int over, int any_over)
{
    s->base = base;
    s->bytes = a->bytes;
    s->small_bytes = a->small_bytes;
    s->slot_bytes = a->slot_bytes;
    s->stream_bytes = c->cfg.shm_stream_bytes; /* rank 0's (agree_settings in comm.c) */
    s->ctr = (rr_shm_line *)((uint8_t *)base + l->ctr);
    s->small = (uint8_t *)base + l->small;
    s->small_stride = l->stride;
    s->big = (uint8_t *)base + l->big;
    s->res = (uint8_t *)base + l->res;
    s->timeout_s = c->cfg.timeout_s;
    s->oversubscribed = any_over;
    double spin_us = over ? OVERSUBSCRIBED_SPIN_US : c->cfg.shm_spin_us;
    s->spin_max_s = (spin_us < c->cfg.shm_spin_us ? spin_us : c->cfg.shm_spin_us) * 1e-6;
    s->spin_s = s->spin_max_s;
    s->yields = over ? 2 : YIELDS;
    s->what = "setup";
}

rr_status rr_shm_open(rr_comm *c)
{
    int n = c->size, me = c->rank;
    rr_shm *s = calloc(1, sizeof *s);
    if (s == NULL)
        return RR_FAIL(c, RR_ERR_NOMEM, "shm: out of memory");
    s->n = n;
    s->me = me;
    s->srcs = calloc((size_t)n, sizeof *s->srcs);
    s->zin = calloc((size_t)n, sizeof *s->zin);
    s->zout = calloc((size_t)n, sizeof *s->zout);
    if (!s->srcs || !s->zin || !s->zout) {
        free_shm(s);
        return RR_FAIL(c, RR_ERR_NOMEM, "shm: out of memory");
    }
    shm_announce a;
    memset(&a, 0, sizeof a);
    void *base = NULL;
    int fd = -1;
    if (me == 0)
        base = leader_create(c, &a, &fd);
    int e = MPI_Bcast(&a, (int)sizeof a, MPI_BYTE, 0, c->comm);
    if (e != MPI_SUCCESS) {
        if (base) {
            munmap(base, a.bytes);
            close(fd);
            shm_unlink(a.name);
        }
        free_shm(s);
        return rr_fail_mpi(c, e, __FILE__, __LINE__, "MPI_Bcast(shm segment name)");
    }
    if (a.err) {
        free_shm(s);
        char avail[64] = "";
        if (a.shm_free != UINT64_MAX)
            snprintf(avail, sizeof avail, ", %.1f MiB free", (double)a.shm_free / 1048576.0);
        return RR_FAIL(c, RR_ERR_SYSTEM, "shm: rank 0 could not create and reserve the "
                       "%llu-byte (%.1f MiB) shared segment in /dev/shm%s: %s",
                       (unsigned long long)a.bytes, (double)a.bytes / 1048576.0, avail,
                       strerror(a.err));
    }
    int err = 0;
    shm_layout l = layout(n, a.small_bytes, a.slot_bytes, a.arena_bytes);
    if (me != 0)
        base = attach_segment(&a, &l, &err, &fd);
    if (base != NULL) {
        shm_control ctl;
        memcpy(&ctl, base, sizeof ctl);
        if (ctl.magic != RR_SHM_MAGIC || ctl.n != (uint64_t)n || ctl.bytes != l.bytes) {
            err = EINVAL;
            munmap(base, a.bytes);
            close(fd);
            fd = -1;
            base = NULL;
        }
    }
    /* Everyone has mapped (or failed) after this: the leader unlinks the name at once, so
     * nothing stays in /dev/shm however the processes end.  The same reduction tells every
     * rank whether any of them is oversubscribed (the chunk plan must be the same on all). */
    int over = oversubscribed(c);
    int mine[2] = {base != NULL, !over}, agg[2] = {0, 0};
    e = MPI_Allreduce(mine, agg, 2, MPI_INT, MPI_MIN, c->comm);
    int ok = mine[0], all_ok = agg[0];
    if (me == 0)
        shm_unlink(a.name);
    if (e != MPI_SUCCESS || !all_ok) {
        if (base) {
            munmap(base, a.bytes);
            close(fd);
        }
        free_shm(s);
        if (e != MPI_SUCCESS)
            return rr_fail_mpi(c, e, __FILE__, __LINE__, "MPI_Allreduce(shm attach)");
        if (!ok)
            return RR_FAIL(c, RR_ERR_SYSTEM, "shm: cannot map rank 0's segment: %s",
                           strerror(err));
        return RR_FAIL(c, RR_ERR_SYSTEM, "shm: another rank could not map the shared segment");
    }
    fill(s, c, &a, &l, base, over, !agg[1]);
    /* Shared buffers: without a mapping of the arenas (no address space, RINGRED_SHM_ARENA_
     * BYTES=0) this rank never offers one, so no call reads buffers in place. */
    s->arena = rr_arena_map(fd, l.arena, a.arena_bytes, n, me);
    if (s->arena == NULL)
        close(fd);
    c->shm = s;
    return RR_OK;
}

void rr_shm_close(rr_comm *c)
{
    free_shm(c->shm);
    c->shm = NULL;
}

_Static_assert(sizeof(rr_header) + RR_SHM_WORDS * sizeof(uint64_t) <= RR_SHM_HDR_BYTES,
               "the header line holds the header and the posted words");

uint64_t rr_shm_word(const rr_shm *s, int rank, int i)
{
    uint64_t v;
    memcpy(&v, rr_shm_small_slot(s, rank, s->call) + sizeof(rr_header) + (size_t)i * sizeof v,
           sizeof v);
    return v;
}

/* ---------------------------------------------------------------- waiting */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void rr_shm_wake(rr_shm_line *line)
{
#ifdef __linux__
    syscall(SYS_futex, (uint32_t *)&line->v, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
#else
    (void)line;
#endif
}

/* Sleep until the counter's low word changes from that of `seen` (or a few ms pass). */
static void sleep_on(rr_shm_line *line, uint64_t seen)
{
    atomic_fetch_add_explicit(&line->sleepers, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&line->v, memory_order_seq_cst) == seen) {
        struct timespec ts = {0, SLEEP_NS};
#ifdef __linux__
        /* little-endian: the counter's first 4 bytes are its low word */
        syscall(SYS_futex, (uint32_t *)&line->v, FUTEX_WAIT, (uint32_t)seen, &ts, NULL, 0);
#else
        ts.tv_nsec = 50000;
        nanosleep(&ts, NULL);
#endif
    }
    atomic_fetch_sub_explicit(&line->sleepers, 1, memory_order_relaxed);
}

static rr_status wait_slow(rr_comm *c, rr_shm_line *line, uint64_t want, int peer)
{
    rr_shm *s = c->shm;
    if (c->live.broken)
        return rr_live_fail_again(c);
    double t0 = now_s(), spin_until = t0 + s->spin_s, next_live = t0 + RR_LIVENESS_S;
    unsigned polls = 0;
    int spinning = 1, yields = 0;
    for (;;) {
        uint64_t v = atomic_load_explicit(&line->v, memory_order_acquire);
        if (v >= want) {
            /* Adaptive spinning: a peer that arrives within the longest spin (it runs
             * beside us) earns longer spins, one that arrives later (it shares our CPU, or
             * the machine is busy) shorter ones.  Judged by the time waited, not by whether
             * we were still spinning: otherwise one wait longer than the current spin
             * shrinks it, every later wait outlasts the shorter spin, and spinning collapses
             * to the minimum for good (measured: ranks then slept through ~3000 futex
             * waits per second and large allreduces ran 1.6x slower). */
            if (spinning || now_s() - t0 < s->spin_max_s)
                s->spin_s = s->spin_s * 2 < s->spin_max_s ? s->spin_s * 2 : s->spin_max_s;
            else
                s->spin_s = s->spin_s / 2 > SPIN_MIN_S ? s->spin_s / 2 : SPIN_MIN_S;
            return RR_OK;
        }
        if (spinning) {
            if (++polls % SPIN_CLOCK)
                continue;
        } else if (yields < s->yields) {
            yields++;
            sched_yield();
            if (++polls % SPIN_CLOCK)
                continue;
        } else
            sleep_on(line, v);
        double t = now_s();
        spinning = t < spin_until;
        if (t >= next_live) {
            next_live = t + RR_LIVENESS_S;
            /* Every peer: the one we wait for may itself wait for the dead one.  A peer
             * may also have written the counter and then exited while we slept: what it
             * wrote counts (the communicator stays broken for the next call). */
            rr_status st = rr_live_poll(c, peer, s->what);
            if (st != RR_OK)
                return atomic_load_explicit(&line->v, memory_order_acquire) >= want ? RR_OK
                                                                                    : st;
        }
        if (s->timeout_s > 0 && t - t0 > s->timeout_s && /* 0: never */
            atomic_load_explicit(&line->v, memory_order_acquire) < want)
            return rr_live_timeout_error(c, peer, s->what);
    }
}

rr_status rr_shm_wait(rr_comm *c, int which, int peer, uint64_t v)
{
    rr_shm_line *line = &c->shm->ctr[peer * RR_NCTR + which];
    if (atomic_load_explicit(&line->v, memory_order_acquire) >= v && !c->live.broken)
        return RR_OK;
    return wait_slow(c, line, v, peer);
}

rr_status rr_shm_check_peers(rr_comm *c)
{
    rr_shm *s = c->shm;
    if (c->live.broken)
        return rr_live_fail_again(c);
    return rr_live_poll(c, -1, s->what ? s->what : "a device wait");
}

rr_status rr_shm_wait_all(rr_comm *c, int which, uint64_t v)
{
    rr_shm *s = c->shm;
    for (int p = 0; p < s->n; p++)
        if (p != s->me)
            RR_CHECK(rr_shm_wait(c, which, p, v));
    return RR_OK;
}

/* ---------------------------------------------------------------- arrival */

rr_status rr_shm_arrive(rr_comm *c, const rr_header *h, uint64_t extra, const char *what)
{
    uint64_t words[RR_SHM_WORDS] = {extra, 0, 0};
    return rr_shm_arrive_words(c, h, words, what);
}

rr_status rr_shm_arrive_words(rr_comm *c, const rr_header *h,
                              const uint64_t words[RR_SHM_WORDS], const char *what)
{
    rr_shm *s = c->shm;
    s->what = what;
    if (c->live.broken)
        return rr_live_fail_again(c);
    uint64_t call = s->call + 1;
    uint8_t *slot = rr_shm_small_slot(s, s->me, call);
    rr_header mine = *h;
    mine.flags = 0;
    mine.tag = c->thread_tag;
    mine.seq = c->thread_seq++;
    memcpy(slot, &mine, sizeof mine);
    memcpy(slot + sizeof mine, words, RR_SHM_WORDS * sizeof *words);
    s->call = call;
    rr_shm_signal(s, RR_CTR_ARRIVE, call);
    RR_CHECK(rr_shm_wait_all(c, RR_CTR_ARRIVE, call));
    int differ = 0;
    for (int p = 0; p < s->n && !differ; p++) {
        rr_header hp;
        memcpy(&hp, rr_shm_small_slot(s, p, call), sizeof hp);
        differ = !rr_header_equal(&hp, &mine);
    }
    if (!differ)
        return RR_OK;
    rr_header *all = NULL;
    RR_CHECK(rr_scratch(c, 0, (size_t)s->n * sizeof *all, (void **)&all));
    for (int p = 0; p < s->n; p++)
        memcpy(&all[p], rr_shm_small_slot(s, p, call), sizeof *all);
    return rr_mismatch_report(c, all, &mine);
}

void rr_comm_stream_cold(rr_comm *c, int cold)
{
    if (c->hier_local)
        rr_comm_stream_cold(c->hier_local, cold);
    rr_shm *s = c->shm;
    if (s == NULL)
        return;
    size_t base = c->cfg.shm_stream_bytes; /* rank 0's (agree_settings in comm.c) */
    s->stream_bytes = cold && base >= 8 ? base / 8 : base;
}

size_t rr_shm_slice(size_t len, size_t es, int n, int p, size_t *lo)
{
    size_t g = RR_SHM_LINE / es, units = (len + g - 1) / g;
    size_t base = units / (size_t)n, extra = units % (size_t)n, up = (size_t)p;
    size_t u0 = up * base + (up < extra ? up : extra), u1 = u0 + base + (up < extra);
    size_t a = u0 * g, b = u1 * g;
    a = a < len ? a : len;
    b = b < len ? b : len;
    *lo = a;
    return b - a;
}
