// The collective timeout: on expiry a census names the ranks that did not arrive, then the job ends.
#include "runtime/comm/collective_timeout.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace mpitrain::comm {
namespace {

using Clock = std::chrono::steady_clock;

double initial_timeout() {
  const char* env = std::getenv("MPITRAIN_COLLECTIVE_TIMEOUT_S");
  return env ? std::atof(env) : 1800.0;
}

double g_timeout_seconds = initial_timeout();

constexpr int kCensusTag = 7001;
constexpr int kOperationChars = 32;

struct CensusEntry {
  std::uint64_t sequence;
  char operation[kOperationChars];
};

std::string census(MPI_Comm monitor, const CollectiveId& id) {
  int rank = 0, size = 1;
  MPI_Comm_rank(monitor, &rank);
  MPI_Comm_size(monitor, &size);
  CensusEntry mine{};
  mine.sequence = id.sequence;
  std::strncpy(mine.operation, id.operation.c_str(), kOperationChars - 1);
  std::vector<CensusEntry> theirs(static_cast<std::size_t>(size));
  std::vector<MPI_Request> requests;
  std::vector<int> peers;
  for (int peer = 0; peer < size; ++peer) {
    if (peer == rank) continue;
    MPI_Request send_request, recv_request;
    MPI_Isend(&mine, sizeof mine, MPI_BYTE, peer, kCensusTag, monitor, &send_request);
    MPI_Request_free(&send_request);  // fire and forget: a dead peer must not block us
    MPI_Irecv(&theirs[static_cast<std::size_t>(peer)], sizeof(CensusEntry), MPI_BYTE, peer, kCensusTag, monitor,
              &recv_request);
    requests.push_back(recv_request);
    peers.push_back(peer);
  }
  // Ranks waiting in the same collective time out at about the same moment and answer.
  const auto grace_end = Clock::now() + std::chrono::seconds(5);
  std::vector<bool> answered(requests.size(), false);
  while (Clock::now() < grace_end) {
    bool all = true;
    for (std::size_t i = 0; i < requests.size(); ++i) {
      if (answered[i]) continue;
      int flag = 0;
      MPI_Test(&requests[i], &flag, MPI_STATUS_IGNORE);
      answered[i] = flag != 0;
      all = all && answered[i];
    }
    if (all) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::string missing, elsewhere;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    const int peer = peers[i];
    if (!answered[i]) {
      missing += (missing.empty() ? "" : ",") + std::to_string(peer);
    } else if (theirs[static_cast<std::size_t>(peer)].sequence != id.sequence) {
      const auto& other = theirs[static_cast<std::size_t>(peer)];
      elsewhere += (elsewhere.empty() ? "" : ", ") + std::string("rank ") + std::to_string(peer) + " is in " +
                   other.operation + " #" + std::to_string(other.sequence);
    }
  }
  std::string text;
  if (!missing.empty()) text += "ranks that did not arrive: " + missing;
  if (!elsewhere.empty()) text += (text.empty() ? "" : "; ") + elsewhere;
  if (text.empty()) text = "every rank arrived (a transport stall?)";
  return text;
}

}  // namespace

void set_collective_timeout_seconds(double seconds) { g_timeout_seconds = seconds; }
double collective_timeout_seconds() { return g_timeout_seconds; }

void abort_job(const std::string& message) {
  int rank = 0, initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::fprintf(stderr, "mpitrain: error: rank %d: %s\n", rank, message.c_str());
  std::fflush(stderr);
  if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, 1);
  std::_Exit(1);
}

void abort_for_timeout(MPI_Comm monitor, const CollectiveId& id) {
  const std::string who = census(monitor, id);
  abort_job(id.operation + " #" + std::to_string(id.sequence) + " (" + std::to_string(id.bytes) +
            " bytes) on communicator '" + id.communicator + "' did not complete within " +
            std::to_string(static_cast<int>(g_timeout_seconds)) + " s; " + who);
}

}  // namespace mpitrain::comm
