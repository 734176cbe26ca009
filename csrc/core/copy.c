/* Bulk copies for the shared-memory transport.
 *
 * glibc's memcpy uses `rep movsb` for mid-size copies; on the AMD EPYC (KVM) machines we
 * measured, that runs at under 3 GB/s instead of ~40 GB/s whenever the destination is
 * misaligned against the source by 16 bytes, which is exactly the case of a 64-byte-aligned
 * shm slot copied into a NumPy array (malloc'ed blocks start 16 bytes into a page).  These
 * copies align the destination to 64 bytes and move 128 bytes per iteration with vector
 * loads and stores (AVX2 when the CPU has it, SSE2 otherwise), at memcpy's best speed for
 * every alignment.
 *
 * rr_copy_stream writes with non-temporal stores.  For outputs that will not stay in the
 * cache anyway (many MiB) they skip the read-for-ownership of every destination line: a
 * 64 MiB copy out of a cache-resident slot took 3.5-5.0 ms instead of 8.2-8.9 ms here; for
 * outputs that fit in the cache (<= 8 MiB) ordinary stores were faster, so callers choose. */
#include <stdint.h>
#include <string.h>

#include "core/copy.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define RR_COPY_X86 1
#else
#define RR_COPY_X86 0
#endif

#define SMALL_COPY 256 /* below this, memcpy is fine */

#if RR_COPY_X86

#define COPY_BODY(VT, LOAD, STORE, W, FENCE)                                                          \
    uint8_t *d = dst;                                                                          \
    const uint8_t *s = src;                                                                    \
    size_t head = (64 - ((uintptr_t)d & 63)) & 63;                                             \
    memcpy(d, s, head);                                                                        \
    d += head;                                                                                 \
    s += head;                                                                                 \
    n -= head;                                                                                 \
    size_t i = 0;                                                                              \
    for (; i + 128 <= n; i += 128) {                                                           \
        VT r[128 / W];                                                                         \
        for (int k = 0; k < 128 / W; k++)                                                      \
            r[k] = LOAD((const VT *)(s + i + k * W));                                          \
        for (int k = 0; k < 128 / W; k++)                                                      \
            STORE((VT *)(d + i + k * W), r[k]);                                                \
    }                                                                                          \
    FENCE;                                                                                     \
    memcpy(d + i, s + i, n - i);

__attribute__((target("avx2"))) static void copy_avx2(void *dst, const void *src, size_t n)
{
    COPY_BODY(__m256i, _mm256_loadu_si256, _mm256_store_si256, 32, (void)0)
}

static void copy_sse2(void *dst, const void *src, size_t n)
{
    COPY_BODY(__m128i, _mm_loadu_si128, _mm_store_si128, 16, (void)0)
}

__attribute__((target("avx2"))) static void stream_avx2(void *dst, const void *src, size_t n)
{
    COPY_BODY(__m256i, _mm256_loadu_si256, _mm256_stream_si256, 32, _mm_sfence())
}

static void stream_sse2(void *dst, const void *src, size_t n)
{
    COPY_BODY(__m128i, _mm_loadu_si128, _mm_stream_si128, 16, _mm_sfence())
}

static int has_avx2(void)
{
    __builtin_cpu_init(); /* idempotent, cheap */
    return __builtin_cpu_supports("avx2");
}

typedef void (*copy_fn)(void *, const void *, size_t);

static void dispatch(void *dst, const void *src, size_t n, copy_fn avx2, copy_fn sse2)
{
    if (n < SMALL_COPY)
        memcpy(dst, src, n);
    else
        (has_avx2() ? avx2 : sse2)(dst, src, n);
}

void rr_copy(void *dst, const void *src, size_t n)
{
    dispatch(dst, src, n, copy_avx2, copy_sse2);
}

void rr_copy_stream(void *dst, const void *src, size_t n)
{
    dispatch(dst, src, n, stream_avx2, stream_sse2);
}

#else

void rr_copy(void *dst, const void *src, size_t n) { memcpy(dst, src, n); }
void rr_copy_stream(void *dst, const void *src, size_t n) { memcpy(dst, src, n); }

#endif
