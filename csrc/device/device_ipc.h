/* Same-host GPU transport over CUDA IPC (device_ipc.c).  Internal header.
 *
 * Every rank of the communicator (all on one host) owns a device scratch ring of
 * RINGRED_IPC_SLOTS slots of RINGRED_IPC_CHUNK_BYTES and three interprocess events per slot,
 * exported once and opened by every peer.  Allreduce is a two-shot over chunks: each rank
 * copies a chunk of its input into its slot, reduces its 1/n slice of the chunk from every
 * rank's slot with ringred's kernel, and gathers the other slices from the peers' slots.
 * Host flags in the shared-memory segment order "recorded" before "waited on"; the device
 * waits on the peers' events (cuStreamWaitEvent), never spins on a flag. */
#ifndef RR_DEVICE_IPC_H
#define RR_DEVICE_IPC_H

#include "device/device.h"
#include "core/internal.h"

#define RR_IPC_MAX_SLOTS 4

/* Is the IPC transport in force for an allreduce of `bytes` on this communicator?  Sets it
 * up on first use: collective, so call it at the same point on every rank (after an
 * agreement, or in the engine's negotiated order), and only when every rank calls it.  The
 * verdict is the same on every rank.  RINGRED_DEVICE_TRANSPORT=ipc with IPC unavailable is
 * an error (RR_ERR_UNSUPPORTED) on every rank. */
rr_status rr_ipc_use(rr_comm *c, rr_device *d, size_t bytes, int *use);

/* Allreduce of count elements from dsend into drecv (may be the same), stream-ordered:
 * the transport's stream waits for the work queued on prod, and later work on prod waits for
 * the result.  With sync the host then waits until the result is in place; without, nothing
 * waits on the host for the device. */
rr_status rr_ipc_allreduce(rr_comm *c, rr_device *d, uintptr_t prod, uintptr_t dsend,
                           uintptr_t drecv, size_t count, int dtype, int op, double pre,
                           double post, int64_t div, int sync);

/* Broadcast of root's src (count elements) into every rank's drecv (src == drecv in place). */
rr_status rr_ipc_broadcast(rr_comm *c, rr_device *d, uintptr_t prod, uintptr_t src,
                           uintptr_t drecv, size_t count, int dtype, int root, int sync);
/* Reducescatter: rank r receives the reduction of the block of recvcounts[r] elements that
 * follows the blocks of the ranks before it. */
rr_status rr_ipc_reducescatter(rr_comm *c, rr_device *d, uintptr_t prod, uintptr_t dsend,
                               size_t count, uintptr_t drecv, const size_t *recvcounts,
                               int dtype, int op, double pre, double post, int64_t div,
                               int sync);
/* Allgather: every rank's counts[r] elements, concatenated in rank order, into drecv. */
rr_status rr_ipc_allgather(rr_comm *c, rr_device *d, uintptr_t prod, uintptr_t dsend,
                           uintptr_t drecv, const size_t *counts, int dtype, int sync);

/* "ipc", "staged" or "undecided", and why (the reason IPC is not in force). */
const char *rr_ipc_verdict(const rr_device *d, const char **why);

void rr_ipc_free(rr_device *d);
/* Wait until the transport's stream has run everything queued (see rr_dev_settle). */
void rr_ipc_settle(rr_device *d);

#endif
