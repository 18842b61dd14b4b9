// `mpitrain init CONFIG.json OUT_DIR [--tokenizer DIR]`: a randomly initialised model saved as an HF directory (like from_config), with a tokenizer's files beside it.
#include <iostream>

#include "launcher/options.h"
#include "runtime/checkpoint/hf_index.h"
#include "runtime/checkpoint/json_file.h"
#include "src/models/pretrained.h"
#include "src/models/registry.h"
#include "src/tokenizers/tokenizer.h"
#include "src/train/model_files.h"

namespace mpitrain::launcher {

int run_init(const Args& args) {
  po::options_description options("init options");
  std::string config_path, out_dir, dtype_name, max_shard_size, tokenizer_dir;
  std::uint64_t seed = 42;
  options.add_options()("config", po::value(&config_path)->required(), "an HF config.json (model_type and sizes)")(
      "out_dir", po::value(&out_dir)->required(), "directory to write")(
      "seed", po::value(&seed)->default_value(seed), "initialisation seed")(
      "dtype", po::value(&dtype_name)->default_value("float32"), "save dtype")(
      "max_shard_size", po::value(&max_shard_size)->default_value("5GB"), "shard above this size")(
      "tokenizer", po::value(&tokenizer_dir)->default_value(""), "a directory with tokenizer.json: its files go beside the model");
  po::positional_options_description positional;
  positional.add("config", 1).add("out_dir", 1);
  po::variables_map values;
  if (!parse_options("init", "CONFIG.json OUT_DIR", args, options, positional, values)) return 0;

  models::SaveOptions save;
  save.dtype = models::parse_torch_dtype(dtype_name);
  save.max_shard_size = checkpoint::parse_shard_size(max_shard_size);
  torch::manual_seed(seed);
  const auto config = checkpoint::read_json_file(config_path);
  auto model = models::create_model(config, config_path);
  if (!tokenizer_dir.empty()) {
    // Read whole first: a tokenizer mpitrain cannot encode with, or with more ids than the
    // model has embeddings, is refused before anything is written.
    const auto tokenizer = tokenizers::Tokenizer::from_path(tokenizer_dir);
    const auto vocab = config.value("vocab_size", std::int64_t{0});
    if (tokenizer.vocab_size() > vocab)
      throw std::runtime_error(tokenizer_dir + ": the tokenizer has " + std::to_string(tokenizer.vocab_size()) +
                               " ids but " + config_path + " gives vocab_size " + std::to_string(vocab));
  }
  models::save_pretrained(*model, out_dir, save);
  if (!tokenizer_dir.empty()) train::copy_tokenizer_files(tokenizer_dir, out_dir);
  std::int64_t count = 0;
  for (const auto& p : model->parameters()) count += p.numel();
  std::cout << "initialised " << model->architecture() << " with " << count << " parameters in " << out_dir << "\n";
  return 0;
}

}  // namespace mpitrain::launcher
