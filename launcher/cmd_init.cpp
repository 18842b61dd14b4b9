// `mpitrain init CONFIG.json OUT_DIR`: a randomly initialised model saved as an HF directory (like from_config).
#include <iostream>

#include "launcher/options.h"
#include "runtime/checkpoint/json_file.h"
#include "runtime/checkpoint/hf_index.h"
#include "src/models/pretrained.h"
#include "src/models/registry.h"

namespace mpitrain::launcher {

int run_init(const Args& args) {
  po::options_description options("init options");
  std::string config_path, out_dir, dtype_name, max_shard_size;
  std::uint64_t seed = 42;
  options.add_options()("config", po::value(&config_path)->required(), "an HF config.json (model_type and sizes)")(
      "out_dir", po::value(&out_dir)->required(), "directory to write")(
      "seed", po::value(&seed)->default_value(seed), "initialisation seed")(
      "dtype", po::value(&dtype_name)->default_value("float32"), "save dtype")(
      "max_shard_size", po::value(&max_shard_size)->default_value("5GB"), "shard above this size");
  po::positional_options_description positional;
  positional.add("config", 1).add("out_dir", 1);
  po::variables_map values;
  if (!parse_options("init", "CONFIG.json OUT_DIR", args, options, positional, values)) return 0;

  models::SaveOptions save;
  save.dtype = models::parse_torch_dtype(dtype_name);
  save.max_shard_size = checkpoint::parse_shard_size(max_shard_size);
  torch::manual_seed(seed);
  auto model = models::create_model(checkpoint::read_json_file(config_path), config_path);
  models::save_pretrained(*model, out_dir, save);
  std::int64_t count = 0;
  for (const auto& p : model->parameters()) count += p.numel();
  std::cout << "initialised " << model->architecture() << " with " << count << " parameters in " << out_dir << "\n";
  return 0;
}

}  // namespace mpitrain::launcher
