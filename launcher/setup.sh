#!/usr/bin/env bash
# Installs the Debian packages mpitrain needs (only those missing), then configures and builds the
# given targets (all of them, tests included, when none is given).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libopenblas0-openmp
  libsleef-dev  # the fused CPU kernels' vectorised exp (as ATen's own kernels use it)
  libblas-dev  # cblas.h: the fused attention's float32 products call LibTorch's BLAS directly
  libopenmpi-dev openmpi-bin
  libhdf5-dev
  nlohmann-json3-dev
  libpcre2-dev libicu-dev  # the tokenizers: PCRE2 for the patterns, ICU for Unicode
  libboost-program-options-dev
  protobuf-compiler libprotobuf-dev  # TensorBoard event files: Event protocol buffers
  googletest libgtest-dev python3
  clang-14 libclang-rt-14-dev
  slurmctld slurmd slurm-client munge  # the Slurm tests bring up a real Slurm on this machine
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

[ "${MPITRAIN_SETUP_ONLY_PACKAGES:-0}" = 1 ] && exit 0

export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
# Paths relative to the checkout, so a fresh clone elsewhere (CI) still hits the cache.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$(pwd)}"
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-Release} \
  -DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache ${CMAKE_EXTRA_ARGS:-}
targets=()
for target in "$@"; do targets+=(--target "$target"); done
cmake --build "$BUILD_DIR" -j "${BUILD_JOBS:-$(nproc)}" "${targets[@]}"
