// `mpitrain generate MODEL_DIR --prompt TEXT`: samples text from a causal LM, tokenized and decoded by its own tokenizer.json.
#include <filesystem>
#include <iostream>
#include <memory>

#include "launcher/options.h"
#include "runtime/checkpoint/json_file.h"
#include "src/data/text_encoder.h"
#include "src/models/lora.h"
#include "src/models/pretrained.h"

namespace mpitrain::launcher {

int run_generate(const Args& args) {
  po::options_description options("generate options");
  std::string model_dir, prompt, adapter_dir;
  int max_new_tokens = 200, top_k = 40;
  double temperature = 0.8;
  std::uint64_t seed = 0;
  options.add_options()("model_dir", po::value(&model_dir)->required(), "HF model directory")(
      "prompt", po::value(&prompt)->default_value(""), "text to continue")(
      "max_new_tokens", po::value(&max_new_tokens)->default_value(max_new_tokens), "")(
      "temperature", po::value(&temperature)->default_value(temperature), "0 = greedy")(
      "top_k", po::value(&top_k)->default_value(top_k), "sample among the k likeliest tokens (0 = all)")(
      "seed", po::value(&seed)->default_value(seed), "")(
      "adapter", po::value(&adapter_dir), "a PEFT LoRA adapter directory applied to the model");
  po::positional_options_description positional;
  positional.add("model_dir", 1);
  po::variables_map values;
  if (!parse_options("generate", "MODEL_DIR --prompt TEXT", args, options, positional, values)) return 0;

  // The model's own tokenizer.json: an HF tokenizer's, or the byte tokenizer's as mpitrain
  // saves it (itself a byte-level tokenizer.json that gives the same ids).
  if (!std::filesystem::exists(std::filesystem::path(model_dir) / "tokenizer.json"))
    throw std::runtime_error(model_dir + ": generate needs the model's tokenizer.json beside it");
  const auto tokenizer = data::tokenizer_encoder(model_dir);
  auto loaded = models::from_pretrained(model_dir);
  if (!loaded.model->is_causal_lm()) throw std::runtime_error(model_dir + ": " + loaded.model->architecture() + " is not a causal LM");
  std::unique_ptr<models::LoraAdapters> adapter;
  if (!adapter_dir.empty()) adapter = models::load_adapter(*loaded.model, adapter_dir);
  const auto context = loaded.model->config().value("max_position_embeddings",
                                                    loaded.model->config().value("n_positions", std::int64_t{1024}));
  // The prompt as a document starts in the training stream: after the tokenizer's leading
  // special tokens (a BOS) where it has them, else after the EOS that ended the one before.
  std::vector<std::int64_t> ids;
  if (tokenizer->prompt("").empty() && tokenizer->eos_id() >= 0) ids.push_back(tokenizer->eos_id());
  for (auto id : tokenizer->prompt(prompt)) ids.push_back(id);
  torch::manual_seed(seed);
  loaded.model->eval();
  torch::NoGradGuard no_grad;
  std::cout << prompt << std::flush;
  std::vector<std::int32_t> generated;
  std::string printed;
  for (int i = 0; i < max_new_tokens; ++i) {
    const auto start = std::max<std::int64_t>(0, static_cast<std::int64_t>(ids.size()) - context);
    auto input = torch::tensor(std::vector<std::int64_t>(ids.begin() + start, ids.end()), torch::kInt64).unsqueeze(0);
    auto logits = loaded.model->forward({input, {}, {}, {}})[0][-1].to(torch::kFloat32);
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
    if (next == tokenizer->eos_id()) break;
    ids.push_back(next);
    generated.push_back(static_cast<std::int32_t>(next));
    // Decoded whole each time: a character may take several byte-level tokens.
    const auto text = tokenizer->decode(generated);
    if (text.compare(0, printed.size(), printed) == 0) std::cout << text.substr(printed.size()) << std::flush;
    printed = text;
  }
  std::cout << "\n";
  return 0;
}

}  // namespace mpitrain::launcher
