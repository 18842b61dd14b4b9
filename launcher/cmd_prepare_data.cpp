// `mpitrain prepare-data SOURCE OUT.h5 [--tokenizer DIR]`: text or JSON lines to the HDF5 training format, with a Hugging Face tokenizer or the byte tokenizer.
#include <iostream>

#include "launcher/options.h"
#include "src/data/prepare_data.h"

namespace mpitrain::launcher {

int run_prepare_data(const Args& args) {
  po::options_description options("prepare-data options");
  std::string source, output, task, tokenizer;
  std::int64_t max_length = 128;
  int eval_every = 10;
  bool packing = false;
  options.add_options()("source", po::value(&source)->required(), "a directory of .txt (or .jsonl) files, or one file")(
      "output", po::value(&output)->required(), "the HDF5 file to write")(
      "task", po::value(&task)->default_value("causal_lm"), "causal_lm | classification | sft (prompt/completion)")(
      "max_length", po::value(&max_length)->default_value(max_length), "classification: tokens per row")(
      "eval_every", po::value(&eval_every)->default_value(eval_every), "every n-th document goes to eval")(
      "tokenizer", po::value(&tokenizer)->default_value(""), "a directory with tokenizer.json (default: the byte tokenizer)")(
      "packing", po::bool_switch(&packing), "sft: pack examples whole into max_length rows (each attends only to itself)");
  po::positional_options_description positional;
  positional.add("source", 1).add("output", 1);
  po::variables_map values;
  if (!parse_options("prepare-data", "SOURCE OUT.h5", args, options, positional, values)) return 0;
  if (task != "causal_lm" && task != "classification" && task != "sft")
    throw UsageError("prepare-data: --task must be causal_lm, classification or sft");
  if (packing && task != "sft") throw UsageError("prepare-data: --packing packs prompt/completion examples (--task sft)");
  const auto encoder = tokenizer.empty() ? data::byte_encoder() : data::tokenizer_encoder(tokenizer);
  const auto report = task == "classification" ? data::prepare_classification(source, output, *encoder, max_length, eval_every)
                      : task == "sft"          ? data::prepare_prompt_completion(source, output, *encoder, max_length, eval_every,
                                                                                  {true, packing})
                                               : data::prepare_text_corpus(source, output, *encoder, eval_every);
  std::cout << "wrote " << output << ": " << report.documents << " documents, "
            << (task != "causal_lm" ? std::to_string(report.train_rows) + " train / " +
                                               std::to_string(report.eval_rows) + " eval rows"
                                         : std::to_string(report.train_tokens) + " train / " +
                                               std::to_string(report.eval_tokens) + " eval tokens")
            << "\n";
  return 0;
}

}  // namespace mpitrain::launcher
