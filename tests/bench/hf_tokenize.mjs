// The real Hugging Face tokenizers (npm `tokenizers`, its Rust core) on the documents `mpitrain bench tokenize` encodes: one thread (RAYON_NUM_THREADS=1), batches of 256, median of the passes.
// usage: RAYON_NUM_THREADS=1 node tests/bench/hf_tokenize.mjs NODE_MODULES TOKENIZER_DIR DOCS.jsonl [REPEATS]
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';

const [modules, tokenizerDir, docsPath, repeatsArg] = process.argv.slice(2);
const { Tokenizer } = createRequire(resolve(modules, 'x.js'))('tokenizers');
const tokenizer = Tokenizer.fromFile(join(tokenizerDir, 'tokenizer.json'));
const documents = readFileSync(docsPath, 'utf8').split('\n').filter((l) => l.length).map((l) => JSON.parse(l).text);
const bytes = documents.reduce((n, d) => n + Buffer.byteLength(d), 0);
const repeats = Number(repeatsArg || 3);
const seconds = [];
let tokens = 0;
for (let r = 0; r < repeats; ++r) {
  tokens = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < documents.length; i += 256) {
    const encodings = await tokenizer.encodeBatch(documents.slice(i, i + 256), { addSpecialTokens: false });
    for (const e of encodings) tokens += e.getIds().length;
  }
  seconds.push(Number(process.hrtime.bigint() - start) / 1e9);
}
seconds.sort((a, b) => a - b);
const median = seconds.length % 2 ? seconds[(seconds.length - 1) / 2] : (seconds[seconds.length / 2 - 1] + seconds[seconds.length / 2]) / 2;
console.log(JSON.stringify({ implementation: 'tokenizers 0.23.2 (npm)', tokenizer: tokenizerDir, documents: documents.length, bytes, tokens,
  seconds_median: median, tokens_per_second: tokens / median, mb_per_second: bytes / median / 1e6 }));
