// Deferred initialisation: parameters made one at a time later get the values construction gives, and a model is never whole in memory.
#include <gtest/gtest.h>
#include <malloc.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "src/models/deferred_init.h"
#include "src/models/registry.h"

namespace mpitrain::models {
namespace {

using nlohmann::json;

json llama(std::int64_t hidden, std::int64_t intermediate, std::int64_t layers, std::int64_t vocab) {
  return {{"model_type", "llama"},     {"vocab_size", vocab},    {"hidden_size", hidden},
          {"intermediate_size", intermediate}, {"num_hidden_layers", layers}, {"num_attention_heads", 8},
          {"num_key_value_heads", 4},  {"max_position_embeddings", 64}, {"tie_word_embeddings", false}};
}

json gpt2() {
  return {{"model_type", "gpt2"}, {"vocab_size", 300}, {"n_embd", 32}, {"n_layer", 2}, {"n_head", 4}, {"n_positions", 64}};
}

json bert() {
  return {{"model_type", "bert"},        {"vocab_size", 70},          {"hidden_size", 24},
          {"num_hidden_layers", 1},      {"num_attention_heads", 3},  {"intermediate_size", 40},
          {"max_position_embeddings", 32}, {"id2label", {{"0", "a"}, {"1", "b"}, {"2", "c"}}}};
}

TEST(DeferredInitialisation, GivesTheValuesConstructionGivesInAnyOrder) {
  for (const auto& config : {llama(32, 64, 2, 259), gpt2(), bert()}) {
    SCOPED_TRACE(config["model_type"].get<std::string>());
    torch::manual_seed(11);
    const auto reference = create_model(config, "reference");
    torch::manual_seed(11);
    DeferredInitialisation deferred;
    const auto model = create_model(config, "deferred");
    deferred.stop_recording();
    EXPECT_GT(deferred.recorded(), 0u);
    const auto between = torch::randn({1000});  // draws in between change nothing
    auto parameters = model->parameters();
    // Last first: everything before is made too, in order; asking again changes nothing.
    for (auto it = parameters.rbegin(); it != parameters.rend(); ++it) deferred.materialise(*it);
    EXPECT_EQ(deferred.materialised(), deferred.recorded());
    const auto expected = reference->named_parameters();
    for (const auto& item : model->named_parameters())
      EXPECT_TRUE(torch::equal(item.value(), expected[item.key()])) << item.key();
    // The default generator goes on as if nothing had been made: the same draws as a
    // generator seeded alike that only drew `between`.
    const auto after = torch::randn({4});
    torch::manual_seed(11);
    EXPECT_TRUE(torch::equal(between, torch::randn({1000})));
    EXPECT_TRUE(torch::equal(after, torch::randn({4})));
  }
}

std::int64_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::int64_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * ::sysconf(_SC_PAGESIZE);
}

TEST(DeferredInitialisation, AModelMadeTensorByTensorIsNeverWholeInMemory) {
  // Large tensors straight from and back to the system, so resident memory is live memory; no
  // transparent huge pages (a kernel set to "always" would fault in 2 MB for each tensor's first
  // touched page, an untouched registered tensor looking resident).
  ::mallopt(M_MMAP_THRESHOLD, 1 << 20);
  ::prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
  const auto config = llama(1024, 2816, 4, 8192);  // ~256 MB of float32; the largest tensor 32 MB
  const auto start = resident_bytes();
  torch::manual_seed(3);
  DeferredInitialisation deferred;
  const auto model = create_model(config, "big");
  deferred.stop_recording();
  std::int64_t model_bytes = 0, largest = 0;
  for (const auto& p : model->parameters()) {
    model_bytes += p.nbytes();
    largest = std::max<std::int64_t>(largest, p.nbytes());
  }
  ASSERT_GT(model_bytes, 200 << 20);
  // Registered, not made: allocated but never touched.
  EXPECT_LT(resident_bytes() - start, model_bytes / 10);
  // As ZeRO-3's set-up takes them: made, its slice kept (here: its sum), the rest freed.
  const auto bound = 2 * largest + (16 << 20);
  ASSERT_LT(bound, model_bytes / 2);  // the whole model would not fit under it
  double checksum = 0;
  for (auto& p : model->parameters()) {
    deferred.materialise(p);
    checksum += p.sum().item<double>();
    EXPECT_LT(resident_bytes() - start, bound);
    p.set_data(torch::empty({0}));
  }
  EXPECT_TRUE(std::isfinite(checksum));
  EXPECT_EQ(deferred.materialised(), deferred.recorded());
}

}  // namespace
}  // namespace mpitrain::models
