// Test helpers: scratch directories, fixture paths, and raw file bytes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mpitrain::testing {

// A fresh directory under the system temp dir, removed when the object goes away.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string fixture(const std::string& relative);  // path inside ../shared/fixtures/hf-tiny
std::string read_bytes(const std::string& path);
void write_bytes(const std::string& path, const std::string& bytes);
// An 8-byte little-endian length followed by `header` and `data`: a hand-made safetensors file.
std::string safetensors_bytes(const std::string& header, const std::string& data, std::uint64_t declared_length = UINT64_MAX);

}  // namespace mpitrain::testing
