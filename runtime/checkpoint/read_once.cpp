// Reading replicated blocks once: of the ranks that need the same block (a dp group's replicas), one reads it from the files, the reads balanced by bytes, and broadcasts it to the others.
#include "runtime/checkpoint/read_once.h"

#include <chrono>
#include <cstdio>

#include "runtime/checkpoint/layout.h"
#include "runtime/comm/agreement.h"

namespace mpitrain::checkpoint {

std::string read_figures(const ReadOnceStats& stats) {
  char text[160];
  std::snprintf(text, sizeof text, "read %.3f of the %.3f MB this rank needs in %.3f s", stats.bytes_read / 1e6,
                stats.bytes_needed / 1e6, stats.seconds);
  return text;
}

ReadOnceStats operator+(const ReadOnceStats& a, const ReadOnceStats& b) {
  return {a.bytes_read + b.bytes_read, a.bytes_needed + b.bytes_needed, a.seconds + b.seconds};
}

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
