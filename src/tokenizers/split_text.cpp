// How the tokenizers split a text on a pattern's matches: the five delimiter behaviours, inversion, and the splits a pipeline passes along (some already a token).
#include "src/tokenizers/split_text.h"

#include <stdexcept>

#include "src/tokenizers/unicode_text.h"

namespace mpitrain::tokenizers {

SplitBehavior parse_split_behavior(const std::string& name, const std::string& where) {
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  throw std::invalid_argument(where + ": unknown split behavior '" + name + "'");
}

std::vector<std::string> split_on_matches(std::string_view text, const Ranges& matches, SplitBehavior behavior,
                                          bool invert) {
  // Every byte covered, each range marked match or not.
  struct Segment {
    std::size_t begin, end;
    bool is_match;
  };
  std::vector<Segment> segments;
  std::size_t previous = 0;
  for (const auto& [begin, end] : matches) {
    if (previous < begin) segments.push_back({previous, begin, invert});
    segments.push_back({begin, end, !invert});
    previous = end;
  }
  if (previous < text.size()) segments.push_back({previous, text.size(), invert});

  // Which segments become pieces, merged as the behaviour says: (begin, end, kept).
  std::vector<Segment> pieces;  // is_match here means "removed"
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kRemoved: pieces = segments; break;
    case SplitBehavior::kIsolated:
      for (const auto& s : segments) pieces.push_back({s.begin, s.end, false});
      break;
    case SplitBehavior::kContiguous:
      for (const auto& s : segments) {
        if (!pieces.empty() && s.is_match == previous_match) pieces.back().end = s.end;
        else pieces.push_back({s.begin, s.end, false});
        previous_match = s.is_match;
      }
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const auto& s : segments) {
        if (!pieces.empty() && s.is_match && !previous_match) pieces.back().end = s.end;
        else pieces.push_back({s.begin, s.end, false});
        previous_match = s.is_match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (auto it = segments.rbegin(); it != segments.rend(); ++it) {
        if (!pieces.empty() && it->is_match && !previous_match) pieces.back().begin = it->begin;
        else pieces.push_back({it->begin, it->end, false});
        previous_match = it->is_match;
      }
      pieces.assign(pieces.rbegin(), pieces.rend());
      break;
  }
  std::vector<std::string> out;
  for (const auto& p : pieces)
    if (!p.is_match && p.end > p.begin) out.emplace_back(text.substr(p.begin, p.end - p.begin));
  return out;
}

Ranges character_matches(std::string_view text, const std::function<bool(char32_t)>& predicate) {
  Ranges out;
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t begin = i;
    if (predicate(next_code_point(text, i))) out.emplace_back(begin, i);
  }
  return out;
}

Ranges literal_matches(std::string_view text, std::string_view needle) {
  Ranges out;
  if (needle.empty()) return out;
  for (std::size_t at = text.find(needle); at != std::string_view::npos; at = text.find(needle, at + needle.size()))
    out.emplace_back(at, at + needle.size());
  return out;
}

void resplit(std::vector<Split>& splits, const std::function<std::vector<std::string>(const std::string&)>& split) {
  std::vector<Split> out;
  out.reserve(splits.size());
  for (auto& s : splits) {
    if (s.token) {
      out.push_back(std::move(s));
      continue;
    }
    bool first = true;
    for (auto& piece : split(s.text)) {
      if (piece.empty()) continue;
      // Only a first piece that still begins the text keeps the mark (a split from inside it does not).
      const bool at_start = first && s.at_text_start && s.text.compare(0, piece.size(), piece) == 0;
      out.push_back({std::move(piece), std::nullopt, at_start});
      first = false;
    }
  }
  splits = std::move(out);
}

}  // namespace mpitrain::tokenizers
