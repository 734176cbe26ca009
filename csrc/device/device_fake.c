/* Fake device backend: host memory posing as device memory, so that the staging schedule,
 * the IPC transport and their ordering are tested on machines without a GPU.
 *
 * - "Device" addresses are host addresses with bit 62 set (ringred.testing.FakeDeviceArray
 *   and mem_alloc hand them out): a host dereference of one faults at once.  Untagged
 *   addresses are accepted too (RINGRED_DEVICE_BACKEND=fake with any
 *   __cuda_array_interface__ object).
 * - A stream is a worker thread executing queued copies, kernel launches, event records and
 *   event waits in order, with random delays before operations.
 * - An event is a pair of sequence numbers: records issued (at record time, on the host)
 *   and records executed (by the stream).  A wait captures the records issued when it is
 *   queued and waits until that many have executed.  IPC events keep the pair in a page of
 *   shared memory that the peers map (device_fake_ipc.c); their waiters poll, since the
 *   recording stream may belong to another process.
 * - Device memory from mem_alloc is a memfd mapping filled with 0xFF bytes; another process
 *   maps it from an IPC handle through /proc/<pid>/fd (device_fake_ipc.c).
 * - Every download and device-to-device copy first fills its destination with 0xFF bytes
 *   (NaN for floats) and waits a little before copying; every upload fills its source with
 *   0xFF after copying: a host read of a staging slot that is not ordered after its
 *   download, a read of a copy's destination before it finished, or a download into a slot
 *   whose upload has not finished shows up as garbage in the result.
 * - A kernel launch runs the host build of ringred's reduction kernel (rr_dev_kernel_host)
 *   on the stream thread, after a random delay.
 * - Producer streams 0, 1 and 2 (and any value the fake did not create) are the host:
 *   work queued there runs at once on the caller's thread, and a wait there blocks the
 *   caller.
 * - RINGRED_FAKE_CUDA_AWARE=1 makes the fake report a CUDA-aware MPI (MPI then gets the
 *   untagged host addresses), so the direct path is tested too. */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "device/device_fake.h"

enum { F_OK = 0 };

enum { OP_COPY, OP_RECORD, OP_WAIT, OP_KERNEL, OP_COPYK, OP_SLEEP, OP_STOP };

typedef struct fake_op {
    int kind;
    void *dst;
    void *src;
    size_t n;
    int poison_dst, poison_src;
    rr_fake_event *ev;
    uint64_t seq;
    double seconds;           /* OP_SLEEP */
    rr_kargs k;               /* OP_KERNEL, addresses untagged */
    const rr_kcopy *segs;     /* OP_COPYK: the segment table, read when the op runs */
    uint32_t nseg;
    struct fake_op *next;
} fake_op;

typedef struct fake_stream {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    fake_op *head, *tail;
    uint64_t enq, fin;
    unsigned seed;
} fake_stream;

void *rr_fake_untag(uintptr_t p) { return (void *)(p & ~RR_FAKE_TAG); }

/* Streams made by stream_create; any other handle is the host. */
#define MAX_STREAMS 256
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static fake_stream *registry[MAX_STREAMS];

static fake_stream *as_stream(uintptr_t h)
{
    fake_stream *found = NULL;
    if (h <= 2)
        return NULL;
    pthread_mutex_lock(&reg_mu);
    for (int i = 0; i < MAX_STREAMS && !found; i++)
        if ((uintptr_t)registry[i] == h)
            found = registry[i];
    pthread_mutex_unlock(&reg_mu);
    return found;
}

static int reg_set(fake_stream *old, fake_stream *new_)
{
    int ok = 0;
    pthread_mutex_lock(&reg_mu);
    for (int i = 0; i < MAX_STREAMS && !ok; i++)
        if (registry[i] == old) {
            registry[i] = new_;
            ok = 1;
        }
    pthread_mutex_unlock(&reg_mu);
    return ok;
}

static void pause_a_little(unsigned *seed)
{
    unsigned r = (unsigned)rand_r(seed);
    if (r % 3 == 0) {
        struct timespec ts = {0, (long)(r % 200) * 1000};
        nanosleep(&ts, NULL);
    }
}

static void event_reach(rr_fake_event *e, uint64_t seq)
{
    uint64_t cur = atomic_load(&e->c->done);
    while (cur < seq && !atomic_compare_exchange_weak(&e->c->done, &cur, seq))
        ;
    if (e->kind == RR_FAKE_EV_LOCAL) {
        pthread_mutex_lock(&e->mu);
        pthread_cond_broadcast(&e->cv);
        pthread_mutex_unlock(&e->mu);
    }
}

/* Wait until seq records of e have executed.  An IPC event's recorder may be another
 * process: poll (a short spin, then yields, then short sleeps). */
static void event_wait_for(rr_fake_event *e, uint64_t seq)
{
    if (e->kind == RR_FAKE_EV_LOCAL) {
        pthread_mutex_lock(&e->mu);
        while (atomic_load(&e->c->done) < seq)
            pthread_cond_wait(&e->cv, &e->mu);
        pthread_mutex_unlock(&e->mu);
        return;
    }
    for (unsigned i = 0; atomic_load(&e->c->done) < seq; i++) {
        if (i < 100)
            continue;
        if (i < 200) {
            sched_yield();
        } else {
            struct timespec ts = {0, 20 * 1000};
            nanosleep(&ts, NULL);
        }
    }
}

/* The host build of the kernel on the addresses the fake's tags stand for. */
static void kernel_run(const rr_kargs *a)
{
    rr_kargs k = *a;
    for (int j = 0; j < RR_KMAX_SRCS; j++)
        k.src[j] = (uint64_t)(uintptr_t)rr_fake_untag((uintptr_t)k.src[j]);
    for (int d = 0; d < 2; d++)
        k.dst[d] = (uint64_t)(uintptr_t)rr_fake_untag((uintptr_t)k.dst[d]);
    rr_dev_kernel_host(&k);
}

/* The batched copy kernel: destinations poisoned first (a reader not ordered after the
 * launch sees 0xFF), a pause, then the copies of the host build, addresses untagged. */
static void copy_kernel_run(const rr_kcopy *segs, uint32_t nseg, unsigned *seed)
{
    for (uint32_t k = 0; k < nseg; k++)
        if (segs[k].bytes)
            memset(rr_fake_untag((uintptr_t)segs[k].dst), 0xFF, (size_t)segs[k].bytes);
    if (seed)
        pause_a_little(seed);
    for (uint32_t k = 0; k < nseg; k++) {
        rr_kcopy c = segs[k];
        c.dst = (uint64_t)(uintptr_t)rr_fake_untag((uintptr_t)c.dst);
        c.src = (uint64_t)(uintptr_t)rr_fake_untag((uintptr_t)c.src);
        rr_dev_copy_host(&c, 1);
    }
}

static void run_op(fake_stream *s, fake_op *op)
{
    switch (op->kind) {
    case OP_COPY:
        if (op->poison_dst)
            memset(op->dst, 0xFF, op->n);
        pause_a_little(&s->seed);
        memcpy(op->dst, op->src, op->n);
        if (op->poison_src)
            memset(op->src, 0xFF, op->n);
        break;
    case OP_RECORD:
        pause_a_little(&s->seed);
        event_reach(op->ev, op->seq);
        break;
    case OP_WAIT:
        event_wait_for(op->ev, op->seq);
        break;
    case OP_KERNEL:
        pause_a_little(&s->seed);
        kernel_run(&op->k);
        break;
    case OP_COPYK:
        copy_kernel_run(op->segs, op->nseg, &s->seed);
        break;
    case OP_SLEEP: {
        struct timespec ts = {(time_t)op->seconds,
                              (long)((op->seconds - (double)(time_t)op->seconds) * 1e9)};
        nanosleep(&ts, NULL);
        break;
    }
    default:
        break;
    }
}

static void *worker(void *arg)
{
    fake_stream *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (s->head == NULL)
            pthread_cond_wait(&s->cv, &s->mu);
        fake_op *op = s->head;
        s->head = op->next;
        if (s->head == NULL)
            s->tail = NULL;
        pthread_mutex_unlock(&s->mu);
        int stop = op->kind == OP_STOP;
        run_op(s, op);
        free(op);
        pthread_mutex_lock(&s->mu);
        s->fin++;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        if (stop)
            return NULL;
    }
}

static int enqueue(fake_stream *s, const fake_op *tmpl)
{
    fake_op *op = malloc(sizeof *op);
    if (op == NULL)
        return RR_FAKE_ERR_NOMEM;
    *op = *tmpl;
    op->next = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->tail)
        s->tail->next = op;
    else
        s->head = op;
    s->tail = op;
    s->enq++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return F_OK;
}

static int f_load(char *why, size_t len)
{
    (void)why;
    (void)len;
    return F_OK;
}

static int f_ctx_retain(int dev, void **ctx)
{
    (void)dev;
    *ctx = NULL;
    return F_OK;
}

static int f_ctx_release(int dev, void *ctx)
{
    (void)dev;
    (void)ctx;
    return F_OK;
}

static int f_ctx_enter(void *ctx, void **prev)
{
    (void)ctx;
    *prev = NULL;
    return F_OK;
}

static int f_ctx_leave(void *prev)
{
    (void)prev;
    return F_OK;
}

static int f_host_alloc(void **p, size_t n)
{
    if (posix_memalign(p, 64, n ? n : 1) != 0)
        return RR_FAKE_ERR_NOMEM;
    memset(*p, 0xFF, n);
    return F_OK;
}

static int f_host_free(void *p)
{
    free(p);
    return F_OK;
}

static int f_stream_create(uintptr_t *out)
{
    fake_stream *s = calloc(1, sizeof *s);
    if (s == NULL)
        return RR_FAKE_ERR_NOMEM;
    s->seed = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)s;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (pthread_create(&s->th, NULL, worker, s) != 0) {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        free(s);
        return RR_FAKE_ERR_THREAD;
    }
    if (!reg_set(NULL, s)) {
        fake_op stop = {.kind = OP_STOP};
        enqueue(s, &stop);
        pthread_join(s->th, NULL);
        free(s);
        return RR_FAKE_ERR_THREAD;
    }
    *out = (uintptr_t)s;
    return F_OK;
}

static int f_stream_sync(uintptr_t h)
{
    fake_stream *s = as_stream(h);
    if (s == NULL)
        return F_OK;
    pthread_mutex_lock(&s->mu);
    uint64_t want = s->enq;
    while (s->fin < want)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    return F_OK;
}

static int f_stream_destroy(uintptr_t h)
{
    fake_stream *s = as_stream(h);
    if (s == NULL || !reg_set(s, NULL))
        return RR_FAKE_ERR_VALUE;
    fake_op stop = {.kind = OP_STOP};
    int r = enqueue(s, &stop);
    if (r != F_OK)
        return r;
    pthread_join(s->th, NULL);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
    return F_OK;
}

rr_fake_event *rr_fake_event_new(int kind)
{
    rr_fake_event *e = calloc(1, sizeof *e);
    if (e == NULL)
        return NULL;
    e->kind = kind;
    e->c = &e->own;
    e->fd = -1;
    atomic_init(&e->own.issued, 0);
    atomic_init(&e->own.done, 0);
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    return e;
}

static int f_event_create(void **out)
{
    rr_fake_event *e = rr_fake_event_new(RR_FAKE_EV_LOCAL);
    if (e == NULL)
        return RR_FAKE_ERR_NOMEM;
    *out = e;
    return F_OK;
}

/* Ordinary, IPC and opened events alike. */
static int f_event_destroy(void *p)
{
    rr_fake_event *e = p;
    if (e->kind != RR_FAKE_EV_LOCAL)
        rr_fake_ipc_event_release(e);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
    return F_OK;
}

static int f_event_record(void *p, uintptr_t h)
{
    rr_fake_event *e = p;
    uint64_t seq = atomic_fetch_add(&e->c->issued, 1) + 1;
    fake_stream *s = as_stream(h);
    if (s == NULL) {
        event_reach(e, seq);
        return F_OK;
    }
    fake_op op = {.kind = OP_RECORD, .ev = e, .seq = seq};
    return enqueue(s, &op);
}

static int f_stream_wait_event(uintptr_t h, void *p)
{
    rr_fake_event *e = p;
    uint64_t seq = atomic_load(&e->c->issued);
    fake_stream *s = as_stream(h);
    if (s == NULL) {
        event_wait_for(e, seq);
        return F_OK;
    }
    fake_op op = {.kind = OP_WAIT, .ev = e, .seq = seq};
    return enqueue(s, &op);
}

static int f_event_query(void *p)
{
    rr_fake_event *e = p;
    uint64_t issued = atomic_load(&e->c->issued);
    return atomic_load(&e->c->done) >= issued ? F_OK : RR_DEV_NOT_READY;
}

static int copy(void *dst, void *src, size_t n, uintptr_t h, int poison_dst, int poison_src)
{
    if (n == 0)
        return F_OK;
    if (dst == NULL || src == NULL)
        return RR_FAKE_ERR_VALUE;
    fake_stream *s = as_stream(h);
    if (s == NULL) {
        memcpy(dst, src, n);
        return F_OK;
    }
    fake_op op = {.kind = OP_COPY, .dst = dst, .src = src, .n = n, .poison_dst = poison_dst,
                  .poison_src = poison_src};
    return enqueue(s, &op);
}

static int f_d2h(void *dst, uintptr_t src, size_t n, uintptr_t s)
{
    return copy(dst, rr_fake_untag(src), n, s, 1, 0);
}

static int f_h2d(uintptr_t dst, const void *src, size_t n, uintptr_t s)
{
    void *from;
    memcpy(&from, &src, sizeof from); /* the fake poisons consumed staging memory */
    return copy(rr_fake_untag(dst), from, n, s, 0, 1);
}

/* Device-to-device: the destination is poisoned before the copy, like a download's. */
static int f_d2d(uintptr_t dst, uintptr_t src, size_t n, uintptr_t s)
{
    char *d = rr_fake_untag(dst), *from = rr_fake_untag(src);
    if (n && d && from && d < from + n && from < d + n)
        return RR_FAKE_ERR_VALUE; /* overlapping (undefined for cuMemcpyDtoDAsync) */
    return copy(d, from, n, s, 1, 0);
}

static int f_launch_reduce(const rr_kargs *a, uintptr_t h)
{
    if (a->n == 0)
        return F_OK;
    if (a->nsrc < 1 || a->nsrc > RR_KMAX_SRCS || a->dtype < 0 || a->dtype >= RR_NUM_DTYPES ||
        a->op < 0 || a->op >= RR_NUM_OPS || a->div < 1 || a->dst[0] == 0)
        return RR_FAKE_ERR_VALUE;
    for (int j = 0; j < a->nsrc; j++)
        if (a->src[j] == 0)
            return RR_FAKE_ERR_VALUE;
    fake_stream *s = as_stream(h);
    if (s == NULL) {
        kernel_run(a);
        return F_OK;
    }
    fake_op op = {.kind = OP_KERNEL, .k = *a};
    return enqueue(s, &op);
}

static int f_launch_copy(const rr_kcopy *segs, uint32_t nseg, uint64_t max_bytes, uintptr_t h)
{
    (void)max_bytes;
    if (nseg == 0)
        return F_OK;
    if (segs == NULL)
        return RR_FAKE_ERR_VALUE;
    fake_stream *s = as_stream(h);
    if (s == NULL) {
        copy_kernel_run(segs, nseg, NULL);
        return F_OK;
    }
    fake_op op = {.kind = OP_COPYK, .segs = segs, .nseg = nseg};
    return enqueue(s, &op);
}

int rr_fake_stream_sleep(uintptr_t h, double seconds)
{
    fake_stream *s = as_stream(h);
    if (s == NULL || !(seconds >= 0.0 && seconds < 3600.0))
        return RR_FAKE_ERR_VALUE;
    fake_op op = {.kind = OP_SLEEP, .seconds = seconds};
    return enqueue(s, &op);
}

int rr_fake_stream_write(uintptr_t h, uintptr_t dst, uintptr_t src, size_t n)
{
    if (as_stream(h) == NULL)
        return RR_FAKE_ERR_VALUE;
    return copy(rr_fake_untag(dst), rr_fake_untag(src), n, h, 1, 0);
}

static const char *f_errstr(int code)
{
    switch (code) {
    case RR_FAKE_ERR_VALUE: return "fake device: invalid value";
    case RR_FAKE_ERR_NOMEM: return "fake device: out of memory";
    case RR_FAKE_ERR_THREAD:
        return "fake device: cannot start a stream thread (or too many streams)";
    case RR_FAKE_ERR_PEER:
        return "fake device: cannot map the exporting process's memory through /proc/<pid>/fd "
               "(the process is gone, or the handle is stale)";
    case RR_FAKE_ERR_OWN: return "fake device: a process cannot open its own IPC handle";
    case RR_FAKE_ERR_SYSTEM:
        return "fake device: an OS call failed (memfd_create, ftruncate or mmap)";
    case RR_DEV_NOT_READY: return "fake device: not ready";
    default: return "fake device: unknown error";
    }
}

static int f_mpi_aware(void)
{
    const char *v = getenv("RINGRED_FAKE_CUDA_AWARE");
    return v != NULL && strcmp(v, "1") == 0;
}

static void *f_mpi_ptr(uintptr_t p) { return rr_fake_untag(p); }

static const rr_dev_backend fake_backend = {
    .name = "fake device",
    .load = f_load,
    .ctx_retain = f_ctx_retain,
    .ctx_release = f_ctx_release,
    .ctx_enter = f_ctx_enter,
    .ctx_leave = f_ctx_leave,
    .host_alloc = f_host_alloc,
    .host_free = f_host_free,
    .stream_create = f_stream_create,
    .stream_destroy = f_stream_destroy,
    .stream_sync = f_stream_sync,
    .event_create = f_event_create,
    .event_destroy = f_event_destroy,
    .event_record = f_event_record,
    .stream_wait_event = f_stream_wait_event,
    .event_query = f_event_query,
    .d2h = f_d2h,
    .h2d = f_h2d,
    .errstr = f_errstr,
    .mpi_aware = f_mpi_aware,
    .mpi_ptr = f_mpi_ptr,
    .mem_alloc = rr_fake_mem_alloc,
    .mem_free = rr_fake_mem_free,
    .d2d = f_d2d,
    .ipc_mem_handle = rr_fake_ipc_mem_handle,
    .ipc_mem_open = rr_fake_ipc_mem_open,
    .ipc_mem_close = rr_fake_ipc_mem_close,
    .ipc_event_create = rr_fake_ipc_event_create,
    .ipc_event_handle = rr_fake_ipc_event_handle,
    .ipc_event_open = rr_fake_ipc_event_open,
    .launch_reduce = f_launch_reduce,
    .launch_copy = f_launch_copy,
};

const rr_dev_backend *rr_dev_fake_backend(void) { return &fake_backend; }
