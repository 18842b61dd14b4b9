// profile_steps: where a few training steps spend their time, by ATen operation (see step_profile.h).
#include "src/train/step_profile.h"

#include <torch/csrc/autograd/profiler_legacy.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <utility>
#include <vector>

namespace mpitrain::train {
namespace {

namespace profiler = torch::autograd::profiler;

struct OperationTime {
  std::int64_t calls = 0;
  double self_us = 0, total_us = 0;
};

// Self time: a range's time less that of the ranges it encloses (events on one thread nest).
std::map<std::string, OperationTime> time_by_operation(const profiler::thread_event_lists& threads) {
  std::map<std::string, OperationTime> by_name;
  for (const auto& events : threads) {
    struct Open {
      const profiler::LegacyEvent* push;
      double children_us;
    };
    std::vector<Open> open;
    for (const auto& event : events) {
      if (event.kind() == profiler::EventKind::PushRange) {
        open.push_back({&event, 0.0});
      } else if (event.kind() == profiler::EventKind::PopRange && !open.empty()) {
        const auto range = open.back();
        open.pop_back();
        const double elapsed = range.push->cpuElapsedUs(event);
        auto& entry = by_name[range.push->name()];
        ++entry.calls;
        entry.total_us += elapsed;
        entry.self_us += elapsed - range.children_us;
        if (!open.empty()) open.back().children_us += elapsed;
      }
    }
  }
  return by_name;
}

std::string format_table(const std::map<std::string, OperationTime>& by_name, std::int64_t steps, double wall_s) {
  std::vector<std::pair<std::string, OperationTime>> rows(by_name.begin(), by_name.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.self_us > b.second.self_us; });
  const double per_step_ms = 1e3 * wall_s / static_cast<double>(steps);
  char line[256];
  std::snprintf(line, sizeof line, "%lld steps profiled, %.1f ms per step (wall, with the profiler's cost)\n",
                static_cast<long long>(steps), per_step_ms);
  std::string table = line;
  std::snprintf(line, sizeof line, "%-60s %8s %12s %7s %12s\n", "operation", "calls", "self ms/step", "self %",
                "total ms/step");
  table += line;
  for (const auto& [name, time] : rows) {
    const double self_ms = time.self_us / 1e3 / static_cast<double>(steps);
    std::snprintf(line, sizeof line, "%-60.60s %8lld %12.2f %6.1f%% %12.2f\n", name.c_str(),
                  static_cast<long long>(time.calls / steps), self_ms, 100.0 * self_ms / per_step_ms,
                  time.total_us / 1e3 / static_cast<double>(steps));
    table += line;
  }
  return table;
}

}  // namespace

void StepProfile::step_starts() {
  if (steps_ <= 0 || seen_ != skipped_) return;
  profiler::enableProfilerLegacy(torch::profiler::impl::ProfilerConfig(torch::profiler::impl::ProfilerState::CPU));
  profiling_ = true;
  started_ = std::chrono::steady_clock::now();
}

bool StepProfile::step_ends() {
  if (steps_ <= 0 || seen_ >= skipped_ + steps_) return false;
  if (++seen_ < skipped_ + steps_) return false;
  const double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  profiling_ = false;
  table_ = format_table(time_by_operation(profiler::disableProfilerLegacy()), steps_, wall_s);
  return true;
}

StepProfile::~StepProfile() {
  if (profiling_) profiler::disableProfilerLegacy();
}

}  // namespace mpitrain::train
