// Checksums of a checkpoint's files (size and XXH64), recorded in its completion marker and verified before a resume reads it.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace mpitrain::checkpoint {

struct FileChecksum {
  std::string path;  // relative to the checkpoint directory
  std::uint64_t size = 0;
  std::string xxh64;
};

// Every regular file under `dir` (relative paths, sorted) except the completion marker.
std::vector<std::string> checkpoint_files(const std::string& dir);
FileChecksum checksum_file(const std::string& dir, const std::string& relative);

nlohmann::json checksums_to_json(const std::vector<FileChecksum>& sums);  // {path: {"size", "xxh64"}}

// The completion marker of checkpoint `dir`, with the fields a resume reads checked: an
// object; "step", "world_size", "dp" and "tp", where present, non-negative integers (dp, tp
// and world_size positive); "files", where present, {path: {"size": integer, "xxh64":
// string}}. Throws CheckpointError naming the marker and the field (not a JSON library's text).
nlohmann::json read_complete_marker(const std::string& dir);

// The files of `marker["files"]` (as read_complete_marker returns it) that this verifier
// checks: those with index % count == which (ranks share the reading). Throws CheckpointError
// naming the first missing, resized or corrupted file, or the marker where it lists no files:
// every checkpoint has files, so an empty or absent list means an edited or foreign marker,
// and verifying nothing would pass a corrupted checkpoint as sound.
void verify_checksums(const std::string& dir, const nlohmann::json& marker, int which = 0, int count = 1);

// Where `dir` is a complete training checkpoint (it has a completion marker), verifies its
// share of the files a model reader reads (config.json, weight files, indexes) as
// verify_checksums does and returns true; false for any other directory (an HF model
// directory has no checksums to hold it to).
bool verify_if_checkpoint(const std::string& dir, int which = 0, int count = 1);

}  // namespace mpitrain::checkpoint
