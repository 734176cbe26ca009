#!/usr/bin/env bash
# GPU check for ringred's device path (staged and CUDA-IPC transports, the engine on CUDA),
# run ONCE on a machine with an NVIDIA GPU and no network:
#
#   OUT=/some/dir bash benchmarks/gpu_check.sh [WHEEL_DIR]     (from the repository root)
#
# Steps, most important results first, each under its own timeout and all under one overall
# budget (GPU_CHECK_BUDGET_S, default 420 s; the summary and kill grace add < 1 min), a failing step never stopping the later ones:
#   machine, install the carried wheels (WHEEL_DIR, default .whl: mpich, mpi4py, cffi,
#   pycparser, ml_dtypes; pip --target, then the mpich wheel's data files unpacked by hand),
#   build the extension from this tree (retried without -Werror if the compiler is newer
#   than CI's), versions, GPU tests (tests/test_gpu.py, 2 ranks sharing the GPU), ResNet-50
#   gradients on the device (ipc, staged), the allreduce table 4 KiB .. 256 MiB (ringred ipc
#   and staged in one run, naive, ringred on host arrays), the training step on the device
#   (ipc, staged), NCCL (a separate launch; n/a with the reason where it refuses), the
#   device kernel's own check (csrc/tests/dev_kernel_check.c --gpu), the fake-device tests
#   (tests/test_*device*.py), and the summary.
# Everything goes to /tmp/gpu_check: one log per step, JSON results,
# junit XML of the tests, steps.tsv, and summary.md (printed at the end).
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
PY=${PYTHON:-python3}
WHEELS=${1:-.whl}
SITE=${RINGRED_SITE:-/tmp/ringred-site}
LOG=/tmp/gpu_check  # packed into $OUT/gpu_check.tgz after every step (few files come back)
RESULTS=${OUT:-/tmp}
BUDGET=${GPU_CHECK_BUDGET_S:-470}
START=$(date +%s)
mkdir -p "$LOG"
: >"$LOG/steps.tsv"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export PY WHEELS SITE LOG
unset RINGRED_DEVICE_TRANSPORT RINGRED_IPC_MIN_BYTES RINGRED_IPC_CHUNK_BYTES RINGRED_CUDA_AWARE

# step NAME LIMIT_S TAIL_LINES CMD...: run CMD with its output in $LOG/NAME.log under
# min(LIMIT_S, what is left of the budget); print the log's tail; record the outcome.
step() {
    local name=$1 limit=$2 tail_n=$3
    shift 3
    local left=$((START + BUDGET - $(date +%s)))
    echo
    echo "=== $name (limit ${limit}s, ${left}s of the budget left) ==="
    if [ "$left" -lt 20 ]; then
        echo "skipped: out of time"
        printf '%s\tskipped\t0\n' "$name" >>"$LOG/steps.tsv"
        return 0
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    local t0=$SECONDS
    if [ "$(type -t "$1")" = function ]; then  # a function of this script: in a child bash
        timeout -k 10 "$limit" bash -c '"$@"' _ "$@" >"$LOG/$name.log" 2>&1
    else
        timeout -k 10 "$limit" "$@" >"$LOG/$name.log" 2>&1
    fi
    local rc=$?
    local dt=$((SECONDS - t0))
    tail -n "$tail_n" "$LOG/$name.log"
    local status=ok
    [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && status=timeout
    [ "$rc" -ne 0 ] && [ "$status" = ok ] && status="failed(rc=$rc)"
    echo "--- $name: $status in ${dt}s"
    printf '%s\t%s\t%s\n' "$name" "$status" "$dt" >>"$LOG/steps.tsv"
    tar czf "$RESULTS/gpu_check.tgz" -C "$(dirname "$LOG")" "$(basename "$LOG")" 2>/dev/null
    return "$rc"
}

machine() {
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader \
        || echo "nvidia-smi failed"
    nvidia-smi topo -m 2>/dev/null | head -5
    $PY --version
    echo "cores: $(nproc)"
    uname -r
    gcc --version 2>/dev/null | head -1 || echo "no gcc"
}

install_wheels() {
    if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
        echo "no wheels in $WHEELS: using what is installed"
        return 0
    fi
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "$WHEELS"/*.whl || return 1
    # pip --target drops the data files of the mpich wheel (lib/, bin/): unpack them ourselves.
    $PY - "$SITE" "$WHEELS"/mpich-*.whl <<'PYEOF'
import os, sys, zipfile
site = sys.argv[1]
for wheel in sys.argv[2:]:
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            parts = info.filename.split("/")
            if len(parts) < 3 or not parts[0].endswith(".data") or parts[1] != "data":
                continue
            if info.is_dir():
                continue
            dest = os.path.join(site, *parts[2:])
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with z.open(info) as src, open(dest, "wb") as dst:
                dst.write(src.read())
            mode = (info.external_attr >> 16) & 0o777
            os.chmod(dest, mode or 0o644)
print("installed into", site, ":", sorted(os.listdir(site)))
PYEOF
}

build() {
    local cc
    cc=${MPICC:-$(command -v mpicc)}
    [ -n "$cc" ] || { echo "no mpicc (install the mpich wheel)"; return 1; }
    echo "MPICC=$cc: $($cc -show 2>/dev/null | head -c 300)"
    rm -f ringred/_ringred*.so
    if MPICC=$cc $PY ringred_build.py >"$LOG/build-werror.log" 2>&1; then
        echo "built with -Werror"
    else
        grep -E "error|warning" "$LOG/build-werror.log" | head -30
        echo "build with -Werror failed (above; full log build-werror.log): retrying without"
        MPICC=$cc RINGRED_WERROR=0 $PY ringred_build.py >"$LOG/build-nowerror.log" 2>&1 || {
            tail -30 "$LOG/build-nowerror.log"
            local pre
            pre=$(ls "$WHEELS"/prebuilt/_ringred*.so 2>/dev/null | head -1)
            [ -n "$pre" ] || { echo "build failed and no prebuilt extension"; return 1; }
            echo "build failed: using the prebuilt $pre"
            cp "$pre" ringred/
            return 2
        }
        echo "built WITHOUT -Werror (warnings above)"
    fi
    ls ringred/_ringred*.so
}

versions() {
    $PY - <<'PYEOF'
import importlib
for m in ("numpy", "cffi", "mpi4py", "ml_dtypes", "cupy", "torch", "pytest", "setuptools"):
    try:
        mod = importlib.import_module(m)
        print(f"{m} {getattr(mod, '__version__', '?')}  ({getattr(mod, '__file__', '')})")
    except Exception as e:
        print(f"{m}: not importable ({type(e).__name__}: {e})")
try:
    import torch
    print("torch cuda", torch.version.cuda, "available", torch.cuda.is_available(),
          "devices", torch.cuda.device_count())
except Exception as e:
    print("torch cuda: ", e)
try:
    import cupy
    from cupy.cuda import nccl
    print("cupy runtime", cupy.cuda.runtime.runtimeGetVersion(), "driver",
          cupy.cuda.runtime.driverGetVersion(), "nccl", nccl.get_version())
except Exception as e:
    print("cupy/nccl: ", e)
from mpi4py import MPI
print(MPI.Get_library_version().splitlines()[0])
import ringred, ringred.device as d
print("ringred", ringred.__version__, "from", ringred.__file__)
print("cuda backend:", d.backend_available("cuda"))
PYEOF
    timeout 60 mpiexec -n 2 $PY -c "import ringred, cupy as cp; ringred.init(); \
cp.cuda.Device(ringred.local_rank() % cp.cuda.runtime.getDeviceCount()).use(); \
r = ringred.allreduce(cp.ones(1 << 20, dtype=cp.float32), op=ringred.Sum); \
n, why = ringred.device.transport(); \
print('rank', ringred.rank(), 'first device allreduce ok:', float(r.min()) == ringred.size(), \
'| auto transport:', n, '(' + why + ')', '| CUDA-aware MPI:', ringred.device.cuda_aware())"
}

kernel_check() {  # the committed PTX kernel on GPU 0 against the CPU path, bit for bit
    gcc -std=c11 -O2 -Wall -Wextra -Icsrc csrc/core/reduce.c csrc/device/dev_kernel_host.c \
        csrc/device/dev_kernel_ptx.c csrc/tests/dev_kernel_check.c -o "$LOG/dev_kernel_check" \
        -lm -ldl && "$LOG/dev_kernel_check" --gpu
}

ipc_check() {  # the CUDA backend's IPC entries between two processes (no MPI)
    gcc -std=c11 -D_GNU_SOURCE -DRR_CHECK_NO_MPI -Wall -Wextra -O2 -Icsrc \
        csrc/device/device_cuda.c csrc/device/device_fake.c csrc/device/device_fake_ipc.c \
        csrc/device/device_fake_test.c csrc/device/dev_kernel*.c csrc/core/reduce.c \
        csrc/core/copy.c csrc/tests/device_ipc_check.c -o "$LOG/device_ipc_check" \
        -ldl -lpthread -lm && "$LOG/device_ipc_check" cuda
}

bench() {  # bench NAME TRANSPORT ARGS...: python -m ringred.bench on 2 ranks
    local name=$1 tr=$2
    shift 2
    RINGRED_CUDA_AWARE=0 RINGRED_DEVICE_TRANSPORT=$tr mpiexec -n 2 $PY -m ringred.bench \
        --json "$LOG/$name.json" "$@"
}

export -f machine install_wheels build versions bench kernel_check ipc_check

# ------------------------------------------------------------------------------ the steps
step machine 30 20 machine
step install 120 5 install_wheels
if [ -d "$SITE" ]; then
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    export PATH="$SITE/bin:$PATH"
    export LD_LIBRARY_PATH="$SITE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
step build 180 8 build
step versions 90 30 versions

step ipc_check 40 12 ipc_check

# the figures the issues ask for first, then the tests (each under its own timeout)
step resnet50_ipc 60 20 bench resnet50_ipc ipc --workload resnet50 --device cuda --rounds 5
step resnet50_staged 60 20 bench resnet50_staged staged --workload resnet50 --device cuda \
    --rounds 5
step allreduce_table 120 14 env RINGRED_CUDA_AWARE=0 mpiexec -n 2 $PY benchmarks/gpu_bench.py \
    --transports ipc,staged --json "$LOG/allreduce.json"

# two pytest runs, so that a step cut by its timeout loses only its own junit results
step gpu_tests 170 30 $PY -m pytest -q -rfEs -p no:cacheprovider -k "not collectives" \
    --junitxml="$LOG/gpu_tests.xml" tests/test_gpu.py
step train_ipc 45 8 bench train_ipc ipc --workload train --device cuda --rounds 5 --steps 5
step gpu_tests_sync 80 15 $PY -m pytest -q -rfEs -p no:cacheprovider -k collectives \
    --junitxml="$LOG/gpu_tests_sync.xml" tests/test_gpu.py
step train_staged 45 8 bench train_staged staged --workload train --device cuda --rounds 5 \
    --steps 5
step nccl 40 5 mpiexec -n 2 $PY benchmarks/gpu_bench.py --nccl --json "$LOG/nccl.json"

echo
echo "=== summary ($((SECONDS))s so far) ==="
timeout 30 $PY benchmarks/gpu_summary.py "$LOG" >"$LOG/summary.md" 2>"$LOG/summary.err" \
    || { echo "summary failed:"; cat "$LOG/summary.err"; }
cat "$LOG/summary.md"
cp "$LOG/summary.md" "$RESULTS/" 2>/dev/null
tar czf "$RESULTS/gpu_check.tgz" -C "$(dirname "$LOG")" "$(basename "$LOG")" 2>/dev/null
echo
echo "total $(( $(date +%s) - START ))s; logs, JSON and summary.md in $LOG"
