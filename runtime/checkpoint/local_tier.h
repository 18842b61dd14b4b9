// The in-memory checkpoint tier: each rank's state in node-local memory with replicas on partner ranks, committed with a marker, and found again after a restart, from a replica where a node's copy is gone.
#pragma once

#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/checkpoint/local_state_file.h"
#include "runtime/checkpoint/replica_placement.h"
#include "runtime/checkpoint/safetensors_file.h"
#include "runtime/comm/communicator.h"

namespace mpitrain::checkpoint {

struct LocalTierOptions {
  std::string root;    // node-local memory (local_save_dir)
  // The run the states belong to (its output_dir): names the job's directory under root, and
  // is recorded there (owner.json). Nothing under root another owner wrote is read or removed.
  std::string owner;
  std::string node;    // this rank's node name
  std::string layout;  // what a state restores into: a state saved at another layout is not read
  int copies = 2;      // the own copy and the replicas
};

// Directories: <root>/mpitrain-<xxh64 of owner>/<node>/rank-<r>/step-<N>/ holds
// state-<s>.safetensors for rank r's own state (s = r) and each replica it keeps, and
// complete.json (their sizes and XXH64), written last, before the staging directory
// (.tmp-step-<N>) takes its name. A step is complete when every rank's state has a copy in
// some step-<N> directory; the previous one is removed only once the new one is agreed
// complete everywhere.
class LocalTier {
 public:
  // Collective over `comm` (a communicator of the tier's own: a commit runs in the background,
  // beside training's collectives): the node names, the placement, the job's directory.
  LocalTier(std::shared_ptr<comm::Communicator> comm, LocalTierOptions options);

  const ReplicaPlacement& placement() const { return placement_; }
  const std::string& job_dir() const { return job_dir_; }
  const std::vector<std::string>& node_of_rank() const { return node_of_rank_; }

  // This rank alone, no collective (the training thread waits for it): its state of `step`
  // copied into a host buffer reused from save to save. Returns the state's size in bytes; an
  // error is kept for commit() to raise on every rank.
  std::uint64_t stage(std::int64_t step, const std::vector<NamedTensor>& tensors,
                      const std::map<std::string, std::string>& metadata);
  // Collective, after stage() on every rank: the state written into node-local memory, the
  // replicas exchanged with the partners, every
  // file checksummed, the markers written and the step committed (agreed: a failure is every
  // rank's), then the older steps on this node removed. Returns the bytes this rank wrote
  // into node-local memory (its own state and the replicas it keeps).
  std::uint64_t commit();

  // Collective: the newest step whose every rank's state has a copy some rank can read, saved
  // at this layout; -1 and why when there is none (nothing found, a state with no surviving
  // copy, another layout).
  struct Found {
    std::int64_t step = -1;
    std::string why_not;
  };
  Found newest_complete() const;
  // Collective: this rank's state of `step` (newest_complete's), checksum verified, read
  // where this rank sees a copy, else sent by the lowest rank that does. Agreed errors.
  struct Fetched {
    std::unique_ptr<SafetensorsFile> file;
    // Every rank's: the rank that sent it its state, or -1 where it read its own (alike on all).
    std::vector<int> sent_by;
  };
  Fetched fetch(std::int64_t step) const;

  // Collective: this job's local states removed on every node, but step `keep`'s (-1: all).
  void remove_except(std::int64_t keep) const;
  // Collective: this job's directory removed on every node (the job is done).
  void remove_job() const;

 private:
  std::string node_dir(const std::string& node) const;
  std::string rank_dir(int rank) const;  // this rank's, on its node
  bool node_leader() const;              // the lowest rank of its node
  void sweep_before(std::int64_t step) const;  // a node leader: every older step on its node

  std::shared_ptr<comm::Communicator> comm_;
  LocalTierOptions options_;
  std::vector<std::string> node_of_rank_;
  ReplicaPlacement placement_;
  std::string job_dir_;
  std::int64_t staged_step_ = -1;
  std::uint64_t staged_size_ = 0;
  std::exception_ptr stage_error_;
  std::vector<std::uint8_t> buffer_;  // the staged state's bytes (kept: its pages stay mapped)
};

}  // namespace mpitrain::checkpoint
