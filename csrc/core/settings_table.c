/* The one table of RINGRED_* settings: name, default, range, scope, help.  The C core reads
 * them through settings.c (rr_set_size & co., by RR_S_* index); Python lists and evaluates
 * them through rr_setting_info / rr_setting_value (ringred/info.py); docs/settings.md is
 * generated from it (python -m ringred.info --markdown; tests/test_settings.py checks).
 *
 * Adding a setting: an RR_S_* index in internal.h (before RR_S_COUNT), its row here, then read
 * it with rr_set_size / rr_set_number / rr_set_choice (settings.c) where it is used, and
 * regenerate docs/settings.md. */
#include <math.h>

#include "core/internal.h"

#define KiB 1024.0
#define MiB (1024.0 * 1024.0)
#define GiB (1024.0 * 1024.0 * 1024.0)
#define NOLIMIT INFINITY

#define SIZE(nm, grp, scp, def, lo, hi, hlp) \
    {.name = nm, .group = grp, .kind = RR_SETTING_SIZE, .scope = scp, .dflt = def, \
     .min = lo, .max = hi, .help = hlp}
#define NUMBER(nm, grp, scp, def, lo, hi, hlp) \
    {.name = nm, .group = grp, .kind = RR_SETTING_NUMBER, .scope = scp, .dflt = def, \
     .min = lo, .max = hi, .help = hlp}
#define COUNT(nm, grp, scp, def, lo, hi, hlp) \
    {.name = nm, .group = grp, .kind = RR_SETTING_COUNT, .scope = scp, .dflt = def, \
     .min = lo, .max = hi, .help = hlp}
#define CHOICE(nm, grp, scp, def, ch, hlp) \
    {.name = nm, .group = grp, .kind = RR_SETTING_CHOICE, .scope = scp, .dflt = def, \
     .choices = ch, .help = hlp}

const rr_setting_desc rr_settings_table[RR_S_COUNT] = {
    /* collectives: the MPI transport */
    [RR_S_TRANSPORT] = {.name = "RINGRED_TRANSPORT", .group = "collectives",
        .kind = RR_SETTING_CHOICE, .scope = RR_SCOPE_SAME, .flags = RR_SETTING_STRICT,
        .dflt = "auto", .choices = "auto|shm|mpi",
        .help = "auto (shared memory when every rank shares a host, else MPI), shm or mpi; "
                "another value makes init() fail on every rank"},
    [RR_S_SMALL_BYTES] = SIZE("RINGRED_SMALL_BYTES", "collectives", RR_SCOPE_RANK0, "65536",
        0, 16 * MiB, "MPI transport: messages up to this many bytes take the latency path "
        "(recursive doubling carrying the agreement header)"),
    [RR_S_SEGMENT_BYTES] = SIZE("RINGRED_SEGMENT_BYTES", "collectives", RR_SCOPE_RANK0,
        "262144", 4 * KiB, 64 * MiB, "MPI transport: pipeline segment of the ring"),
    [RR_S_WINDOW] = COUNT("RINGRED_WINDOW", "collectives", RR_SCOPE_OWN, "3", 2, 16,
        "MPI transport: ring segments in flight per direction"),
    [RR_S_SPIN_COUNT] = COUNT("RINGRED_SPIN_COUNT", "collectives", RR_SCOPE_OWN, "64", 0,
        1073741824.0, "MPI transport: polls before a waiting rank calls sched_yield"),
    [RR_S_TIMEOUT_SECONDS] = {.name = "RINGRED_TIMEOUT_SECONDS",
        .alias = "RINGRED_SHM_TIMEOUT_SECONDS", .group = "collectives",
        .kind = RR_SETTING_NUMBER, .scope = RR_SCOPE_OWN, .dflt = "300", .min = 0,
        .max = NOLIMIT,
        .help = "both transports: a rank that waits this long for a live peer (in a "
                "collective or the engine's negotiation) fails with RingredTimeoutError "
                "naming it (0: never); dead peers on the same host are noticed at once. "
                "RINGRED_SHM_TIMEOUT_SECONDS is its older name, read when this one is unset"},
    [RR_S_KERNEL_PATH] = CHOICE("RINGRED_KERNEL_PATH", "collectives", RR_SCOPE_OWN, "auto",
        "auto|scalar|avx2|avx512", "CPU reduction kernels (a path this CPU lacks: auto)"),
    /* hosts and the hierarchical plan (hier.c; docs/scaling.md) */
    [RR_S_HOST] = {.name = "RINGRED_HOST", .group = "collectives", .kind = RR_SETTING_TEXT,
        .scope = RR_SCOPE_OWN, .dflt = "",
        .help = "this rank's host label: ranks with the same label form a host, overriding "
                "MPI's shared-memory split, so one machine can pose as several hosts (tests, "
                "experiments); set on every rank or none, else init() fails on every rank"},
    [RR_S_HIERARCHICAL] = {.name = "RINGRED_HIERARCHICAL", .group = "collectives",
        .kind = RR_SETTING_CHOICE, .scope = RR_SCOPE_SAME, .flags = RR_SETTING_STRICT,
        .dflt = "auto", .choices = "auto|0|1",
        .help = "allreduce and broadcast across hosts in two levels (shared memory inside a "
                "host, MPI between hosts); auto: when the ranks span hosts and some host "
                "holds more than one rank; another value makes init() fail on every rank"},
    [RR_S_HIER_PIECE_BYTES] = SIZE("RINGRED_HIER_PIECE_BYTES", "collectives", RR_SCOPE_RANK0,
        "0", 0, NOLIMIT, "hierarchical allreduce: run its three steps in pieces this large "
        "(0: the whole message at once)"),
    /* shared-memory transport */
    [RR_S_SHM_SMALL_BYTES] = SIZE("RINGRED_SHM_SMALL_BYTES", "shm", RR_SCOPE_RANK0, "32768",
        0, 16 * MiB, "shm: messages up to this take the one-synchronization path"),
    [RR_S_SHM_SLOT_BYTES] = SIZE("RINGRED_SHM_SLOT_BYTES", "shm", RR_SCOPE_RANK0, "262144",
        4 * KiB, 64 * MiB, "shm: pipeline chunk of large messages (two slots per rank)"),
    [RR_S_SHM_STREAM_BYTES] = SIZE("RINGRED_SHM_STREAM_BYTES", "shm", RR_SCOPE_RANK0,
        "8388608", 0, NOLIMIT, "shm: allreduce outputs from this size on are written with "
        "non-temporal stores; below it two ranks reduce every chunk each"),
    [RR_S_SHM_SPIN_US] = NUMBER("RINGRED_SHM_SPIN_US", "shm", RR_SCOPE_OWN, "50", 0, NOLIMIT,
        "shm: longest a waiting rank polls (microseconds) before yielding / sleeping"),
    [RR_S_SHM_ARENA_BYTES] = SIZE("RINGRED_SHM_ARENA_BYTES", "shm", RR_SCOPE_RANK0,
        "17179869184", 0, 1024 * GiB, "shm: address space per rank for shared buffers "
        "(ringred.empty, the engine's fusion buffer); pages are taken only when allocated; "
        "0: none"),
    /* the background engine */
    [RR_S_FUSION_THRESHOLD] = SIZE("RINGRED_FUSION_THRESHOLD", "engine", RR_SCOPE_RANK0,
        "67108864", 0, NOLIMIT, "bytes of ready allreduces fused into one buffer (0: no "
        "fusion)"),
    [RR_S_FUSION_MAX_TENSOR] = SIZE("RINGRED_FUSION_MAX_TENSOR", "engine", RR_SCOPE_RANK0,
        "65536", 0, NOLIMIT, "tensors larger than this are reduced in place, not copied into "
        "the fusion buffer (0: no limit)"),
    [RR_S_CACHE_CAPACITY] = NUMBER("RINGRED_CACHE_CAPACITY", "engine", RR_SCOPE_RANK0, "1024",
        0, 1e6, "negotiated names remembered; steady state costs one bit-vector allreduce "
        "per cycle (0: off)"),
    [RR_S_STALL_CHECK_SECONDS] = NUMBER("RINGRED_STALL_CHECK_SECONDS", "engine",
        RR_SCOPE_RANK0, "60", 0, NOLIMIT, "warn about tensors some ranks have not submitted "
        "after this long (0: off)"),
    [RR_S_STALL_SHUTDOWN_SECONDS] = NUMBER("RINGRED_STALL_SHUTDOWN_SECONDS", "engine",
        RR_SCOPE_RANK0, "0", 0, NOLIMIT, "fail such tensors with StallError after this long "
        "(0: never)"),
    [RR_S_ENGINE_COLD_SET_BYTES] = SIZE("RINGRED_ENGINE_COLD_SET_BYTES", "engine",
        RR_SCOPE_RANK0, "33554432", 0, NOLIMIT, "when the cached allreduces add up to this "
        "much, shm outputs stream from an eighth of RINGRED_SHM_STREAM_BYTES on (0: off)"),
    [RR_S_TIMELINE] = {.name = "RINGRED_TIMELINE", .group = "engine", .kind = RR_SETTING_TEXT,
        .scope = RR_SCOPE_RANK0, .dflt = "",
        .help = "write a Chrome-trace timeline to this path (rank 0; unset: none)"},
    [RR_S_ENGINE_YIELD_US] = NUMBER("RINGRED_ENGINE_YIELD_US", "engine", RR_SCOPE_OWN, "300",
        0, NOLIMIT, "an idle background thread yields this many microseconds before "
        "sleeping"),
    [RR_S_ENGINE_SLEEP_US] = NUMBER("RINGRED_ENGINE_SLEEP_US", "engine", RR_SCOPE_OWN, "500",
        0, NOLIMIT, "longest sleep (microseconds) of an idle engine between polls"),
    [RR_S_ENGINE_WAIT_YIELD_US] = NUMBER("RINGRED_ENGINE_WAIT_YIELD_US", "engine",
        RR_SCOPE_OWN, "200", 0, NOLIMIT, "a thread waiting for a result yields this many "
        "microseconds before sleeping"),
    [RR_S_RESULT_POOL_BYTES] = {.name = "RINGRED_RESULT_POOL_BYTES", .group = "engine",
        .kind = RR_SETTING_NUMBER, .scope = RR_SCOPE_OWN, .reader = RR_READER_PYTHON,
        .dflt = "1073741824", .min = 0, .max = NOLIMIT,
        .help = "most bytes of reusable result arrays (allreduces without out=) kept per "
                "rank (0: off)"},
    [RR_S_RESULT_POOL_MIN_BYTES] = {.name = "RINGRED_RESULT_POOL_MIN_BYTES", .group = "engine",
        .kind = RR_SETTING_NUMBER, .scope = RR_SCOPE_OWN, .reader = RR_READER_PYTHON,
        .dflt = "65536", .min = 0, .max = NOLIMIT,
        .help = "results smaller than this are always fresh arrays"},
    /* GPU buffers */
    [RR_S_DEVICE_SEGMENT_BYTES] = SIZE("RINGRED_DEVICE_SEGMENT_BYTES", "device",
        RR_SCOPE_RANK0, "2097152", 64, 256 * MiB, "GPU staging: bytes per pipeline segment"),
    [RR_S_DEVICE_SLOTS] = COUNT("RINGRED_DEVICE_SLOTS", "device", RR_SCOPE_OWN, "4", 2, 16,
        "GPU staging: pinned host slots in the pipeline"),
    [RR_S_CUDA_AWARE] = CHOICE("RINGRED_CUDA_AWARE", "device", RR_SCOPE_OWN, "auto",
        "auto|0|1|no|yes", "auto / 1 (yes): give device pointers to MPI when it reports "
        "CUDA support; 0 (no): always stage"),
    [RR_S_DEVICE_TRANSPORT] = CHOICE("RINGRED_DEVICE_TRANSPORT", "device", RR_SCOPE_RANK0,
        "auto", "auto|ipc|staged", "device allreduce between the ranks of one host: auto "
        "(CUDA IPC when every rank can open the others' handles, else staging), ipc (an "
        "error on every rank when IPC is not available), staged"),
    [RR_S_DEVICE_PACK] = CHOICE("RINGRED_DEVICE_PACK", "device", RR_SCOPE_OWN, "kernel",
        "kernel|copies", "the engine packs device tensors with one launch of the copy "
        "kernel, or with one device-to-device copy per tensor (copies)"),
    [RR_S_IPC_MIN_BYTES] = SIZE("RINGRED_IPC_MIN_BYTES", "device", RR_SCOPE_RANK0, "1048576",
        0, NOLIMIT, "CUDA IPC: allreduces smaller than this stay staged"),
    [RR_S_IPC_CHUNK_BYTES] = SIZE("RINGRED_IPC_CHUNK_BYTES", "device", RR_SCOPE_RANK0,
        "134217728", 4 * KiB, 4 * GiB, "CUDA IPC: bytes per scratch slot (an allreduce runs "
        "in chunks of this size)"),
    [RR_S_IPC_ONESHOT_BYTES] = SIZE("RINGRED_IPC_ONESHOT_BYTES", "device", RR_SCOPE_RANK0,
        "4194304", 0, NOLIMIT, "CUDA IPC: chunks up to this are reduced in one shot"),
    [RR_S_IPC_SLOTS] = COUNT("RINGRED_IPC_SLOTS", "device", RR_SCOPE_RANK0, "2", 2, 4,
        "CUDA IPC: scratch slots per rank"),
    /* logging (Python) */
    [RR_S_LOG] = {.name = "RINGRED_LOG", .group = "logging", .kind = RR_SETTING_CHOICE,
        .scope = RR_SCOPE_OWN, .reader = RR_READER_PYTHON, .dflt = "off",
        .choices = "off|0|none|info|debug",
        .help = "info: the transport, kernels, build and settings once per communicator and "
                "engine; debug: also each synchronous collective's plan (stderr, logger "
                "'ringred')"},
};
