/* Multi-rank check of the fake device backend's memory, copies, events, CUDA-IPC imitation
 * and kernel launches (used by the sanitizer build):  mpiexec -n N ./device_check  (N 2..8)
 * MPI only exchanges IPC handles and stands in for host flags (barriers); all data moves
 * through the backend.
 *   1. one process: mem_alloc, h2d / d2d / d2h ordered by events across streams, the
 *      refusals (overlapping d2d, interior or unknown pointers, own handles);
 *   2. an exporter that dies while its memory is mapped (fork): the mapping stays valid,
 *      a new open fails;
 *   3. IPC memory: every rank exports a buffer, the others open it (one twice: same address),
 *      read it through a d2d and write a marker into it;
 *   4. IPC events: in rounds, one rank queues a delayed write and records its IPC event, a
 *      barrier, the others wait on the opened event on their streams and copy: they must
 *      see the new data;
 *   5. launch_reduce over the peers' mapped buffers (float32 and float64 Sum, scale factors,
 *      two outputs) after waiting on every peer's event, against the sums in rank order;
 *   6. everything closed: no memfd left mapped or open, no new entry in /dev/shm (but
 *      MPICH's own).
 * Prints "device_check: OK" on rank 0 and exits 0; else prints the failures, exits 1. */
#include <dirent.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "device/device.h"

#define TAG ((uintptr_t)1 << 62)
#define MAXR 8
#define BYTES 65536
#define ROUNDS 12

static const rr_dev_backend *be;
static int rank, nranks, fails;

#define EXPECT(cond, ...) do { if (!(cond)) { fails++; fprintf(stderr, "rank %d: ", rank); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)
/* A backend call that must succeed; the check cannot go on without it. */
#define CK(call) do { int e_ = (call); if (e_) { fprintf(stderr, "rank %d line %d: %s: %s\n", \
    rank, __LINE__, #call, be->errstr(e_)); MPI_Abort(MPI_COMM_WORLD, 2); } } while (0)
/* The same for a ringred test hook (an rr_status). */
#define CKR(call) do { rr_status e_ = (call); if (e_ != RR_OK) { fprintf(stderr, \
    "rank %d line %d: %s: %s\n", rank, __LINE__, #call, rr_strerror(e_)); \
    MPI_Abort(MPI_COMM_WORLD, 2); } } while (0)

static uint8_t pat(int who, int round, size_t i) { return (uint8_t)(who * 37 + round * 11 + i * 7 + 1); }

/* Host copy of device memory src (n bytes) through stream s. */
static void fetch(void *dst, uintptr_t src, size_t n, uintptr_t s)
{
    CK(be->d2h(dst, src, n, s));
    CK(be->stream_sync(s));
}

/* Device memory dst = host src through stream s (h2d poisons its source: a copy). */
static void store(uintptr_t dst, const void *src, size_t n, uintptr_t s)
{
    void *tmp = malloc(n);
    memcpy(tmp, src, n);
    CK(be->h2d(dst, tmp, n, s));
    CK(be->stream_sync(s));
    free(tmp);
}

static int check_pattern(const uint8_t *b, size_t n, int who, int round)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != pat(who, round, i))
            return 0;
    return 1;
}

static void fill_pattern(uint8_t *b, size_t n, int who, int round)
{
    for (size_t i = 0; i < n; i++)
        b[i] = pat(who, round, i);
}

/* ------------------------------------------------------------------ 1. one process */

static void local_checks(uintptr_t s1, uintptr_t s2)
{
    uintptr_t a = 0, b = 0;
    CK(be->mem_alloc(&a, BYTES));
    CK(be->mem_alloc(&b, BYTES));
    EXPECT((a & TAG) && (b & TAG), "mem_alloc: untagged address");
    uint8_t *h = malloc(BYTES);
    fetch(h, a, BYTES, s1);
    size_t ff = 0;
    for (size_t i = 0; i < BYTES; i++)
        ff += h[i] == 0xFF;
    EXPECT(ff == BYTES, "mem_alloc: new memory is not 0xFF");
    /* a -> b on s1, an event, then b -> host on s2 after waiting on it: ordered */
    void *ev = NULL;
    CK(be->event_create(&ev));
    for (int round = 0; round < 4; round++) {
        uint8_t *src = malloc(BYTES);
        fill_pattern(src, BYTES, rank, round);
        CK(be->h2d(a, src, BYTES, s1));
        CK(be->d2d(b, a, BYTES, s1));
        CK(be->event_record(ev, s1));
        CK(be->stream_wait_event(s2, ev));
        memset(h, 0, BYTES);
        CK(be->d2h(h, b, BYTES, s2));
        CK(be->stream_sync(s2));
        EXPECT(be->event_query(ev) == 0, "event not complete after a wait on it finished");
        EXPECT(check_pattern(h, BYTES, rank, round), "d2d ordered by an event: wrong data");
        CK(be->stream_sync(s1));
        free(src);
    }
    /* a host stream (0) runs d2d at once */
    CK(be->d2d(a, b + 100, 1000, 0));
    fetch(h, a, 1000, s1);
    uint8_t *full = malloc(BYTES);
    fill_pattern(full, BYTES, rank, 3);
    EXPECT(memcmp(h, full + 100, 1000) == 0, "d2d on the host stream: wrong data");
    free(full);
    /* refusals */
    EXPECT(be->d2d(a + 10, a, 100, s1) != 0, "overlapping d2d accepted");
    EXPECT(be->mem_free(a + 64) != 0, "mem_free of an interior pointer accepted");
    rr_ipc_handle hd;
    EXPECT(be->ipc_mem_handle(&hd, a + 64) != 0, "ipc_mem_handle of an interior pointer");
    EXPECT(be->ipc_event_handle(&hd, ev) != 0, "ipc_event_handle of an ordinary event");
    CK(be->ipc_mem_handle(&hd, a));
    uintptr_t own = 0;
    EXPECT(be->ipc_mem_open(&own, &hd) != 0, "a process opened its own memory handle");
    void *iev = NULL, *oev = NULL;
    CK(be->ipc_event_create(&iev));
    CK(be->ipc_event_handle(&hd, iev));
    EXPECT(be->ipc_event_open(&oev, &hd) != 0, "a process opened its own event handle");
    /* an IPC event works as an ordinary one in its own process */
    CK(be->event_record(iev, s1));
    CK(be->stream_wait_event(0, iev));
    EXPECT(be->event_query(iev) == 0, "host wait on an IPC event returned early");
    CK(be->event_destroy(iev));
    CK(be->event_destroy(ev));
    /* launch_reduce: n == 0 is nothing, bad arguments are refused */
    rr_kargs k = {.nsrc = 1, .dtype = RR_FLOAT32, .op = RR_SUM, .pre = 1, .post = 1, .div = 1};
    k.src[0] = a;
    k.dst[0] = b;
    CK(be->launch_reduce(&k, s1));
    k.n = 4;
    k.nsrc = 0;
    EXPECT(be->launch_reduce(&k, s1) != 0, "launch_reduce with nsrc 0 accepted");
    k.nsrc = RR_KMAX_SRCS + 1;
    EXPECT(be->launch_reduce(&k, s1) != 0, "launch_reduce with too many inputs accepted");
    CK(be->stream_sync(s1));
    CK(be->mem_free(a));
    CK(be->mem_free(b));
    EXPECT(be->mem_free(a) != 0, "double mem_free accepted");
    free(h);
}

/* ------------------------------------------------------------ 2. an exporter that dies */

static void dying_exporter(uintptr_t s /* a host stream */)
{
    int up[2], down[2];
    if (pipe(up) != 0 || pipe(down) != 0) {
        EXPECT(0, "pipe failed");
        return;
    }
    pid_t pid = fork();
    if (pid == 0) { /* the child: export memory, wait for the word, exit */
        close(up[0]);
        close(down[1]);
        uintptr_t m = 0;
        rr_ipc_handle h;
        uint8_t *b = malloc(4096);
        fill_pattern(b, 4096, 99, 0);
        int bad = be->mem_alloc(&m, 4096) || be->h2d(m, b, 4096, 0) || be->ipc_mem_handle(&h, m);
        if (bad || write(up[1], &h, sizeof h) != (ssize_t)sizeof h)
            _exit(3);
        char c;
        _exit(read(down[0], &c, 1) == 1 ? 0 : 4);
    }
    close(up[1]);
    close(down[0]);
    rr_ipc_handle h;
    int got = pid > 0 && read(up[0], &h, sizeof h) == (ssize_t)sizeof h;
    EXPECT(got, "the exporting child failed");
    uintptr_t m = 0;
    int opened = got && be->ipc_mem_open(&m, &h) == 0;
    EXPECT(!got || opened, "cannot open a live child's memory");
    if (write(down[1], "x", 1) != 1)
        EXPECT(0, "write to the child failed");
    int status = 0;
    if (pid > 0)
        waitpid(pid, &status, 0);
    EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child failed (%d)", status);
    close(up[0]);
    close(down[1]);
    if (!opened)
        return;
    uint8_t b[4096];
    fetch(b, m, sizeof b, s);
    EXPECT(check_pattern(b, sizeof b, 99, 0), "memory of a dead exporter changed");
    uintptr_t again = 0;
    EXPECT(be->ipc_mem_open(&again, &h) == 0 && again == m,
           "a second open of a mapped handle did not return the same address");
    CK(be->ipc_mem_close(again));
    CK(be->ipc_mem_close(m));
    EXPECT(be->ipc_mem_close(m) != 0, "a closed mapping closed again");
    EXPECT(be->ipc_mem_open(&again, &h) != 0, "a dead exporter's handle opened");
}

/* ------------------------------------------------------------ 6. nothing left behind */

static int count_memfds(void)
{
    int n = 0;
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f))
        n += strstr(line, "/memfd:rr-fake-") != NULL;
    if (f)
        fclose(f);
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char path[300], link[256];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t k = readlink(path, link, sizeof link - 1);
        link[k > 0 ? k : 0] = '\0';
        n += strncmp(link, "/memfd:rr-fake-", 15) == 0;
    }
    if (d)
        closedir(d);
    return n;
}

#define MAXSHM 1024
static int list_shm(char names[][256], int cap)
{
    int n = 0;
    DIR *d = opendir("/dev/shm");
    struct dirent *e;
    while (d && (e = readdir(d)) && n < cap)
        if (e->d_name[0] != '.')
            snprintf(names[n++], 256, "%s", e->d_name);
    if (d)
        closedir(d);
    return n;
}

static int listed(char names[][256], int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return 1;
    return 0;
}

/* ------------------------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    be = rr_dev_fake_backend();
    static char shm_before[MAXSHM][256], shm_after[MAXSHM][256];
    int nbefore = list_shm(shm_before, MAXSHM);
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    if (nranks < 2 || nranks > MAXR) {
        if (rank == 0)
            fprintf(stderr, "device_check: run on 2..%d ranks\n", MAXR);
        MPI_Finalize();
        return 1;
    }
    char why[256];
    CK(be->load(why, sizeof why));
    if (rank == 0) /* before any stream thread exists: the forked exporter */
        dying_exporter(0);
    uintptr_t s1 = 0, s2 = 0;
    CK(be->stream_create(&s1));
    CK(be->stream_create(&s2));
    local_checks(s1, s2);

    /* 3. IPC memory */
    uintptr_t mine = 0, scratch = 0;
    CK(be->mem_alloc(&mine, BYTES));
    CK(be->mem_alloc(&scratch, BYTES));
    uint8_t *h = malloc(BYTES);
    fill_pattern(h, BYTES, rank, 0);
    store(mine, h, BYTES, s1);
    rr_ipc_handle hs[MAXR];
    CK(be->ipc_mem_handle(&hs[rank], mine));
    MPI_Allgather(MPI_IN_PLACE, 0, MPI_BYTE, hs, sizeof(rr_ipc_handle), MPI_BYTE, MPI_COMM_WORLD);
    uintptr_t peer[MAXR] = {0};
    for (int j = 0; j < nranks; j++) {
        if (j == rank) {
            peer[j] = mine;
            continue;
        }
        CK(be->ipc_mem_open(&peer[j], &hs[j]));
        EXPECT(peer[j] & TAG, "ipc_mem_open: untagged address");
        CK(be->d2d(scratch, peer[j], BYTES, s1));
        fetch(h, scratch, BYTES, s1);
        EXPECT(check_pattern(h, BYTES, j, 0), "rank %d's memory read through IPC: wrong", j);
    }
    int next = (rank + 1) % nranks;
    uintptr_t twice = 0;
    CK(be->ipc_mem_open(&twice, &hs[next]));
    EXPECT(twice == peer[next], "a second open returned another address");
    CK(be->ipc_mem_close(twice));
    /* a marker into the next rank's buffer (its last 256 bytes) */
    uint8_t mark[256];
    memset(mark, 0xA0 + rank, sizeof mark);
    store(scratch, mark, sizeof mark, s1);
    MPI_Barrier(MPI_COMM_WORLD); /* everyone has read the patterns */
    CK(be->d2d(peer[next] + BYTES - 256, scratch, 256, s1));
    CK(be->stream_sync(s1));
    MPI_Barrier(MPI_COMM_WORLD);
    fetch(h, mine, BYTES, s1);
    int prev = (rank + nranks - 1) % nranks;
    int mark_ok = 1;
    for (int i = 0; i < 256; i++)
        mark_ok &= h[BYTES - 256 + i] == (uint8_t)(0xA0 + prev);
    EXPECT(mark_ok, "the marker written by rank %d through IPC is not in my buffer", prev);
    EXPECT(check_pattern(h, BYTES - 256, rank, 0), "my buffer changed outside the marker");

    /* 4. IPC events */
    void *myev = NULL, *pev[MAXR] = {NULL};
    CK(be->ipc_event_create(&myev));
    CK(be->ipc_event_handle(&hs[rank], myev));
    MPI_Allgather(MPI_IN_PLACE, 0, MPI_BYTE, hs, sizeof(rr_ipc_handle), MPI_BYTE, MPI_COMM_WORLD);
    for (int j = 0; j < nranks; j++)
        if (j != rank)
            CK(be->ipc_event_open(&pev[j], &hs[j]));
        else
            pev[j] = myev;
    uint8_t *src = malloc(BYTES);
    for (int round = 1; round <= ROUNDS; round++) {
        int p = round % nranks;
        if (rank == p) { /* a delayed write, then the record */
            fill_pattern(src, BYTES, p, round);
            CKR(rr_test_fake_stream_sleep(s2, 0.002 * (round % 4)));
            CK(be->h2d(mine, src, BYTES, s2));
            CK(be->event_record(myev, s2));
        }
        MPI_Barrier(MPI_COMM_WORLD); /* the "flag": recorded before anyone waits */
        if (rank != p) {
            CK(be->stream_wait_event(s1, pev[p]));
            CK(be->d2d(scratch, peer[p], BYTES, s1));
            fetch(h, scratch, BYTES, s1);
            EXPECT(check_pattern(h, BYTES, p, round), "round %d: rank %d's write not seen "
                   "after waiting on its event", round, p);
        } else {
            CK(be->stream_sync(s2));
        }
        MPI_Barrier(MPI_COMM_WORLD); /* read before the next write */
    }

    /* 5. launch_reduce over the peers' buffers */
    for (int variant = 0; variant < 3; variant++) {
        int f64 = variant == 2;
        size_t es = f64 ? 8 : 4, n = BYTES / 2 / es; /* outputs in the scratch's two halves */
        double pre = variant == 1 ? 0.5 : 1.0, post = variant == 1 ? 3.0 : 1.0;
        for (size_t i = 0; i < n; i++) { /* exact in float: small multiples of 1/4 */
            double v = (double)((int)((i * 13 + (size_t)rank * 7 + (size_t)variant) % 41) - 20) / 4;
            if (f64)
                ((double *)h)[i] = v + 1e-9 * rank; /* not exact: the order shows */
            else
                ((float *)h)[i] = (float)v;
        }
        CKR(rr_test_fake_stream_sleep(s2, 0.002));
        CK(be->h2d(mine, memcpy(src, h, n * es), n * es, s2));
        CK(be->event_record(myev, s2));
        MPI_Barrier(MPI_COMM_WORLD);
        for (int j = 0; j < nranks; j++)
            CK(be->stream_wait_event(s1, pev[j]));
        rr_kargs k = {.n = n, .nsrc = nranks, .dtype = f64 ? RR_FLOAT64 : RR_FLOAT32,
                      .op = RR_SUM, .pre = pre, .post = post, .div = 1};
        for (int j = 0; j < nranks; j++)
            k.src[j] = peer[j];
        k.dst[0] = scratch;
        k.dst[1] = variant == 1 ? scratch + BYTES / 2 : 0;
        CK(be->launch_reduce(&k, s1));
        uint8_t *out = malloc(BYTES);
        fetch(out, scratch, BYTES, s1);
        int bad = 0;
        for (size_t i = 0; i < n && !bad; i++) {
            if (f64) {
                double acc = 0;
                for (int j = 0; j < nranks; j++) {
                    double v = (double)((int)((i * 13 + (size_t)j * 7 + 2) % 41) - 20) / 4 + 1e-9 * j;
                    acc = j == 0 ? v : acc + v;
                }
                double got;
                memcpy(&got, out + i * 8, 8);
                bad = memcmp(&got, &acc, 8) != 0;
            } else {
                float acc = 0;
                for (int j = 0; j < nranks; j++) {
                    float v = (float)((double)((int)((i * 13 + (size_t)j * 7 + (size_t)variant) % 41) - 20) / 4);
                    v = variant == 1 ? v * (float)pre : v;
                    acc = j == 0 ? v : acc + v;
                }
                acc = variant == 1 ? acc * (float)post : acc;
                float got, got2;
                memcpy(&got, out + i * 4, 4);
                bad = memcmp(&got, &acc, 4) != 0;
                if (variant == 1) {
                    memcpy(&got2, out + BYTES / 2 + i * 4, 4);
                    bad |= memcmp(&got2, &acc, 4) != 0;
                }
            }
            EXPECT(!bad, "launch_reduce variant %d: element %zu wrong", variant, i);
        }
        free(out);
        MPI_Barrier(MPI_COMM_WORLD); /* everyone read my buffer before I overwrite it */
    }

    /* 6. close everything */
    for (int j = 0; j < nranks; j++)
        if (j != rank) {
            CK(be->ipc_mem_close(peer[j]));
            CK(be->event_destroy(pev[j]));
        }
    MPI_Barrier(MPI_COMM_WORLD);
    CK(be->event_destroy(myev));
    CK(be->mem_free(mine));
    CK(be->mem_free(scratch));
    CK(be->stream_destroy(s1));
    CK(be->stream_destroy(s2));
    free(h);
    free(src);
    EXPECT(count_memfds() == 0, "memfds still mapped or open: %d", count_memfds());
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
        int nafter = list_shm(shm_after, MAXSHM);
        for (int i = 0; i < nafter; i++) /* MPICH keeps its own segment until finalize */
            EXPECT(listed(shm_before, nbefore, shm_after[i]) ||
                   strncmp(shm_after[i], "mpich", 5) == 0, "new in /dev/shm: %s", shm_after[i]);
    }
    int total = 0;
    MPI_Allreduce(&fails, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0 && total == 0)
        printf("device_check: OK (%d ranks)\n", nranks);
    MPI_Finalize();
    return total == 0 ? 0 : 1;
}
