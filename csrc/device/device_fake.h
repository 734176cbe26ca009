/* The fake device backend's pieces shared by its files.  Internal header.
 *   device_fake.c      streams (worker threads), events, copies, kernel launches, the table
 *   device_fake_ipc.c  device memory another process can map, IPC memory and event handles
 *   device_fake_test.c rr_test_fake_stream_*: a producer stream for tests */
#ifndef RR_DEVICE_FAKE_H
#define RR_DEVICE_FAKE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "device/device.h"

/* "Device" addresses are host addresses with this bit set (ringred.testing.FAKE_TAG). */
#define RR_FAKE_TAG ((uintptr_t)1 << 62)

/* Backend error codes (errstr in device_fake.c). */
enum {
    RR_FAKE_ERR_VALUE = 1,  /* invalid argument */
    RR_FAKE_ERR_NOMEM = 2,
    RR_FAKE_ERR_THREAD = 3, /* cannot start a stream thread, or too many streams */
    RR_FAKE_ERR_PEER = 4,   /* cannot map the exporting process's memory (gone, stale handle) */
    RR_FAKE_ERR_OWN = 5,    /* a process opened its own IPC handle (CUDA refuses that too) */
    RR_FAKE_ERR_SYSTEM = 6  /* an OS call failed (memfd_create, ftruncate, mmap) */
};

/* An event's records: issued (host side, at record time) and executed (by the stream).
 * Plain memory for an ordinary event; a page of a memfd, mapped by every process that has
 * the event, for an IPC event.  Address-free lock-free atomics either way. */
_Static_assert(ATOMIC_LONG_LOCK_FREE == 2 && ATOMIC_LLONG_LOCK_FREE == 2,
               "IPC events need lock-free 64-bit atomics");
typedef struct rr_fake_counts {
    _Atomic uint64_t issued, done;
} rr_fake_counts;

enum { RR_FAKE_EV_LOCAL, RR_FAKE_EV_IPC, RR_FAKE_EV_OPENED };

typedef struct rr_fake_event {
    int kind;              /* RR_FAKE_EV_*: created, created for IPC, opened from a handle */
    rr_fake_counts *c;     /* &own, or the shared page */
    rr_fake_counts own;
    pthread_mutex_t mu;    /* LOCAL: waiters in this process sleep on cv */
    pthread_cond_t cv;
    int fd;                /* IPC: the page's memfd; else -1 */
    uint64_t serial;       /* IPC: names the memfd (openers check it) */
} rr_fake_event;

void *rr_fake_untag(uintptr_t p);
/* A new event of `kind` whose counters are the local ones (the caller repoints c). */
rr_fake_event *rr_fake_event_new(int kind);
/* The IPC side of event_destroy: unmap the page, close the memfd (device_fake_ipc.c). */
void rr_fake_ipc_event_release(rr_fake_event *e);

/* device_fake_ipc.c: the backend table's entries */
int rr_fake_mem_alloc(uintptr_t *p, size_t bytes);
int rr_fake_mem_free(uintptr_t p);
int rr_fake_ipc_mem_handle(rr_ipc_handle *h, uintptr_t p);
int rr_fake_ipc_mem_open(uintptr_t *p, const rr_ipc_handle *h);
int rr_fake_ipc_mem_close(uintptr_t p);
int rr_fake_ipc_event_create(void **e);
int rr_fake_ipc_event_handle(rr_ipc_handle *h, void *e);
int rr_fake_ipc_event_open(void **e, const rr_ipc_handle *h);

/* device_fake.c, for the test hooks: queue a pause, or an asynchronous write of dst (a
 * "kernel" of the producer), on stream s (one made by stream_create; RR_FAKE_ERR_VALUE
 * otherwise).  Addresses may be tagged. */
int rr_fake_stream_sleep(uintptr_t s, double seconds);
int rr_fake_stream_write(uintptr_t s, uintptr_t dst, uintptr_t src, size_t bytes);

#endif
