#!/usr/bin/env bash
# Runs timeout_probe under mpirun and checks that it fails fast with one line naming the missing rank.
set -u
mpiexec_line=$1 probe=$2 np=$3
start=$(date +%s)
output=$($mpiexec_line -np "$np" "$probe" 2>&1)
status=$?
elapsed=$(( $(date +%s) - start ))
expected="allreduce #1 (64 bytes) on communicator 'world' did not complete within 2 s; ranks that did not arrive: $((np - 1))"
if [ "$status" -eq 0 ]; then echo "FAIL: the job exited 0"; echo "$output"; exit 1; fi
if ! grep -qF "$expected" <<<"$output"; then echo "FAIL: no line with: $expected"; echo "$output"; exit 1; fi
# Start-up of np ranks on a loaded 2-core machine takes its time; a timeout that never fires
# leaves the job waiting for a rank that sleeps 600 s, which ctest's limit (120 s) ends.
if [ "$elapsed" -gt 90 ]; then echo "FAIL: took ${elapsed}s"; exit 1; fi
echo "ok: failed in ${elapsed}s with: $(grep -F "did not complete" <<<"$output" | head -1)"
