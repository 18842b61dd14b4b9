// `mpitrain bench tokenize TOKENIZER_DIR --input docs.jsonl`: encodes every document on one thread, several times, and reports the median tokens/s (tests/bench/tokenize.sh runs the real library beside it).
#include <chrono>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "launcher/bench_stats.h"
#include "launcher/options.h"
#include "runtime/checkpoint/input_file.h"
#include "src/tokenizers/tokenizer.h"

namespace mpitrain::launcher {

int run_bench_tokenize(const Args& args) {
  po::options_description options("bench tokenize options");
  std::string tokenizer_path, input;
  int repeats = 3;
  options.add_options()("tokenizer", po::value(&tokenizer_path)->required(), "a directory with tokenizer.json")(
      "input", po::value(&input)->required(), "JSON lines {\"text\": ...}: the documents")(
      "repeats", po::value(&repeats)->default_value(repeats), "timed passes over all documents");
  po::positional_options_description positional;
  positional.add("tokenizer", 1);
  po::variables_map values;
  if (!parse_options("bench tokenize", "TOKENIZER_DIR --input docs.jsonl", args, options, positional, values)) return 0;
  if (repeats < 1) throw UsageError("bench tokenize: --repeats must be at least 1");
  const auto tokenizer = tokenizers::Tokenizer::from_path(tokenizer_path);
  checkpoint::require_regular_file(input);
  std::vector<std::string> documents;
  std::size_t bytes = 0;
  {
    std::ifstream in(input);
    std::string line;
    while (std::getline(in, line))
      if (!line.empty()) {
        documents.push_back(nlohmann::json::parse(line).at("text").get<std::string>());
        bytes += documents.back().size();
      }
  }
  std::vector<double> seconds;
  std::size_t tokens = 0;
  for (int r = 0; r < repeats; ++r) {
    tokens = 0;
    const auto start = std::chrono::steady_clock::now();
    for (const auto& d : documents) tokens += tokenizer.encode(d, false).ids.size();
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  const double median_seconds = median(seconds);
  std::cout << nlohmann::json{{"implementation", "mpitrain"}, {"tokenizer", tokenizer_path},
                              {"documents", documents.size()}, {"bytes", bytes}, {"tokens", tokens},
                              {"seconds_median", median_seconds}, {"tokens_per_second", tokens / median_seconds},
                              {"mb_per_second", bytes / median_seconds / 1e6}}
                   .dump()
            << "\n";
  return 0;
}

}  // namespace mpitrain::launcher
