/* Validation shared by the collectives, the bare agreement, the refusal, and the barrier. */
#include <math.h>
#include <string.h>

#include "coll/coll.h"
#include "core/internal.h"

rr_status rr_check_call(rr_comm *c, int dtype, int op, double pre, double post, int64_t div)
{
    if (c == NULL)
        return RR_ERR_STATE;
    c->errmsg[0] = '\0';
    if (dtype < 0 || dtype >= RR_NUM_DTYPES)
        return RR_FAIL(c, RR_ERR_UNSUPPORTED, "unsupported data type code %d", dtype);
    if (op < 0 || op >= RR_NUM_OPS)
        return RR_FAIL(c, RR_ERR_UNSUPPORTED, "unsupported reduce op code %d", op);
    if (div < 1)
        return RR_FAIL(c, RR_ERR_INVALID, "average divisor must be >= 1, got %lld", (long long)div);
    if (!isfinite(pre) || !isfinite(post))
        return RR_FAIL(c, RR_ERR_INVALID, "scale factors must be finite");
    return RR_OK;
}

rr_status rr_agree_call(rr_comm *c, const rr_header *h)
{
    if (c->size == 1)
        return RR_OK;
    return c->ops->agree(c, h);
}

rr_status rr_reject(rr_comm *c, int kind, rr_status st)
{
    if (c == NULL || st == RR_ERR_STATE)
        return st;
    char keep[RR_ERRMSG_LEN];
    memcpy(keep, c->errmsg, sizeof keep);
    rr_poison(c, kind);
    memcpy(c->errmsg, keep, sizeof keep);
    return st;
}

rr_status rr_poison(rr_comm *c, int kind)
{
    if (c == NULL)
        return RR_ERR_STATE;
    c->errmsg[0] = '\0';
    if (c->size == 1)
        return RR_OK;
    rr_header h = {(uint8_t)kind, RR_DTYPE_INVALID, 0, 0, 0, 0, 1.0, 1.0, 0, 0};
    rr_status st = rr_agree_call(c, &h);
    return st == RR_ERR_MISMATCH ? RR_OK : st;
}

rr_status rr_barrier(rr_comm *c)
{
    if (c == NULL)
        return RR_ERR_STATE;
    c->errmsg[0] = '\0';
    return c->ops->barrier(c); /* at every size: the shm transport counts its calls */
}
