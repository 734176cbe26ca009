/* Fake device backend: device memory another process can map, and CUDA IPC imitated with
 * memfds.
 *
 * mem_alloc makes a memfd (memfd_create: no name in /dev/shm, gone with its last mapping
 * and descriptor), maps it shared, fills it with 0xFF bytes and hands out the tagged
 * address.  A handle names the exporting process, the descriptor number and a serial
 * number that is also in the memfd's name; a peer opens /proc/<pid>/fd/<fd> (checking the
 * name, so a stale handle whose descriptor number was reused fails) and maps it.  An IPC
 * event is the same with one page holding the event's counters (rr_fake_counts).
 * Like CUDA: only the base of an allocation can be exported, a process cannot open its own
 * handle, and opening a memory handle again returns the same address (counted: as many
 * closes as opens). */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "device/device_fake.h"

#define MEM_MAGIC 0x4d454d4552414b46ull /* "FAKEREMM" */
#define EV_MAGIC 0x5645454552414b46ull  /* "FAKEREEV" */
#define EV_PAGE 4096

/* The handle's bytes (the rest of the 64 are zero). */
typedef struct fake_handle {
    uint64_t magic;
    int32_t pid, fd;
    uint64_t serial;
    uint64_t size;
} fake_handle;
_Static_assert(sizeof(fake_handle) <= sizeof(rr_ipc_handle), "handle size");

/* Memory made here (own) or mapped from a peer (opened). */
typedef struct mem_entry {
    uintptr_t base; /* untagged */
    size_t size;
    int fd;         /* own: the memfd; opened: -1 */
    int32_t pid;    /* opened: the exporter */
    uint64_t serial;
    int refs;       /* opened: opens not yet closed */
    struct mem_entry *next;
} mem_entry;

static pthread_mutex_t mem_mu = PTHREAD_MUTEX_INITIALIZER;
static mem_entry *own_list, *opened_list;
static _Atomic uint64_t next_serial = 1;

static void memfd_name(char *buf, size_t len, int32_t pid, uint64_t serial)
{
    snprintf(buf, len, "rr-fake-%" PRId32 "-%" PRIu64, pid, serial);
}

/* A new memfd of `bytes`, mapped shared at *addr; *serial names it. */
static int make_shared(size_t bytes, int *fd_out, void **addr, uint64_t *serial)
{
    char name[64];
    *serial = atomic_fetch_add(&next_serial, 1);
    memfd_name(name, sizeof name, (int32_t)getpid(), *serial);
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0)
        return RR_FAKE_ERR_SYSTEM;
    if (ftruncate(fd, (off_t)bytes) != 0) {
        close(fd);
        return RR_FAKE_ERR_NOMEM;
    }
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        close(fd);
        return RR_FAKE_ERR_NOMEM;
    }
    *fd_out = fd;
    *addr = p;
    return 0;
}

/* Map the peer's memfd named by h (magic `magic`, at least `bytes` long) at *addr. */
static int map_peer(const rr_ipc_handle *raw, uint64_t magic, size_t bytes, void **addr)
{
    fake_handle h;
    memcpy(&h, raw->bytes, sizeof h);
    if (h.magic != magic || h.pid <= 0 || h.fd < 0)
        return RR_FAKE_ERR_VALUE;
    if (h.pid == (int32_t)getpid())
        return RR_FAKE_ERR_OWN;
    char path[64], link[128], want[64];
    snprintf(path, sizeof path, "/proc/%" PRId32 "/fd/%" PRId32, h.pid, h.fd);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return RR_FAKE_ERR_PEER;
    /* /proc/self/fd/N of our descriptor: the same file, named like the one we expect */
    char self[64];
    snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(self, link, sizeof link - 1);
    link[n > 0 ? n : 0] = '\0';
    memfd_name(want, sizeof want, h.pid, h.serial);
    size_t wl = strlen("/memfd:") + strlen(want);
    struct stat st;
    int ok = strncmp(link, "/memfd:", 7) == 0 && strncmp(link + 7, want, strlen(want)) == 0 &&
             (link[wl] == '\0' || link[wl] == ' ') && fstat(fd, &st) == 0 &&
             (uint64_t)st.st_size >= bytes;
    void *p = ok ? mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
    close(fd); /* the mapping keeps the file */
    if (!ok)
        return RR_FAKE_ERR_PEER;
    if (p == MAP_FAILED)
        return RR_FAKE_ERR_NOMEM;
    *addr = p;
    return 0;
}

static void handle_out(rr_ipc_handle *raw, uint64_t magic, int fd, uint64_t serial,
                       uint64_t size)
{
    fake_handle h = {.magic = magic, .pid = (int32_t)getpid(), .fd = fd, .serial = serial,
                     .size = size};
    memset(raw->bytes, 0, sizeof raw->bytes);
    memcpy(raw->bytes, &h, sizeof h);
}

/* ---------------------------------------------------------------- memory */

int rr_fake_mem_alloc(uintptr_t *out, size_t bytes)
{
    if (bytes == 0)
        return RR_FAKE_ERR_VALUE;
    mem_entry *m = calloc(1, sizeof *m);
    if (m == NULL)
        return RR_FAKE_ERR_NOMEM;
    void *p = NULL;
    int r = make_shared(bytes, &m->fd, &p, &m->serial);
    if (r != 0) {
        free(m);
        return r;
    }
    memset(p, 0xFF, bytes);
    m->base = (uintptr_t)p;
    m->size = bytes;
    pthread_mutex_lock(&mem_mu);
    m->next = own_list;
    own_list = m;
    pthread_mutex_unlock(&mem_mu);
    *out = m->base | RR_FAKE_TAG;
    return 0;
}

/* Unlink and return the entry of `list` whose base is addr (mem_mu held), or NULL. */
static mem_entry *take(mem_entry **list, uintptr_t addr)
{
    for (mem_entry **pp = list; *pp; pp = &(*pp)->next)
        if ((*pp)->base == addr) {
            mem_entry *m = *pp;
            *pp = m->next;
            return m;
        }
    return NULL;
}

int rr_fake_mem_free(uintptr_t p)
{
    pthread_mutex_lock(&mem_mu);
    mem_entry *m = take(&own_list, (uintptr_t)rr_fake_untag(p));
    pthread_mutex_unlock(&mem_mu);
    if (m == NULL)
        return RR_FAKE_ERR_VALUE;
    munmap((void *)m->base, m->size);
    close(m->fd);
    free(m);
    return 0;
}

int rr_fake_ipc_mem_handle(rr_ipc_handle *h, uintptr_t p)
{
    uintptr_t addr = (uintptr_t)rr_fake_untag(p);
    int r = RR_FAKE_ERR_VALUE;
    pthread_mutex_lock(&mem_mu);
    for (mem_entry *m = own_list; m; m = m->next)
        if (m->base == addr) {
            handle_out(h, MEM_MAGIC, m->fd, m->serial, m->size);
            r = 0;
            break;
        }
    pthread_mutex_unlock(&mem_mu);
    return r;
}

int rr_fake_ipc_mem_open(uintptr_t *out, const rr_ipc_handle *raw)
{
    fake_handle h;
    memcpy(&h, raw->bytes, sizeof h);
    if (h.magic != MEM_MAGIC || h.size == 0 || (uint64_t)(size_t)h.size != h.size)
        return RR_FAKE_ERR_VALUE;
    pthread_mutex_lock(&mem_mu);
    for (mem_entry *m = opened_list; m; m = m->next)
        if (m->pid == h.pid && m->serial == h.serial) {
            m->refs++;
            *out = m->base | RR_FAKE_TAG;
            pthread_mutex_unlock(&mem_mu);
            return 0;
        }
    pthread_mutex_unlock(&mem_mu);
    mem_entry *m = calloc(1, sizeof *m);
    if (m == NULL)
        return RR_FAKE_ERR_NOMEM;
    void *p = NULL;
    int r = map_peer(raw, MEM_MAGIC, (size_t)h.size, &p);
    if (r != 0) {
        free(m);
        return r;
    }
    *m = (mem_entry){.base = (uintptr_t)p, .size = (size_t)h.size, .fd = -1, .pid = h.pid,
                     .serial = h.serial, .refs = 1};
    pthread_mutex_lock(&mem_mu);
    mem_entry *dup = NULL; /* another thread opened it meanwhile: keep that mapping */
    for (mem_entry *o = opened_list; o && !dup; o = o->next)
        if (o->pid == h.pid && o->serial == h.serial)
            dup = o;
    if (dup) {
        dup->refs++;
        *out = dup->base | RR_FAKE_TAG;
    } else {
        m->next = opened_list;
        opened_list = m;
        *out = m->base | RR_FAKE_TAG;
    }
    pthread_mutex_unlock(&mem_mu);
    if (dup) {
        munmap(p, m->size);
        free(m);
    }
    return 0;
}

int rr_fake_ipc_mem_close(uintptr_t p)
{
    uintptr_t addr = (uintptr_t)rr_fake_untag(p);
    mem_entry *gone = NULL;
    int found = 0;
    pthread_mutex_lock(&mem_mu);
    for (mem_entry *m = opened_list; m && !found; m = m->next)
        if (m->base == addr) {
            found = 1;
            if (--m->refs == 0)
                gone = take(&opened_list, addr);
        }
    pthread_mutex_unlock(&mem_mu);
    if (gone) {
        munmap((void *)gone->base, gone->size);
        free(gone);
    }
    return found ? 0 : RR_FAKE_ERR_VALUE;
}

/* ---------------------------------------------------------------- events */

int rr_fake_ipc_event_create(void **out)
{
    rr_fake_event *e = rr_fake_event_new(RR_FAKE_EV_IPC);
    if (e == NULL)
        return RR_FAKE_ERR_NOMEM;
    void *page = NULL;
    int r = make_shared(EV_PAGE, &e->fd, &page, &e->serial);
    if (r != 0) {
        e->fd = -1;
        e->kind = RR_FAKE_EV_LOCAL;
        rr_dev_fake_backend()->event_destroy(e);
        return r;
    }
    e->c = page; /* a new memfd reads as zeros: issued = done = 0 */
    *out = e;
    return 0;
}

int rr_fake_ipc_event_handle(rr_ipc_handle *h, void *p)
{
    rr_fake_event *e = p;
    if (e->kind != RR_FAKE_EV_IPC) /* CUDA: only events made with CU_EVENT_INTERPROCESS */
        return RR_FAKE_ERR_VALUE;
    handle_out(h, EV_MAGIC, e->fd, e->serial, EV_PAGE);
    return 0;
}

int rr_fake_ipc_event_open(void **out, const rr_ipc_handle *raw)
{
    rr_fake_event *e = rr_fake_event_new(RR_FAKE_EV_OPENED);
    if (e == NULL)
        return RR_FAKE_ERR_NOMEM;
    void *page = NULL;
    int r = map_peer(raw, EV_MAGIC, EV_PAGE, &page);
    if (r != 0) {
        e->kind = RR_FAKE_EV_LOCAL;
        rr_dev_fake_backend()->event_destroy(e);
        return r;
    }
    e->c = page;
    *out = e;
    return 0;
}

void rr_fake_ipc_event_release(rr_fake_event *e)
{
    if (e->c != &e->own)
        munmap(e->c, EV_PAGE);
    if (e->fd >= 0)
        close(e->fd);
    e->c = &e->own;
    e->fd = -1;
}
