// Hugging Face sharding: max_shard_size parsing, the greedy shard plan, file names and the index JSON.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace mpitrain::checkpoint {

inline constexpr const char* kSingleWeightsFile = "model.safetensors";
inline constexpr const char* kWeightsIndexFile = "model.safetensors.index.json";

struct ShardIndex {
  std::uint64_t total_size = 0;
  bool has_total_size = false;
  std::map<std::string, std::string> weight_map;  // tensor name -> shard file name

  std::vector<std::string> shard_files() const;  // sorted, unique
};

// Parses and validates an index: a weight_map of strings, each a plain file name inside
// the directory (no absolute path, no "..", no sub-directory escape).
ShardIndex parse_shard_index(std::string_view text, const std::string& source);
// Serialised as transformers does: sorted keys, indent 2, trailing newline.
std::string shard_index_to_json(const ShardIndex& index);

// "5GB" = 5e9 bytes, "5GiB" = 5*2^30, "100KB", "10MiB", a plain integer = bytes; a lowercase
// trailing "b" means bits as in transformers. Throws std::invalid_argument naming the text.
std::uint64_t parse_shard_size(const std::string& text);

// The greedy split transformers uses (huggingface_hub's split_state_dict_into_shards):
// tensors in state-dict order; a tensor larger than the limit gets a shard of its own at
// the point it is met; otherwise a new shard starts when the next tensor would overflow.
// Returns, per shard, the indices of its tensors.
std::vector<std::vector<std::size_t>> plan_shards(const std::vector<std::uint64_t>& tensor_bytes,
                                                  std::uint64_t max_shard_size);

std::string shard_file_name(std::size_t index_from_zero, std::size_t count);

// True for names a weight_map may point at: relative, no "..", no empty components.
bool is_safe_relative_name(const std::string& name);

}  // namespace mpitrain::checkpoint
