// Collective error agreement: a step that may fail on some ranks fails on all of them, with the first failure's message.
#include "runtime/comm/agreement.h"

#include <cstring>

namespace mpitrain::comm {

void run_agreed(Communicator& comm, const std::function<void()>& step) {
  std::string error;
  try {
    step();
  } catch (const AgreedError& e) {
    error = e.what();
  } catch (const std::exception& e) {
    error = e.what();
    error = error.substr(0, error.find('\n'));  // LibTorch appends backtraces
    if (error.empty()) error = "unknown error";
  }
  // The lowest failing rank speaks for all.
  auto speaker = torch::tensor({static_cast<std::int64_t>(error.empty() ? comm.size() : comm.rank())}, torch::kInt64);
  comm.allreduce(speaker, ReduceOp::kMin);
  const auto root = speaker.item<std::int64_t>();
  if (root == comm.size()) return;
  auto length = torch::tensor({static_cast<std::int64_t>(error.size())}, torch::kInt64);
  comm.broadcast(length, static_cast<int>(root));
  auto bytes = torch::zeros({length.item<std::int64_t>()}, torch::kUInt8);
  if (comm.rank() == root) std::memcpy(bytes.data_ptr(), error.data(), error.size());
  if (bytes.numel() > 0) comm.broadcast(bytes, static_cast<int>(root));
  throw AgreedError(std::string(reinterpret_cast<const char*>(bytes.data_ptr()), static_cast<std::size_t>(bytes.numel())));
}

}  // namespace mpitrain::comm
