// Text over a Communicator: one rank's string to all, every rank's string to all (CPU tensors underneath).
#include "runtime/comm/string_collectives.h"

#include <cstring>

namespace mpitrain::comm {

std::string broadcast_string(Communicator& comm, const std::string& mine, int root) {
  auto length = torch::tensor({static_cast<std::int64_t>(comm.rank() == root ? mine.size() : 0)}, torch::kInt64);
  comm.broadcast(length, root);
  auto bytes = torch::zeros({length.item<std::int64_t>()}, torch::kUInt8);
  if (comm.rank() == root && !mine.empty()) std::memcpy(bytes.data_ptr(), mine.data(), mine.size());
  if (bytes.numel() == 0) return {};
  comm.broadcast(bytes, root);
  return std::string(static_cast<const char*>(bytes.data_ptr()), static_cast<std::size_t>(bytes.numel()));
}

std::vector<std::string> allgather_strings(Communicator& comm, const std::string& mine) {
  auto lengths = comm.allgather(torch::tensor({static_cast<std::int64_t>(mine.size())}, torch::kInt64));
  auto bytes = torch::zeros({static_cast<std::int64_t>(mine.size())}, torch::kUInt8);
  if (!mine.empty()) std::memcpy(bytes.data_ptr(), mine.data(), mine.size());
  const auto all = comm.allgatherv(bytes);
  const auto* joined = all.numel() > 0 ? static_cast<const char*>(all.data_ptr()) : "";
  std::vector<std::string> out;
  std::int64_t at = 0;
  for (std::int64_t r = 0; r < lengths.numel(); ++r) {
    const auto length = lengths[r].item<std::int64_t>();
    out.emplace_back(joined + at, static_cast<std::size_t>(length));
    at += length;
  }
  return out;
}

}  // namespace mpitrain::comm
