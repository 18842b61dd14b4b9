// Small JSON files of HF and checkpoint directories: read with the file named in every error, written atomically as transformers formats them.
#include "runtime/checkpoint/json_file.h"

#include <filesystem>

#include "runtime/checkpoint/atomic_file.h"
#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/hf_weights.h"
#include "runtime/checkpoint/input_file.h"

namespace mpitrain::checkpoint {

nlohmann::json read_json_file(const std::string& path) {
  if (!std::filesystem::exists(path)) throw CheckpointError(path, "does not exist");
  return parse_json(read_regular_file(path), path);
}

void write_json_file(const std::string& path, const nlohmann::json& value) {
  write_file_atomically(path, value.dump(2) + "\n");
}

}  // namespace mpitrain::checkpoint
