// `mpitrain generate MODEL_DIR --prompt TEXT`: samples text from a causal LM saved with the byte tokenizer.
#include <filesystem>
#include <iostream>

#include "launcher/options.h"
#include "runtime/checkpoint/json_file.h"
#include "src/data/byte_tokenizer.h"
#include "src/models/pretrained.h"

namespace mpitrain::launcher {

int run_generate(const Args& args) {
  po::options_description options("generate options");
  std::string model_dir, prompt;
  int max_new_tokens = 200, top_k = 40;
  double temperature = 0.8;
  std::uint64_t seed = 0;
  options.add_options()("model_dir", po::value(&model_dir)->required(), "HF model directory")(
      "prompt", po::value(&prompt)->default_value(""), "text to continue")(
      "max_new_tokens", po::value(&max_new_tokens)->default_value(max_new_tokens), "")(
      "temperature", po::value(&temperature)->default_value(temperature), "0 = greedy")(
      "top_k", po::value(&top_k)->default_value(top_k), "sample among the k likeliest tokens (0 = all)")(
      "seed", po::value(&seed)->default_value(seed), "");
  po::positional_options_description positional;
  positional.add("model_dir", 1);
  po::variables_map values;
  if (!parse_options("generate", "MODEL_DIR --prompt TEXT", args, options, positional, values)) return 0;

  const auto tokenizer_file = std::filesystem::path(model_dir) / "tokenizer.json";
  if (!std::filesystem::exists(tokenizer_file) ||
      checkpoint::read_json_file(tokenizer_file.string())["model"]["vocab"].size() != data::ByteTokenizer::kVocabSize)
    throw std::runtime_error(model_dir + ": generate needs a model saved with mpitrain's byte-level tokenizer");
  auto loaded = models::from_pretrained(model_dir);
  if (!loaded.model->is_causal_lm()) throw std::runtime_error(model_dir + ": " + loaded.model->architecture() + " is not a causal LM");
  const auto context = loaded.model->config().value("max_position_embeddings",
                                                    loaded.model->config().value("n_positions", std::int64_t{1024}));
  data::ByteTokenizer tokenizer;
  std::vector<std::int64_t> ids = {data::ByteTokenizer::kEos};  // documents were joined by </s>
  for (auto id : tokenizer.encode(prompt)) ids.push_back(id);
  torch::manual_seed(seed);
  loaded.model->eval();
  torch::NoGradGuard no_grad;
  std::cout << prompt << std::flush;
  for (int i = 0; i < max_new_tokens; ++i) {
    const auto start = std::max<std::int64_t>(0, static_cast<std::int64_t>(ids.size()) - context);
    auto input = torch::tensor(std::vector<std::int64_t>(ids.begin() + start, ids.end()), torch::kInt64).unsqueeze(0);
    auto logits = loaded.model->forward({input, {}, {}})[0][-1].to(torch::kFloat32);
    std::int64_t next;
    if (temperature <= 0) {
      next = logits.argmax().item<std::int64_t>();
    } else {
      logits = logits / temperature;
      if (top_k > 0 && top_k < logits.size(0)) {
        const auto threshold = std::get<0>(logits.topk(top_k))[-1];
        logits = logits.masked_fill(logits < threshold, -std::numeric_limits<float>::infinity());
      }
      next = torch::multinomial(torch::softmax(logits, 0), 1).item<std::int64_t>();
    }
    if (next == data::ByteTokenizer::kEos) break;
    ids.push_back(next);
    std::cout << tokenizer.decode({next}) << std::flush;
  }
  std::cout << "\n";
  return 0;
}

}  // namespace mpitrain::launcher
