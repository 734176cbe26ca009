/* Two-process check of a device backend's memory, IPC and kernel entries without MPI (fork
 * and pipes), for the CUDA backend on a GPU machine and the fake backend anywhere:
 *   ./device_ipc_check cuda|fake
 * Build without MPI (what a GPU machine may lack):
 *   cc -std=c11 -D_GNU_SOURCE -DRR_CHECK_NO_MPI -Wall -Wextra -Werror -Icsrc \
 *      csrc/device/device_cuda.c csrc/device/device_fake.c csrc/device/device_fake_ipc.c \
 *      csrc/device/device_fake_test.c csrc/device/dev_kernel*.c csrc/core/reduce.c \
 *      csrc/core/copy.c csrc/tests/device_ipc_check.c \
 *      -o device_ipc_check -ldl -lpthread -lm
 * The parent (A) exports a buffer and an IPC event; the child (B) opens both and
 *   1. reads A's buffer through a D2D copy;
 *   2. waits on A's event, recorded behind a long queue of D2D copies and a new upload,
 *      then copies again: it must see the new data;
 *   3. launches the reduction kernel over A's buffer and its own copy (float32 Sum, then
 *      with scale factors and two outputs), unless the build carries no PTX (SKIP);
 *   4. closes everything; A frees after B is done.
 * Prints "device_ipc_check: OK (<backend>)" and exits 0, or the failures and exits 1. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "device/device.h"

#ifdef RR_CHECK_NO_MPI
/* device_direct.c (MPI) is not built in: the CUDA table's mpi_aware entry. */
int rr_mpi_cuda_aware(void) { return 0; }
#endif

#define N (4u << 20) /* floats per buffer: 16 MiB */

static const rr_dev_backend *be;
static const char *who = "A";
static int fails;

#define EXPECT(cond, ...) do { if (!(cond)) { fails++; fprintf(stderr, "%s: ", who); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)
#define CK(call) do { int e_ = (call); if (e_) { fprintf(stderr, "%s line %d: %s: %s (%d)\n", \
    who, __LINE__, #call, be->errstr(e_), e_); exit(2); } } while (0)

static float val(int round, size_t i) { return (float)((int)((i * 7 + (size_t)round * 5) % 997) - 498) / 4; }

static void put(int fd, const void *p, size_t n)
{
    if (write(fd, p, n) != (ssize_t)n) {
        fprintf(stderr, "%s: pipe write failed\n", who);
        exit(2);
    }
}

static void get(int fd, void *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, (char *)p + got, n - got);
        if (k <= 0) {
            fprintf(stderr, "%s: the other process is gone\n", who);
            exit(2);
        }
        got += (size_t)k;
    }
}

/* *h = device buffer d (n floats) after everything queued on s. */
static void fetch(float *h, uintptr_t d, size_t n, uintptr_t s)
{
    CK(be->d2h(h, d, n * sizeof(float), s));
    CK(be->stream_sync(s));
}

static int check(const float *h, int round, float factor, const char *what)
{
    for (size_t i = 0; i < N; i++)
        if (h[i] != val(round, i) * factor) {
            EXPECT(0, "%s: element %zu is %g, not %g", what, i, (double)h[i],
                   (double)(val(round, i) * factor));
            return 0;
        }
    return 1;
}

static void child(int rd, int wr, int cuda)
{
    who = "B";
    void *ctx = NULL, *prev = NULL;
    CK(be->ctx_retain(0, &ctx));
    CK(be->ctx_enter(ctx, &prev));
    uintptr_t s = 0, z = 0, w = 0, xa = 0;
    CK(be->stream_create(&s));
    CK(be->mem_alloc(&z, N * sizeof(float)));
    CK(be->mem_alloc(&w, 2 * N * sizeof(float)));
    float *h = NULL;
    CK(be->host_alloc((void **)&h, N * sizeof(float)));
    rr_ipc_handle hm, he;
    get(rd, &hm, sizeof hm);
    get(rd, &he, sizeof he);
    void *ev = NULL;
    CK(be->ipc_mem_open(&xa, &hm));
    CK(be->ipc_event_open(&ev, &he));
    /* 1 */
    CK(be->d2d(z, xa, N * sizeof(float), s));
    fetch(h, z, N, s);
    check(h, 0, 1, "A's buffer read through IPC");
    put(wr, "1", 1);
    /* 2 */
    char c;
    get(rd, &c, 1);
    int pending = be->event_query(ev);
    CK(be->stream_wait_event(s, ev));
    CK(be->d2d(z, xa, N * sizeof(float), s));
    fetch(h, z, N, s);
    check(h, 1, 1, "A's new data after waiting on its IPC event");
    EXPECT(be->event_query(ev) == 0, "A's event not complete after the wait");
    printf("B: A's event was %s when B queued its wait\n",
           pending == RR_DEV_NOT_READY ? "pending" : "already complete");
    /* 3 */
    rr_kargs k = {.n = N, .nsrc = 2, .dtype = RR_FLOAT32, .op = RR_SUM, .pre = 1, .post = 1,
                  .div = 1};
    k.src[0] = xa;
    k.src[1] = z;
    k.dst[0] = w;
    int r = be->launch_reduce(&k, s);
    if (r != 0 && strstr(be->errstr(r), "no PTX")) {
        printf("B: SKIP launch_reduce: %s\n", be->errstr(r));
    } else {
        CK(r);
        fetch(h, w, N, s);
        check(h, 1, 2, "launch_reduce Sum over A's buffer and B's copy");
        k.pre = 0.5;
        k.post = 3.0;
        k.dst[1] = w + N * sizeof(float);
        CK(be->launch_reduce(&k, s));
        fetch(h, w, N, s);
        check(h, 1, 3, "launch_reduce with scale factors, output 0");
        fetch(h, w + N * sizeof(float), N, s);
        check(h, 1, 3, "launch_reduce with scale factors, output 1");
        k.n = 0;
        CK(be->launch_reduce(&k, s));
    }
    (void)cuda;
    /* 4 */
    CK(be->stream_sync(s));
    CK(be->ipc_mem_close(xa));
    CK(be->event_destroy(ev));
    CK(be->mem_free(z));
    CK(be->mem_free(w));
    CK(be->host_free(h));
    CK(be->stream_destroy(s));
    CK(be->ctx_leave(prev));
    CK(be->ctx_release(0, ctx));
    put(wr, "2", 1);
    exit(fails ? 1 : 0);
}

int main(int argc, char **argv)
{
    int cuda = argc > 1 && strcmp(argv[1], "cuda") == 0;
    if (argc < 2 || (!cuda && strcmp(argv[1], "fake") != 0)) {
        fprintf(stderr, "usage: %s cuda|fake\n", argv[0]);
        return 2;
    }
    be = cuda ? rr_dev_cuda_backend() : rr_dev_fake_backend();
    int ab[2], ba[2];
    if (pipe(ab) != 0 || pipe(ba) != 0)
        return 2;
    pid_t pid = fork(); /* before any driver call in either process */
    if (pid < 0)
        return 2;
    char why[512] = "";
    if (be->load(why, sizeof why) != 0) {
        fprintf(stderr, "%s: backend %s cannot load: %s\n", pid ? "A" : "B", be->name, why);
        return 2;
    }
    if (pid == 0) {
        close(ab[1]);
        close(ba[0]);
        child(ab[0], ba[1], cuda);
    }
    close(ab[0]);
    close(ba[1]);
    void *ctx = NULL, *prev = NULL;
    CK(be->ctx_retain(0, &ctx));
    CK(be->ctx_enter(ctx, &prev));
    uintptr_t s = 0, x = 0, big[2] = {0, 0};
    size_t big_bytes = cuda ? (size_t)256 << 20 : (size_t)1 << 20;
    CK(be->stream_create(&s));
    CK(be->mem_alloc(&x, N * sizeof(float)));
    CK(be->mem_alloc(&big[0], big_bytes));
    CK(be->mem_alloc(&big[1], big_bytes));
    float *h = NULL;
    CK(be->host_alloc((void **)&h, N * sizeof(float)));
    for (size_t i = 0; i < N; i++)
        h[i] = val(0, i);
    CK(be->h2d(x, h, N * sizeof(float), s));
    CK(be->stream_sync(s));
    void *ev = NULL;
    rr_ipc_handle hm, he;
    CK(be->ipc_mem_handle(&hm, x));
    CK(be->ipc_event_create(&ev));
    CK(be->ipc_event_handle(&he, ev));
    put(ab[1], &hm, sizeof hm);
    put(ab[1], &he, sizeof he);
    char c;
    get(ba[0], &c, 1); /* B read round 0 */
    /* a long queue (the fake: a pause), then the new data, then the record */
    for (int i = 0; i < (cuda ? 200 : 4); i++)
        CK(be->d2d(big[i % 2], big[(i + 1) % 2], big_bytes, s));
    if (!cuda && rr_test_fake_stream_sleep(s, 0.1) != RR_OK)
        EXPECT(0, "rr_test_fake_stream_sleep failed");
    for (size_t i = 0; i < N; i++)
        h[i] = val(1, i);
    CK(be->h2d(x, h, N * sizeof(float), s));
    CK(be->event_record(ev, s));
    put(ab[1], "r", 1);
    get(ba[0], &c, 1); /* B is done with everything */
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "B failed (status %d)", status);
    CK(be->stream_sync(s));
    CK(be->event_destroy(ev));
    CK(be->mem_free(x));
    CK(be->mem_free(big[0]));
    CK(be->mem_free(big[1]));
    CK(be->host_free(h));
    CK(be->stream_destroy(s));
    CK(be->ctx_leave(prev));
    CK(be->ctx_release(0, ctx));
    if (fails == 0)
        printf("device_ipc_check: OK (%s)\n", be->name);
    return fails ? 1 : 0;
}
