/* Who drives the engine, and when.
 *
 * All communication on the engine's communicator happens under the progress lock.  The
 * background thread takes it whenever it is free, so communication overlaps the caller's
 * computation; a thread blocked in rr_engine_wait takes it too, and then runs the cycles
 * its own request needs itself: a submit-then-wait costs no thread hand-off at all.
 *
 * Cycles (negotiate.c) are collective.  When a cycle finds nothing new on any rank, every
 * rank goes idle together.  An idle rank starts the next cycle on a local event (a
 * submission, join, shutdown, a stall timer, an error to report) or on a wake message from
 * a peer carrying the number of the cycle it starts: a rank with a local event sends wake(k)
 * to every other rank and enters cycle k; a rank woken by wake(k) enters cycle k without
 * sending; wake messages for a cycle already run are stale and ignored, so two ranks that
 * start the same cycle at once do no harm.  Waiting spins briefly, then yields (ranks may
 * outnumber cores), then sleeps in growing steps, woken at once by local submissions. */
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/engine.h"
#include "mpi/mpi.h"



static int local_event(rr_engine *e, double now)
{
    if (atomic_load_explicit(&e->nqueued, memory_order_acquire) > 0 ||
        atomic_load_explicit(&e->stop_req, memory_order_relaxed) || e->local_err ||
        e->miss_head)
        return 1;
    rr_stall_tick(e, now);
    return e->stall_action;
}

/* Drain every wake message that has arrived (stale ones included, so MPI's queues never
 * fill up while the collectives run over a transport that does not progress MPI).
 * 1: a peer woke us for the next cycle; 0: nothing; -1: MPI failed. */
static int poll_wake(rr_engine *e)
{
    int woken = 0;
    for (;;) {
        int flag = 0;
        int err = MPI_Test(&e->wake_req, &flag, MPI_STATUS_IGNORE);
        if (err != MPI_SUCCESS) {
            rr_mpi_wait_error(e->comm, err, 1, NULL, "MPI_Test(wake)");
            return -1;
        }
        if (!flag)
            return woken;
        uint64_t epoch = e->wake_in[0], k = e->wake_in[1];
        err = MPI_Irecv(e->wake_in, 2, MPI_UINT64_T, MPI_ANY_SOURCE, RR_TAG_WAKE,
                        e->comm->comm, &e->wake_req);
        if (err != MPI_SUCCESS) {
            e->wake_posted = 0;
            rr_fail_mpi(e->comm, err, __FILE__, __LINE__, "MPI_Irecv(wake)");
            return -1;
        }
        if (epoch != e->epoch)
            continue; /* left over from an earlier engine on a recycled communicator */
        if (k > e->cycle) {
            RR_FAIL(e->comm, RR_ERR_STATE, "engine protocol error: woken for cycle %llu while "
                    "the next cycle is %llu", (unsigned long long)k,
                    (unsigned long long)e->cycle);
            return -1;
        }
        woken |= k == e->cycle; /* older ones are stale */
    }
}

/* Wake messages in flight: a record stays until all its sends are complete.  Nothing ever
 * blocks on them: a send may need the receiver to progress MPI, which it does not do while
 * it waits inside a collective of a shared-memory transport. */
struct rr_wake_rec {
    uint64_t val[2]; /* {epoch, cycle} */
    MPI_Request req[];
};

static int rec_done(rr_engine *e, rr_wake_rec *w, int *done)
{
    MPI_Status sts[e->size - 1];
    int err = MPI_Testall(e->size - 1, w->req, done, sts);
    if (err != MPI_SUCCESS) /* a dead peer, else each failed send's peer and error */
        return rr_mpi_wait_error(e->comm, err, e->size - 1, sts, "MPI_Testall(wake sends)");
    return RR_OK;
}

static rr_status send_wakes(rr_engine *e)
{
    rr_comm *c = e->comm;
    int n = e->size;
    if (n == 1)
        return RR_OK;
    rr_wake_rec *w = NULL;
    for (int i = 0; i < e->n_wake_recs && w == NULL; i++) {
        int done = 0;
        RR_CHECK(rec_done(e, e->wake_recs[i], &done));
        if (done)
            w = e->wake_recs[i];
    }
    if (w == NULL) {
        rr_wake_rec **v = realloc(e->wake_recs, (size_t)(e->n_wake_recs + 1) * sizeof *v);
        if (v == NULL)
            return RR_FAIL(c, RR_ERR_NOMEM, "out of memory");
        e->wake_recs = v;
        w = malloc(sizeof *w + (size_t)(n - 1) * sizeof(MPI_Request));
        if (w == NULL)
            return RR_FAIL(c, RR_ERR_NOMEM, "out of memory");
        e->wake_recs[e->n_wake_recs++] = w;
    }
    w->val[0] = e->epoch;
    w->val[1] = e->cycle;
    for (int i = 0, j = 0; i < n; i++) {
        if (i == e->rank)
            continue;
        RR_MPI(c, MPI_Isend(w->val, 2, MPI_UINT64_T, i, RR_TAG_WAKE, c->comm, &w->req[j++]));
    }
    return RR_OK;
}

/* Release the wake records; sends still in flight are freed to MPI and their 8-byte
 * records left allocated (MPI may still read them). */
static void free_wakes(rr_engine *e)
{
    for (int i = 0; i < e->n_wake_recs; i++) {
        rr_wake_rec *w = e->wake_recs[i];
        int done = 0;
        if (rec_done(e, w, &done) == RR_OK && done) {
            free(w);
            continue;
        }
        for (int j = 0; j < e->size - 1; j++)
            if (w->req[j] != MPI_REQUEST_NULL)
                MPI_Request_free(&w->req[j]);
    }
    free(e->wake_recs);
    e->wake_recs = NULL;
    e->n_wake_recs = 0;
}

/* After the last cycle: release MPI requests, fail whatever is left. [plock] */
static void finish_engine(rr_engine *e)
{
    if (e->size > 1) {
        if (e->wake_posted) {
            MPI_Cancel(&e->wake_req);
            MPI_Wait(&e->wake_req, MPI_STATUS_IGNORE);
            e->wake_posted = 0;
        }
        free_wakes(e);
    }
    if (!atomic_load(&e->failed)) {
        char msg[RR_ERRMSG_LEN];
        snprintf(msg, sizeof msg, "the ringred engine stopped: %.1900s",
                 e->comm->errmsg[0] ? e->comm->errmsg : "shut down");
        rr_engine_set_fatal(e, RR_ERR_STATE, msg);
    }
    rr_engine_fail_all(e, e->fatal, e->fatal_msg);
    atomic_store(&e->stopped, 1);
}

static int fail_mpi(rr_engine *e)
{
    char msg[RR_ERRMSG_LEN];
    snprintf(msg, sizeof msg, "ringred engine failed: %.1900s", e->comm->errmsg);
    /* a dead peer found on the way is a PeerError, not an MPI error */
    rr_engine_set_fatal(e, e->comm->live.broken ? e->comm->live.broken_code : RR_ERR_MPI, msg);
    finish_engine(e);
    return -1;
}

/* Idle, with requests of ours outstanding: every LIVE_IDLE_S check that the peers on this
 * host still run (a request whose peer died must fail, not wait for ever).  -1: one died. */
#define LIVE_IDLE_S 0.05
static int idle_liveness(rr_engine *e, double now)
{
    if (e->size == 1 || now < e->next_live_check)
        return 0;
    e->next_live_check = now + LIVE_IDLE_S;
    if (atomic_load_explicit(&e->outstanding, memory_order_relaxed) == 0)
        return 0;
    if (rr_live_poll(e->comm, -1, "the engine's negotiation (idle, requests pending)") == RR_OK)
        return 0;
    return fail_mpi(e);
}

/* One step, progress lock held: 1 = ran a cycle, 0 = nothing to do, -1 = stopped. */
static int progress(rr_engine *e)
{
    if (atomic_load(&e->stopped))
        return -1;
    double now = rr_now();
    int woken = 0, local = local_event(e, now);
    /* Poll for wake messages when there is nothing to do here, and anyway from time to time
     * (MPI_Test is not free) so that stale ones never pile up. */
    if (e->size > 1 && (!local || ++e->skipped_polls >= 16)) {
        e->skipped_polls = 0;
        woken = poll_wake(e);
        if (woken < 0)
            return fail_mpi(e);
    }
    if (!woken) {
        if (!local)
            return idle_liveness(e, now);
        /* We start the cycle: tell everybody (a rank woken by a peer needs not). */
        if (send_wakes(e) != RR_OK)
            return fail_mpi(e);
    }
    int r = rr_cycle(e);
    if (r < 0) {
        finish_engine(e);
        return -1;
    }
    return 1;
}

/* ---------------------------------------------------------------- waiting */

typedef struct pauser {
    int spins;
    double t0, sleep_s;
} pauser;

static void pause_reset(pauser *p)
{
    p->spins = 0;
    p->t0 = 0;
    p->sleep_s = 20e-6;
}

static void abs_time(struct timespec *ts, double from_now)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    long ns = (long)(from_now * 1e9);
    ts->tv_sec += ns / 1000000000L;
    ts->tv_nsec += ns % 1000000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_nsec -= 1000000000L;
        ts->tv_sec++;
    }
}

/* Spin, then yield for `yield_s`, then return the time to sleep (0: do not sleep yet). */
static double pause_step(rr_engine *e, pauser *p, double yield_s)
{
    if (p->spins < e->spin) {
        p->spins++;
        return 0;
    }
    double now = rr_now();
    if (p->t0 == 0)
        p->t0 = now;
    if (now - p->t0 < yield_s) {
        sched_yield();
        return 0;
    }
    double s = p->sleep_s;
    p->sleep_s = s * 2 > e->idle_sleep_max_s ? e->idle_sleep_max_s : s * 2;
    return s;
}

/* Sleep on bg_cv for at most s seconds; unless `always`, not if work is queued. */
static void bg_sleep(rr_engine *e, double s, int always)
{
    pthread_mutex_lock(&e->mu);
    if ((always || atomic_load(&e->nqueued) == 0) && !atomic_load(&e->stop_req)) {
        struct timespec ts;
        abs_time(&ts, s);
        e->bg_sleeping = 1;
        pthread_cond_timedwait(&e->bg_cv, &e->mu, &ts);
        e->bg_sleeping = 0;
    }
    pthread_mutex_unlock(&e->mu);
}

static void wake_bg(rr_engine *e)
{
    pthread_mutex_lock(&e->mu);
    if (e->bg_sleeping)
        pthread_cond_signal(&e->bg_cv);
    pthread_mutex_unlock(&e->mu);
}

/* Seconds left on the drivers' lease (see rr_engine_lease_active), <= 0 if none. */
static double lease_left(rr_engine *e, double now)
{
    return (double)atomic_load_explicit(&e->lease_ns, memory_order_relaxed) * 1e-9 - now;
}

void *rr_bg_main(void *arg)
{
    rr_engine *e = arg;
    /* Creation is agreed on every rank before this thread may run a (collective) cycle. */
    pthread_mutex_lock(&e->mu);
    while (e->go == 0)
        pthread_cond_wait(&e->bg_cv, &e->mu);
    int go = e->go;
    pthread_mutex_unlock(&e->mu);
    if (go < 0) {
        pthread_mutex_lock(&e->mu);
        e->thread_done = 1;
        pthread_mutex_unlock(&e->mu);
        return NULL;
    }
    pauser p;
    pause_reset(&p);
    for (;;) {
        if (!atomic_load(&e->stop_req)) {
            /* A waiting thread drives the engine itself, or did a moment ago and will most
             * likely be back (its lease): stay out of its way.  Submissions during a lease
             * do not wake us; we look again when it runs out. */
            if (atomic_load(&e->drivers) > 0) {
                bg_sleep(e, 2e-3, 1);
                pause_reset(&p);
                continue;
            }
            double lease = lease_left(e, rr_now());
            if (lease > 0) {
                bg_sleep(e, lease + 5e-6, 1);
                pause_reset(&p);
                continue;
            }
        }
        int r = 0, ran = 0;
        if (pthread_mutex_trylock(&e->plock) == 0) {
            while ((r = progress(e)) == 1)
                ran = 1;
            pthread_mutex_unlock(&e->plock);
            if (r < 0)
                break;
        }
        if (ran)
            pause_reset(&p);
        double s = pause_step(e, &p, e->idle_yield_s);
        if (s > 0)
            bg_sleep(e, s, 0);
        if (atomic_load(&e->nqueued) > 0)
            pause_reset(&p);
    }
    pthread_mutex_lock(&e->mu);
    e->thread_done = 1;
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

static int flag_set(atomic_int *f)
{
    return atomic_load_explicit(f, memory_order_acquire) != 0;
}

static void sleep_done(rr_engine *e, atomic_int *flag, double s)
{
    pthread_mutex_lock(&e->mu);
    atomic_fetch_add(&e->waiters, 1);
    if (!flag_set(flag)) {
        struct timespec ts;
        abs_time(&ts, s);
        pthread_cond_timedwait(&e->done_cv, &e->mu, &ts);
    }
    atomic_fetch_sub(&e->waiters, 1);
    pthread_mutex_unlock(&e->mu);
}

void rr_progress_until(rr_engine *e, atomic_int *flag, double timeout_s)
{
    double deadline = timeout_s < 0 ? 1e300 : rr_now() + timeout_s;
    pauser p;
    pause_reset(&p);
    atomic_fetch_add(&e->drivers, 1);
    int driving = 1; /* counted in e->drivers: the background thread stays out of the way */
    int drove = 0;
    while (!flag_set(flag)) {
        if (atomic_load(&e->stopped))
            break; /* every request has been failed */
        if (pthread_mutex_trylock(&e->plock) == 0) {
            if (!driving) {
                atomic_fetch_add(&e->drivers, 1);
                driving = 1;
            }
            int r, ran = 0;
            while (!flag_set(flag) && (r = progress(e)) == 1)
                ran = 1;
            pthread_mutex_unlock(&e->plock);
            drove |= ran;
            if (ran)
                pause_reset(&p);
            if (flag_set(flag))
                break;
        } else {
            /* Another thread drives (the background thread): sleep until our request is
             * done instead of taking cores from it. */
            if (driving) {
                atomic_fetch_sub(&e->drivers, 1);
                driving = 0;
            }
            double now = rr_now();
            if (now >= deadline)
                break;
            sleep_done(e, flag, deadline - now < 1e-3 ? deadline - now : 1e-3);
            continue;
        }
        double s = pause_step(e, &p, e->wait_yield_s);
        if (s <= 0) {
            if (p.spins >= e->spin && rr_now() >= deadline)
                break;
            continue;
        }
        double now = rr_now();
        if (now >= deadline)
            break;
        if (now + s > deadline)
            s = deadline - now;
        if (driving) {
            /* Long wait: let the background thread poll while this one sleeps. */
            atomic_fetch_sub(&e->drivers, 1);
            driving = 0;
            wake_bg(e);
        }
        sleep_done(e, flag, s);
    }
    if (drove)
        atomic_store_explicit(&e->lease_ns, (unsigned long long)((rr_now() + RR_LEASE_S) * 1e9),
                              memory_order_relaxed);
    if (driving) {
        atomic_fetch_sub(&e->drivers, 1);
        /* Work left for others (overlap)?  Hand it back to the background thread. */
        if (atomic_load(&e->nqueued) > 0 || atomic_load(&e->outstanding) > 0)
            wake_bg(e);
    }
}

int rr_engine_lease_active(rr_engine *e, double now)
{
    return lease_left(e, now) > 0;
}
