// NumPy .npy files (version 1.0, little-endian float32, C order): the logits exchange format.
#include "runtime/checkpoint/npy.h"

#include <cstring>
#include <regex>

#include "runtime/checkpoint/atomic_file.h"
#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/input_file.h"
#include "runtime/checkpoint/hf_weights.h"

namespace mpitrain::checkpoint {

void write_npy_float32(const std::string& path, const std::vector<std::int64_t>& shape, const float* data) {
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (";
  std::int64_t count = 1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    dict += std::to_string(shape[i]) + (shape.size() == 1 ? "," : (i + 1 < shape.size() ? ", " : ""));
    count *= shape[i];
  }
  dict += "), }";
  // magic(6) + version(2) + length(2) + dict, padded with spaces and a newline to 64 bytes.
  const std::size_t unpadded = 10 + dict.size() + 1;
  dict.append((64 - unpadded % 64) % 64, ' ');
  dict += '\n';
  std::string header = "\x93NUMPY";
  header += '\x01';
  header += '\x00';
  header += static_cast<char>(dict.size() & 0xff);
  header += static_cast<char>((dict.size() >> 8) & 0xff);
  header += dict;
  AtomicFile file(path);
  file.write(header);
  file.write(data, static_cast<std::size_t>(count) * sizeof(float));
  file.commit();
}

NpyArray read_npy_float32(const std::string& path) {
  const std::string bytes = read_regular_file(path);
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) throw CheckpointError(path, "not a .npy file");
  const int major = static_cast<unsigned char>(bytes[6]);
  std::size_t header_len = 0, header_start = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<std::size_t>(static_cast<unsigned char>(bytes[9])) << 8);
    header_start = 10;
  } else {
    if (bytes.size() < 12) throw CheckpointError(path, "truncated .npy header");
    for (int i = 3; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(bytes[8 + i]);
    header_start = 12;
  }
  if (header_start + header_len > bytes.size()) throw CheckpointError(path, "truncated .npy header");
  const std::string dict = bytes.substr(header_start, header_len);
  if (dict.find("'descr': '<f4'") == std::string::npos || dict.find("'fortran_order': False") == std::string::npos)
    throw CheckpointError(path, "only little-endian float32 C-order arrays are supported");
  std::smatch match;
  if (!std::regex_search(dict, match, std::regex(R"('shape': \(([0-9, ]*)\))")))
    throw CheckpointError(path, "no shape in .npy header");
  NpyArray array;
  std::int64_t count = 1;
  const std::string dims = match[1];
  static const std::regex kNumber("[0-9]+");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), kNumber); it != std::sregex_iterator(); ++it) {
    array.shape.push_back(std::stoll(it->str()));
    count *= array.shape.back();
  }
  const std::size_t data_start = header_start + header_len;
  if (bytes.size() - data_start != static_cast<std::size_t>(count) * sizeof(float))
    throw CheckpointError(path, "data size does not match the shape");
  array.data.resize(static_cast<std::size_t>(count));
  std::memcpy(array.data.data(), bytes.data() + data_start, array.data.size() * sizeof(float));
  return array;
}

}  // namespace mpitrain::checkpoint
