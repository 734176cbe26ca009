/* Bulk copies (csrc/core/copy.c): no MPI, no other dependency, so the kernel check links them alone. */
#ifndef RR_COPY_H
#define RR_COPY_H

#include <stddef.h>

/* memcpy at full speed whatever the relative alignment of dst and src. */
void rr_copy(void *dst, const void *src, size_t n);
/* The same with non-temporal stores: for large outputs that will not stay in the cache. */
void rr_copy_stream(void *dst, const void *src, size_t n);

#endif
