#!/usr/bin/env bash
# Runs one libFuzzer binary for a bounded time from a scratch corpus seeded by fixture directories.
set -euo pipefail
binary=$1 corpus=$2 seconds=$3
shift 3
mkdir -p "$corpus"
exec "$binary" "$corpus" "$@" -max_total_time="$seconds" -max_len=8192 -seed=1 -print_final_stats=1 \
  -close_fd_mask=1 -rss_limit_mb=2048
