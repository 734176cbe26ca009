/* Standalone multi-rank check of the background engine (used by the sanitizer build) and
 * C-level latency numbers:  mpiexec -n N ./engine_check [--time]
 * Submits many named allreduces in a different random order on every rank, checks every
 * result, then a mismatch and a few cycles of the steady state. */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ringred.h"

static int fails = 0;
#define EXPECT(cond, ...) do { if (!(cond)) { fails++; fprintf(stderr, __VA_ARGS__); } } while (0)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fill(rr_request *q, const char *name, const void *s, void *r, size_t count, int op)
{
    memset(q, 0, sizeof *q);
    q->name = name;
    q->kind = RR_REQ_ALLREDUCE;
    q->sendbuf = s;
    q->recvbuf = r;
    q->count = count;
    q->dtype = RR_FLOAT64;
    q->op = op;
    q->prescale = q->postscale = 1.0;
    q->avg_div = 1;
    q->ndim = 1;
    q->shape[0] = (int64_t)count;
}

/* Buffers from the communicator's arena when c is given and can (rr_mem_alloc), else malloc. */
static double *buffer(rr_comm *c, size_t count, int *shared)
{
    void *p = NULL;
    *shared = c != NULL && rr_mem_alloc(c, count * sizeof(double), &p) == RR_OK;
    return *shared ? p : malloc(count * sizeof(double));
}

static void release(double *p, int shared)
{
    if (shared)
        rr_mem_free(p);
    else
        free(p);
}

/* c: allocate the buffers as shared buffers of c (every tenth tensor is then too large to
 * be fused, so the engine reduces it straight from them). */
static void many(rr_engine *e, rr_comm *c, int rank, int n, int ntensors)
{
    char (*names)[32] = malloc((size_t)ntensors * sizeof *names);
    double **in = malloc((size_t)ntensors * sizeof *in), **out = malloc((size_t)ntensors * sizeof *out);
    size_t *cnt = malloc((size_t)ntensors * sizeof *cnt);
    int *order = malloc((size_t)ntensors * sizeof *order);
    uint64_t *ids = malloc((size_t)ntensors * sizeof *ids);
    int *sh = calloc(2 * (size_t)ntensors, sizeof *sh);
    srand(1234u + (unsigned)rank);
    for (int i = 0; i < ntensors; i++) {
        snprintf(names[i], sizeof names[i], "t%d", i);
        cnt[i] = (size_t)(1 + (i * 37) % 5000) + (c && i % 10 == 0 ? 20000 : 0);
        in[i] = buffer(c, cnt[i], &sh[2 * i]);
        out[i] = buffer(c, cnt[i], &sh[2 * i + 1]);
        for (size_t k = 0; k < cnt[i]; k++)
            in[i][k] = (double)(i + rank) + (double)k;
        order[i] = i;
    }
    for (int i = ntensors - 1; i > 0; i--) {
        int j = rand() % (i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (int k = 0; k < ntensors; k++) {
        int i = order[k];
        rr_request q;
        fill(&q, names[i], in[i], out[i], cnt[i], RR_SUM);
        rr_status st = rr_engine_submit(e, &q, 1, &ids[i]);
        EXPECT(st == RR_OK, "submit %s: %s\n", names[i], rr_engine_last_error(e));
    }
    for (int i = 0; i < ntensors; i++) {
        rr_status st = rr_engine_wait(e, ids[i], -1);
        EXPECT(st == RR_OK, "wait %s: %s\n", names[i], rr_engine_error(e, ids[i]));
        for (size_t k = 0; k < cnt[i] && st == RR_OK; k++) {
            double want = n * ((double)i + (double)k) + n * (n - 1) / 2.0;
            if (out[i][k] != want) {
                EXPECT(0, "%s[%zu] = %g, want %g\n", names[i], k, out[i][k], want);
                break;
            }
        }
        rr_engine_release(e, ids[i]);
        release(in[i], sh[2 * i]);
        release(out[i], sh[2 * i + 1]);
    }
    free(sh);
    free(names);
    free(in);
    free(out);
    free(cnt);
    free(order);
    free(ids);
}

static void mismatch(rr_engine *e, int rank, int n)
{
    if (n < 2)
        return;
    double a[4] = {1, 2, 3, 4}, b[4];
    rr_request q;
    fill(&q, "mm", a, b, rank == n - 1 ? 3 : 4, RR_SUM);
    q.shape[0] = (int64_t)q.count;
    uint64_t id;
    rr_status st = rr_engine_submit(e, &q, 1, &id);
    EXPECT(st == RR_OK, "submit mm: %s\n", rr_engine_last_error(e));
    st = rr_engine_wait(e, id, -1);
    EXPECT(st == RR_ERR_MISMATCH && strstr(rr_engine_error(e, id), "'mm'"),
           "mismatch not reported: %d %s\n", st, rr_engine_error(e, id));
    rr_engine_release(e, id);
}

/* broadcast, allgather, reducescatter and a grouped allreduce, all in flight at once. */
static void others(rr_engine *e, int rank, int n)
{
    double b[6], g[3], *gout = NULL, rs_in[4 * 8], rs_out[8], ga[5], gb[7], oa[5], ob[7];
    for (int i = 0; i < 6; i++)
        b[i] = rank == n - 1 ? 7.0 : -1.0;
    for (int i = 0; i < 3; i++)
        g[i] = rank;
    for (int i = 0; i < 4 * n; i++)
        rs_in[i] = i;
    for (int i = 0; i < 5; i++)
        ga[i] = 1;
    for (int i = 0; i < 7; i++)
        gb[i] = 2;
    rr_request q[5];
    memset(q, 0, sizeof q);
    q[0].name = "bc";
    q[0].kind = RR_REQ_BROADCAST;
    q[0].recvbuf = b;
    q[0].count = 6;
    q[0].dtype = RR_FLOAT64;
    q[0].root = n - 1;
    q[0].ndim = 2;
    q[0].shape[0] = 2;
    q[0].shape[1] = 3;
    q[1].name = "ag";
    q[1].kind = RR_REQ_ALLGATHER;
    q[1].sendbuf = g;
    q[1].count = (size_t)(rank % 2 ? 3 : 1);
    q[1].dtype = RR_FLOAT64;
    q[1].ndim = 1;
    q[1].shape[0] = (int64_t)q[1].count;
    q[2].name = "rs";
    q[2].kind = RR_REQ_REDUCESCATTER;
    q[2].sendbuf = rs_in;
    q[2].recvbuf = rs_out;
    q[2].count = (size_t)(4 * n);
    q[2].dtype = RR_FLOAT64;
    q[2].ndim = 2;
    q[2].shape[0] = n;
    q[2].shape[1] = 4;
    for (int i = 0; i < 3; i++)
        q[i].prescale = q[i].postscale = 1.0, q[i].avg_div = 1;
    fill(&q[3], "grp[0]", ga, oa, 5, RR_SUM);
    fill(&q[4], "grp[1]", gb, ob, 7, RR_SUM);
    q[3].group = q[4].group = "grp";
    q[3].group_size = q[4].group_size = 2;
    uint64_t ids[5];
    rr_status st = rr_engine_submit(e, &q[rank % 3], 1, &ids[rank % 3]);
    EXPECT(st == RR_OK, "submit: %s\n", rr_engine_last_error(e));
    for (int i = 0; i < 3; i++)
        if (i != rank % 3) {
            st = rr_engine_submit(e, &q[i], 1, &ids[i]);
            EXPECT(st == RR_OK, "submit: %s\n", rr_engine_last_error(e));
        }
    st = rr_engine_submit(e, &q[3], 2, &ids[3]);
    EXPECT(st == RR_OK, "submit group: %s\n", rr_engine_last_error(e));
    for (int i = 0; i < 5; i++)
        EXPECT(rr_engine_wait(e, ids[i], -1) == RR_OK, "wait %d: %s\n", i,
               rr_engine_error(e, ids[i]));
    for (int i = 0; i < 6; i++)
        EXPECT(b[i] == 7.0, "broadcast[%d] = %g\n", i, b[i]);
    size_t rows[64];
    EXPECT(rr_engine_result_rows(e, ids[1], rows) == RR_OK, "rows: %s\n", rr_engine_last_error(e));
    size_t total = 0;
    for (int r = 0; r < n; r++)
        total += rows[r];
    gout = malloc(total * sizeof *gout);
    EXPECT(rr_engine_result_copy(e, ids[1], gout, total * sizeof *gout) == RR_OK, "copy\n");
    for (size_t i = 0, r = 0, k = 0; i < total; i++, k++) {
        while (k >= rows[r]) {
            k = 0;
            r++;
        }
        EXPECT(gout[i] == (double)r, "allgather[%zu] = %g\n", i, gout[i]);
    }
    free(gout);
    for (int i = 0; i < 4; i++)
        EXPECT(rs_out[i] == n * (double)(4 * rank + i), "reducescatter[%d] = %g\n", i, rs_out[i]);
    for (int i = 0; i < 5; i++)
        EXPECT(oa[i] == n, "group a\n");
    for (int i = 0; i < 7; i++)
        EXPECT(ob[i] == 2.0 * n, "group b\n");
    for (int i = 0; i < 5; i++)
        rr_engine_release(e, ids[i]);
}

/* The last rank runs out of data first: the others' allreduces see its zeros. */
static void join(rr_engine *e, int rank, int n)
{
    int batches = rank == n - 1 ? 1 : 3;
    for (int b = 0; b < batches; b++) {
        double x[10], y[10];
        for (int i = 0; i < 10; i++)
            x[i] = 1;
        rr_request q;
        char nm[32];
        snprintf(nm, sizeof nm, "jb%d", b);
        fill(&q, nm, x, y, 10, RR_SUM);
        uint64_t id;
        EXPECT(rr_engine_submit(e, &q, 1, &id) == RR_OK, "submit\n");
        EXPECT(rr_engine_wait(e, id, -1) == RR_OK, "wait: %s\n", rr_engine_error(e, id));
        double want = b == 0 ? n : n - 1;
        EXPECT(y[0] == want, "join batch %d: %g, want %g\n", b, y[0], want);
        rr_engine_release(e, id);
    }
    uint64_t jid;
    int last = -1;
    EXPECT(rr_engine_join(e, &jid) == RR_OK, "join: %s\n", rr_engine_last_error(e));
    EXPECT(rr_engine_wait(e, jid, -1) == RR_OK, "join wait\n");
    EXPECT(rr_engine_join_result(e, jid, &last) == RR_OK, "join result\n");
    int lo = 0, hi = 0;
    MPI_Allreduce(&last, &lo, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&last, &hi, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    /* the last rank joins first; any of the others may be the last to join */
    EXPECT(lo == hi && last >= 0 && (n == 1 || last < n - 1), "last %d\n", last);
    rr_engine_release(e, jid);
}

static void latency(rr_engine *e, rr_comm *c, int rank, int timing)
{
    double x[512], y[512];
    for (int i = 0; i < 512; i++)
        x[i] = rank;
    int iters = timing ? 20000 : 200;
    for (int rep = 0; rep < (timing ? 5 : 1); rep++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = now();
        for (int i = 0; i < iters; i++) {
            rr_request q;
            fill(&q, "lat", x, y, 512, RR_SUM);
            uint64_t id;
            rr_engine_submit(e, &q, 1, &id);
            rr_status st = rr_engine_wait(e, id, -1);
            EXPECT(st == RR_OK, "lat: %s\n", rr_engine_error(e, id));
            rr_engine_release(e, id);
        }
        double ta = (now() - t0) / iters;
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = now();
        for (int i = 0; i < iters; i++)
            rr_allreduce(c, x, y, 512, RR_FLOAT64, RR_SUM, 1.0, 1.0, 1);
        double ts = (now() - t0) / iters;
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = now();
        for (int i = 0; i < iters; i++)
            MPI_Allreduce(x, y, 512, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        double tm = (now() - t0) / iters;
        if (timing && rank == 0)
            printf("4 KiB: engine submit+wait %.2f us, rr_allreduce %.2f us, MPI_Allreduce %.2f us\n",
                   ta * 1e6, ts * 1e6, tm * 1e6);
    }
}

int main(int argc, char **argv)
{
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    int timing = argc > 1 && strcmp(argv[1], "--time") == 0;
    int rank, n;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    rr_comm *c = NULL;
    rr_engine *e = NULL;
    rr_status st = rr_comm_create((int)MPI_Comm_c2f(MPI_COMM_WORLD), &c);
    EXPECT(st == RR_OK, "comm: %s\n", rr_comm_last_error(c));
    /* the engine reads c's shared buffers in place */
    st = rr_engine_create_ex((int)MPI_Comm_c2f(MPI_COMM_WORLD), c, &e);
    EXPECT(st == RR_OK, "engine: %s\n", rr_engine_last_error(NULL));
    if (st == RR_OK) {
        if (!timing) {
            many(e, NULL, rank, n, 300);
            mismatch(e, rank, n);
            others(e, rank, n);
            uint64_t zc = rr_engine_zero_copy_calls(e);
            many(e, c, rank, n, 100);
            if (n > 1 && strcmp(rr_comm_transport(c), "shm") == 0)
                EXPECT(rr_engine_zero_copy_calls(e) >= zc + 10, "engine: shared buffers were "
                       "not read in place (%llu calls)\n",
                       (unsigned long long)(rr_engine_zero_copy_calls(e) - zc));
            many(e, NULL, rank, n, 50);
            join(e, rank, n);
            others(e, rank, n);
        }
        latency(e, c, rank, timing);
        rr_engine_stop(e);
        rr_engine_destroy(e);
    }
    rr_comm_destroy(c);
    int total = 0;
    MPI_Allreduce(&fails, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0)
        printf(total ? "engine_check: FAILED (%d)\n" : "engine_check: OK\n", total);
    MPI_Finalize();
    return total != 0;
}
