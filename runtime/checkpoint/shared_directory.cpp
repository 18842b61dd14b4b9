// Whether every rank sees the same directory: a multi-node job saving to node-local storage fails up front, with a line that says so.
#include "runtime/checkpoint/shared_directory.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/comm/agreement.h"

namespace mpitrain::checkpoint {

namespace {

namespace fs = std::filesystem;

std::string read_token(const fs::path& probe) {
  std::ifstream in(probe);
  std::string token;
  in >> token;
  return token;
}

}  // namespace

std::string host_name() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return host;
}

void require_shared_directory(comm::Communicator& comm, const std::string& dir, const std::string& why) {
  if (comm.size() == 1) return;
  // A token only this call knows: a probe left by an earlier job (or another node's own
  // directory of the same name holding one) cannot pass for it.
  auto token_value = torch::zeros({1}, torch::kInt64);
  if (comm.rank() == 0)
    token_value[0] = static_cast<std::int64_t>(std::random_device{}() ^ (std::uint64_t{std::random_device{}()} << 31) ^
                                               static_cast<std::uint64_t>(::getpid()));
  comm.broadcast(token_value, 0);
  char token[32];
  std::snprintf(token, sizeof token, "%016llx", static_cast<unsigned long long>(token_value.item<std::int64_t>()));
  const auto probe = fs::path(dir) / (std::string(".mpitrain-shared-probe-") + token);
  try {
    comm::run_agreed(comm, [&] {
      if (comm.rank() != 0) return;
      std::error_code error;
      fs::create_directories(dir, error);
      if (error) throw CheckpointError(dir, "cannot be created: " + error.message());
      std::ofstream out(probe);
      out << token << "\n";
      out.close();
      if (!out) throw CheckpointError(probe.string(), "cannot be written");
    });
    comm::run_agreed(comm, [&] {
      if (comm.rank() == 0) return;
      // NFS may take a moment to show a new name to another client.
      for (int attempt = 1;; ++attempt) {  // about a second in all
        if (read_token(probe) == token) return;
        if (attempt == 7) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(50 * attempt));
      }
      throw CheckpointError(dir, "is not on a filesystem every rank shares: rank " + std::to_string(comm.rank()) +
                                     " (on host " + host_name() + ") cannot see the files rank 0 writes there; " + why);
    });
  } catch (...) {  // a probe written in part goes too
    std::error_code ignored;
    if (comm.rank() == 0) fs::remove(probe, ignored);
    throw;
  }
  std::error_code ignored;
  if (comm.rank() == 0) fs::remove(probe, ignored);
}

}  // namespace mpitrain::checkpoint
