// Every save's account of where its time went: each stage's seconds (the slowest rank's) and the bytes each rank wrote, as a metrics entry and a log line.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "runtime/checkpoint/save_timing.h"
#include "runtime/comm/communicator.h"

namespace mpitrain::train {

// Collective over `comm` (the ranks that saved): every rank's times gathered into one entry,
// the same on every rank: "save" (what was saved: checkpoint-N, "final", "merged"),
// save_<stage>_seconds for each stage (the largest over the ranks: the stages are collective,
// so the slowest rank's time is everybody's), save_seconds (`seconds`, the slowest rank's
// wall time), save_bytes_written (per rank) and save_bytes_written_total.
nlohmann::json save_report(comm::Communicator& comm, const checkpoint::SaveTimes& mine, double seconds,
                           const std::string& what);
// "checkpoint-6 saved in 0.25 s: write 0.2, fsync 0.03, ... (slowest rank); ranks wrote 1.5 to 1.6 MB, 3.1 MB in all".
std::string save_report_line(const nlohmann::json& report);

}  // namespace mpitrain::train
