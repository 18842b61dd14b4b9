// How the tokenizers split a text on a pattern's matches: the five delimiter behaviours, inversion, and the splits a pipeline passes along (some already a token).
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mpitrain::tokenizers {

using Ranges = std::vector<std::pair<std::size_t, std::size_t>>;

// What happens to a match: dropped, its own split, glued to the split before or after, or
// runs of matches merged into one split.
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };
// "Removed", "Isolated", ...; throws std::invalid_argument naming `where`.
SplitBehavior parse_split_behavior(const std::string& name, const std::string& where);

// The pieces of `text` around `matches` (sorted, disjoint), with `invert` swapping matches and
// gaps. Empty pieces are dropped.
std::vector<std::string> split_on_matches(std::string_view text, const Ranges& matches, SplitBehavior behavior,
                                          bool invert = false);
// Each character for which `predicate` holds, as a match of its own.
Ranges character_matches(std::string_view text, const std::function<bool(char32_t)>& predicate);
// Non-overlapping occurrences of `needle`, left to right (none for an empty needle).
Ranges literal_matches(std::string_view text, std::string_view needle);

// One piece of a text on its way through a tokenizer: either text for the model, or already a
// token (an added token split out first).
struct Split {
  std::string text;
  std::optional<int> token;
  bool at_text_start = false;  // begins where the input text begins (Metaspace's "first")
};

// Replaces every split that is not a token by what `split` makes of it; empty ones are dropped.
void resplit(std::vector<Split>& splits, const std::function<std::vector<std::string>(const std::string&)>& split);

}  // namespace mpitrain::tokenizers
