#!/usr/bin/env bash
# Sets everything up (packages, build) and runs the whole test suite with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
launcher/setup.sh
cd "${BUILD_DIR:-build}"
# Two parallel test processes suit a 2-core machine; MPI tests are labelled and take their own cores.
ctest --output-on-failure -j "${TEST_JOBS:-2}" "$@"
