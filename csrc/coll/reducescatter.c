/* Reduce-scatter: argument checks, then the communicator's transport (core/transport.h);
 * rank r keeps chunk r of recvcounts. */
#include <string.h>

#include "coll/coll.h"
#include "core/internal.h"
#include "core/reduce.h"

rr_status rr_reducescatter(rr_comm *c, const void *sendbuf, size_t count, void *recvbuf,
                           const size_t *recvcounts, int dtype, int op, double prescale,
                           double postscale, int64_t avg_div)
{
    RR_LOCAL(c, RR_KIND_REDUCESCATTER, rr_check_call(c, dtype, op, prescale, postscale, avg_div));
    rr_dtype dt = (rr_dtype)dtype;
    size_t es = rr_dtype_size(dt), total = 0;
    int n = c->size;
    if (recvcounts == NULL)
        return rr_reject(c, RR_KIND_REDUCESCATTER, RR_FAIL(c, RR_ERR_INVALID,
                         "reducescatter: NULL recvcounts"));
    for (int i = 0; i < n; i++)
        total += recvcounts[i];
    if (total != count)
        return rr_reject(c, RR_KIND_REDUCESCATTER, RR_FAIL(c, RR_ERR_INVALID,
                         "reducescatter: recvcounts sum to %zu, not %zu", total, count));
    if (count && (sendbuf == NULL || (recvcounts[c->rank] && recvbuf == NULL)))
        return rr_reject(c, RR_KIND_REDUCESCATTER, RR_FAIL(c, RR_ERR_INVALID,
                         "reducescatter: NULL buffer"));
    if (n > 1)
        return c->ops->reducescatter(c, sendbuf, count, recvbuf, recvcounts, dt, (rr_op)op,
                                     prescale, postscale, avg_div);
    /* one rank: in scratch, as the transports do, then scaled into place */
    void *work = NULL;
    RR_CHECK(rr_scratch(c, 1, sizeof(size_t) + count * es, &work));
    const void *src = sendbuf;
    if (prescale != 1.0) {
        rr_scale((size_t *)work + 1, sendbuf, count, dt, prescale, 1);
        src = (size_t *)work + 1;
    }
    if (postscale != 1.0 || avg_div != 1)
        rr_scale(recvbuf, src, count, dt, postscale, avg_div);
    else if (count)
        memcpy(recvbuf, src, count * es);
    return RR_OK;
}
