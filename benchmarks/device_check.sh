#!/usr/bin/env bash
# Device check: the paper protocol and a large ensemble on whatever accelerator is present,
# then the sampler distribution tests on that backend. Run from the repository root of a
# fresh machine:
#
#     bash benchmarks/device_check.sh
#
# Steps (each under a `timeout` guard, capped so that the whole script ends within
# NCL_DEVICE_CHECK_BUDGET_S, default 285 s: under 5 minutes whatever the machine):
#   1. install: python3 -m venv .venv-dev && .venv-dev/bin/pip install -e ".[test]";
#      if that fails (an offline machine), fall back to the preinstalled python3 with the
#      repository on PYTHONPATH (it must already have jax, optax, chex, scipy, pytest);
#      if nvidia-smi exists and JAX has no GPU backend: pip install "jax[cuda12]".
#   2. the 36-seed paper protocol: train_ensemble(range(36), x, TrainConfig()) on
#      ncl.data.load_paper_data(), called twice (compile = first call - second call);
#   3. a 1152-seed ensemble, TrainConfig() except epochs (default 8 of 120, to stay in
#      budget; NCL_DEVICE_CHECK_BIG_EPOCHS), called twice likewise;
#      both print compile time, run time, seed-steps/s, peak device memory
#      (memory_stats()['peak_bytes_in_use'] where the backend reports it) and peak host RSS;
#   4. pytest -q tests/test_model.py tests/test_chain_gradient.py plus the chi-square chain
#      histogram test of tests/test_exact.py (the sampler distribution tests) on that backend.
#
# Exits non-zero if any step fails or times out (the later steps still run).
# Environment:
#   NCL_DEVICE_CHECK_SMALL=1     a reduced run for a CPU machine (< 2 minutes): 4 and 8
#                                seeds, 1 epoch each, only the chi-square sampler tests
#   NCL_DEVICE_CHECK_PYTHON=P    use interpreter P as is (skip step 1's install)
#   NCL_DEVICE_CHECK_BIG_EPOCHS  epochs of the 1152-seed case (default 8)
#   NCL_DEVICE_CHECK_OFFLINE=1   pip with --no-index (to test the offline fallback)
#   NCL_DEVICE_CHECK_BUDGET_S    the whole script's time budget (285 s; 600 s when small)
set -u
cd "$(dirname "$0")/.."
T_START=$(date +%s)
FAIL=0
fail() { echo "FAILED: $*"; FAIL=1; }
# guard: a step's timeout, capped by the time left of the whole script's budget
guard() { local left=$(( DEADLINE - $(date +%s) )); [ "$left" -lt 1 ] && left=1
          [ "$left" -lt "$1" ] && echo "$left" || echo "$1"; }
step() { echo; echo "== $* ($(( $(date +%s) - T_START )) s elapsed)"; }

SMALL=${NCL_DEVICE_CHECK_SMALL:-0}
if [ "$SMALL" = "1" ]; then
  SEEDS_A=4;  EPOCHS_A=1;   SEEDS_B=8;    EPOCHS_B=1
  TESTS=(tests/test_model.py tests/test_chain_gradient.py
         -k "frequencies or joint_distribution or wrong_distribution")
  TO_INSTALL=300; TO_A=120; TO_B=120; TO_TESTS=120; BUDGET=${NCL_DEVICE_CHECK_BUDGET_S:-600}
else
  SEEDS_A=36; EPOCHS_A=120; SEEDS_B=1152; EPOCHS_B=${NCL_DEVICE_CHECK_BIG_EPOCHS:-8}
  TESTS=(tests/test_model.py tests/test_chain_gradient.py
         tests/test_exact.py::test_stationary_distribution_matches_long_chain_histogram)
  TO_INSTALL=60; TO_A=100; TO_B=70; TO_TESTS=150; BUDGET=${NCL_DEVICE_CHECK_BUDGET_S:-285}
fi
DEADLINE=$(( T_START + BUDGET ))
echo "# device_check: $(date -u +%FT%TZ), host $(hostname), $(nproc) CPU cores, small=$SMALL"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

# ---------------------------------------------------------------- 1. install
step "1. install"
PIP_EXTRA=(--disable-pip-version-check --timeout 15 --retries 0)
[ "${NCL_DEVICE_CHECK_OFFLINE:-0}" = "1" ] && PIP_EXTRA+=(--no-index)
if [ -n "${NCL_DEVICE_CHECK_PYTHON:-}" ]; then
  PY=$NCL_DEVICE_CHECK_PYTHON
  echo "using $PY as is (NCL_DEVICE_CHECK_PYTHON); no install"
else
  echo "+ python3 -m venv .venv-dev && .venv-dev/bin/pip install -q -e \".[test]\""
  if timeout "$(guard "$TO_INSTALL")" python3 -m venv .venv-dev \
     && timeout "$(guard "$TO_INSTALL")" .venv-dev/bin/pip install -q "${PIP_EXTRA[@]}" -e ".[test]"; then
    PY=.venv-dev/bin/python
  else
    echo "pip install failed (offline machine?): falling back to the preinstalled python3" \
         "with the repository on PYTHONPATH"
    PY=python3
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi
if ! "$PY" -c "import jax, optax, chex, scipy, numpy, pytest, ncl"; then
  fail "install: $PY cannot import jax, optax, chex, scipy, numpy, pytest and ncl"
  echo "device_check: FAILED (nothing else can run)"; exit 1
fi
has_gpu() { "$PY" -c "import jax, sys; sys.exit(0 if jax.default_backend() == 'gpu' else 1)" >/dev/null 2>&1; }
if command -v nvidia-smi >/dev/null && ! has_gpu; then
  echo "+ nvidia-smi present but JAX has no GPU backend: $PY -m pip install -q \"jax[cuda12]\""
  timeout "$(guard "$TO_INSTALL")" "$PY" -m pip install -q "${PIP_EXTRA[@]}" "jax[cuda12]" \
    || fail "pip install jax[cuda12]"
  has_gpu || fail "JAX still has no GPU backend although nvidia-smi exists"
else
  echo "no jax[cuda12] install needed ($(command -v nvidia-smi >/dev/null && echo 'JAX already has a GPU backend' || echo 'no nvidia-smi'))"
fi
"$PY" -c "import jax, ncl; print('python', __import__('sys').version.split()[0], '| jax', jax.__version__, '| backend', jax.default_backend(), '| devices', jax.devices())"

# ------------------------------------------------------ 2./3. protocol runs
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # so peak_bytes_in_use is what the run used
run_case() {  # seeds epochs label
  NCL_DC_SEEDS=$1 NCL_DC_EPOCHS=$2 NCL_DC_LABEL=$3 "$PY" - <<'EOF'
import os, resource, sys, time
import jax
import numpy as np
from ncl.data import load_paper_data
from ncl.training import TrainConfig, train_ensemble
S, E, label = int(os.environ["NCL_DC_SEEDS"]), int(os.environ["NCL_DC_EPOCHS"]), os.environ["NCL_DC_LABEL"]
x, _ = load_paper_data()
cfg = TrainConfig() if E == TrainConfig().epochs else TrainConfig(epochs=E)
times = []
for _ in range(2):  # the first call compiles, the second reuses the compiled programs
    t0 = time.perf_counter()
    state, hist = train_ensemble(range(S), x, cfg)
    jax.block_until_ready(state)
    times.append(time.perf_counter() - t0)
first, run = times
steps = S * cfg.total_steps
try:
    stats = jax.devices()[0].memory_stats() or {}
except Exception:
    stats = {}
peak = stats.get("peak_bytes_in_use")
peak_s = f"{peak / 2**30:.2f} GiB" if peak is not None else "n/a (backend reports none)"
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
ll = np.asarray(hist.loglik)[:, -1]
finite = bool(np.all(np.asarray(hist.finite)))
print(f"{label}: {S} seeds x {cfg.epochs} epochs x {cfg.steps_per_epoch} steps on "
      f"{jax.default_backend()} ({jax.devices()[0].device_kind}): compile {max(first - run, 0):.2f} s, "
      f"run {run:.2f} s, total (compile included) {first:.2f} s, {steps / run:.0f} seed-steps/s, "
      f"peak device memory {peak_s}, peak host RSS {rss:.2f} GiB, "
      f"median final loglik {np.median(ll):.2f}, finite {finite}")
sys.exit(0 if finite else 3)
EOF
}
export -f run_case; export PY
step "2. paper protocol: $SEEDS_A seeds, TrainConfig() (epochs $EPOCHS_A)"
G=$(guard "$TO_A"); timeout "$G" bash -c "run_case $SEEDS_A $EPOCHS_A protocol" \
  || fail "paper protocol ($SEEDS_A seeds): exit $? (124 = timeout after $G s)"
step "3. ensemble: $SEEDS_B seeds, TrainConfig(epochs=$EPOCHS_B) (fewer epochs than the protocol's 120, to stay in budget)"
G=$(guard "$TO_B"); timeout "$G" bash -c "run_case $SEEDS_B $EPOCHS_B ensemble" \
  || fail "ensemble ($SEEDS_B seeds): exit $? (124 = timeout after $G s)"

# ------------------------------------------------------ 4. sampler tests
step "4. sampler distribution tests on the $("$PY" -c 'import jax; print(jax.default_backend())' 2>/dev/null) backend: ${TESTS[*]}"
G=$(guard "$TO_TESTS"); timeout "$G" "$PY" -m pytest -q -p no:cacheprovider "${TESTS[@]}" \
  || fail "sampler tests: exit $? (124 = timeout after $G s)"

echo
if [ "$FAIL" = 0 ]; then
  echo "device_check: ALL PASSED in $(( $(date +%s) - T_START )) s"
else
  echo "device_check: FAILED (see FAILED lines above) after $(( $(date +%s) - T_START )) s"
fi
exit $FAIL
