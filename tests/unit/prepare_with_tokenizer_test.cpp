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
  Hdf5Dataset train(dir / "rows.h5", "train", 8), eval(dir / "rows.h5", "eval", 8);
  train.set_pad_to_longest(false);  // the row as stored, padding included
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

TEST(PrepareWithTokenizer, SentencePairsKeepTheirTypeIdsAndLabelsMapByName) {
  testing::ScratchDir dir;
  testing::write_bytes(dir / "pairs.jsonl",
                       "{\"text\": \"is this spam\", \"text_pair\": \"no it is not\", \"label\": \"ham\"}\n"
                       "{\"text\": \"a long first sentence that goes on and on\", \"text_pair\": \"and a long second "
                       "one that goes on too\", \"label\": 1}\n");
  const auto tokenizer = tokenizers::Tokenizer::from_path(fixture("wordpiece-uncased"));
  LabelSet labels;
  labels.label2id = {{"ham", 0}, {"spam", 1}};
  labels.num_labels = 2;
  prepare_classification(dir / "pairs.jsonl", dir / "pairs.h5", *tokenizer_encoder(fixture("wordpiece-uncased")), 14,
                         /*eval_every=*/2, labels);
  const Hdf5Dataset train(dir / "pairs.h5", "train", 14), eval(dir / "pairs.h5", "eval", 14);
  const auto short_pair = train.read({0}), long_pair = eval.read({0});
  const auto expected = tokenizer.encode_pair("is this spam", "no it is not", true);  // 13 tokens: not cut
  ASSERT_EQ(expected.ids.size(), 13u);
  ASSERT_TRUE(short_pair.token_type_ids.defined());
  for (std::size_t i = 0; i < expected.ids.size(); ++i) {
    EXPECT_EQ(short_pair.input_ids[0][static_cast<std::int64_t>(i)].item<std::int64_t>(), expected.ids[i]) << i;
    EXPECT_EQ(short_pair.token_type_ids[0][static_cast<std::int64_t>(i)].item<std::int64_t>(), expected.type_ids[i]) << i;
  }
  EXPECT_EQ(short_pair.labels[0].item<std::int64_t>(), 0);  // "ham"
  // 9 + 11 tokens cut to 14 - 3 special tokens as longest_first cuts: 5 + 6; both [SEP]s kept.
  const auto sep = *tokenizer.token_to_id("[SEP]");
  const auto ids = long_pair.input_ids[0], types = long_pair.token_type_ids[0];
  EXPECT_EQ(ids[6].item<std::int64_t>(), sep);
  EXPECT_EQ(ids[13].item<std::int64_t>(), sep);
  EXPECT_EQ(types[6].item<std::int64_t>(), 0);
  EXPECT_EQ(types[7].item<std::int64_t>(), 1);
  EXPECT_EQ(types[13].item<std::int64_t>(), 1);
  EXPECT_EQ(long_pair.attention_mask.sum().item<std::int64_t>(), 14);
  // A label not in label2id, and an integer label past the model's labels: named by file and line.
  const auto fails_with = [&](const std::string& line, const std::string& needle) {
    testing::write_bytes(dir / "bad.jsonl", "{\"text\": \"fine\", \"label\": 0}\n" + line + "\n");
    try {
      prepare_classification(dir / "bad.jsonl", dir / "bad.h5", *byte_encoder(), 16, 2, labels);
      ADD_FAILURE() << "accepted " << line;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(dir / "bad.jsonl:2: " + needle), std::string::npos) << e.what();
    }
  };
  fails_with(R"({"text": "x", "label": "eggs"})", "label 'eggs' is not in the model config's label2id (ham, spam)");
  fails_with(R"({"text": "x", "label": 2})", "label 2 is outside the model's 2 labels (0..1)");
  fails_with(R"({"text": "x"})", "needs a string \"text\" and a \"label\"");
  fails_with(R"({"text": "x", "text_pair": "y", "label": 1})", "");  // reaches the byte tokenizer's refusal below
}

TEST(PrepareWithTokenizer, EachBatchIsPaddedToItsLongestRowUnlessToldToKeepTheWholeWidth) {
  testing::ScratchDir dir;
  testing::write_bytes(dir / "sft.jsonl",
                       "{\"prompt\": \"ab\", \"completion\": \"c\"}\n"         // 2 + 1 + EOS = 4 tokens
                       "{\"prompt\": \"abcdef\", \"completion\": \"gh\"}\n"    // 6 + 2 + EOS = 9
                       "{\"prompt\": \"x\", \"completion\": \"y\"}\n");        // the eval row
  prepare_prompt_completion(dir / "sft.jsonl", dir / "sft.h5", *byte_encoder(), 32, /*eval_every=*/3);
  Hdf5Dataset train(dir / "sft.h5", "train", 32);
  const auto one = train.read({0}), both = train.read({0, 1});
  EXPECT_EQ(one.input_ids.sizes(), (std::vector<std::int64_t>{1, 4}));
  EXPECT_EQ(both.input_ids.sizes(), (std::vector<std::int64_t>{2, 9}));
  for (const auto* t : {&both.attention_mask, &both.labels}) EXPECT_EQ(t->sizes(), both.input_ids.sizes());
  EXPECT_EQ(both.attention_mask[0].sum().item<std::int64_t>(), 4);  // the shorter row padded, masked out
  EXPECT_EQ(both.labels[0][8].item<std::int64_t>(), -100);
  EXPECT_EQ(both.tokens, 13);
  train.set_pad_to_longest(false);
  EXPECT_EQ(train.read({0, 1}).input_ids.size(1), 32);
  // Classification rows the same, their type ids too.
  testing::write_bytes(dir / "pairs.jsonl", "{\"text\": \"is it\", \"text_pair\": \"no\", \"label\": 0}\n"
                                            "{\"text\": \"x\", \"label\": 1}\n");
  prepare_classification(dir / "pairs.jsonl", dir / "pairs.h5", *tokenizer_encoder(fixture("wordpiece-uncased")), 20,
                         /*eval_every=*/2);
  const auto pair = Hdf5Dataset(dir / "pairs.h5", "train", 20).read({0});  // [CLS] is it [SEP] no [SEP]
  EXPECT_EQ(pair.input_ids.size(1), 6);
  EXPECT_EQ(pair.token_type_ids.sizes(), pair.input_ids.sizes());
  EXPECT_EQ(pair.labels.sizes(), (std::vector<std::int64_t>{1}));
}

TEST(PrepareWithTokenizer, ThePairOfAByteTokenizedRowIsRefused) {
  testing::ScratchDir dir;
  testing::write_bytes(dir / "p.jsonl", "{\"text\": \"a\", \"text_pair\": \"b\", \"label\": 0}\n{\"text\": \"c\", \"label\": 1}\n");
  try {
    prepare_classification(dir / "p.jsonl", dir / "p.h5", *byte_encoder(), 16, 2);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("needs a Hugging Face tokenizer"), std::string::npos) << e.what();
  }
}

TEST(PrepareWithTokenizer, PromptTokensAreNoTargetsAndALongPromptLosesItsOldestTokens) {
  testing::ScratchDir dir;
  testing::write_bytes(dir / "sft.jsonl",
                       "{\"prompt\": \"Question: two and two?\", \"completion\": \" Four.\"}\n"
                       "{\"prompt\": \"A prompt far too long to fit in the row at all, so it loses its start\", "
                       "\"completion\": \" kept whole\"}\n");
  const auto tokenizer = tokenizers::Tokenizer::from_path(fixture("sentencepiece-bpe"));
  prepare_prompt_completion(dir / "sft.jsonl", dir / "sft.h5", *tokenizer_encoder(fixture("sentencepiece-bpe")), 16,
                            /*eval_every=*/2);
  Hdf5Dataset train(dir / "sft.h5", "train", 16), eval(dir / "sft.h5", "eval", 16);
  train.set_pad_to_longest(false);  // the row as stored, padding included
  ASSERT_TRUE(train.has_token_labels());
  const auto short_row = train.read({0});
  const auto prompt = tokenizer.encode("Question: two and two?", true).ids;  // <s> first
  auto completion = tokenizer.encode(" Four.", false).ids;
  completion.push_back(*tokenizer.token_to_id("</s>"));
  for (std::size_t i = 0; i < 16; ++i) {
    const auto id = short_row.input_ids[0][static_cast<std::int64_t>(i)].item<std::int64_t>();
    const auto label = short_row.labels[0][static_cast<std::int64_t>(i)].item<std::int64_t>();
    if (i < prompt.size()) {
      EXPECT_EQ(id, prompt[i]) << i;
      EXPECT_EQ(label, -100) << "a prompt token is a target at " << i;
    } else if (i < prompt.size() + completion.size()) {
      EXPECT_EQ(id, completion[i - prompt.size()]) << i;
      EXPECT_EQ(label, id) << i;
    } else {
      EXPECT_EQ(label, -100) << "padding is a target at " << i;
    }
  }
  // The long prompt lost its oldest tokens; the completion and its </s> end the row whole.
  const auto long_row = eval.read({0});
  auto kept = tokenizer.encode(" kept whole", false).ids;
  kept.push_back(*tokenizer.token_to_id("</s>"));
  for (std::size_t k = 0; k < kept.size(); ++k)
    EXPECT_EQ(long_row.labels[0][static_cast<std::int64_t>(16 - kept.size() + k)].item<std::int64_t>(), kept[k]);
  EXPECT_EQ(long_row.attention_mask.sum().item<std::int64_t>(), 16);
  testing::write_bytes(dir / "bad.jsonl", "{\"prompt\": \"p\", \"completion\": \"c\"}\n{\"prompt\": \"p\", \"completion\": \"\"}\n");
  try {
    prepare_prompt_completion(dir / "bad.jsonl", dir / "bad.h5", *byte_encoder(), 16, 2);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(dir / "bad.jsonl:2: the completion is empty"), std::string::npos) << e.what();
  }
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
