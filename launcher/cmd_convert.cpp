// `mpitrain convert SRC DST`: load an HF model directory and save it again (dtype, sharding), a LoRA adapter merged in.
#include <iostream>

#include "launcher/options.h"
#include "runtime/checkpoint/checksums.h"
#include "runtime/checkpoint/hf_index.h"
#include "src/models/lora.h"
#include "src/models/pretrained.h"

namespace mpitrain::launcher {

int run_convert(const Args& args) {
  po::options_description options("convert options");
  std::string src, dst, dtype_name, max_shard_size, adapter_dir;
  bool verify = true;
  options.add_options()("src", po::value(&src)->required(), "HF model directory to read")(
      "dst", po::value(&dst)->required(), "directory to write (stale weight files in it are removed)")(
      "dtype", po::value(&dtype_name), "save dtype: float32 | bfloat16 | float16 (default: as stored)")(
      "max_shard_size", po::value(&max_shard_size)->default_value("5GB"), "shard above this size (5GB = 5e9 bytes)")(
      "adapter", po::value(&adapter_dir), "a PEFT LoRA adapter directory merged into the weights (W + scale B A)")(
      "verify_checksums", po::value<bool>(&verify)->default_value(true),
      "a training checkpoint's files against its recorded checksums first");
  po::positional_options_description positional;
  positional.add("src", 1).add("dst", 1);
  po::variables_map values;
  if (!parse_options("convert", "SRC_DIR DST_DIR", args, options, positional, values)) return 0;

  require_output_outside_source("convert", src, dst);
  models::SaveOptions save;
  try {
    save.max_shard_size = checkpoint::parse_shard_size(max_shard_size);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("convert: ") + e.what());
  }
  // Loading in float32 is exact for F32/BF16/F16 sources; without --dtype the source dtype is kept.
  if (verify) checkpoint::verify_if_checkpoint(src);  // a training checkpoint's files as they were saved
  auto loaded = models::from_pretrained(src, torch::kFloat32);
  const auto stored = loaded.model->config().value("torch_dtype", std::string("float32"));
  save.dtype = models::parse_torch_dtype(values.count("dtype") ? dtype_name : stored);
  if (!adapter_dir.empty()) {
    if (verify) checkpoint::verify_if_checkpoint(adapter_dir);
    // Merged in float32, saved in the base's dtype, as PEFT's merge_and_unload().save_pretrained().
    models::load_adapter(*loaded.model, adapter_dir)->merge_into_base();
  }
  models::save_pretrained(*loaded.model, dst, save, loaded.generation_config);
  std::cout << "saved " << dst << "\n";
  return 0;
}

}  // namespace mpitrain::launcher
