// What a prepared data file was made from (see preparation_record.h).
#include "src/data/preparation_record.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <vector>

#include "runtime/checkpoint/atomic_file.h"
#include "runtime/checkpoint/input_file.h"

namespace mpitrain::data {

namespace fs = std::filesystem;

namespace {

nlohmann::json file_entry(const fs::path& path, const fs::path& root) {
  const auto modified = fs::last_write_time(path).time_since_epoch();
  return {{"path", path == root ? path.filename().string() : fs::relative(path, root).string()},
          {"bytes", fs::file_size(path)},
          {"modified_ns", std::chrono::duration_cast<std::chrono::nanoseconds>(modified).count()}};
}

}  // namespace

nlohmann::json preparation_record(const std::string& source, const nlohmann::json& settings) {
  const fs::path root = fs::absolute(source).lexically_normal();
  std::vector<fs::path> files;
  if (fs::is_directory(root)) {
    for (const auto& item : fs::recursive_directory_iterator(root))
      if (item.is_regular_file()) files.push_back(item.path());
    std::sort(files.begin(), files.end());
  } else if (fs::exists(root)) {
    files.push_back(root);
  }
  auto listed = nlohmann::json::array();
  for (const auto& path : files) listed.push_back(file_entry(path, root));
  return {{"source", root.string()}, {"settings", settings}, {"files", listed}};
}

std::string preparation_record_path(const std::string& prepared_file) { return prepared_file + ".json"; }

bool prepared_from(const std::string& prepared_file, const nlohmann::json& record) {
  const auto path = preparation_record_path(prepared_file);
  if (!fs::exists(prepared_file) || !fs::is_regular_file(path)) return false;
  try {
    return checkpoint::parse_json(checkpoint::read_regular_file(path), path) == record;
  } catch (const std::exception&) {
    return false;  // unreadable or malformed: prepared again
  }
}

void write_preparation_record(const std::string& prepared_file, const nlohmann::json& record) {
  checkpoint::write_file_atomically(preparation_record_path(prepared_file), record.dump(2) + "\n");
}

}  // namespace mpitrain::data
