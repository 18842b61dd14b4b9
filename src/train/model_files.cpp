// The small files a saved model carries beside its weights: config and generation config, tokenizer files, training_args.json.
#include "src/train/model_files.h"

#include <filesystem>

#include "runtime/checkpoint/atomic_file.h"
#include "runtime/checkpoint/json_file.h"
#include "src/data/byte_tokenizer.h"
#include "src/models/lora_settings.h"
#include "src/models/pretrained.h"

namespace mpitrain::train {

namespace fs = std::filesystem;

namespace {
const char* const kTokenizerFiles[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                       "tokenizer.model", "vocab.json", "merges.txt", "vocab.txt"};
}  // namespace

bool holds_tokenizer_files(const std::string& dir) {
  for (const char* file : kTokenizerFiles)
    if (fs::exists(fs::path(dir) / file)) return true;
  return false;
}

void copy_tokenizer_files(const std::string& from_dir, const std::string& to_dir) {
  for (const char* file : kTokenizerFiles) {
    const auto from = fs::path(from_dir) / file, to = fs::path(to_dir) / file;
    // Saving into the directory the tokenizer came from leaves its files as they are.
    if (fs::exists(from) && !(fs::exists(to) && fs::equivalent(from, to)))
      fs::copy_file(from, to, fs::copy_options::overwrite_existing);
  }
}

void ModelFiles::write(const models::HfModel& model, const std::string& dir) const {
  if (adapter_config.is_null())
    models::save_pretrained_metadata(model, dir, saved_dtype, generation_config);
  else
    checkpoint::write_file_atomically((fs::path(dir) / models::kAdapterConfigFile).string(), adapter_config.dump(2) + "\n");
  if (!tokenizer_dir.empty()) {
    copy_tokenizer_files(tokenizer_dir, dir);
  } else {
    data::ByteTokenizer::save(dir, model.config().value("max_position_embeddings",
                                                        model.config().value("n_positions", std::int64_t{1024})));
  }
  nlohmann::json args = run_config["training"];
  args["mpitrain"] = {{"model", run_config["model"]}, {"data", run_config["data"]}, {"parallel", run_config["parallel"]}};
  checkpoint::write_json_file((fs::path(dir) / "training_args.json").string(), args);
}

}  // namespace mpitrain::train
