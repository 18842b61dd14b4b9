// The local tier's names on disk: the job's directory and its owner, node, rank and step directories, and the committed copies a rank can see.
#include "runtime/checkpoint/local_tier_paths.h"

#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/xxhash64.h"

namespace mpitrain::checkpoint {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::int64_t parse_numbered(const std::string& name, const std::string& prefix) {
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return -1;
  const auto digits = name.substr(prefix.size());
  if (digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 18) return -1;
  return std::stoll(digits);
}

std::string five_digits(int rank) {
  char text[16];
  std::snprintf(text, sizeof text, "%05d", rank);
  return text;
}

}  // namespace

std::string local_job_dir(const std::string& root, const std::string& owner) {
  return (fs::path(root) / ("mpitrain-" + xxh64_hex(xxh64(owner.data(), owner.size())))).string();
}

void claim_job_dir(const std::string& job_dir, const std::string& owner) {
  fs::create_directories(job_dir);
  const auto path = fs::path(job_dir) / kLocalOwnerFile;
  if (fs::exists(path)) {
    std::string recorded;
    try {
      recorded = json::parse(std::ifstream(path)).at("output_dir").get<std::string>();
    } catch (const std::exception& e) {
      throw CheckpointError(path.string(), std::string("unreadable (") + e.what() + "): not this run's local states, left alone");
    }
    if (recorded != owner)
      throw CheckpointError(job_dir, "holds the local states of the run writing to " + recorded + ", not of " + owner +
                                         ": they are never read nor removed; choose another training.local_save_dir");
    return;
  }
  const auto temporary = path.string() + ".tmp-" + std::to_string(::getpid());
  std::ofstream(temporary) << json{{"output_dir", owner}}.dump() << "\n";
  fs::rename(temporary, path);
}

std::string node_dir_name(const std::string& node) {
  std::string name = node.empty() ? "node" : node;
  for (auto& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') c = '_';
  if (name == "." || name == "..") name = "node";
  return name;
}

std::string rank_dir_name(int rank) { return "rank-" + five_digits(rank); }
std::string step_dir_name(std::int64_t step) { return "step-" + std::to_string(step); }
std::string staging_dir_name(std::int64_t step) { return ".tmp-step-" + std::to_string(step); }
std::string state_file_name(int rank) { return "state-" + five_digits(rank) + ".safetensors"; }
std::int64_t parse_step_dir_name(const std::string& name) { return parse_numbered(name, "step-"); }
std::int64_t parse_staging_dir_name(const std::string& name) { return parse_numbered(name, ".tmp-step-"); }

std::vector<LocalCopy> committed_copies(const std::string& node_dir) {
  std::vector<LocalCopy> copies;
  std::error_code ignored;
  for (const auto& rank : fs::directory_iterator(node_dir, ignored))
    for (const auto& step : fs::directory_iterator(rank.path(), ignored)) {
      const auto number = parse_step_dir_name(step.path().filename().string());
      if (number < 0) continue;
      try {
        const auto marker = json::parse(std::ifstream(step.path() / kLocalMarkerFile));
        if (marker.at("step").get<std::int64_t>() != number) continue;
        for (const auto& [name, file] : marker.at("files").items()) {
          const auto path = step.path() / name;
          const auto bytes = file.at("bytes").get<std::uint64_t>();
          const auto state = parse_numbered(name.substr(0, name.find('.')), "state-");
          if (state < 0 || fs::file_size(path, ignored) != bytes) continue;  // gone or cut short
          copies.push_back({number, static_cast<int>(state), marker.at("layout").get<std::string>(), path.string(),
                            file.at("xxh64").get<std::string>(), bytes});
        }
      } catch (const std::exception&) {
        continue;  // no marker, or not one this project wrote: not a committed step
      }
    }
  return copies;
}

}  // namespace mpitrain::checkpoint
