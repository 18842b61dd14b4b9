// Every case the real Hugging Face tokenizers library wrote for the four shared tokenizer.json files: ids with and without special tokens, pairs and type ids, decoding with and without them; exact.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "src/tokenizers/tokenizer.h"

namespace mpitrain::tokenizers {
namespace {

using nlohmann::json;

std::string fixture_dir(const std::string& name) {
  return std::string(MPITRAIN_FIXTURES_DIR) + "/../tokenizers/" + name;
}

std::vector<json> cases_of(const std::string& name) {
  std::ifstream in(fixture_dir(name) + "/cases.jsonl");
  std::vector<json> cases;
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) cases.push_back(json::parse(line));
  return cases;
}

std::string shown(const std::string& text) { return json(text).dump(); }

class TokenizerFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerFixture, MatchesTheLibraryOnEveryCase) {
  const auto tokenizer = Tokenizer::from_file(fixture_dir(GetParam()) + "/tokenizer.json");
  const auto cases = cases_of(GetParam());
  ASSERT_GE(cases.size(), 281u);
  int failures = 0, pairs = 0;
  const auto report = [&](const json& c, const std::string& what, const std::string& ours, const std::string& theirs) {
    if (++failures <= 8) {
      ADD_FAILURE() << GetParam() << " " << what << " of " << shown(c["text"].get<std::string>()) << "\n  ours:   " << ours
                    << "\n  theirs: " << theirs;
    }
  };
  for (const auto& c : cases) {
    const auto text = c["text"].get<std::string>();
    const auto with = tokenizer.encode(text, true), without = tokenizer.encode(text, false);
    if (json(with.ids) != c["ids"]) report(c, "ids", json(with.ids).dump(), c["ids"].dump());
    if (json(without.ids) != c["ids_no_special"])
      report(c, "ids_no_special", json(without.ids).dump(), c["ids_no_special"].dump());
    const auto decoded = tokenizer.decode(c["ids"].get<std::vector<int>>(), true);
    if (decoded != c["decoded"]) report(c, "decoded", shown(decoded), c["decoded"].dump());
    const auto decoded_special = tokenizer.decode(c["ids"].get<std::vector<int>>(), false);
    if (decoded_special != c["decoded_with_special"])
      report(c, "decoded_with_special", shown(decoded_special), c["decoded_with_special"].dump());
    if (c.contains("text_pair")) {
      ++pairs;
      const auto pair = tokenizer.encode_pair(text, c["text_pair"].get<std::string>(), true);
      if (json(pair.ids) != c["pair_ids"]) report(c, "pair_ids", json(pair.ids).dump(), c["pair_ids"].dump());
      if (json(pair.type_ids) != c["pair_type_ids"])
        report(c, "pair_type_ids", json(pair.type_ids).dump(), c["pair_type_ids"].dump());
    }
  }
  EXPECT_EQ(failures, 0) << failures << " mismatches over " << cases.size() << " cases of " << GetParam();
  if (GetParam() == "wordpiece-uncased") {
    EXPECT_GT(pairs, 50);
  }
}

INSTANTIATE_TEST_SUITE_P(Shared, TokenizerFixture,
                         ::testing::Values("bytelevel-bpe", "qwen3", "sentencepiece-bpe", "wordpiece-uncased"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (auto& ch : name) ch = ch == '-' ? '_' : ch;
                           return name;
                         });

}  // namespace
}  // namespace mpitrain::tokenizers
