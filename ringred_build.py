"""cffi build script: compiles the C core (csrc/<layer>/*.c) into ``ringred._ringred``.

Out-of-line API mode.  MPI compile and link flags come from ``$MPICC`` or the ``mpicc`` on
PATH (the ``mpich`` wheel installs one next to the Python interpreter).  This file never
imports ringred itself.

Run directly (``python ringred_build.py``) it builds the module in place (ringred/) with
its object files under build/inplace/, never beside the sources.

Environment:
  MPICC               MPI compiler wrapper to ask for flags
                      (default: mpicc next to the Python interpreter, then PATH)
  RINGRED_SANITIZE=1  build with AddressSanitizer + UndefinedBehaviorSanitizer
  RINGRED_DEBUG=1     -O0 -g
  RINGRED_WERROR=0    warnings are not errors (a compiler newer than CI's; the default
                      keeps -Werror)
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
CSRC = HERE / "csrc"

# Keep in step with csrc/ringred.h (tests/test_cdef.py checks that they agree).
CDEF = """
typedef int rr_status;
#define RR_VERSION_MAJOR ...
#define RR_VERSION_MINOR ...
#define RR_VERSION_PATCH ...
#define RR_OK ...
#define RR_ERR_INVALID ...
#define RR_ERR_UNSUPPORTED ...
#define RR_ERR_NOMEM ...
#define RR_ERR_MPI ...
#define RR_ERR_MISMATCH ...
#define RR_ERR_PEER ...
#define RR_ERR_TIMEOUT ...
#define RR_ERR_STATE ...
#define RR_ERR_SYSTEM ...
#define RR_ERR_DUPLICATE ...
#define RR_ERR_STALL ...
#define RR_UINT8 ...
#define RR_INT8 ...
#define RR_INT16 ...
#define RR_INT32 ...
#define RR_INT64 ...
#define RR_FLOAT16 ...
#define RR_BFLOAT16 ...
#define RR_FLOAT32 ...
#define RR_FLOAT64 ...
#define RR_NUM_DTYPES ...
#define RR_SUM ...
#define RR_MIN ...
#define RR_MAX ...
#define RR_PROD ...
#define RR_NUM_OPS ...

typedef struct rr_comm rr_comm;

const char *rr_strerror(rr_status code);
size_t rr_dtype_size(int dtype);
const char *rr_kernel_path(void);
rr_status rr_set_kernel_path(const char *name);
const char *rr_build_info(void);

#define RR_SETTING_SIZE ...
#define RR_SETTING_NUMBER ...
#define RR_SETTING_CHOICE ...
#define RR_SETTING_TEXT ...
#define RR_SETTING_COUNT ...
#define RR_SCOPE_OWN ...
#define RR_SCOPE_RANK0 ...
#define RR_SCOPE_SAME ...
#define RR_READER_C ...
#define RR_READER_PYTHON ...
#define RR_SETTING_DEFAULT ...
#define RR_SETTING_SET ...
#define RR_SETTING_CLAMPED ...
#define RR_SETTING_REJECTED ...
#define RR_SETTING_STRICT ...
#define RR_SETTING_TEXT_LEN ...
#define RR_SETTING_MSG_LEN ...
typedef struct rr_setting_desc {
    const char *name;
    const char *alias;
    const char *group;
    int kind;
    int scope;
    int reader;
    int flags;
    const char *dflt;
    double min, max;
    const char *choices;
    const char *help;
} rr_setting_desc;
typedef struct rr_setting_val {
    int state;
    double number;
    char text[...];
    char raw[...];
    char message[...];
} rr_setting_val;
int rr_setting_count(void);
const rr_setting_desc *rr_setting_info(int i);
rr_status rr_setting_value(const char *name, rr_setting_val *out);

rr_status rr_comm_create(int fcomm, rr_comm **out);
rr_status rr_comm_create_ex(int fcomm, const char *transport, rr_comm **out);
rr_status rr_comm_destroy(rr_comm *comm);
const char *rr_comm_last_error(const rr_comm *comm);
int rr_comm_rank(const rr_comm *comm);
int rr_comm_size(const rr_comm *comm);
int rr_comm_local_rank(const rr_comm *comm);
int rr_comm_local_size(const rr_comm *comm);
const char *rr_comm_transport(const rr_comm *comm);
const char *rr_comm_transport_note(const rr_comm *comm);
int rr_comm_hosts(const rr_comm *comm);
int rr_comm_hierarchical(const rr_comm *comm);
uint64_t rr_comm_hier_calls(const rr_comm *comm);
rr_status rr_comm_exit_notice(rr_comm *comm, const char *why);
rr_status rr_barrier(rr_comm *comm);

rr_status rr_mem_alloc(rr_comm *comm, size_t bytes, void **out);
rr_status rr_mem_free(void *ptr);
uint64_t rr_comm_zero_copy_calls(const rr_comm *comm);

rr_status rr_allreduce(rr_comm *comm, const void *sendbuf, void *recvbuf, size_t count,
                       int dtype, int op, double prescale, double postscale, int64_t avg_div);
rr_status rr_broadcast(rr_comm *comm, void *buf, size_t count, int dtype, int root);
rr_status rr_allgather(rr_comm *comm, const void *sendbuf, size_t count, void *recvbuf,
                       int dtype, size_t row_elems, size_t *counts_out);
rr_status rr_reducescatter(rr_comm *comm, const void *sendbuf, size_t count, void *recvbuf,
                           const size_t *recvcounts, int dtype, int op, double prescale,
                           double postscale, int64_t avg_div);
rr_status rr_poison(rr_comm *comm, int kind);
void rr_comm_set_thread(rr_comm *comm, uint32_t tag, uint32_t seq);
uint32_t rr_comm_thread_seq(const rr_comm *comm);

#define RR_DEVICE_CUDA ...
#define RR_DEVICE_FAKE ...
rr_status rr_device_backend_available(int backend, char *why, size_t why_len);
const char *rr_device_transport(rr_comm *comm, char *why, size_t why_len);
rr_status rr_device_direct(rr_comm *comm, int backend, int *out);
rr_status rr_device_allreduce(rr_comm *comm, int backend, int device_id, uintptr_t stream,
                              const void *dsend, void *drecv, size_t count, int dtype, int op,
                              double prescale, double postscale, int64_t avg_div);
rr_status rr_device_broadcast(rr_comm *comm, int backend, int device_id, uintptr_t stream,
                              const void *dsend, void *drecv, size_t count, int dtype, int root);
rr_status rr_device_allgather(rr_comm *comm, int backend, int device_id, uintptr_t stream,
                              const void *dsend, size_t count, void *drecv, int dtype,
                              size_t row_elems, size_t *counts_out);
rr_status rr_device_reducescatter(rr_comm *comm, int backend, int device_id, uintptr_t stream,
                                  const void *dsend, size_t count, void *drecv,
                                  const size_t *recvcounts, int dtype, int op, double prescale,
                                  double postscale, int64_t avg_div);
typedef struct rr_engine rr_engine;
#define RR_MAX_DIMS ...
#define RR_REQ_ALLREDUCE ...
#define RR_REQ_BROADCAST ...
#define RR_REQ_ALLGATHER ...
#define RR_REQ_REDUCESCATTER ...
typedef struct rr_request {
    const char *name;
    int kind;
    const void *sendbuf;
    void *recvbuf;
    size_t count;
    int dtype;
    int op;
    double prescale;
    double postscale;
    int64_t avg_div;
    int root;
    int ndim;
    int64_t shape[...];
    const char *group;
    int group_size;
    int backend;
    int device;
    uintptr_t stream;
} rr_request;

rr_status rr_engine_create(int fcomm, rr_engine **out);
const char *rr_engine_device_transport(rr_engine *eng, char *why, size_t why_len);
rr_status rr_engine_create_ex(int fcomm, rr_comm *arena_from, rr_engine **out);
uint64_t rr_engine_hier_calls(const rr_engine *eng);
uint64_t rr_engine_zero_copy_calls(const rr_engine *eng);
rr_status rr_engine_stop(rr_engine *eng);
rr_status rr_engine_exit_reason(rr_engine *eng, const char *why);
rr_status rr_engine_destroy(rr_engine *eng);
const char *rr_engine_last_error(const rr_engine *eng);
rr_status rr_engine_submit(rr_engine *eng, const rr_request *reqs, size_t n, uint64_t *ids);
rr_status rr_engine_allreduce(rr_engine *eng, const char *name, const void *sendbuf,
                              void *recvbuf, size_t count, int dtype, int op, double prescale,
                              double postscale, int64_t avg_div, int ndim, const int64_t *shape,
                              uint64_t *id);
rr_status rr_engine_allreduce_device(rr_engine *eng, const char *name, const void *sendbuf,
                                     void *recvbuf, size_t count, int dtype, int op,
                                     double prescale, double postscale, int64_t avg_div,
                                     int ndim, const int64_t *shape, int backend, int device,
                                     uintptr_t stream, uint64_t *id);
rr_status rr_engine_poll(rr_engine *eng, uint64_t id, int *done);
rr_status rr_engine_wait(rr_engine *eng, uint64_t id, double timeout_s);
rr_status rr_engine_finish(rr_engine *eng, uint64_t id, double timeout_s);
const char *rr_engine_error(rr_engine *eng, uint64_t id);
rr_status rr_engine_result_rows(rr_engine *eng, uint64_t id, size_t *rows);
rr_status rr_engine_result_copy(rr_engine *eng, uint64_t id, void *dst, size_t bytes);
rr_status rr_engine_release(rr_engine *eng, uint64_t id);
rr_status rr_engine_reject(rr_engine *eng, const rr_request *reqs, size_t n, const char *reason);
rr_status rr_engine_join(rr_engine *eng, uint64_t *id);
rr_status rr_engine_join_result(rr_engine *eng, uint64_t id, int *last_rank);
rr_status rr_engine_take_warning(rr_engine *eng, char *buf, size_t cap, int *got);
rr_status rr_engine_timeline_start(rr_engine *eng, const char *path);
rr_status rr_engine_timeline_stop(rr_engine *eng);
rr_status rr_engine_stats(rr_engine *eng, uint64_t *cycles, uint64_t *slow_cycles);
#define RR_PH_NEGOTIATE ...
#define RR_PH_COPY_IN ...
#define RR_PH_REDUCE ...
#define RR_PH_COPY_OUT ...
#define RR_PH_WAIT ...
#define RR_PH_FUSED ...
#define RR_PH_DIRECT ...
#define RR_PH_FUSED_BYTES ...
#define RR_PH_DIRECT_BYTES ...
#define RR_PH_UNITS ...
#define RR_ENGINE_NPHASES ...
rr_status rr_engine_phases(rr_engine *eng, double *out, int n);

rr_status rr_test_reduce(const char *path, void *dst, const void *const *srcs, int k, size_t n,
                         int dtype, int op);
rr_status rr_test_scale(const char *path, void *dst, const void *src, size_t n, int dtype,
                        double factor, int64_t divisor);
rr_status rr_test_dev_kernel(void *dst, const void *const *srcs, int nsrc, size_t n, int dtype,
                             int op, double prescale, double postscale, int64_t avg_div);
rr_status rr_test_fake_stream_create(uintptr_t *s);
rr_status rr_test_fake_stream_destroy(uintptr_t s);
rr_status rr_test_fake_stream_sleep(uintptr_t s, double seconds);
rr_status rr_test_fake_stream_copy(uintptr_t s, uintptr_t dst, uintptr_t src, size_t bytes);
rr_status rr_test_fake_stream_sync(uintptr_t s);
"""


def _mpicc() -> str:
    env = os.environ.get("MPICC")
    if env:
        return env
    beside = Path(sys.executable).parent / "mpicc"
    if beside.exists():
        return str(beside)
    found = shutil.which("mpicc")
    if found:
        return found
    raise RuntimeError(
        "ringred needs MPI: install the 'mpich' wheel (pip install mpich) or point MPICC at "
        "your MPI's compiler wrapper (MPICC=/path/to/mpicc pip install .)"
    )


def mpi_flags() -> tuple[list[str], list[str], list[str], list[str], list[str]]:
    """Return (include_dirs, library_dirs, libraries, runtime_dirs, extra_link) for MPI."""
    cc = _mpicc()
    out = ""
    for flag in ("-show", "--showme", "-showme"):
        try:
            res = subprocess.run([cc, flag], capture_output=True, text=True, check=True)
        except (OSError, subprocess.CalledProcessError):
            continue
        out = res.stdout.strip()
        if out:
            break
    if not out:
        raise RuntimeError(f"cannot ask {cc} for its flags (-show / --showme)")
    incs, libdirs, libs, rpaths, extra = [], [], [], [], []
    for tok in shlex.split(out)[1:]:
        if tok.startswith("-I"):
            incs.append(tok[2:])
        elif tok.startswith("-L"):
            libdirs.append(tok[2:])
        elif tok.startswith("-l"):
            libs.append(tok[2:])
        elif tok.startswith("-Wl,-rpath,"):
            rpaths.append(tok[len("-Wl,-rpath,"):])
        elif tok.startswith("-Wl,") or tok.startswith("-pthread"):
            extra.append(tok)
    # "-Wl,-rpath -Wl,DIR" (MPICH) arrives as two -Wl tokens: fold them.
    folded, it = [], iter(extra)
    for tok in it:
        if tok == "-Wl,-rpath":
            nxt = next(it, "")
            rpaths.append(nxt[len("-Wl,"):])
        else:
            folded.append(tok)
    return incs, libdirs, libs, rpaths, folded


# The C core's layer folders, lowest first (tests/test_csrc_layers.py checks that no folder
# uses a later one); csrc/ringred.h, the public header, is the only file directly in csrc/.
LAYERS = ("core", "mpi", "shm", "coll", "device", "engine")


def c_sources() -> list[str]:
    """The C files of the extension: every .c of the layer folders (not csrc/tests/)."""
    return sorted(
        str(p.relative_to(HERE)) for layer in LAYERS for p in (CSRC / layer).glob("*.c")
    )


def compile_flags() -> list[str]:
    flags = ["-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden"]
    if os.environ.get("RINGRED_WERROR") == "0":
        flags.remove("-Werror")
    if os.environ.get("RINGRED_DEBUG") == "1":
        flags += ["-O0", "-g"]
    else:
        flags += ["-O3"]
    if os.environ.get("RINGRED_SANITIZE") == "1":
        flags += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
    return flags


def _no_rpath_ldshared() -> None:
    """Link without the interpreter's own ``-Wl,-rpath,<its lib dir>`` (in LDSHARED).

    Together with ignoring mpicc's rpath (mpi_flags), the extension carries no absolute
    path of the build machine: ringred/_libmpi.py finds libmpi at import through mpi4py."""
    import sysconfig

    if "LDSHARED" in os.environ:
        return  # the user's choice
    ldshared = sysconfig.get_config_var("LDSHARED") or ""
    toks = shlex.split(ldshared)
    kept, skip = [], False
    for tok in toks:
        if skip:
            skip = False
            continue
        if tok.startswith(("-Wl,-rpath,", "-Wl,-R")):
            continue
        if tok in ("-Wl,-rpath", "-rpath"):
            skip = True
            continue
        kept.append(tok)
    if kept != toks:
        os.environ["LDSHARED"] = shlex.join(kept)


_no_rpath_ldshared()
ffibuilder = FFI()
ffibuilder.cdef(CDEF)
_incs, _libdirs, _libs, _rpaths, _extra = mpi_flags()
ffibuilder.set_source(
    "ringred._ringred",
    '#include "ringred.h"\n',
    sources=c_sources(),
    include_dirs=[str(CSRC)] + _incs,
    library_dirs=_libdirs,
    libraries=_libs + ["m", "dl", "pthread"],
    # mpicc's rpath (_rpaths) is left out on purpose: no absolute build path in the binary
    extra_compile_args=compile_flags(),
    extra_link_args=_extra
    + (["-fsanitize=address,undefined"] if os.environ.get("RINGRED_SANITIZE") == "1" else []),
)


def build_inplace() -> None:
    """Build ringred/_ringred*.so in place, objects under build/inplace/ (all CPUs)."""
    from setuptools import Distribution

    os.chdir(HERE)  # the sources are named relative to the checkout (and so is __FILE__)
    ext = ffibuilder.distutils_extension(tmpdir=os.path.join("build", "inplace"))
    dist = Distribution({"ext_modules": [ext], "script_name": "ringred_build.py"})
    cmd = dist.get_command_obj("build_ext")
    cmd.inplace = True
    cmd.force = True
    cmd.build_temp = os.path.join("build", "inplace")
    cmd.parallel = os.cpu_count() or 1
    dist.run_command("build_ext")


if __name__ == "__main__":
    build_inplace()
