/* Standalone multi-rank check of the C core, used by the sanitizer build in CI and for
 * C-level latency numbers:  mpiexec -n N ./collective_check [--time] */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ringred.h"

static int fails = 0;
#define EXPECT(cond, ...) do { if (!(cond)) { fails++; fprintf(stderr, __VA_ARGS__); } } while (0)

static void check_allreduce(rr_comm *c, size_t count)
{
    int r = rr_comm_rank(c), n = rr_comm_size(c);
    double *x = malloc((count + 1) * sizeof *x), *y = malloc((count + 1) * sizeof *y);
    for (size_t i = 0; i < count; i++)
        x[i] = (double)(i % 1000) + r;
    rr_status st = rr_allreduce(c, x, y, count, RR_FLOAT64, RR_SUM, 1.0, 1.0, 1);
    EXPECT(st == RR_OK, "allreduce(%zu) failed: %s\n", count, rr_comm_last_error(c));
    for (size_t i = 0; i < count && st == RR_OK; i++) {
        double want = n * (double)(i % 1000) + n * (n - 1) / 2.0;
        if (y[i] != want) {
            EXPECT(0, "allreduce(%zu)[%zu] = %g, want %g\n", count, i, y[i], want);
            break;
        }
    }
    int64_t *a = malloc((count + 1) * sizeof *a);
    for (size_t i = 0; i < count; i++)
        a[i] = (int64_t)i * (r + 1);
    st = rr_allreduce(c, a, a, count, RR_INT64, RR_MAX, 1.0, 1.0, 1);
    EXPECT(st == RR_OK, "allreduce max(%zu) failed: %s\n", count, rr_comm_last_error(c));
    for (size_t i = 0; i < count && st == RR_OK; i++)
        if (a[i] != (int64_t)i * n) {
            EXPECT(0, "max(%zu)[%zu] wrong\n", count, i);
            break;
        }
    /* broadcast + reducescatter + allgather on the same sizes */
    for (size_t i = 0; i < count; i++)
        x[i] = r == n - 1 ? (double)i : -1.0;
    st = rr_broadcast(c, x, count, RR_FLOAT64, n - 1);
    EXPECT(st == RR_OK, "broadcast failed: %s\n", rr_comm_last_error(c));
    for (size_t i = 0; i < count && st == RR_OK; i++)
        if (x[i] != (double)i) {
            EXPECT(0, "broadcast(%zu)[%zu] wrong\n", count, i);
            break;
        }
    size_t *counts = calloc((size_t)n, sizeof *counts);
    st = rr_allgather(c, x, count, NULL, RR_FLOAT64, 1, counts);
    EXPECT(st == RR_OK, "allgather counts failed: %s\n", rr_comm_last_error(c));
    double *g = malloc((count * n + 1) * sizeof *g);
    st = rr_allgather(c, x, count, g, RR_FLOAT64, 1, counts);
    EXPECT(st == RR_OK, "allgather failed: %s\n", rr_comm_last_error(c));
    for (size_t i = 0; i < count * n && st == RR_OK; i++)
        if (g[i] != (double)(i % count)) {
            EXPECT(0, "allgather(%zu)[%zu] wrong\n", count, i);
            break;
        }
    for (int i = 0; i < n; i++)
        counts[i] = count / n + ((size_t)i < count % n);
    st = rr_reducescatter(c, x, count, y, counts, RR_FLOAT64, RR_SUM, 1.0, 1.0, 1);
    EXPECT(st == RR_OK, "reducescatter failed: %s\n", rr_comm_last_error(c));
    size_t off = 0;
    for (int i = 0; i < r; i++)
        off += counts[i];
    for (size_t i = 0; i < counts[r] && st == RR_OK; i++)
        if (y[i] != n * (double)(off + i)) {
            EXPECT(0, "reducescatter(%zu)[%zu] wrong\n", count, i);
            break;
        }
    free(counts);
    free(g);
    free(a);
    free(x);
    free(y);
}

static void check_mismatch(rr_comm *c)
{
    int r = rr_comm_rank(c);
    float x[8] = {0};
    rr_status st = rr_allreduce(c, x, x, 4 + (r == 0), RR_FLOAT32, RR_SUM, 1.0, 1.0, 1);
    EXPECT(st == RR_ERR_MISMATCH, "count mismatch not reported: %d\n", st);
    st = rr_allreduce(c, x, x, 4, RR_FLOAT32, r == 0 ? RR_MAX : RR_SUM, 1.0, 1.0, 1);
    EXPECT(st == RR_ERR_MISMATCH, "op mismatch not reported: %d\n", st);
    st = rr_allreduce(c, x, x, 4, RR_FLOAT32, RR_SUM, 1.0, 1.0, 1);
    EXPECT(st == RR_OK, "not usable after a mismatch: %s\n", rr_comm_last_error(c));
}


/* Device allreduce / broadcast through the fake device backend (threads as streams):
 * exercises csrc/device*.c under the sanitizers.  "Device" addresses carry bit 62. */
static void check_device(rr_comm *c, size_t count)
{
    int r = rr_comm_rank(c), n = rr_comm_size(c);
    double *x = malloc((count + 1) * sizeof *x), *y = malloc((count + 1) * sizeof *y);
    const uintptr_t tag = (uintptr_t)1 << 62;
    for (size_t i = 0; i < count; i++)
        x[i] = (double)(r + 1) * (double)(i % 97);
    rr_status st = rr_device_allreduce(c, RR_DEVICE_FAKE, 0, 0, (void *)((uintptr_t)x | tag),
                                       (void *)((uintptr_t)y | tag), count, RR_FLOAT64, RR_SUM,
                                       1.0, 1.0, 1);
    EXPECT(st == RR_OK, "device allreduce(%zu) failed: %s\n", count, rr_comm_last_error(c));
    for (size_t i = 0; i < count && st == RR_OK; i++) {
        double want = (double)(n * (n + 1) / 2) * (double)(i % 97);
        if (y[i] != want) {
            EXPECT(0, "device allreduce(%zu)[%zu] = %g, want %g\n", count, i, y[i], want);
            break;
        }
    }
    st = rr_device_broadcast(c, RR_DEVICE_FAKE, 0, 0, (void *)((uintptr_t)x | tag),
                             (void *)((uintptr_t)x | tag), count, RR_FLOAT64, n - 1);
    EXPECT(st == RR_OK, "device broadcast(%zu) failed: %s\n", count, rr_comm_last_error(c));
    for (size_t i = 0; i < count && st == RR_OK; i++)
        if (x[i] != (double)n * (double)(i % 97)) {
            EXPECT(0, "device broadcast(%zu)[%zu] = %g\n", count, i, x[i]);
            break;
        }
    free(x);
    free(y);
}

static double now(void) { return MPI_Wtime(); }

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of 9 interleaved rounds each of rr_allreduce and MPI_Allreduce (slowest rank). */
static void timing(rr_comm *c)
{
    size_t sizes[] = {8, 4096, 16384, 32768, 65536, 262144, 1 << 20, 4 << 20, 64 << 20};
    enum { ROUNDS = 9 };
    char *buf = calloc(64 << 20, 1);
    if (buf == NULL)
        return;
    if (rr_comm_rank(c) == 0)
        printf("transport %s, %d ranks, median of %d rounds\n", rr_comm_transport(c),
               rr_comm_size(c), ROUNDS);
    for (int s = 0; s < (int)(sizeof sizes / sizeof sizes[0]); s++) {
        int iters = sizes[s] >= (16 << 20) ? 5 : sizes[s] >= 262144 ? 200 : 4000;
        size_t count = sizes[s] / 4;
        double tr[ROUNDS], tm[ROUNDS];
        for (int rep = 0; rep < ROUNDS; rep++) {
            double d;
            rr_barrier(c);
            double t = now();
            for (int i = 0; i < iters; i++)
                rr_allreduce(c, buf, buf, count, RR_FLOAT32, RR_SUM, 1.0, 1.0, 1);
            d = (now() - t) / iters;
            MPI_Allreduce(&d, &tr[rep], 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
            MPI_Barrier(MPI_COMM_WORLD);
            t = now();
            for (int i = 0; i < iters; i++)
                MPI_Allreduce(MPI_IN_PLACE, buf, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            d = (now() - t) / iters;
            MPI_Allreduce(&d, &tm[rep], 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        }
        qsort(tr, ROUNDS, sizeof tr[0], cmp_double);
        qsort(tm, ROUNDS, sizeof tm[0], cmp_double);
        if (rr_comm_rank(c) == 0)
            printf("%9zu B: ringred %9.2f us, MPI_Allreduce %9.2f us, ratio %5.2fx\n",
                   sizes[s], tr[ROUNDS / 2] * 1e6, tm[ROUNDS / 2] * 1e6,
                   tm[ROUNDS / 2] / tr[ROUNDS / 2]);
    }
    free(buf);
}

int main(int argc, char **argv)
{
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    rr_comm *c = NULL;
    rr_status st = rr_comm_create((int)MPI_Comm_c2f(MPI_COMM_WORLD), &c);
    if (st != RR_OK) {
        fprintf(stderr, "rr_comm_create: %s\n", rr_strerror(st));
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    if (argc > 1 && strcmp(argv[1], "--time") == 0) {
        timing(c);
    } else {
        size_t sizes[] = {0, 1, 2, 3, 5, 1000, 8193, 70001, 300007};
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
            check_allreduce(c, sizes[i]);
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
            check_device(c, sizes[i]);
        if (rr_comm_size(c) > 1)
            check_mismatch(c);
    }
    int rank = rr_comm_rank(c);
    rr_comm_destroy(c);
    int all = 0;
    MPI_Allreduce(&fails, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0 && argc == 1)
        printf("collective_check: %s (%d failures)\n", all ? "FAILED" : "OK", all);
    MPI_Finalize();
    return all ? 1 : 0;
}
