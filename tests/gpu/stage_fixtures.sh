#!/usr/bin/env bash
# Copies the hf-tiny fixtures into .gpu-fixtures (ignored by git) so that a device call can carry them: ../shared does not travel.
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf .gpu-fixtures && mkdir -p .gpu-fixtures
cp -r "${MPITRAIN_FIXTURES_DIR:-../shared/fixtures/hf-tiny}" .gpu-fixtures/hf-tiny
du -sh .gpu-fixtures | cut -f1 | xargs echo "fixtures staged:"
