#!/usr/bin/env bash
# The GPU check in one device call: build against the machine's CUDA LibTorch and NCCL, GPU tests, a ~100M Llama in bf16, the save checked by transformers, throughput beside PyTorch eager.
#
# Prepare here (once): tests/gpu/fetch_deps.sh; tests/gpu/stage_fixtures.sh. Then one call:
#   device run: command "tests/gpu/run.sh", carry [".gpu-deps/debs", ".gpu-fixtures"], timeout_s 600
# $OUT gets seven files (the device tool returns at most eight): log.txt, summary.txt,
# report.json and the stages' results; models and data stay in $WORK. Every stage has a time
# limit inside one overall deadline (MPITRAIN_GPU_DEADLINE_S, 560 s: the call's 600 less the
# report), a failed stage does not stop the others, and the report is written on any exit.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/mpitrain-gpu}"
WORK="${WORK:-/tmp/mpitrain-gpu-work}"
rm -rf "$WORK"  # a rerun on a warm machine starts clean
mkdir -p "$OUT" "$WORK"
exec > >(tee -a "$OUT/log.txt") 2>&1
started=$(date +%s)
deadline=$((started + ${MPITRAIN_GPU_DEADLINE_S:-560}))
note() { echo "[$(( $(date +%s) - started ))s] $*" | tee -a "$OUT/summary.txt"; }
stage() {  # stage NAME SECONDS COMMAND...: runs it within its limit and the deadline, records the outcome
  local name=$1 limit=$2
  shift 2
  local left=$((deadline - $(date +%s)))
  if [ "$left" -lt 15 ]; then note "stage $name: SKIPPED (deadline)"; return 1; fi
  [ "$limit" -gt "$left" ] && limit=$left
  note "stage $name: start (limit ${limit}s)"
  local rc=0
  timeout -k 10 "$limit" "$@" || rc=$?
  if [ "$rc" -eq 0 ]; then note "stage $name: ok"; return 0; fi
  note "stage $name: FAILED (status $rc$([ "$rc" -eq 124 ] && echo ': timed out'))"
  return 1
}
report() {
  env LD_LIBRARY_PATH="$system_libraries" python3 tests/gpu/report.py --metrics "$OUT/metrics-100m.jsonl" \
    --eager "$OUT/eager.json" --bench_save "$OUT/bench_save.txt" --check_hf "$OUT/check_hf.json" \
    --out "$OUT/report.json" | tee -a "$OUT/summary.txt"
  note "done"
}
system_libraries="${LD_LIBRARY_PATH:-}"  # Python and its CUDA libraries never see the carried ones
trap report EXIT
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

note "machine: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -1); $(nproc) cores"
python3 -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)' 2>&1 | tee -a "$OUT/summary.txt"
note "MPI/HDF5 already here: $(ldconfig -p | grep -cE 'libmpi|libhdf5') libraries; mpicxx: $(command -v mpicxx || echo none)"
note "tools: nvcc $(nvcc --version 2>/dev/null | tail -1 || echo none); $(cmake --version | head -1); $(g++ --version | head -1); ninja $(command -v ninja || echo none); $(df -T /tmp | tail -1 | awk '{print "/tmp on " $2}')"

# What this machine lacks comes from the carried Debian packages; Open MPI over shared memory
# only (no network fabrics to probe in a VM; no cross-memory attach).
# shellcheck source=tests/gpu/unpack_deps.sh
source tests/gpu/unpack_deps.sh >"$WORK/deps.txt"
cat "$WORK/deps.txt" >>"$OUT/summary.txt"
export OMPI_MCA_btl=self,vader OMPI_MCA_pml=ob1 OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_ess_singleton_isolated=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMP_NUM_THREADS=4 MPITRAIN_COLLECTIVE_TIMEOUT_S=120
export NCCL_DEBUG=WARN  # an NCCL failure says why, not only "unhandled system error"
export TORCH_CUDA_ARCH_LIST=9.0  # the H100/H200: no GPU probing at configure time

torch_cmake=$(env LD_LIBRARY_PATH="$system_libraries" python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
fixtures="$(pwd)/.gpu-fixtures/hf-tiny"
build=build-gpu
bin="$build/bin"
boost_dir=()  # the carried Boost's own package file: a system BoostConfig would be found first
if [ -n "${Boost_ROOT:-}" ]; then
  boost_config=$(compgen -G "$Boost_ROOT/lib/x86_64-linux-gnu/cmake/Boost-*" | head -1)
  [ -n "$boost_config" ] && boost_dir=(-DBoost_DIR="$boost_config")
fi
stage configure 120 cmake -S . -B "$build" -G Ninja "${boost_dir[@]}" -DCMAKE_BUILD_TYPE=Release -DMPITRAIN_BUILD_FUZZERS=OFF \
  -DCMAKE_PREFIX_PATH="$torch_cmake;$CMAKE_PREFIX_PATH" -DMPITRAIN_FIXTURES_DIR="$fixtures" \
  -DTORCH_CUDA_ARCH_LIST=9.0 \
  -DCMAKE_CUDA_COMPILER="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" | tee "$WORK/configure.txt"
grep -hE "mpitrain: (CUDA/NCCL backend|NCCL)" "$WORK/configure.txt" | tee -a "$OUT/summary.txt"
# The binary first, alone: the figures need only it, and a test that fails to compile must
# not keep it from linking.
stage build-mpitrain 300 cmake --build "$build" -j "$(nproc)" --target mpitrain
[ -x "$bin/mpitrain" ] || exit 1
note "links: $(ldd "$bin/mpitrain" | grep -oE '(libnccl|libcudart|libtorch_cuda)[^ ]* => [^ ]*' | tr '\n' ' ')"

# The figures the issue asks for first. ~100M-parameter Llama, bf16, one GPU: tokens/s from
# the logged windows after the first.
run_dir="$WORK/llama-100m"
stage train-100m 120 "$bin/mpitrain" train configs/llama-100m-gpu.json --output_dir="$run_dir"
cp "$run_dir/metrics.jsonl" "$OUT/metrics-100m.jsonl" 2>/dev/null
grep -h "saved the model" "$run_dir"/logs/rank-0.log 2>/dev/null | tee -a "$OUT/summary.txt"

# The save, read by the installed transformers, and its logits against mpitrain's.
stage logits 45 "$bin/mpitrain" logits "$run_dir" --inputs "$fixtures/llama/inputs.json" --output "$WORK/logits.npy"
stage check-hf 60 env LD_LIBRARY_PATH="$system_libraries" python3 tests/gpu/check_hf.py "$run_dir" \
  --inputs "$fixtures/llama/inputs.json" --logits "$WORK/logits.npy" --out "$OUT/check_hf.json"

# PyTorch eager on the same model and batch, and the chip's bf16 matmul rate.
stage eager 120 env LD_LIBRARY_PATH="$system_libraries" python3 tests/gpu/eager_baseline.py \
  --config configs/llama-100m-gpu.json --out "$OUT/eager.json"

# The save from GPU memory against a raw write of the same bytes (host memory) on this disk.
stage bench-save 90 "$bin/mpitrain" bench save --device cuda --mode parallel --size_mb 512 --repeats 2 \
  --dir "$WORK/bench-save" | tee "$OUT/bench_save.txt"
report  # the figures so far, in case the tests below run into the call's limit

# The GPU tests: built now, every target that compiles (-k 0).
stage build-tests 240 cmake --build "$build" -j "$(nproc)" --target nccl_gpu_test host_staging_test save_test \
  comm_test train_test -- -k 0

# The GPU suite (one rank: NCCL takes one GPU per rank), staging and the MPI paths here.
(cd "$build" && stage gpu-tests 120 ctest --output-on-failure -R 'nccl_gpu|host_staging|save_test_np2|comm_test_np2')

# Two ranks on the one GPU: one line naming the shared GPU, not NCCL's own failure.
stage shared-gpu 60 bash -c "mpirun -np 2 $bin/mpitrain train configs/tiny-llama.json --device=cuda --max_steps=1 \
  --output_dir=$WORK/shared-gpu 2>&1 | grep -m1 'NCCL needs a GPU of its own'"

# Training end to end on the GPU against the CPU (DP, zero3, bf16): last, being the longest.
stage train-tests 150 "$bin/train_test" --gtest_filter='*DeviceCuda*'
