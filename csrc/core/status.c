/* Status codes and the per-communicator error message. */
#include <stdio.h>
#include <string.h>

#include "core/internal.h"

const char *rr_strerror(rr_status code)
{
    switch (code) {
    case RR_OK: return "success";
    case RR_ERR_INVALID: return "invalid argument";
    case RR_ERR_UNSUPPORTED: return "unsupported";
    case RR_ERR_NOMEM: return "out of memory";
    case RR_ERR_MPI: return "MPI error";
    case RR_ERR_MISMATCH: return "ranks disagree";
    case RR_ERR_PEER: return "a peer rank failed";
    case RR_ERR_TIMEOUT: return "timed out";
    case RR_ERR_STATE: return "invalid state";
    case RR_ERR_SYSTEM: return "system call failed";
    case RR_ERR_DUPLICATE: return "duplicate name in flight";
    case RR_ERR_STALL: return "stalled";
    default: return "unknown status";
    }
}

rr_status rr_fail(rr_comm *c, rr_status code, const char *file, int line, const char *fmt, ...)
{
    if (c == NULL)
        return code;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof c->errmsg) {
        const char *base = strrchr(file, '/');
        snprintf(c->errmsg + n, sizeof c->errmsg - (size_t)n, " [%s:%d]",
                 base ? base + 1 : file, line);
    }
    return code;
}

rr_status rr_fail_mpi(rr_comm *c, int mpierr, const char *file, int line, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING + 1];
    int len = 0;
    if (MPI_Error_string(mpierr, msg, &len) != MPI_SUCCESS)
        snprintf(msg, sizeof msg, "MPI error %d", mpierr);
    else
        msg[len] = '\0';
    return rr_fail(c, RR_ERR_MPI, file, line, "%s failed: %s", what, msg);
}

const char *rr_comm_last_error(const rr_comm *c)
{
    return c ? c->errmsg : "no communicator";
}
