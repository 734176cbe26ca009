/* Reduce-scatter: the first phase of the ring, rank r keeping chunk r of recvcounts. */
#include <string.h>

#include "core/internal.h"
#include "core/reduce.h"
#include "shm/shm.h"

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
    if (n > 1 && c->shm)
        return rr_shm_reducescatter(c, sendbuf, count, recvbuf, recvcounts, dt, (rr_op)op,
                                    prescale, postscale, avg_div);
    rr_header h = {RR_KIND_REDUCESCATTER, (uint8_t)dtype, (uint8_t)op, 0, (int32_t)avg_div,
                   (uint64_t)count, prescale, postscale, 0, 0};
    RR_CHECK(rr_agree(c, &h, NULL, 0));
    size_t *off = NULL;
    RR_CHECK(rr_scratch(c, 1, sizeof(size_t) * (size_t)n + count * es, (void **)&off));
    uint8_t *work = (uint8_t *)(off + n);
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        off[i] = o;
        o += recvcounts[i];
    }
    const void *src = sendbuf;
    if (prescale != 1.0) {
        rr_scale(work, sendbuf, count, dt, prescale, 1);
        src = work;
    }
    if (n == 1) {
        if (postscale != 1.0 || avg_div != 1)
            rr_scale(recvbuf, src, count, dt, postscale, avg_div);
        else if (count)
            memcpy(recvbuf, src, count * es);
        return RR_OK;
    }
    rr_chunks ch = {off, recvcounts};
    return rr_ring_reduce_scatter_ex(c, src, work, recvbuf, &ch, dt, (rr_op)op, postscale,
                                     avg_div);
}
