// `prepare-data`: text files (causal LM) or JSON lines {"text", "label"} (classification) to HDF5, with an eval split, tokenized by a TextEncoder.
#pragma once

#include <cstdint>
#include <string>

#include "src/data/text_encoder.h"

namespace mpitrain::data {

struct PrepareReport {
  std::int64_t documents = 0, train_tokens = 0, eval_tokens = 0, train_rows = 0, eval_rows = 0;
};

// Every *.txt file under `source` (a directory, sorted by name, or one file) is a document;
// each joins the stream as `encoder` says (its special tokens, then EOS). Every
// `eval_every`-th document goes to the eval split. Throws std::runtime_error naming the source
// when it holds no text.
PrepareReport prepare_text_corpus(const std::string& source, const std::string& output, const TextEncoder& encoder,
                                  int eval_every = 10);

// JSON lines with "text" and an integer "label"; rows of `encoder` cut to `max_length` tokens.
PrepareReport prepare_classification(const std::string& source, const std::string& output, const TextEncoder& encoder,
                                     std::int64_t max_length, int eval_every = 10);

}  // namespace mpitrain::data
