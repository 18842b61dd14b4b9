#!/usr/bin/env bash
# docs/configuration.md is exactly what `mpitrain train --help-markdown` prints from the key table, and the docs name no config key the table lacks.
# usage: config_reference_test.sh MPITRAIN_BINARY SOURCE_DIR
set -euo pipefail
binary=$1
cd "$2"
status=0

if ! "$binary" train --help-markdown | diff -u docs/configuration.md -; then
  echo "docs/configuration.md is stale; regenerate it: build/bin/mpitrain train --help-markdown > docs/configuration.md" >&2
  status=1
fi

# Every key as `section.key` and as its plain name, from the plain-text help.
keys=$("$binary" train --help | sed -n 's/^  \([a-z_]*\)\.\([a-z_0-9]*\) (default .*/\1.\2 \2/p' | tr ' ' '\n' | sort -u)
[ -n "$keys" ] || { echo "no keys in 'mpitrain train --help'" >&2; exit 1; }
# What looks like a key and is not: launcher options (srun, sbatch), the placeholder --key=value,
# a file name.
not_keys="mpi nodes signal output key model.safetensors"
pages=(README.md docs/*.md slurm/README.md)
for pages_key in $(
  {
  # --key=value overrides, and `section.key` in backticks.
  grep -ohE -- '--[a-z_][a-z_0-9]*(\.[a-z_0-9]+)?=' "${pages[@]}" | sed 's/^--//; s/=$//'
  grep -ohE '`(model|data|training|parallel)\.[a-z_0-9]+' "${pages[@]}" | sed 's/^`//'
  } | sort -u
); do
  case " $not_keys " in *" $pages_key "*) continue;; esac
  if ! grep -qxF "$pages_key" <<<"$keys"; then
    echo "the docs name '$pages_key', which is not a config key (src/train/run_config.cpp): $(grep -lE -- "(--|\`)$pages_key" "${pages[@]}" | tr '\n' ' ')" >&2
    status=1
  fi
done
exit $status
