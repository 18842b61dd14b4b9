// Learning-rate schedules with transformers' formulas (get_scheduler): linear, cosine, constant, constant_with_warmup.
#include "src/train/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace mpitrain::train {

std::int64_t resolve_warmup_steps(std::int64_t warmup_steps, double warmup_ratio, std::int64_t total_steps) {
  if (warmup_steps > 0) return warmup_steps;
  return static_cast<std::int64_t>(std::ceil(warmup_ratio * static_cast<double>(total_steps)));
}

double lr_multiplier(const std::string& type, std::int64_t step, std::int64_t warmup, std::int64_t total) {
  const double s = static_cast<double>(step);
  if (type == "constant") return 1.0;
  if (step < warmup) return s / std::max<double>(1.0, static_cast<double>(warmup));
  if (type == "constant_with_warmup") return 1.0;
  const double progress = static_cast<double>(step - warmup) / std::max<double>(1.0, static_cast<double>(total - warmup));
  if (type == "linear")
    return std::max(0.0, static_cast<double>(total - step) / std::max<double>(1.0, static_cast<double>(total - warmup)));
  if (type == "cosine") return std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * 2.0 * 0.5 * progress)));
  throw std::invalid_argument("unknown lr_scheduler_type '" + type + "'");
}

}  // namespace mpitrain::train
