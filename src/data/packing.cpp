// Packing prompt/completion examples into rows of a fixed width, each example kept whole and apart (TRL's packing, best-fit decreasing).
#include "src/data/packing.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <stdexcept>

namespace mpitrain::data {

TokenLabelledRows pack_examples(const TokenLabelledRows& examples, std::size_t width) {
  std::vector<std::size_t> order(examples.ids.size());
  std::iota(order.begin(), order.end(), 0);
  // Longest first; equal lengths in their file order, so the packing is the same on every run.
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return examples.ids[a].size() > examples.ids[b].size(); });
  TokenLabelledRows rows;
  std::multimap<std::size_t, std::size_t> room;  // free tokens -> row; the tightest fit is lower_bound
  for (const auto e : order) {
    const auto length = examples.ids[e].size();
    if (length == 0 || length > width) throw std::logic_error("pack_examples: an example of " + std::to_string(length) +
                                                              " tokens for rows of " + std::to_string(width));
    auto fit = room.lower_bound(length);
    std::size_t row;
    if (fit == room.end()) {
      row = rows.ids.size();
      rows.ids.emplace_back(), rows.labels.emplace_back(), rows.position_ids.emplace_back();
    } else {
      row = fit->second;
      room.erase(fit);
    }
    auto& ids = rows.ids[row];
    ids.insert(ids.end(), examples.ids[e].begin(), examples.ids[e].end());
    auto& labels = rows.labels[row];
    labels.push_back(-100);
    labels.insert(labels.end(), examples.labels[e].begin() + 1, examples.labels[e].end());
    auto& positions = rows.position_ids[row];
    for (std::size_t p = 0; p < length; ++p) positions.push_back(static_cast<std::int32_t>(p));
    if (ids.size() < width) room.emplace(width - ids.size(), row);
  }
  return rows;
}

}  // namespace mpitrain::data
