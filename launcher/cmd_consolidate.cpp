// `mpitrain consolidate SRC_DIR OUT_DIR`: a sharded checkpoint (save_mode=sharded) to a standard HF directory.
#include <iostream>

#include "launcher/options.h"
#include "runtime/checkpoint/consolidate.h"
#include "runtime/checkpoint/hf_index.h"
#include "runtime/comm/agreement.h"
#include "runtime/comm/launch.h"
#include "runtime/comm/mpi_communicator.h"

namespace mpitrain::launcher {

int run_consolidate(const Args& args) {
  po::options_description options("consolidate options");
  std::string source, output, max_shard_size;
  bool verify = true;
  options.add_options()("src", po::value(&source)->required(), "a checkpoint written with save_mode=sharded")(
      "out", po::value(&output)->required(), "the HF directory to write")(
      "max_shard_size", po::value(&max_shard_size)->default_value("5GB"), "shard above this size")(
      "verify_checksums", po::value<bool>(&verify)->default_value(true),
      "a training checkpoint's files against its recorded checksums first");
  po::positional_options_description positional;
  positional.add("src", 1).add("out", 1);
  po::variables_map values;
  if (!parse_options("consolidate", "SRC_DIR OUT_DIR", args, options, positional, values)) return 0;
  require_output_outside_source("consolidate", source, output);
  std::uint64_t limit = 0;
  try {
    limit = checkpoint::parse_shard_size(max_shard_size);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("consolidate: ") + e.what());
  }
  comm::MpiSession mpi(nullptr, nullptr);
  auto world = comm::MpiCommunicator::world();
  try {
    checkpoint::consolidate_sharded(*world, source, output, limit, verify);
  } catch (const comm::AgreedError& e) {
    // Every rank has the same message; one line is enough.
    if (world->rank() == 0) std::cerr << "mpitrain: error: " << e.what() << std::endl;
    return 1;
  }
  if (world->rank() == 0)
    std::cout << "consolidated " << source << " into " << output << " (" << world->size() << " processes)\n";
  return 0;
}

}  // namespace mpitrain::launcher
