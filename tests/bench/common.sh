# Sourced by the training benchmarks: mpirun flags, a scratch directory with the prepared corpus, and JSON/median helpers.
# After sourcing: $flags (mpirun options), $scratch (removed on exit), $scratch/data.h5, field JSON KEY, median X...
flags=(--oversubscribe); [ "$(id -u)" -eq 0 ] && flags+=(--allow-run-as-root)
scratch=$(mktemp -d "${TMPDIR:-/tmp}/mpitrain-bench.XXXXXX"); trap 'rm -rf "$scratch"' EXIT
build/bin/mpitrain prepare-data configs/data/sotu "$scratch/data.h5" >/dev/null
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2], 0))' "$1" "$2"; }
median() { python3 -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
