// The one place a training checkpoint's names are spelled: its directory and file names, and the completion marker with its reader and writer.
#include "runtime/checkpoint/checkpoint_schema.h"

#include <filesystem>

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/hf_weights.h"
#include "runtime/checkpoint/input_file.h"

namespace mpitrain::checkpoint {

namespace {
constexpr const char* kRngStatePrefix = "rng_state_";
constexpr const char* kRngStateSuffix = ".safetensors";
}  // namespace

std::string rng_state_file(int rank) { return kRngStatePrefix + std::to_string(rank) + kRngStateSuffix; }

bool is_rng_state_file(const std::string& name) { return name.rfind(kRngStatePrefix, 0) == 0; }

std::string CompletionMarker::to_json_text() const {
  const nlohmann::json marker = {{"step", step}, {"world_size", world_size}, {"dp", dp}, {"tp", tp}, {"files", files}};
  return marker.dump(2) + "\n";
}

CompletionMarker CompletionMarker::parse(const std::string& text, const std::string& path) {
  check_json_depth(text, path);
  nlohmann::json marker;
  try {
    marker = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError(path, std::string("is not valid JSON (") + e.what() + ")");
  }
  if (!marker.is_object()) throw CheckpointError(path, "must be a JSON object, got " + std::string(marker.type_name()));
  for (const char* key : {"step", "world_size", "dp", "tp"}) {
    if (!marker.contains(key)) continue;
    const auto& v = marker[key];
    const bool positive = std::string(key) != "step";
    if (!v.is_number_integer() || v.get<std::int64_t>() < (positive ? 1 : 0))
      throw CheckpointError(path, std::string("\"") + key + "\" must be a " + (positive ? "positive" : "non-negative") +
                                      " integer, got " + v.dump());
  }
  CompletionMarker out;
  out.step = marker.value("step", std::int64_t{0});
  out.world_size = marker.value("world_size", 1);
  out.dp = marker.value("dp", out.world_size);
  out.tp = marker.value("tp", 1);
  if (marker.contains("files")) {
    if (!marker["files"].is_object()) throw CheckpointError(path, "\"files\" must be an object, got " + marker["files"].dump());
    for (auto it = marker["files"].begin(); it != marker["files"].end(); ++it) {
      const auto& entry = it.value();
      if (!entry.is_object() || !entry.contains("size") || !entry["size"].is_number_unsigned() ||
          !entry.contains("xxh64") || !entry["xxh64"].is_string())
        throw CheckpointError(path, "file '" + it.key() + "' must have an integer \"size\" and a string \"xxh64\", got " +
                                        entry.dump());
    }
    out.files = marker["files"];
  }
  return out;
}

CompletionMarker read_completion_marker(const std::string& dir) {
  const auto path = (std::filesystem::path(dir) / kCompleteMarker).string();
  return CompletionMarker::parse(read_regular_file(path), path);
}

}  // namespace mpitrain::checkpoint
