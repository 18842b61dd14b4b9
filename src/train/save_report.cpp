// Every save's account of where its time went: each stage's seconds (the slowest rank's) and the bytes each rank wrote, as a metrics entry and a log line.
#include "src/train/save_report.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstdio>

#include "src/train/train_metrics.h"

namespace mpitrain::train {

using checkpoint::kSaveStages;
using checkpoint::SaveStage;

namespace {

std::string key_of(std::size_t stage) {
  return std::string("save_") + checkpoint::save_stage_name(static_cast<SaveStage>(stage)) + "_seconds";
}

std::string megabytes(double bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f", bytes / 1e6);
  return text;
}

std::string seconds_text(double seconds) {
  char text[32];
  std::snprintf(text, sizeof text, "%.3g", seconds);
  return text;
}

}  // namespace

nlohmann::json save_report(comm::Communicator& comm, const checkpoint::SaveTimes& mine, double seconds,
                           const std::string& what) {
  // One row per rank: the stages, the wall time, the bytes (exact in float64 below 2^53).
  constexpr std::int64_t kColumns = static_cast<std::int64_t>(kSaveStages) + 2;
  auto row = torch::zeros({1, kColumns}, torch::kFloat64);
  for (std::size_t s = 0; s < kSaveStages; ++s) row[0][static_cast<std::int64_t>(s)] = mine.seconds[s];
  row[0][kColumns - 2] = seconds;
  row[0][kColumns - 1] = static_cast<double>(mine.bytes_written);
  // Host figures over the host communicator (a GPU run's NCCL one takes device tensors only).
  const auto rows = comm.cpu_communicator().allgather(row).view({comm.size(), kColumns});
  const auto slowest = std::get<0>(rows.max(0));
  nlohmann::json report;
  report["save"] = what;
  for (std::size_t s = 0; s < kSaveStages; ++s)
    report[key_of(s)] = round_to(slowest[static_cast<std::int64_t>(s)].item<double>(), 4);
  report["save_seconds"] = round_to(slowest[kColumns - 2].item<double>(), 4);
  auto bytes = nlohmann::json::array();
  std::uint64_t total = 0;
  for (int r = 0; r < comm.size(); ++r) {
    const auto b = static_cast<std::uint64_t>(rows[r][kColumns - 1].item<double>());
    bytes.push_back(b);
    total += b;
  }
  report["save_bytes_written"] = bytes;
  report["save_bytes_written_total"] = total;
  return report;
}

std::string save_report_line(const nlohmann::json& report) {
  std::string line = report.value("save", std::string("save")) + " saved in " +
                     seconds_text(report.value("save_seconds", 0.0)) + " s:";
  // The stages that took any time, largest first.
  std::vector<std::pair<double, std::string>> stages;
  for (std::size_t s = 0; s < kSaveStages; ++s) {
    const double t = report.value(key_of(s), 0.0);
    if (t > 0) stages.emplace_back(t, checkpoint::save_stage_name(static_cast<SaveStage>(s)));
  }
  std::stable_sort(stages.begin(), stages.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (std::size_t i = 0; i < stages.size(); ++i)
    line += (i ? ", " : " ") + stages[i].second + " " + seconds_text(stages[i].first);
  line += " (the slowest rank's)";
  const auto& bytes = report.at("save_bytes_written");
  std::uint64_t least = UINT64_MAX, most = 0;
  for (const auto& b : bytes) {
    least = std::min(least, b.get<std::uint64_t>());
    most = std::max(most, b.get<std::uint64_t>());
  }
  const auto total = static_cast<double>(report.value("save_bytes_written_total", std::uint64_t{0}));
  if (bytes.size() == 1)
    line += "; wrote " + megabytes(total) + " MB";
  else
    line += "; ranks wrote " + megabytes(static_cast<double>(least)) + " to " + megabytes(static_cast<double>(most)) +
            " MB, " + megabytes(total) + " MB in all";
  return line;
}

}  // namespace mpitrain::train
