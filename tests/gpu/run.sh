#!/usr/bin/env bash
# The GPU check in one device call: build against the machine's CUDA LibTorch and NCCL, GPU tests, a ~100M Llama in bf16, the save checked by transformers, throughput beside PyTorch eager.
#
# Prepare here (once): tests/gpu/fetch_deps.sh; tests/gpu/stage_fixtures.sh. Then one call:
#   device run: command "tests/gpu/run.sh", carry [".gpu-deps", ".gpu-fixtures"], timeout_s 600
# Everything lands in $OUT (log.txt, summary.txt, report.json). Each stage has its own time
# limit and the script goes on after a failed stage, so one call says as much as it can.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/mpitrain-gpu}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
started=$(date +%s)
note() { echo "[$(( $(date +%s) - started ))s] $*" | tee -a "$OUT/summary.txt"; }
stage() {  # stage NAME SECONDS COMMAND...: runs it under a time limit, records pass/fail
  local name=$1 limit=$2
  shift 2
  note "stage $name: start"
  if timeout "$limit" "$@"; then note "stage $name: ok"; return 0; fi
  note "stage $name: FAILED (status $?)"
  return 1
}

note "machine: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -1); $(nproc) cores"
python3 -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)' 2>&1 | tee -a "$OUT/summary.txt"
note "MPI/HDF5 already here: $(ldconfig -p | grep -cE 'libmpi|libhdf5') libraries; mpicxx: $(command -v mpicxx || echo none)"

# What this machine lacks comes from the carried Debian packages; Open MPI over shared memory
# only (no network fabrics to probe in a VM; no cross-memory attach).
# shellcheck source=tests/gpu/unpack_deps.sh
source tests/gpu/unpack_deps.sh >"$OUT/deps.txt"
cat "$OUT/deps.txt" >>"$OUT/summary.txt"
export OMPI_MCA_btl=self,vader OMPI_MCA_pml=ob1 OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_ess_singleton_isolated=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMP_NUM_THREADS=4 MPITRAIN_COLLECTIVE_TIMEOUT_S=120

torch_cmake=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
fixtures="$(pwd)/.gpu-fixtures/hf-tiny"
build=build-gpu
stage configure 120 cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMPITRAIN_BUILD_FUZZERS=OFF \
  -DCMAKE_PREFIX_PATH="$torch_cmake;$CMAKE_PREFIX_PATH" -DMPITRAIN_FIXTURES_DIR="$fixtures" \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DTORCH_CUDA_ARCH_LIST=9.0 \
  -DCMAKE_CUDA_COMPILER="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" || exit 1
stage build 300 cmake --build "$build" -j "$(nproc)" --target mpitrain nccl_gpu_test host_staging_test save_test \
  comm_test train_test || exit 1
bin="$build/bin"

# Tests: the GPU suite (one rank: NCCL takes one GPU per rank), staging and the MPI paths on
# this machine; the figures next; the end-to-end training tests last.
(cd "$build" && stage gpu-tests 150 ctest --output-on-failure -R 'nccl_gpu|host_staging|save_test_np2|comm_test_np2')

# ~100M-parameter Llama, bf16, one GPU: tokens/s from the logged windows after the first.
run_dir="$OUT/llama-100m"
stage train-100m 150 "$bin/mpitrain" train configs/llama-100m-gpu.json --output_dir="$run_dir" || true
cp "$run_dir/metrics.jsonl" "$OUT/metrics-100m.jsonl" 2>/dev/null
grep -h "saved the model" "$run_dir"/logs/rank-0.log 2>/dev/null | tee -a "$OUT/summary.txt"

# The save, read by the installed transformers, and its logits against mpitrain's.
stage logits 60 "$bin/mpitrain" logits "$run_dir" --inputs "$fixtures/llama/inputs.json" --output "$OUT/logits.npy"
stage check-hf 90 python3 tests/gpu/check_hf.py "$run_dir" --inputs "$fixtures/llama/inputs.json" \
  --logits "$OUT/logits.npy" --out "$OUT/check_hf.json"

# The save from GPU memory against a raw write of the same bytes (host memory) on this disk.
stage bench-save 90 "$bin/mpitrain" bench save --device cuda --mode parallel --size_mb 1024 --repeats 4 \
  --dir /tmp/mpitrain-bench-save | tee "$OUT/bench_save.txt"

# PyTorch eager on the same model and batch, and the chip's bf16 matmul rate.
stage eager 150 python3 tests/gpu/eager_baseline.py --config configs/llama-100m-gpu.json --out "$OUT/eager.json"

# Training end to end on the GPU against the CPU (DP and zero3), and bf16 against fp32: last,
# being the longest (its CPU runs use mpirun).
stage train-tests 150 "$bin/train_test" --gtest_filter='*DeviceCuda*:*Bfloat16*'

python3 tests/gpu/report.py --metrics "$OUT/metrics-100m.jsonl" --eager "$OUT/eager.json" \
  --bench_save "$OUT/bench_save.txt" --check_hf "$OUT/check_hf.json" --out "$OUT/report.json" | tee -a "$OUT/summary.txt"
note "done"
