// The in-memory checkpoint tier's saves: the staged state, the replicas exchanged with the partners, the commit and the sweep of older steps.
#include "runtime/checkpoint/local_tier.h"

#include <cstring>
#include <filesystem>
#include <fstream>

#include "runtime/checkpoint/checkpoint_error.h"
#include "runtime/checkpoint/crash_point.h"
#include "runtime/checkpoint/local_tier_paths.h"
#include "runtime/checkpoint/remove_tree.h"
#include "runtime/checkpoint/xxhash64.h"
#include "runtime/comm/agreement.h"
#include "runtime/comm/string_collectives.h"

namespace mpitrain::checkpoint {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int kSizeTag = 7101, kBytesTag = 7102;

// Sends `out` to `dst` while receiving `in` from `src`, in chunks of bounded size (MPI counts
// are ints); the two may differ in size.
void exchange(comm::Communicator& comm, const MappedFile& out, int dst, MappedFile& in, int src) {
  const auto total = std::max(out.size(), in.size());
  for (std::uint64_t begin = 0; begin < total; begin += kTransferChunk) {
    const auto end = begin + kTransferChunk;
    auto incoming = in.bytes(std::min(begin, in.size()), std::min(end, in.size()));
    comm.sendrecv(out.bytes(std::min(begin, out.size()), std::min(end, out.size())), dst, incoming, src, kBytesTag);
  }
}

std::string hex_xxh64(const MappedFile& file) {
  return xxh64_hex(xxh64(file.data(), static_cast<std::size_t>(file.size())));
}

}  // namespace

LocalTier::LocalTier(std::shared_ptr<comm::Communicator> comm, LocalTierOptions options)
    : comm_(std::move(comm)), options_(std::move(options)) {
  node_of_rank_ = comm::allgather_strings(*comm_, options_.node);
  placement_ = place_replicas(node_of_rank_, options_.copies);
  job_dir_ = local_job_dir(options_.root, options_.owner);
  comm::run_agreed(*comm_, [&] {
    fs::create_directories(rank_dir(comm_->rank()));
    if (node_leader()) claim_job_dir(job_dir_, options_.owner);
  });
}

std::string LocalTier::node_dir(const std::string& node) const { return (fs::path(job_dir_) / node_dir_name(node)).string(); }

std::string LocalTier::rank_dir(int rank) const {
  return (fs::path(node_dir(node_of_rank_[rank])) / rank_dir_name(rank)).string();
}

bool LocalTier::node_leader() const {
  const int me = comm_->rank();
  for (int r = 0; r < me; ++r)
    if (node_of_rank_[r] == node_of_rank_[me]) return false;
  return true;
}

std::uint64_t LocalTier::stage(std::int64_t step, const std::vector<NamedTensor>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  staged_step_ = step;
  staged_size_ = 0;
  stage_error_ = nullptr;
  try {
    staged_size_ = fill_state_buffer(buffer_, tensors, metadata);
  } catch (...) {
    stage_error_ = std::current_exception();  // agreed at the commit, in the background
  }
  crash_point("local.staged", comm_->rank());
  return staged_size_;
}

std::uint64_t LocalTier::commit() {
  const int me = comm_->rank();
  const auto staging = fs::path(rank_dir(me)) / staging_dir_name(staged_step_);
  const auto copies = placement_.holder.size();
  // The staged bytes into node-local memory (a full tmpfs fails here, agreed).
  std::unique_ptr<MappedFile> staged;
  comm::run_agreed(*comm_, [&] {
    if (stage_error_) std::rethrow_exception(stage_error_);
    remove_tree(staging);  // a save of this step that a crash cut short
    fs::create_directories(staging);
    staged = MappedFile::create((staging / state_file_name(me)).string(), staged_size_);
    std::memcpy(staged->data(), buffer_.data(), staged_size_);
  });
  // Each replica's size first, so that its file is made (and its space reserved) before any
  // byte moves: a full tmpfs is an agreed error, never a partner left waiting.
  std::vector<std::uint64_t> incoming(copies);
  for (std::size_t j = 0; j < copies; ++j) {
    auto out = torch::tensor({static_cast<std::int64_t>(staged->size())}, torch::kInt64);
    auto in = torch::empty({1}, torch::kInt64);
    comm_->sendrecv(out, placement_.holder[j][me], in, placement_.source[j][me], kSizeTag);
    incoming[j] = static_cast<std::uint64_t>(in.item<std::int64_t>());
  }
  std::vector<std::unique_ptr<MappedFile>> kept(copies);
  comm::run_agreed(*comm_, [&] {
    for (std::size_t j = 0; j < copies; ++j)
      kept[j] = MappedFile::create((staging / state_file_name(placement_.source[j][me])).string(), incoming[j]);
  });
  for (std::size_t j = 0; j < copies; ++j) exchange(*comm_, *staged, placement_.holder[j][me], *kept[j], placement_.source[j][me]);
  crash_point("local.before_commit", me);
  std::uint64_t written = staged->size();
  comm::run_agreed(*comm_, [&] {
    json files;
    files[state_file_name(me)] = {{"bytes", staged->size()}, {"xxh64", hex_xxh64(*staged)}};
    for (std::size_t j = 0; j < copies; ++j) {
      files[state_file_name(placement_.source[j][me])] = {{"bytes", kept[j]->size()}, {"xxh64", hex_xxh64(*kept[j])}};
      written += kept[j]->size();
    }
    const json marker = {{"step", staged_step_}, {"layout", options_.layout}, {"files", files}};
    std::ofstream((staging / kLocalMarkerFile).string()) << marker.dump(1) << "\n";
    const auto committed = fs::path(rank_dir(me)) / step_dir_name(staged_step_);
    remove_tree(committed);  // an earlier run's of the same step, never restored from
    fs::rename(staging, committed);
  });
  const auto step = staged_step_;
  // Every rank has committed this step: the older ones on this node go.
  if (node_leader()) sweep_before(step);
  crash_point("local.committed", me);
  return written;
}

void LocalTier::sweep_before(std::int64_t step) const {
  // Only older steps and staging directories no later than this one: another rank may
  // already be staging its next save.
  std::error_code ignored;
  for (const auto& rank : fs::directory_iterator(node_dir(options_.node), ignored))
    for (const auto& entry : fs::directory_iterator(rank.path(), ignored)) {
      const auto name = entry.path().filename().string();
      const auto committed = parse_step_dir_name(name), staging = parse_staging_dir_name(name);
      if ((committed >= 0 && committed < step) || (staging >= 0 && staging <= step)) {
        try {
          remove_tree(entry.path());
        } catch (const fs::filesystem_error&) {
          // Best effort: what stays is removed at the next commit, or at the end of the job.
        }
      }
    }
}

void LocalTier::remove_except(std::int64_t keep) const {
  comm::run_agreed(*comm_, [&] {
    if (!node_leader()) return;
    std::error_code ignored;
    for (const auto& rank : fs::directory_iterator(node_dir(options_.node), ignored))
      for (const auto& entry : fs::directory_iterator(rank.path(), ignored))
        if (keep < 0 || entry.path().filename().string() != step_dir_name(keep)) remove_tree(entry.path());
  });
}

void LocalTier::remove_job() const {
  comm::run_agreed(*comm_, [&] {
    if (node_leader()) remove_tree(node_dir(options_.node));
  });
  // Then the job's directory, once no node's entry is left in it (on one machine several
  // "nodes" share it).
  comm::run_agreed(*comm_, [&] {
    if (!node_leader()) return;
    std::error_code ignored;
    bool others = false;
    for (const auto& entry : fs::directory_iterator(job_dir_, ignored))
      others = others || entry.path().filename() != kLocalOwnerFile;
    if (others) return;
    fs::remove(fs::path(job_dir_) / kLocalOwnerFile, ignored);
    fs::remove(job_dir_, ignored);
  });
}

}  // namespace mpitrain::checkpoint
