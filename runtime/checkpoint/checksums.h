// Checksums of a checkpoint's files (size and XXH64), recorded in its completion marker and verified before a resume reads it.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/checkpoint/checkpoint_schema.h"

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

// The files of `marker.files` that this verifier checks: those with index % count == which
// (ranks share the reading). Throws CheckpointError
// naming the first missing, resized or corrupted file, or the marker where it lists no files:
// every checkpoint has files, so an empty or absent list means an edited or foreign marker,
// and verifying nothing would pass a corrupted checkpoint as sound.
// Before that, the marker's list is checked against the directory: a weight, index or state
// file (.safetensors, .json) the directory holds but the marker does not list would be read
// unverified (an edited marker hid a corrupted file), so it is an error naming it. Checked by
// every verifier alike (a listing, no reads).
void verify_checksums(const std::string& dir, const CompletionMarker& marker, int which = 0, int count = 1);

// Where `dir` is a complete training checkpoint (it has a completion marker), verifies its
// share of the files a model reader reads (config.json, weight files, indexes) as
// verify_checksums does and returns true; false for any other directory (an HF model
// directory has no checksums to hold it to).
bool verify_if_checkpoint(const std::string& dir, int which = 0, int count = 1);

}  // namespace mpitrain::checkpoint
