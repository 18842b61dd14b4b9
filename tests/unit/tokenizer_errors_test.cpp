// A tokenizer.json mpitrain cannot read exactly is one line naming the file and the component: unsupported types, bad merges, bad ids, invalid JSON, a missing file.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "src/tokenizers/tokenizer.h"
#include "tests/unit/test_files.h"

namespace mpitrain::tokenizers {
namespace {

using nlohmann::json;

json small_bpe() {
  return json::parse(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]},
                         "normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": null,
                         "added_tokens": []})");
}

// The error `json` gives, checked to be one line naming the file.
std::string error_of(const json& tokenizer) {
  try {
    Tokenizer::from_json(tokenizer, "t/tokenizer.json");
  } catch (const TokenizerError& e) {
    const std::string text = e.what();
    EXPECT_EQ(text.rfind("t/tokenizer.json: ", 0), 0u) << text;
    EXPECT_EQ(text.find('\n'), std::string::npos) << text;
    return text;
  }
  ADD_FAILURE() << "no error for " << tokenizer.dump();
  return "";
}

TEST(TokenizerErrors, ASmallBpeMergesAsItsMergesSay) {
  const auto t = Tokenizer::from_json(small_bpe(), "t/tokenizer.json");
  EXPECT_EQ(t.encode("ab").ids, std::vector<int>({2}));
  EXPECT_EQ(t.encode("ba").ids, std::vector<int>({1, 0}));
  EXPECT_EQ(t.vocab_size(), 3);
}

TEST(TokenizerErrors, BertAndRobertaProcessingJoinPairsAsTheLibraryDoes) {
  auto j = small_bpe();
  j["model"]["vocab"]["<s>"] = 3;
  j["model"]["vocab"]["</s>"] = 4;
  j["post_processor"] = json::parse(R"({"type": "RobertaProcessing", "cls": ["<s>", 3], "sep": ["</s>", 4]})");
  auto t = Tokenizer::from_json(j, "t/tokenizer.json");
  auto pair = t.encode_pair("a", "b");
  EXPECT_EQ(pair.ids, std::vector<int>({3, 0, 4, 4, 1, 4}));
  EXPECT_EQ(pair.type_ids, std::vector<int>({0, 0, 0, 0, 0, 0}));
  j["post_processor"] = json::parse(R"({"type": "BertProcessing", "cls": ["<s>", 3], "sep": ["</s>", 4]})");
  t = Tokenizer::from_json(j, "t/tokenizer.json");
  pair = t.encode_pair("a", "b");
  EXPECT_EQ(pair.ids, std::vector<int>({3, 0, 4, 1, 4}));
  EXPECT_EQ(pair.type_ids, std::vector<int>({0, 0, 0, 1, 1}));
  EXPECT_EQ(t.encode_pair("a", "b", false).type_ids, std::vector<int>({0, 1}));
}

TEST(TokenizerErrors, UnsupportedComponentsAreNamedWithTheirPlace) {
  auto j = small_bpe();
  j["normalizer"] = json::parse(R"({"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Precompiled"}]})");
  EXPECT_NE(error_of(j).find("normalizer.normalizers[1]: type 'Precompiled' is not supported"), std::string::npos);
  j = small_bpe();
  j["model"] = json::parse(R"({"type": "Unigram", "vocab": [["a", 0.0]]})");
  EXPECT_NE(error_of(j).find("model: type 'Unigram' is not supported"), std::string::npos);
  j = small_bpe();
  j["pre_tokenizer"] = json::parse(R"({"type": "UnicodeScripts"})");
  EXPECT_NE(error_of(j).find("pre_tokenizer: type 'UnicodeScripts' is not supported"), std::string::npos);
  j = small_bpe();
  j["decoder"] = json::parse(R"({"type": "CTC"})");
  EXPECT_NE(error_of(j).find("decoder: type 'CTC'"), std::string::npos);
  j = small_bpe();
  j["model"]["dropout"] = 0.1;
  EXPECT_NE(error_of(j).find("dropout is not supported"), std::string::npos);
}

TEST(TokenizerErrors, BadVocabulariesAndMergesAreNamed) {
  auto j = small_bpe();
  j["model"]["merges"] = json::array({"a c"});
  EXPECT_NE(error_of(j).find("merge 0 (a c) names a token not in the vocabulary"), std::string::npos);
  j = small_bpe();
  j["model"]["merges"] = json::array({"a b c"});
  EXPECT_NE(error_of(j).find("is not two tokens separated by one space"), std::string::npos);
  j = small_bpe();
  j["model"]["vocab"]["c"] = 1;
  EXPECT_NE(error_of(j).find("id 1 is given to both"), std::string::npos);
  j = small_bpe();
  j["model"]["vocab"]["c"] = -4;
  EXPECT_NE(error_of(j).find("token 'c' has id -4, not a non-negative integer"), std::string::npos);
  j = small_bpe();
  j["model"]["unk_token"] = "<unk>";
  EXPECT_NE(error_of(j).find("unk_token '<unk>' is not in the vocabulary"), std::string::npos);
  j = small_bpe();
  j["added_tokens"] = json::parse(R"([{"id": 3, "content": "<s>"}, {"id": 3, "content": "</s>"}])");
  EXPECT_NE(error_of(j).find("added_tokens[1]: id 3 is given to two added tokens"), std::string::npos);
  j = small_bpe();
  j["pre_tokenizer"] = json::parse(R"({"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated"})");
  EXPECT_NE(error_of(j).find("pre_tokenizer: regex /(unclosed/"), std::string::npos);
  j = small_bpe();
  j["post_processor"] = json::parse(R"({"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}}], "pair": []})");
  EXPECT_NE(error_of(j).find("special token '<s>' is not in the vocabulary"), std::string::npos);
}

TEST(TokenizerErrors, AFileThatIsNotATokenizerIsNamed) {
  testing::ScratchDir dir;
  testing::write_bytes(dir / "tokenizer.json", "{\"model\": ");
  try {
    Tokenizer::from_path(dir.path());
    FAIL();
  } catch (const TokenizerError& e) {
    EXPECT_NE(std::string(e.what()).find(dir / "tokenizer.json"), std::string::npos) << e.what();
  }
  testing::write_bytes(dir / "tokenizer.json", "[1, 2]");
  EXPECT_THROW(Tokenizer::from_path(dir.path()), TokenizerError);
  testing::ScratchDir empty;
  try {
    Tokenizer::from_path(empty.path());
    FAIL();
  } catch (const TokenizerError& e) {
    EXPECT_NE(std::string(e.what()).find(": no tokenizer.json"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace mpitrain::tokenizers
