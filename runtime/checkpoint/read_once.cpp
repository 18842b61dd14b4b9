// Reading replicated blocks once: of the ranks that need the same block (a dp group's replicas), one reads it from the files, the reads balanced by bytes, and broadcasts it to the others.
#include "runtime/checkpoint/read_once.h"

#include <chrono>

#include "runtime/checkpoint/layout.h"
#include "runtime/comm/agreement.h"

namespace mpitrain::checkpoint {

ReadOnceStats read_once(comm::Communicator& world, comm::Communicator* replicas, const std::vector<BlockToRead>& blocks) {
  const auto start = std::chrono::steady_clock::now();
  ReadOnceStats stats;
  std::vector<std::uint64_t> bytes;
  for (const auto& b : blocks) {
    bytes.push_back(static_cast<std::uint64_t>(b.target.numel()) * b.target.element_size());
    stats.bytes_needed += bytes.back();
  }
  const bool shared = replicas && replicas->size() > 1;
  // The same inputs on every replica: the same readers.
  const auto reader = shared ? balance_writers(bytes, replicas->size()) : std::vector<int>(blocks.size(), 0);
  const int me = shared ? replicas->rank() : 0;
  comm::run_agreed(world, [&] {
    torch::NoGradGuard no_grad;
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      if (reader[i] != me || blocks[i].target.numel() == 0) continue;
      const auto block = blocks[i].read();
      if (!block.defined()) continue;  // nothing to read: the target stays as it is on every rank
      blocks[i].target.detach().copy_(block.view(blocks[i].target.sizes()));  // copy_ converts the dtype
      stats.bytes_read += bytes[i];
    }
  });
  if (shared) {
    torch::NoGradGuard no_grad;
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      auto data = blocks[i].target.detach();
      if (data.numel() == 0) continue;
      if (data.is_contiguous()) {
        replicas->broadcast(data, reader[i]);
      } else {
        auto copy = data.contiguous();
        replicas->broadcast(copy, reader[i]);
        data.copy_(copy);
      }
    }
  }
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return stats;
}

}  // namespace mpitrain::checkpoint
