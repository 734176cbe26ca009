/* RINGRED_* environment settings of the collective layer. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

size_t rr_env_size(const char *name, size_t dflt, size_t lo, size_t hi)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        return dflt;
    char *end = NULL;
    unsigned long long x = strtoull(v, &end, 10);
    if (end == v)
        return dflt;
    if (*end == 'k' || *end == 'K')
        x <<= 10;
    else if (*end == 'm' || *end == 'M')
        x <<= 20;
    else if (*end == 'g' || *end == 'G')
        x <<= 30;
    if (x < lo)
        x = lo;
    if (x > hi)
        x = hi;
    return (size_t)x;
}

/* A non-negative number (seconds, microseconds); zero only where zero_ok. */
double rr_env_number(const char *name, double dflt, int zero_ok)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        return dflt;
    char *end = NULL;
    double x = strtod(v, &end);
    if (end == v || !isfinite(x) || x < 0 || (x == 0 && !zero_ok))
        return dflt;
    return x;
}

int rr_test_plant(const char *what)
{
    const char *v = getenv("RINGRED_TEST_PLANT");
    return v != NULL && strcmp(v, what) == 0;
}

void rr_settings_load(rr_settings *s)
{
    s->small_bytes = rr_env_size("RINGRED_SMALL_BYTES", 64u << 10, 0, 16u << 20);
    s->segment_bytes = rr_env_size("RINGRED_SEGMENT_BYTES", 256u << 10, 4u << 10, 64u << 20);
    s->window = (int)rr_env_size("RINGRED_WINDOW", 3, 2, 16);
    s->spin_count = (int)rr_env_size("RINGRED_SPIN_COUNT", 64, 0, 1u << 30);
    s->device_segment_bytes = rr_env_size("RINGRED_DEVICE_SEGMENT_BYTES", 2u << 20, 64, 256u << 20);
    s->device_slots = (int)rr_env_size("RINGRED_DEVICE_SLOTS", 4, 2, 16);
    const char *aware = getenv("RINGRED_CUDA_AWARE");
    s->cuda_aware = -1;
    if (aware && (strcmp(aware, "0") == 0 || strcmp(aware, "no") == 0))
        s->cuda_aware = 0;
    else if (aware && (strcmp(aware, "1") == 0 || strcmp(aware, "yes") == 0))
        s->cuda_aware = 1;
    const char *dt = getenv("RINGRED_DEVICE_TRANSPORT");
    s->device_transport = dt && strcmp(dt, "ipc") == 0 ? 1 : dt && strcmp(dt, "staged") == 0 ? 2 : 0;
    /* measured on one H200 shared by two ranks (docs/gpu.md): IPC beats staging from about
     * 1 MiB on; 128 MiB chunks halve the time of 256 MiB against 32 MiB ones; one shot wins
     * up to at least 4 MiB */
    s->ipc_min_bytes = rr_env_size("RINGRED_IPC_MIN_BYTES", 1u << 20, 0, SIZE_MAX);
    s->ipc_chunk_bytes = rr_env_size("RINGRED_IPC_CHUNK_BYTES", 128u << 20, 4096, (size_t)1 << 32);
    s->ipc_slots = (int)rr_env_size("RINGRED_IPC_SLOTS", 2, 2, 4);
    s->ipc_oneshot_bytes = rr_env_size("RINGRED_IPC_ONESHOT_BYTES", 4u << 20, 0, SIZE_MAX);
    s->shm_small_bytes = rr_env_size("RINGRED_SHM_SMALL_BYTES", 32u << 10, 0, 16u << 20);
    s->shm_slot_bytes = rr_env_size("RINGRED_SHM_SLOT_BYTES", 256u << 10, 4u << 10, 64u << 20);
    s->shm_stream_bytes = rr_env_size("RINGRED_SHM_STREAM_BYTES", 8u << 20, 0, SIZE_MAX);
    /* every wait on a peer, both transports; RINGRED_SHM_TIMEOUT_SECONDS is the older name
     * (used when the new one is not set); 0: never */
    const char *tmo = getenv("RINGRED_TIMEOUT_SECONDS");
    s->timeout_s = rr_env_number(tmo && *tmo ? "RINGRED_TIMEOUT_SECONDS"
                                             : "RINGRED_SHM_TIMEOUT_SECONDS", 300.0, 1);
    if (s->timeout_s == 0)
        s->timeout_s = 1e300;
    s->shm_spin_us = rr_env_number("RINGRED_SHM_SPIN_US", 50.0, 1);
    /* address space only: pages are taken when buffers are allocated */
    s->shm_arena_bytes = rr_env_size("RINGRED_SHM_ARENA_BYTES", (size_t)16 << 30, 0,
                                     (size_t)1 << 40);
}
