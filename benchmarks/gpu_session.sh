#!/usr/bin/env bash
# One GPU session's checks of issues 14 and 17, in under 8 minutes on one H200, logs under $OUT (or ./gpu_logs).
# GPU_STEPS picks a subset (e.g. GPU_STEPS="task population" when device time is short).
#
#   benchmarks/gpu_session.sh DATA_DIR
#
# DATA_DIR holds (copied there beforehand, e.g. by benchmarks/gpu_session_prepare.sh from ../shared):
#   folder5/train, folder5/val   a 200-image, 5-class folder of 224 px JPEGs and its test folder
#   cifar10_test_1k               the population benchmark's data
#   weights/                      pretrained files found through $JAXGLUON_WEIGHTS_PATH (CIFAR-10 ResNets)
#   wheels/ (optional)            Python wheels the GPU image lacks (grain, array-record, jsonschema, ...)
# Each step has its own timeout, so one hang costs its slot only; every step's output goes to its own log.
set -u
data=${1:?usage: gpu_session.sh DATA_DIR}
out=${OUT:-gpu_logs}
mkdir -p "$out"
if compgen -G "$data/wheels/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$data"/wheels/*.whl >"$out/00_pip.log" 2>&1 || { echo "wheel install failed"; tail "$out/00_pip.log"; }
  export PYTHONPATH=/tmp/site:.
else
  export PYTHONPATH=.
fi
export PYTHONUNBUFFERED=1 JAXGLUON_WEIGHTS_PATH="$data/weights" JAXGLUON_HOME=/tmp/jaxgluon_home
# no XLA_PYTHON_CLIENT_PREALLOCATE: fit starts its driver without preallocation itself, as a user runs it
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$out/00_env.log" 2>&1
python3 -c "import jax, flax, optax; print(jax.__version__, flax.__version__, optax.__version__, jax.devices())" \
  >>"$out/00_env.log" 2>&1
cat "$out/00_env.log"

step() {  # step NAME SECONDS COMMAND...
  local name=$1 secs=$2; shift 2
  local t0=$SECONDS
  echo "=== $name (limit ${secs}s)"
  timeout -k 5 "$secs" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  echo "--- $name rc=$rc in $((SECONDS - t0))s"
  tail -n 4 "$out/$name.log"
}

# what to run: GPU_STEPS="train_step task population input" (default: all four)
steps=" ${GPU_STEPS:-train_step task population input} "
[[ $steps == *" train_step "* ]] && step 01_train_step 120 python3 benchmarks/gpu_train_step.py
[[ $steps == *" task "* ]] && step 02_gpu_task 200 env JAXGLUON_LOG_LEVEL=INFO python3 benchmarks/gpu_task.py --data "$data/folder5/train" \
  --test-data "$data/folder5/val" --time-limits 60
[[ $steps == *" population "* ]] && step 03_population 100 python3 benchmarks/population.py --k 32 --epochs 1 \
  --sequential-trials 8 --data "$data/cifar10_test_1k"
# the population's train step alone in other program shapes (one vmap with XLA's grouped convolutions, the same
# with im2col batched matmuls, vmaps of 8), then the ceiling (one model at batch 32 vs 32 x 32): which shape can
# reach the 8x at K=32
[[ $steps == *" popvariants "* ]] && step 03b_population_variants 150 python3 benchmarks/population.py --k 32 \
  --epochs 1 --sequential-trials 2 --step-variants all,all:im2col,8,8:im2col --data "$data/cifar10_test_1k"
# the host path (the CPU default) needs OpenCV, whose 63 MB wheel does not fit the device tool's 64 MiB carry
[[ $steps == *" input "* ]] && step 04_input_pipeline 60 python3 benchmarks/input_pipeline.py --data "$data/folder5/train" \
  --repeat 8 --batch 128 --epochs 3 --rounds 2 --modes device --workers 8
# diagnosis of a cold default fit: its timeline (driver and worker log lines), with JAX's default GPU memory
# preallocation as a user has it, then with XLA's autotuning off
[[ $steps == *" diag "* ]] && step 05_diag_cold 150 env -u XLA_PYTHON_CLIENT_PREALLOCATE JAXGLUON_LOG_LEVEL=INFO \
  python3 benchmarks/gpu_task.py --data "$data/folder5/train" --test-data "$data/folder5/val" --time-limits 120 --cold-only
[[ $steps == *" diag "* ]] && step 06_diag_autotune0 85 env JAXGLUON_LOG_LEVEL=INFO XLA_FLAGS=--xla_gpu_autotune_level=0 \
  python3 benchmarks/gpu_task.py --data "$data/folder5/train" --test-data "$data/folder5/val" --time-limits 60 --cold-only
[[ $steps == *" autotune "* ]] && step 07_autotune 130 python3 benchmarks/gpu_autotune.py --data "$data/folder5/train" \
  --levels "${AUTOTUNE_LEVELS:-0,1}" --timeout 60
echo "=== done in ${SECONDS}s"
