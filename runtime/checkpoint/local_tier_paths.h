// The local tier's names on disk: the job's directory and its owner, node, rank and step directories, and the committed copies a rank can see.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mpitrain::checkpoint {

inline constexpr const char* kLocalMarkerFile = "complete.json";
inline constexpr const char* kLocalOwnerFile = "owner.json";
inline constexpr std::uint64_t kTransferChunk = 64u << 20;  // bytes per message between ranks

// <root>/mpitrain-<16 hex digits of the owner's XXH64>
std::string local_job_dir(const std::string& root, const std::string& owner);
// The job's directory made (if absent) and its owner.json checked or written: a directory
// another owner's states are in is a CheckpointError, and nothing in it is touched.
void claim_job_dir(const std::string& job_dir, const std::string& owner);

std::string node_dir_name(const std::string& node);  // the node's name, characters outside [A-Za-z0-9._-] as '_'
std::string rank_dir_name(int rank);                 // rank-00003
std::string step_dir_name(std::int64_t step);        // step-40
std::string staging_dir_name(std::int64_t step);     // .tmp-step-40
std::string state_file_name(int rank);               // state-00003.safetensors
std::int64_t parse_step_dir_name(const std::string& name);     // -1 when it is not one
std::int64_t parse_staging_dir_name(const std::string& name);  // -1 when it is not one

// A committed copy of one rank's state that this rank can read (its marker lists it, and
// the file has the size the marker says).
struct LocalCopy {
  std::int64_t step = -1;
  int state = -1;  // whose state
  std::string layout, path, xxh64;
  std::uint64_t bytes = 0;
};
// Every committed copy in a node's directory. A rank reads only its own node's: on a cluster
// it sees no other (and where several "nodes" share one machine, as in the tests, it must not).
std::vector<LocalCopy> committed_copies(const std::string& node_dir);

}  // namespace mpitrain::checkpoint
