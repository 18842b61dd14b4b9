// Every rank of a run must train with the same settings: a config or option given to some ranks only is one error at the start.
#pragma once

#include <nlohmann/json.hpp>

#include "runtime/comm/communicator.h"

namespace mpitrain::train {

// Collective. Compares each rank's resolved run config (file plus options) with rank 0's and
// throws comm::AgreedError on every rank where any differs, naming the first key that does:
// without this, ranks given different sizes crash inside a collective, hang until the
// timeout, or train silently diverging replicas. training.output_dir is left out: its spelling
// may differ per node; whether it is the same directory is the shared-directory check's job.
// So are per-process settings (progress_bar, torch_threads). Other paths are compared as
// spelled: on a cluster they name one shared file.
void require_same_config_on_every_rank(comm::Communicator& world, const nlohmann::json& config);

}  // namespace mpitrain::train
