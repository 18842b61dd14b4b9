// Collective error agreement: a step that may fail on some ranks fails on all of them, with the first failure's message.
#include "runtime/comm/agreement.h"

#include "runtime/comm/string_collectives.h"

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
  throw AgreedError(broadcast_string(comm, error, static_cast<int>(root)));
}

}  // namespace mpitrain::comm
