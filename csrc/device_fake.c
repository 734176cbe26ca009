/* Fake device backend: host memory posing as device memory, so that the staging schedule
 * and its ordering are tested on machines without a GPU.
 *
 * - "Device" addresses are host addresses with bit 62 set (ringred.testing.FakeDeviceArray
 *   hands them out): a host dereference of one faults at once.  Untagged addresses are
 *   accepted too (RINGRED_DEVICE_BACKEND=fake with any __cuda_array_interface__ object).
 * - A stream is a worker thread executing queued copies, event records and event waits in
 *   order, with random delays before operations.
 * - An event is a pair of sequence numbers: records issued and records executed.
 * - Every download first fills its destination with 0xFF bytes (NaN for floats) and waits
 *   a little before copying; every upload fills its source with 0xFF after copying: a host
 *   read of a staging slot that is not ordered after its download, or a download into a
 *   slot whose upload has not finished, shows up as garbage in the result.
 * - Producer streams 0, 1 and 2 (and any value the fake did not create) are the host:
 *   work recorded there is complete at once, and a wait there blocks the caller.
 * - RINGRED_FAKE_CUDA_AWARE=1 makes the fake report a CUDA-aware MPI (MPI then gets the
 *   untagged host addresses), so the direct path is tested too. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "device.h"

#define FAKE_TAG ((uintptr_t)1 << 62)

enum { F_OK = 0, F_ERR_VALUE = 1, F_ERR_NOMEM = 2, F_ERR_THREAD = 3 };

typedef struct fake_event {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t issued, done;
} fake_event;

enum { OP_COPY, OP_RECORD, OP_WAIT, OP_STOP };

typedef struct fake_op {
    int kind;
    void *dst;
    void *src;
    size_t n;
    int poison_dst, poison_src;
    fake_event *ev;
    uint64_t seq;
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

static void *untag(uintptr_t p) { return (void *)(p & ~FAKE_TAG); }

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

static void event_reach(fake_event *e, uint64_t seq)
{
    pthread_mutex_lock(&e->mu);
    if (seq > e->done)
        e->done = seq;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

static void event_wait_for(fake_event *e, uint64_t seq)
{
    pthread_mutex_lock(&e->mu);
    while (e->done < seq)
        pthread_cond_wait(&e->cv, &e->mu);
    pthread_mutex_unlock(&e->mu);
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
        return F_ERR_NOMEM;
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
        return F_ERR_NOMEM;
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
        return F_ERR_NOMEM;
    s->seed = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)s;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (pthread_create(&s->th, NULL, worker, s) != 0) {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        free(s);
        return F_ERR_THREAD;
    }
    if (!reg_set(NULL, s)) {
        fake_op stop = {.kind = OP_STOP};
        enqueue(s, &stop);
        pthread_join(s->th, NULL);
        free(s);
        return F_ERR_THREAD;
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
        return F_ERR_VALUE;
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

static int f_event_create(void **out)
{
    fake_event *e = calloc(1, sizeof *e);
    if (e == NULL)
        return F_ERR_NOMEM;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    *out = e;
    return F_OK;
}

static int f_event_destroy(void *p)
{
    fake_event *e = p;
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
    return F_OK;
}

static int f_event_record(void *p, uintptr_t h)
{
    fake_event *e = p;
    pthread_mutex_lock(&e->mu);
    uint64_t seq = ++e->issued;
    pthread_mutex_unlock(&e->mu);
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
    fake_event *e = p;
    pthread_mutex_lock(&e->mu);
    uint64_t seq = e->issued;
    pthread_mutex_unlock(&e->mu);
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
    fake_event *e = p;
    pthread_mutex_lock(&e->mu);
    int done = e->done >= e->issued;
    pthread_mutex_unlock(&e->mu);
    return done ? F_OK : RR_DEV_NOT_READY;
}

static int copy(void *dst, void *src, size_t n, uintptr_t h, int poison_dst, int poison_src)
{
    if (n == 0)
        return F_OK;
    if (dst == NULL || src == NULL)
        return F_ERR_VALUE;
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
    return copy(dst, untag(src), n, s, 1, 0);
}

static int f_h2d(uintptr_t dst, const void *src, size_t n, uintptr_t s)
{
    void *from;
    memcpy(&from, &src, sizeof from); /* the fake poisons consumed staging memory */
    return copy(untag(dst), from, n, s, 0, 1);
}

static const char *f_errstr(int code)
{
    switch (code) {
    case F_ERR_VALUE: return "fake device: invalid value";
    case F_ERR_NOMEM: return "fake device: out of memory";
    case F_ERR_THREAD: return "fake device: cannot start a stream thread (or too many streams)";
    case RR_DEV_NOT_READY: return "fake device: not ready";
    default: return "fake device: unknown error";
    }
}

static int f_mpi_aware(void)
{
    const char *v = getenv("RINGRED_FAKE_CUDA_AWARE");
    return v != NULL && strcmp(v, "1") == 0;
}

static void *f_mpi_ptr(uintptr_t p) { return untag(p); }

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
};

const rr_dev_backend *rr_dev_fake_backend(void) { return &fake_backend; }
