// Data prepared with a Hugging Face tokenizer: the token stream is each document as the tokenizer encodes it (its BOS where the post-processor adds one) then EOS; classification rows keep [CLS] and [SEP] when cut; the pad id and vocab size are the tokenizer's.
#include <gtest/gtest.h>

#include <numeric>

#include "src/data/hdf5_dataset.h"
#include "src/data/prepare_data.h"
#include "src/tokenizers/tokenizer.h"
#include "tests/unit/test_files.h"

namespace mpitrain::data {
namespace {

std::string fixture(const std::string& name) { return std::string(MPITRAIN_FIXTURES_DIR) + "/../tokenizers/" + name; }

std::vector<int> all_tokens(const std::string& file, const std::string& split) {
  const Hdf5Dataset data(file, split, 1);
  std::vector<std::int64_t> every(static_cast<std::size_t>(data.size()));
  std::iota(every.begin(), every.end(), 0);
  const auto batch = data.read(every);
  const auto ids = batch.input_ids.flatten().contiguous();
  return std::vector<int>(ids.data_ptr<std::int64_t>(), ids.data_ptr<std::int64_t>() + ids.numel());
}

std::vector<int> concat(std::vector<int> a, const std::vector<int>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST(PrepareWithTokenizer, DocumentsJoinTheStreamAsTheTokenizerEncodesThemThenEos) {
  testing::ScratchDir dir;
  testing::write_bytes(dir / "a.txt", "Hello world, this is the first document.");
  testing::write_bytes(dir / "b.txt", "And a second one.\nWith two lines.");
  testing::write_bytes(dir / "c.txt", "A third, for the eval split.");
  for (const auto& [name, eos] : std::vector<std::pair<std::string, std::string>>{{"bytelevel-bpe", "<|endoftext|>"},
                                                                                 {"sentencepiece-bpe", "</s>"}}) {
    const auto tokenizer = tokenizers::Tokenizer::from_path(fixture(name));
    const auto encoder = tokenizer_encoder(fixture(name));
    const auto out = dir / (name + ".h5");
    prepare_text_corpus(dir.path(), out, *encoder, /*eval_every=*/3);
    const int eos_id = *tokenizer.token_to_id(eos);
    const auto doc = [&](const std::string& text) { return concat(tokenizer.encode(text, true).ids, {eos_id}); };
    EXPECT_EQ(all_tokens(out, "train"), concat(doc("Hello world, this is the first document."),
                                               doc("And a second one.\nWith two lines.")))
        << name;
    EXPECT_EQ(all_tokens(out, "eval"), doc("A third, for the eval split.")) << name;
    EXPECT_EQ(Hdf5Dataset(out, "train", 1).vocab_size(), tokenizer.vocab_size()) << name;
  }
  // SentencePiece's post-processor adds <s>: each document starts with it.
  EXPECT_EQ(all_tokens(dir / "sentencepiece-bpe.h5", "eval").front(), 1);
}

TEST(PrepareWithTokenizer, ClassificationRowsKeepTheirSpecialTokensWhenCut) {
  testing::ScratchDir dir;
  testing::write_bytes(dir / "rows.jsonl",
                       "{\"text\": \"a short one\", \"label\": 0}\n"
                       "{\"text\": \"a much longer text that will not fit in eight tokens at all\", \"label\": 1}\n");
  const auto tokenizer = tokenizers::Tokenizer::from_path(fixture("wordpiece-uncased"));
  prepare_classification(dir / "rows.jsonl", dir / "rows.h5", *tokenizer_encoder(fixture("wordpiece-uncased")), 8,
                         /*eval_every=*/2);
  const Hdf5Dataset train(dir / "rows.h5", "train", 8), eval(dir / "rows.h5", "eval", 8);
  const auto short_row = train.read({0}), long_row = eval.read({0});
  const auto expected_short = tokenizer.encode("a short one", true).ids;  // [CLS] a short one [SEP]
  for (std::size_t i = 0; i < 8; ++i) {
    const auto id = short_row.input_ids[0][static_cast<std::int64_t>(i)].item<std::int64_t>();
    EXPECT_EQ(id, i < expected_short.size() ? expected_short[i] : 0) << i;  // padded with [PAD] = 0
  }
  const auto cut = long_row.input_ids[0];
  EXPECT_EQ(cut[0].item<std::int64_t>(), *tokenizer.token_to_id("[CLS]"));
  EXPECT_EQ(cut[7].item<std::int64_t>(), *tokenizer.token_to_id("[SEP]"));  // the text lost its end, not [SEP]
  EXPECT_EQ(long_row.attention_mask.sum().item<std::int64_t>(), 8);
}

TEST(PrepareWithTokenizer, ATokenizerDirectoryThatCannotEncodeIsNamed) {
  testing::ScratchDir dir;
  testing::write_bytes(dir / "tokenizer_config.json", "{\"tokenizer_class\": \"LlamaTokenizer\"}");
  EXPECT_THROW(tokenizer_encoder(dir.path()), tokenizers::TokenizerError);
  testing::write_bytes(dir / "tokenizer.json", testing::read_bytes(fixture("bytelevel-bpe") + "/tokenizer.json"));
  testing::write_bytes(dir / "tokenizer_config.json", "{\"eos_token\": \"<|not-there|>\"}");
  try {
    tokenizer_encoder(dir.path());
    FAIL();
  } catch (const tokenizers::TokenizerError& e) {
    EXPECT_NE(std::string(e.what()).find("its eos_token '<|not-there|>' is not in tokenizer.json"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace mpitrain::data
