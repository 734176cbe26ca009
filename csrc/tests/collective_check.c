/* Standalone multi-rank check of the C core, used by the sanitizer build in CI and for
 * C-level latency numbers:  mpiexec -n N ./collective_check [--time] */
#include <mpi.h>
#include <stdint.h>
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
    /* an output that partly overlaps the input (reduced from a copy of the input) */
    for (size_t i = 0; i < count; i++)
        x[i] = (double)(i % 1000) + r;
    st = rr_allreduce(c, x, x + 1, count ? count - 1 : 0, RR_FLOAT64, RR_SUM, 1.0, 1.0, 1);
    EXPECT(st == RR_OK, "overlapping allreduce(%zu) failed: %s\n", count, rr_comm_last_error(c));
    for (size_t i = 0; i + 1 < count && st == RR_OK; i++)
        if (x[i + 1] != n * (double)(i % 1000) + n * (n - 1) / 2.0) {
            EXPECT(0, "overlapping allreduce(%zu)[%zu] = %g\n", count, i, x[i + 1]);
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

/* Shared buffers: every way of passing them (input, output, in place, on some ranks only)
 * gives the exact sum; with the shm transport the in-place call reads them where they are. */
static void check_shared(rr_comm *c, size_t count)
{
    int r = rr_comm_rank(c), n = rr_comm_size(c);
    int shm = strcmp(rr_comm_transport(c), "shm") == 0;
    double *x = NULL, *y = NULL, *p = malloc((count + 1) * sizeof *p);
    rr_status st = rr_mem_alloc(c, (count + 1) * sizeof *x, (void **)&x);
    if (!shm || n == 1) {
        EXPECT(!shm ? st == RR_ERR_UNSUPPORTED : 1, "rr_mem_alloc without shm: %d\n", st);
        if (st == RR_OK)
            rr_mem_free(x);
        free(p);
        return;
    }
    EXPECT(st == RR_OK, "rr_mem_alloc: %s\n", rr_comm_last_error(c));
    st = rr_mem_alloc(c, (count + 1) * sizeof *y, (void **)&y);
    EXPECT(st == RR_OK, "rr_mem_alloc: %s\n", rr_comm_last_error(c));
    if (x == NULL || y == NULL)
        return;
    for (int v = 0; v < 4; v++) {
        for (size_t i = 0; i < count; i++)
            x[i] = (double)(i % 977) * (r + 1);
        double *out = v == 0 ? p : v == 1 ? y : v == 2 ? x : (r % 2 ? x : p);
        uint64_t before = rr_comm_zero_copy_calls(c);
        st = rr_allreduce(c, x, out, count, RR_FLOAT64, RR_SUM, 1.0, 1.0, 1);
        EXPECT(st == RR_OK, "shared allreduce(%zu, variant %d): %s\n", count, v,
               rr_comm_last_error(c));
        for (size_t i = 0; i < count && st == RR_OK; i++)
            if (out[i] != (double)(i % 977) * n * (n + 1) / 2) {
                EXPECT(0, "shared allreduce(%zu, variant %d)[%zu] = %g\n", count, v, i, out[i]);
                break;
            }
        if (count >= 70001)
            EXPECT(rr_comm_zero_copy_calls(c) == before + 1, "variant %d not read in place\n", v);
    }
    EXPECT(rr_mem_free(y) == RR_OK, "rr_mem_free\n");
    EXPECT(rr_mem_free(x) == RR_OK, "rr_mem_free\n");
    EXPECT(rr_mem_free(NULL) == RR_OK, "rr_mem_free(NULL)\n");
    free(p);
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
 * exercises csrc/device/device*.c under the sanitizers.  "Device" addresses carry bit 62. */
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
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
            check_shared(c, sizes[i]);
        if (rr_comm_size(c) > 1)
            check_mismatch(c);
        /* simulated hosts (RINGRED_HOST): the checks above went through the two-level plan */
        const char *want = getenv("CHECK_HIERARCHICAL");
        if (want && *want == '1')
            EXPECT(rr_comm_hierarchical(c) == 1 && rr_comm_hier_calls(c) > 0,
                   "hierarchical plan not taken (hosts %d, calls %llu)\n", rr_comm_hosts(c),
                   (unsigned long long)rr_comm_hier_calls(c));
    }
    int rank = rr_comm_rank(c);
    /* a shared buffer outlives its communicator */
    double *keep = NULL;
    if (rr_mem_alloc(c, 1 << 20, (void **)&keep) != RR_OK)
        keep = NULL;
    rr_comm_destroy(c);
    if (keep) {
        memset(keep, 1, 1 << 20);
        EXPECT(rr_mem_free(keep) == RR_OK, "rr_mem_free after destroy\n");
    }
    int all = 0;
    MPI_Allreduce(&fails, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0 && argc == 1)
        printf("collective_check: %s (%d failures)\n", all ? "FAILED" : "OK", all);
    MPI_Finalize();
    return all ? 1 : 0;
}
