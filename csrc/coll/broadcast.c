/* Broadcast: argument checks, then the hierarchical plan or the communicator's transport
 * (core/transport.h). */
#include "coll/coll.h"
#include "core/internal.h"

rr_status rr_broadcast(rr_comm *c, void *buf, size_t count, int dtype, int root)
{
    RR_LOCAL(c, RR_KIND_BROADCAST, rr_check_call(c, dtype, RR_SUM, 1.0, 1.0, 1));
    if (root < 0 || root >= c->size)
        return rr_reject(c, RR_KIND_BROADCAST, RR_FAIL(c, RR_ERR_INVALID,
                         "broadcast: root rank %d is not in [0, %d)", root, c->size));
    size_t bytes = count * rr_dtype_size(dtype);
    if (bytes && buf == NULL)
        return rr_reject(c, RR_KIND_BROADCAST, RR_FAIL(c, RR_ERR_INVALID, "broadcast: NULL buffer"));
    rr_header h = {RR_KIND_BROADCAST, (uint8_t)dtype, 0, 0, root, (uint64_t)count, 1.0, 1.0, 0, 0};
    if (c->size == 1)
        return RR_OK;
    if (c->hier && bytes > c->cfg.small_bytes) { /* only ever over MPI: spans hosts */
        RR_CHECK(c->ops->agree(c, &h));
        return rr_hier_broadcast(c, buf, count, (rr_dtype)dtype, root);
    }
    return c->ops->broadcast(c, buf, count, (rr_dtype)dtype, root);
}
