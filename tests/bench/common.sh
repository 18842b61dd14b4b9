# Sourced by the training benchmarks: mpirun flags, a scratch directory with the prepared corpus, and JSON/median helpers.
# After sourcing: $flags (mpirun options), $scratch (removed on exit), $scratch/data.h5, field JSON KEY, median X...,
# evict DIR...
flags=(--oversubscribe); [ "$(id -u)" -eq 0 ] && flags+=(--allow-run-as-root)
scratch=$(mktemp -d "${TMPDIR:-/tmp}/mpitrain-bench.XXXXXX"); trap 'rm -rf "$scratch"' EXIT
build/bin/mpitrain prepare-data configs/data/sotu "$scratch/data.h5" >/dev/null
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2], 0))' "$1" "$2"; }
# larger_llama HIDDEN LAYERS PATH: tiny-llama.json's run with a larger model (heads of 64, kv heads of 128).
larger_llama() {
  python3 - "$@" <<'PY'
import json, sys
hidden, layers, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
config = json.load(open("configs/tiny-llama.json"))
config["model"]["config"].update(hidden_size=hidden, num_hidden_layers=layers, intermediate_size=hidden * 11 // 4,
                                 num_attention_heads=hidden // 64, num_key_value_heads=hidden // 128)
json.dump(config, open(path, "w"))
PY
}
median() { python3 -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
# Drops the files under the given directories from the page cache (clean pages: fsynced by the save).
evict() {
  python3 - "$@" <<'PY'
import os, sys
for root in sys.argv[1:]:
    for d, _, files in os.walk(root):
        for f in files:
            fd = os.open(os.path.join(d, f), os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
PY
}
