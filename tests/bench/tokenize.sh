#!/usr/bin/env bash
# mpitrain's tokenizer against the real Hugging Face tokenizers (npm, Rust core), one thread each, on the same >= 10 MB of text, for every shared fixture tokenizer; alternated runs, medians, the ratio, and the token counts (which must agree).
# usage: tests/bench/tokenize.sh [ROUNDS]   (from the repo root, after launcher/setup.sh; installs npm's tokenizers 0.23.2 into build/bench-node)
set -euo pipefail
rounds=${1:-3}
fixtures=$(cd ../shared/fixtures/tokenizers && pwd)
work=build/bench-tokenize
mkdir -p "$work"
if [ ! -d build/bench-node/node_modules/tokenizers ]; then
  npm install --silent --prefix build/bench-node tokenizers@0.23.2 >/dev/null
fi
# The documents: the shipped addresses, spam texts and the system's licence texts, one document
# per paragraph, the whole set six times over (about 11 MB).
python3 - "$work/docs.jsonl" <<'PY'
import glob, json, sys
paragraphs = []
for path in sorted(glob.glob('configs/data/sotu/*.txt')) + sorted(glob.glob('/usr/share/common-licenses/*')):
    try:
        text = open(path, encoding='utf-8').read()
    except (UnicodeDecodeError, IsADirectoryError):
        continue
    paragraphs += [p for p in text.split('\n\n') if p.strip()]
for line in open('configs/data/spam/spam.jsonl', encoding='utf-8'):
    paragraphs.append(json.loads(line)['text'])
with open(sys.argv[1], 'w', encoding='utf-8') as out:
    for _ in range(6):
        for p in paragraphs:
            out.write(json.dumps({'text': p}) + '\n')
PY
echo "documents: $(wc -l <"$work/docs.jsonl"), $(du -m "$work/docs.jsonl" | cut -f1) MB of JSON lines"
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
median() { python3 -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
printf '%-20s %14s %14s %8s %12s\n' tokenizer "ours tok/s" "HF tok/s" ratio tokens
for name in bytelevel-bpe qwen3 sentencepiece-bpe wordpiece-uncased; do
  ours=() theirs=() ours_tokens="" theirs_tokens=""
  for _ in $(seq "$rounds"); do
    o=$(build/bin/mpitrain bench tokenize "$fixtures/$name" --input "$work/docs.jsonl" --repeats 1)
    t=$(RAYON_NUM_THREADS=1 UV_THREADPOOL_SIZE=1 node tests/bench/hf_tokenize.mjs build/bench-node/node_modules \
        "$fixtures/$name" "$work/docs.jsonl" 1)
    ours+=("$(field "$o" tokens_per_second)"); theirs+=("$(field "$t" tokens_per_second)")
    ours_tokens=$(field "$o" tokens); theirs_tokens=$(field "$t" tokens)
  done
  o=$(median "${ours[@]}"); t=$(median "${theirs[@]}")
  same=$([ "$ours_tokens" = "$theirs_tokens" ] && echo "$ours_tokens (same)" || echo "$ours_tokens vs $theirs_tokens DIFFER")
  printf '%-20s %14.0f %14.0f %8.2f %s\n' "$name" "$o" "$t" "$(python3 -c "print($o/$t)")" "$same"
done
