#!/usr/bin/env bash
# GPU check for ringred's device (CUDA) path, for a machine with an NVIDIA GPU:
# installs what is missing from local wheels, builds ringred from this working tree, runs
# the GPU test subset (tests/test_gpu.py, 2 ranks sharing device 0 if there is one GPU)
# and the fake-device tests, then prints the allreduce table (4 KiB .. 256 MiB):
# ringred on CuPy arrays vs the naive path (CuPy -> NumPy, MPI_Allreduce, NumPy -> CuPy)
# vs NCCL through cupy.cuda.nccl.
#
#   bash benchmarks/gpu_check.sh [WHEEL_DIR]
#
# WHEEL_DIR (default .whl) holds wheels for the machine's Python when it has no network:
# mpich, mpi4py, cffi, pycparser (+ numpy, ml_dtypes, pytest, cupy-cuda12x/13x if missing).
# Without wheels, what is installed is used (pip install mpich mpi4py cffi cupy-cuda12x).
# Logs and JSON results go to $OUT/gpu_check (default /tmp/gpu_check).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=${1:-.whl}
SITE=${RINGRED_SITE:-/tmp/ringred-site}
LOG=${OUT:-/tmp}/gpu_check
mkdir -p "$LOG"
export PYTHONUNBUFFERED=1
step() { echo; echo "=== $* ==="; }

step machine
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi failed"
$PY --version
nproc

if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    step "install wheels from $WHEELS into $SITE"
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "$WHEELS"/*.whl || exit 1
    # pip --target drops the data files of the mpich wheel (lib/): unpack them ourselves.
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
PYEOF
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    export PATH="$SITE/bin:$PATH"
    export LD_LIBRARY_PATH="$SITE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
$PY -c "import numpy, cffi, mpi4py, cupy; print('numpy', numpy.__version__, 'cffi', cffi.__version__, 'mpi4py', mpi4py.__version__, 'cupy', cupy.__version__)" || exit 1

step "build ringred (csrc/ through cffi)"
MPICC=${MPICC:-$(command -v mpicc)}
export MPICC
echo "MPICC=$MPICC: $($MPICC -show 2>/dev/null | head -c 200)"
rm -f ringred/_ringred*.so
t0=$(date +%s)
if $PY ringred_build.py >"$LOG/build.log" 2>&1; then
    rm -f csrc/*.o
    echo "built in $(( $(date +%s) - t0 )) s: $(ls ringred/_ringred*.so)"
else
    tail -25 "$LOG/build.log"
    PRE=$(ls "$WHEELS"/prebuilt/_ringred*.so 2>/dev/null | head -1)
    [ -n "$PRE" ] || { echo "build failed and no prebuilt extension"; exit 1; }
    echo "build failed here: using the prebuilt $PRE"
    cp "$PRE" ringred/
fi
$PY -c "import ringred, ringred.device as d; print('cuda backend:', d.backend_available('cuda'))"
$PY -c "from mpi4py import MPI; print(MPI.Get_library_version().splitlines()[0])"

RINGRED_CUDA_AWARE=auto timeout 60 mpiexec -n 1 $PY -c "import ringred; ringred.init(); \
print('MPI reports CUDA support (RINGRED_CUDA_AWARE=auto takes the direct path):', \
ringred.device.cuda_aware())"

step "GPU tests (2 ranks) and fake-device tests"
timeout 300 $PY -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_device.py \
    2>&1 | tee "$LOG/pytest.log" | tail -40

step "benchmark: ringred vs naive"
RINGRED_CUDA_AWARE=0 timeout 240 mpiexec -n 2 $PY benchmarks/gpu_bench.py --json "$LOG/bench.json" 2>&1 | tail -40
step "benchmark: NCCL"
timeout 90 mpiexec -n 2 $PY benchmarks/gpu_bench.py --nccl --json "$LOG/nccl.json" 2>&1 | tail -5
step "result"
grep -E "passed|failed|error" "$LOG/pytest.log" | tail -3
$PY benchmarks/gpu_bench.py --table "$LOG/bench.json" "$LOG/nccl.json"
