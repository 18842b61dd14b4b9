// Small JSON files of HF and checkpoint directories: read with the file named in every error, written atomically as transformers formats them.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace mpitrain::checkpoint {

nlohmann::json read_json_file(const std::string& path);  // throws CheckpointError naming the file
// Atomic (temp name, fsync, rename); json.dumps(indent=2, sort_keys=True) + "\n" as transformers
// writes it (nlohmann objects are sorted).
void write_json_file(const std::string& path, const nlohmann::json& value);

}  // namespace mpitrain::checkpoint
