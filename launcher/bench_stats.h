// Statistics shared by the benchmarks: the median of repeated timings.
#pragma once

#include <algorithm>
#include <vector>

namespace mpitrain::launcher {

inline double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const auto n = values.size();
  return n == 0 ? 0.0 : (n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]));
}

}  // namespace mpitrain::launcher
