// Learning-rate schedules with transformers' formulas (get_scheduler): linear, cosine, constant, constant_with_warmup.
#pragma once

#include <cstdint>
#include <string>

namespace mpitrain::train {

// The multiplier of the base learning rate after `step` optimizer steps.
double lr_multiplier(const std::string& type, std::int64_t step, std::int64_t warmup_steps, std::int64_t total_steps);

// warmup_steps when positive, else ceil(warmup_ratio * total_steps), as TrainingArguments does.
std::int64_t resolve_warmup_steps(std::int64_t warmup_steps, double warmup_ratio, std::int64_t total_steps);

}  // namespace mpitrain::train
