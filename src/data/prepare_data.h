// `prepare-data`: text files (causal LM) or JSON lines {"text", "label"} (classification) to HDF5, with an eval split, tokenized by a TextEncoder.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "src/data/encoding_share.h"
#include "src/data/text_encoder.h"

namespace mpitrain::data {

// Each function below tokenizes its documents through `share` (this process by default): under
// a shared one, every rank calls it alike and only the rank that writes() writes `output` and
// gets the report (the others an empty one).
struct PrepareReport {
  std::int64_t documents = 0, train_tokens = 0, eval_tokens = 0, train_rows = 0, eval_rows = 0;
};

// Every *.txt file under `source` (a directory, sorted by name, or one file) is a document;
// each joins the stream as `encoder` says (its special tokens, then EOS). Every
// `eval_every`-th document goes to the eval split. Throws std::runtime_error naming the source
// when it holds no text.
PrepareReport prepare_text_corpus(const std::string& source, const std::string& output, const TextEncoder& encoder,
                                  int eval_every = 10, const EncodingShare& share = EncodingShare());

// What a "label" may be: an integer in [0, num_labels) (num_labels 0: any non-negative one), or
// a name the model config's label2id maps to one.
struct LabelSet {
  nlohmann::json label2id = nlohmann::json::object();
  std::int64_t num_labels = 0;
};

// JSON lines with "text", optional "text_pair" (a sentence pair: token type ids are kept) and
// "label"; rows of `encoder` cut to `max_length` tokens. A line without its fields, or with a
// label outside `labels`, is an error naming the file and line.
PrepareReport prepare_classification(const std::string& source, const std::string& output, const TextEncoder& encoder,
                                     std::int64_t max_length, int eval_every = 10, const LabelSet& labels = {},
                                     const EncodingShare& share = EncodingShare());

// JSON lines with "prompt" and "completion": one row each, the prompt's tokens then the
// completion's (then EOS). Labels: the completion's tokens, and with `completion_only_loss`
// false the prompt's too; -100 elsewhere. Too long for `max_length`: the prompt is cut from
// the left (its oldest tokens go), and only a completion longer than max_length by itself loses
// its end; never is the completion cut to nothing. An empty completion, or a line without both
// fields, is an error naming the file and line. With `packing`, each split's examples are packed
// whole into rows of max_length (pack_examples): train_rows and eval_rows count the rows.
struct PromptCompletionOptions {
  bool completion_only_loss = true;
  bool packing = false;
};
PrepareReport prepare_prompt_completion(const std::string& source, const std::string& output, const TextEncoder& encoder,
                                        std::int64_t max_length, int eval_every = 10,
                                        const PromptCompletionOptions& options = {},
                                        const EncodingShare& share = EncodingShare());

}  // namespace mpitrain::data
