// Hugging Face sharding: max_shard_size parsing, the greedy shard plan, file names and the index JSON.
#include "runtime/checkpoint/hf_index.h"

#include <cctype>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/input_file.h"

namespace mpitrain::checkpoint {

using nlohmann::json;

std::vector<std::string> ShardIndex::shard_files() const {
  std::set<std::string> files;
  for (const auto& [name, file] : weight_map) files.insert(file);
  return {files.begin(), files.end()};
}

bool is_safe_relative_name(const std::string& name) {
  if (name.empty() || name.front() == '/' || name.find('\\') != std::string::npos) return false;
  std::size_t start = 0;
  while (start <= name.size()) {
    std::size_t slash = name.find('/', start);
    if (slash == std::string::npos) slash = name.size();
    const std::string part = name.substr(start, slash - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = slash + 1;
  }
  return true;
}

ShardIndex parse_shard_index(std::string_view text, const std::string& source) {
  check_json_depth(std::string(text), source);
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::exception& e) {
    throw CheckpointError(source, std::string("invalid JSON (") + e.what() + ")");
  }
  if (!doc.is_object()) throw CheckpointError(source, "index is not a JSON object");
  auto map_it = doc.find("weight_map");
  if (map_it == doc.end() || !map_it->is_object()) throw CheckpointError(source, "missing 'weight_map' object");
  ShardIndex index;
  for (auto it = map_it->begin(); it != map_it->end(); ++it) {
    if (!it->is_string()) throw CheckpointError(source, "weight_map entry '" + it.key() + "' is not a string");
    const auto file = it->get<std::string>();
    if (!is_safe_relative_name(file))
      throw CheckpointError(source, "weight_map entry '" + it.key() + "' points outside the directory: '" + file + "'");
    index.weight_map[it.key()] = file;
  }
  auto meta_it = doc.find("metadata");
  if (meta_it != doc.end() && meta_it->is_object()) {
    auto total = meta_it->find("total_size");
    if (total != meta_it->end()) {
      if (!total->is_number_unsigned()) throw CheckpointError(source, "metadata.total_size is not a non-negative integer");
      index.total_size = total->get<std::uint64_t>();
      index.has_total_size = true;
    }
  }
  return index;
}

std::string shard_index_to_json(const ShardIndex& index) {
  json doc;
  doc["metadata"]["total_size"] = index.total_size;
  doc["weight_map"] = index.weight_map;
  return doc.dump(2) + "\n";
}

std::uint64_t parse_shard_size(const std::string& text) {
  auto fail = [&]() -> std::uint64_t {
    throw std::invalid_argument("max_shard_size '" + text + "' is not a size like 5GB, 500MB, 2GiB or 1000000");
  };
  std::size_t digits = 0;
  while (digits < text.size() && (std::isdigit(static_cast<unsigned char>(text[digits])) || text[digits] == '.'))
    ++digits;
  if (digits == 0) return fail();
  double value = 0;
  try {
    value = std::stod(text.substr(0, digits));
  } catch (...) {
    return fail();
  }
  const std::string unit = text.substr(digits);
  static const std::map<std::string, double> kUnits = {
      {"", 1},        {"B", 1},           {"KB", 1e3},          {"MB", 1e6},          {"GB", 1e9},
      {"TB", 1e12},   {"KiB", 1024.0},    {"MiB", 1048576.0},   {"GiB", 1073741824.0},
      {"Kb", 1e3 / 8}, {"Mb", 1e6 / 8},   {"Gb", 1e9 / 8}};
  auto it = kUnits.find(unit);
  if (it == kUnits.end()) return fail();
  const double bytes = value * it->second;
  if (bytes < 1) return fail();
  return static_cast<std::uint64_t>(bytes);
}

std::vector<std::vector<std::size_t>> plan_shards(const std::vector<std::uint64_t>& tensor_bytes,
                                                  std::uint64_t max_shard_size) {
  std::vector<std::vector<std::size_t>> shards;
  std::vector<std::size_t> current;
  std::uint64_t current_size = 0;
  for (std::size_t i = 0; i < tensor_bytes.size(); ++i) {
    const auto size = tensor_bytes[i];
    if (size > max_shard_size) {
      shards.push_back({i});
      continue;
    }
    if (current_size + size > max_shard_size) {
      shards.push_back(std::move(current));
      current.clear();
      current_size = 0;
    }
    current.push_back(i);
    current_size += size;
  }
  if (!current.empty()) shards.push_back(std::move(current));
  return shards;
}

std::string shard_file_name(std::size_t index_from_zero, std::size_t count) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", index_from_zero + 1, count);
  return buf;
}

}  // namespace mpitrain::checkpoint
