/* Peer liveness, shared by both transports: every rank learns every rank's pid, process
 * start time and host at communicator creation (one MPI_Allgather), and a waiting rank
 * checks now and then that the peers on its own host still run.  A peer is dead when
 * kill(pid, 0) says it is gone, or /proc/<pid>/stat shows a zombie or another process (a
 * different start time: the pid was reused).  Peers on other hosts, or in another pid
 * namespace (the pid we see in /proc does not have the start time they published), are not
 * watched: only the timeout (RINGRED_TIMEOUT_SECONDS) notices them. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"

/* Field 3 (state) and 22 (start time, clock ticks since boot) of /proc/<pid>/stat.
 * Returns 0, or -1 with errno set. */
int rr_proc_stat(pid_t pid, char *state, unsigned long long *start)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t got = read(fd, buf, sizeof buf - 1);
    int e = errno;
    close(fd);
    if (got <= 0) {
        errno = got < 0 ? e : EIO;
        return -1;
    }
    buf[got] = '\0';
    const char *p = strrchr(buf, ')');
    if (p == NULL || sscanf(p + 1, " %c", state) != 1) {
        errno = EIO;
        return -1;
    }
    p += 2; /* field 3 starts here; field 22 is 19 spaces further */
    for (int f = 3; f < 22 && p; f++) {
        p = strchr(p, ' ');
        if (p)
            p++;
    }
    if (p == NULL || sscanf(p, "%llu", start) != 1) {
        errno = EIO;
        return -1;
    }
    return 0;
}

void rr_live_free(rr_live *l)
{
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (l->notice_req != MPI_REQUEST_NULL && !finalized) {
        MPI_Cancel(&l->notice_req);
        MPI_Wait(&l->notice_req, MPI_STATUS_IGNORE);
    }
    free(l->pid);
    free(l->start);
    free(l->watch);
    memset(l, 0, sizeof *l);
    l->notice_req = MPI_REQUEST_NULL;
}

rr_status rr_live_setup(rr_comm *c, int host)
{
    rr_live *l = &c->live;
    int n = c->size;
    l->notice_req = MPI_REQUEST_NULL;
    l->pid = calloc((size_t)n, sizeof *l->pid);
    l->start = calloc((size_t)n, sizeof *l->start);
    l->watch = calloc((size_t)n, 1);
    uint64_t *all = calloc((size_t)n * 3, sizeof *all);
    if (!l->pid || !l->start || !l->watch || !all) {
        free(all);
        rr_live_free(l);
        return RR_FAIL(c, RR_ERR_NOMEM, "out of memory (peer table)");
    }
    char state;
    unsigned long long st = 0;
    if (rr_proc_stat(getpid(), &state, &st) != 0)
        st = 0;
    uint64_t mine[3] = {(uint64_t)getpid(), st, (uint64_t)host};
    int e = MPI_Allgather(mine, 3, MPI_UINT64_T, all, 3, MPI_UINT64_T, c->comm);
    if (e != MPI_SUCCESS) {
        free(all);
        rr_live_free(l);
        return rr_fail_mpi(c, e, __FILE__, __LINE__, "MPI_Allgather(peer pids)");
    }
    for (int p = 0; p < n; p++) {
        l->pid[p] = (pid_t)all[3 * p];
        l->start[p] = all[3 * p + 1];
        if (p == c->rank || all[3 * p + 2] != (uint64_t)host || l->pid[p] <= 0)
            continue;
        unsigned long long pst = 0;
        if (rr_proc_stat(l->pid[p], &state, &pst) == 0)
            l->watch[p] = l->start[p] != 0 && pst == l->start[p];
        else if (kill(l->pid[p], 0) == 0) {
            l->watch[p] = 1; /* no /proc: kill() alone */
            l->start[p] = 0;
        }
    }
    free(all);
    if (n > 1) {
        e = MPI_Irecv(l->notice_in, RR_NOTICE_LEN, MPI_CHAR, MPI_ANY_SOURCE, RR_TAG_EXIT,
                      c->comm, &l->notice_req);
        if (e != MPI_SUCCESS) {
            l->notice_req = MPI_REQUEST_NULL;
            rr_live_free(l);
            return rr_fail_mpi(c, e, __FILE__, __LINE__, "MPI_Irecv(exit notice)");
        }
    }
    return RR_OK;
}

int rr_live_dead(const rr_comm *c, int p)
{
    const rr_live *l = &c->live;
    if (l->watch == NULL || !l->watch[p])
        return 0;
    if (kill(l->pid[p], 0) == -1 && errno == ESRCH)
        return 1;
    if (l->start[p] == 0)
        return 0;
    char state;
    unsigned long long st = 0;
    if (rr_proc_stat(l->pid[p], &state, &st) != 0)
        return errno == ENOENT || errno == ESRCH;
    return state == 'Z' || state == 'X' || st != l->start[p];
}

int rr_live_first_dead(const rr_comm *c)
{
    for (int p = 0; p < c->size; p++)
        if (p != c->rank && rr_live_dead(c, p))
            return p;
    return -1;
}

double rr_live_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

rr_status rr_live_broken(rr_comm *c, rr_status code)
{
    c->live.broken = 1;
    c->live.broken_code = code;
    return code;
}

rr_status rr_live_fail_again(rr_comm *c)
{
    return RR_FAIL(c, c->live.broken_code, "the %s transport failed earlier (a peer died or "
                   "timed out); this communicator cannot be used any more",
                   c->transport == RR_TRANSPORT_SHM ? "shared-memory" : "MPI");
}

static const char *transport_name(const rr_comm *c)
{
    return c->transport == RR_TRANSPORT_SHM ? "shared-memory" : "MPI";
}

/* Rank r as the user knows it: a child of the hierarchical plan names its parent's ranks. */
static int named(const rr_comm *c, int r)
{
    return c->outer != NULL && r >= 0 && r < c->size ? c->outer[r] : r;
}

/* "rank r" for the peer waited for, or "its peers" when the wait was for several. */
static void whom_of(const rr_comm *c, int waited_for, char *whom, size_t cap)
{
    if (waited_for >= 0)
        snprintf(whom, cap, "rank %d", named(c, waited_for));
    else
        snprintf(whom, cap, "its peers");
}

rr_status rr_live_dead_error(rr_comm *c, int dead, int waited_for, const char *what)
{
    char whom[48];
    whom_of(c, waited_for, whom, sizeof whom);
    return rr_live_broken(c, RR_FAIL(c, RR_ERR_PEER, "rank %d (pid %d) died; rank %d was waiting "
                                     "for %s in %s (%s transport)", named(c, dead),
                                     (int)c->live.pid[dead], named(c, c->rank), whom,
                                     what ? what : "a collective", transport_name(c)));
}

rr_status rr_live_timeout_error(rr_comm *c, int waited_for, const char *what)
{
    if (waited_for >= 0)
        return rr_live_broken(c, RR_FAIL(c, RR_ERR_TIMEOUT, "rank %d (pid %d) did not answer "
                                         "within %g s (RINGRED_TIMEOUT_SECONDS) while rank %d "
                                         "was waiting for it in %s (%s transport)",
                                         named(c, waited_for), (int)c->live.pid[waited_for],
                                         c->cfg.timeout_s, named(c, c->rank),
                                         what ? what : "a collective",
                                         transport_name(c)));
    return rr_live_broken(c, RR_FAIL(c, RR_ERR_TIMEOUT, "no answer within %g s "
                                     "(RINGRED_TIMEOUT_SECONDS) while rank %d was waiting for "
                                     "its peers in %s (%s transport); every peer on this host "
                                     "is alive", c->cfg.timeout_s, named(c, c->rank),
                                     what ? what : "a collective", transport_name(c)));
}

rr_status rr_live_poll(rr_comm *c, int waited_for, const char *what)
{
    int dead = rr_live_first_dead(c);
    if (dead >= 0)
        return rr_live_dead_error(c, dead, waited_for, what);
    const rr_comm *up = c->live_parent;
    if (up && (dead = rr_live_first_dead(up)) >= 0) {
        char whom[48];
        whom_of(c, waited_for, whom, sizeof whom);
        return rr_live_broken(c, RR_FAIL(c, RR_ERR_PEER, "rank %d (pid %d) died; rank %d was "
                                         "waiting for %s in %s (%s transport)", dead,
                                         (int)up->live.pid[dead], up->rank, whom,
                                         what ? what : "a collective", transport_name(c)));
    }
    rr_live *l = &c->live;
    if (l->notice_req == MPI_REQUEST_NULL)
        return RR_OK;
    int flag = 0;
    MPI_Status st;
    if (MPI_Test(&l->notice_req, &flag, &st) != MPI_SUCCESS || !flag)
        return RR_OK;
    l->notice_in[RR_NOTICE_LEN - 1] = '\0';
    char whom[48];
    whom_of(c, waited_for, whom, sizeof whom);
    return rr_live_broken(c, RR_FAIL(c, RR_ERR_PEER, "rank %d: %s; rank %d was waiting for %s "
                                     "in %s (%s transport)", named(c, st.MPI_SOURCE),
                                     l->notice_in, named(c, c->rank), whom,
                                     what ? what : "a collective",
                                     transport_name(c)));
}

rr_status rr_comm_exit_notice(rr_comm *c, const char *why)
{
    if (c == NULL || why == NULL)
        return RR_ERR_INVALID;
    if (c->hier_local) /* peers waiting inside a step of the hierarchical plan */
        rr_comm_exit_notice(c->hier_local, why);
    if (c->hier_cross)
        rr_comm_exit_notice(c->hier_cross, why);
    if (c->size == 1 || c->live.notice_out != NULL)
        return RR_OK;
    /* never freed: the sends may still read it while the process exits */
    char *msg = calloc(1, RR_NOTICE_LEN);
    if (msg == NULL)
        return RR_FAIL(c, RR_ERR_NOMEM, "out of memory");
    snprintf(msg, RR_NOTICE_LEN, "%s", why);
    c->live.notice_out = msg;
    for (int p = 0; p < c->size; p++) {
        if (p == c->rank)
            continue;
        MPI_Request r;
        int e = MPI_Isend(msg, (int)strlen(msg) + 1, MPI_CHAR, p, RR_TAG_EXIT, c->comm, &r);
        if (e != MPI_SUCCESS)
            return rr_fail_mpi(c, e, __FILE__, __LINE__, "MPI_Isend(exit notice)");
        MPI_Request_free(&r); /* nobody waits: the peers may be busy or gone */
    }
    return RR_OK;
}
