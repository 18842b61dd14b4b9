// The in-memory checkpoint tier after a restart: the newest step every rank's state survives for, and each rank's state read where it is or sent by a rank holding a replica.
#include <algorithm>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/local_tier.h"
#include "runtime/checkpoint/local_tier_paths.h"
#include "runtime/checkpoint/xxhash64.h"
#include "runtime/comm/agreement.h"
#include "runtime/comm/string_collectives.h"

namespace mpitrain::checkpoint {

using nlohmann::json;

namespace {

constexpr int kFetchSizeTag = 7103, kFetchBytesTag = 7104;

// Every rank's visible copies (step, state, layout), gathered.
std::vector<LocalCopy> all_visible(comm::Communicator& comm, const std::vector<LocalCopy>& mine, std::vector<int>* seen_by) {
  json listed = json::array();
  for (const auto& c : mine) listed.push_back({c.step, c.state, c.layout});
  std::vector<LocalCopy> all;
  const auto gathered = comm::allgather_strings(comm, listed.dump());
  for (int r = 0; r < static_cast<int>(gathered.size()); ++r)
    for (const auto& c : json::parse(gathered[r])) {
      all.push_back({c[0].get<std::int64_t>(), c[1].get<int>(), c[2].get<std::string>(), "", "", 0});
      if (seen_by) seen_by->push_back(r);
    }
  return all;
}

std::string ranks_text(const std::vector<int>& ranks) {
  std::string text;
  for (std::size_t i = 0; i < ranks.size() && i < 8; ++i) text += (i ? ", " : "") + std::to_string(ranks[i]);
  if (ranks.size() > 8) text += ", ...";
  return text;
}

std::vector<std::uint8_t> read_bytes(const std::string& path, std::uint64_t size) {
  std::vector<std::uint8_t> bytes(size);
  std::ifstream in(path, std::ios::binary);
  if (!in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size)))
    throw CheckpointError(path, "cannot read " + std::to_string(size) + " bytes");
  return bytes;
}

// A state's bytes to `dst`: its size, then chunks (MPI counts are ints).
void send_bytes(comm::Communicator& comm, std::vector<std::uint8_t> bytes, int dst) {
  comm.send(torch::tensor({static_cast<std::int64_t>(bytes.size())}, torch::kInt64), dst, kFetchSizeTag);
  for (std::uint64_t begin = 0; begin < bytes.size(); begin += kTransferChunk) {
    const auto n = std::min<std::uint64_t>(kTransferChunk, bytes.size() - begin);
    comm.send(torch::from_blob(bytes.data() + begin, {static_cast<std::int64_t>(n)}, torch::kUInt8), dst, kFetchBytesTag);
  }
}

std::vector<std::uint8_t> receive_bytes(comm::Communicator& comm, int src) {
  auto size = torch::empty({1}, torch::kInt64);
  comm.recv(size, src, kFetchSizeTag);
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size.item<std::int64_t>()));
  for (std::uint64_t begin = 0; begin < bytes.size(); begin += kTransferChunk) {
    const auto n = std::min<std::uint64_t>(kTransferChunk, bytes.size() - begin);
    auto chunk = torch::from_blob(bytes.data() + begin, {static_cast<std::int64_t>(n)}, torch::kUInt8);
    comm.recv(chunk, src, kFetchBytesTag);
  }
  return bytes;
}

void verify(const LocalCopy& copy) {
  if (file_xxh64(copy.path) != copy.xxh64)
    throw CheckpointError(copy.path, "checksum mismatch (XXH64 " + file_xxh64(copy.path) + ", the marker says " + copy.xxh64 + ")");
}

}  // namespace

LocalTier::Found LocalTier::newest_complete() const {
  const auto all = all_visible(*comm_, committed_copies(node_dir(options_.node)), nullptr);
  const int world = comm_->size();
  std::map<std::int64_t, std::set<int>, std::greater<>> at_layout;
  std::map<std::int64_t, std::string, std::greater<>> other_layout;
  for (const auto& c : all) {
    if (c.layout == options_.layout) at_layout[c.step].insert(c.state);
    else other_layout.emplace(c.step, c.layout);
  }
  Found found;
  for (const auto& [step, states] : at_layout)
    if (static_cast<int>(states.size()) == world && *states.rbegin() == world - 1 && *states.begin() == 0) {
      found.step = step;
      break;
    }
  const auto newest_other = other_layout.empty() ? std::int64_t{-1} : other_layout.begin()->first;
  if (newest_other > found.step) {
    found.why_not = "the local checkpoint of step " + std::to_string(newest_other) + " was saved at " +
                    other_layout.begin()->second + ", this run is " + options_.layout +
                    " (the local tier restores at the layout that saved only)";
  } else if (found.step < 0 && !at_layout.empty()) {
    std::vector<int> lost;
    const auto& [step, states] = *at_layout.begin();
    for (int r = 0; r < world; ++r)
      if (!states.count(r)) lost.push_back(r);
    found.why_not = "the local checkpoint of step " + std::to_string(step) + " has no surviving copy of the state of rank(s) " +
                    ranks_text(lost);
  } else if (found.step < 0) {
    found.why_not = "no local checkpoint of this run in " + job_dir_;
  }
  return found;
}

LocalTier::Fetched LocalTier::fetch(std::int64_t step) const {
  const int me = comm_->rank(), world = comm_->size();
  std::vector<LocalCopy> mine;
  for (auto& c : committed_copies(node_dir(options_.node)))
    if (c.step == step && c.layout == options_.layout) mine.push_back(std::move(c));
  std::vector<int> seen_by;
  const auto all = all_visible(*comm_, mine, &seen_by);
  // Each state read by its own rank where it sees a copy, else by one that does, the sends
  // spread over those (the one with fewest so far, then the lowest).
  std::vector<std::set<int>> seers(world);
  for (std::size_t i = 0; i < all.size(); ++i) seers.at(all[i].state).insert(seen_by[i]);
  std::vector<int> reader(world, -1), sends(world, 0);
  for (int s = 0; s < world; ++s) {
    if (seers[s].count(s)) reader[s] = s;
    for (const int r : seers[s])
      if (reader[s] != s && (reader[s] < 0 || sends[r] < sends[reader[s]])) reader[s] = r;
    if (reader[s] >= 0 && reader[s] != s) ++sends[reader[s]];
  }
  const auto copy_here = [&](int state) -> const LocalCopy& {
    return *std::find_if(mine.begin(), mine.end(), [&](const LocalCopy& c) { return c.state == state; });
  };
  Fetched fetched;
  comm::run_agreed(*comm_, [&] {
    if (std::count(reader.begin(), reader.end(), -1))
      throw CheckpointError(job_dir_, "a state of step " + std::to_string(step) + " has no copy any rank can read");
    for (int s = 0; s < world; ++s)
      if (reader[s] == me) verify(copy_here(s));
    if (reader[me] == me) fetched.file = std::make_unique<SafetensorsFile>(copy_here(me).path);
  });
  std::vector<std::uint8_t> received;
  // The states with no copy on their own rank's node, one after another in rank order (every
  // rank makes its sends and receives in that order, so none waits on a later one).
  for (int s = 0; s < world; ++s) {
    if (reader[s] == s || (me != s && me != reader[s])) continue;
    if (me == reader[s]) {
      send_bytes(*comm_, read_bytes(copy_here(s).path, copy_here(s).bytes), s);
      continue;
    }
    received = receive_bytes(*comm_, reader[s]);
  }
  comm::run_agreed(*comm_, [&] {
    if (reader[me] != me)
      fetched.file = std::make_unique<SafetensorsFile>(
          job_dir_ + " (" + state_file_name(me) + " of step " + std::to_string(step) + ", sent by rank " +
              std::to_string(reader[me]) + ")",
          std::move(received));
  });
  for (int s = 0; s < world; ++s) fetched.sent_by.push_back(reader[s] == s ? -1 : reader[s]);
  return fetched;
}

}  // namespace mpitrain::checkpoint
