// Tensor parallelism on 2 and 4 ranks against one rank: logits, losses and gradients of every fixture model, and slice loading.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "runtime/comm/mesh.h"
#include "runtime/comm/mpi_communicator.h"
#include "runtime/parallel/tensor_parallel.h"
#include "src/models/inputs_json.h"
#include "src/models/pretrained.h"
#include "src/models/registry.h"
#include "src/train/losses.h"

namespace mpitrain::models {
namespace {

constexpr double kLogitsTolerance = 1e-5;
constexpr double kGradTolerance = 1e-5;

std::shared_ptr<comm::Communicator> world() {
  static std::shared_ptr<comm::Communicator> w = comm::MpiCommunicator::world();
  return w;
}

std::string fixture(const std::string& path) { return std::string(MPITRAIN_FIXTURES_DIR) + "/" + path; }

// The block of a whole tensor that a placement describes, shaped like the local parameter.
torch::Tensor slice_of(const torch::Tensor& whole, const ParameterPlacement& p, at::IntArrayRef local_shape) {
  auto out = whole.reshape(p.view);
  for (std::size_t d = 0; d < p.view.size(); ++d)
    out = out.narrow(static_cast<std::int64_t>(d), p.block.offsets[d], p.block.sizes[d]);
  return out.reshape(local_shape);
}

struct TpCase {
  std::string model;
  int tp;
};

class TensorParallelTest : public ::testing::TestWithParam<TpCase> {};

// Loss of a model's logits on the fixture inputs: causal LM on the inputs themselves, or labels 1.
torch::Tensor loss_of(const HfModel& model, const torch::Tensor& logits, const ModelInputs& inputs) {
  if (!model.is_causal_lm()) return train::classification_loss(logits, torch::ones({logits.size(0)}, torch::kInt64)).loss;
  return train::causal_lm_loss(logits, inputs.input_ids, inputs.attention_mask, &model.tensor_parallel(),
                               model.logits_vocab_start())
      .loss;
}

TEST_P(TensorParallelTest, LogitsLossAndGradientsEqualOneRank) {
  const auto& c = GetParam();
  if (world()->size() % c.tp != 0) GTEST_SKIP() << "tp " << c.tp << " does not divide " << world()->size() << " ranks";
  comm::Mesh mesh(world(), c.tp);
  auto tp = std::make_shared<const parallel::TensorParallel>(mesh.tp_ptr());
  std::shared_ptr<HfModel> reference, split;
  // Models made from a config, initialised whole from one seed and sliced: one kv head read by
  // every rank's query heads (llama_mqa), and Phi-3 with as many kv heads as query heads, whose
  // fused qkv_proj is then split into each rank's rows (the fixture's has fewer kv heads).
  const std::map<std::string, nlohmann::json> synthetic = {
      {"llama_mqa", {{"model_type", "llama"}, {"num_key_value_heads", 1}}},
      {"phi3_mha", {{"model_type", "phi3"}, {"num_key_value_heads", 4}}}};
  if (synthetic.count(c.model)) {
    nlohmann::json config = {{"vocab_size", 256}, {"hidden_size", 64}, {"intermediate_size", 128},
                             {"num_hidden_layers", 2}, {"num_attention_heads", 4}};
    config.update(synthetic.at(c.model));
    torch::manual_seed(3);
    reference = create_model(config, c.model);
    torch::manual_seed(3);
    split = create_model(config, c.model, tp);
  } else {
    const auto dir = fixture(c.model + "/single");
    reference = from_pretrained(dir).model;
    split = from_pretrained(dir, torch::kFloat32, tp).model;
  }
  const auto inputs = read_inputs_json(fixture(c.model == "llama_mqa"  ? std::string("llama")
                                               : c.model == "phi3_mha" ? std::string("../hf-families/phi3")
                                                                       : c.model) +
                                       "/inputs.json");
  reference->eval();  // no dropout: the comparison is exact arithmetic, gradients still flow
  split->eval();

  // Every parameter is a real slice: no rank holds the whole model.
  std::int64_t local = 0, whole = 0;
  for (const auto& p : split->parameters()) local += p.numel();
  for (const auto& p : reference->parameters()) whole += p.numel();
  EXPECT_LT(local, whole);

  auto ref_logits = reference->forward(inputs);
  auto logits = split->forward(inputs);
  auto full = split->logits_split_over_vocab() ? tp->gather_last_dim(logits) : logits;
  ASSERT_EQ(full.sizes(), ref_logits.sizes());
  auto diff = (full - ref_logits).abs();
  if (inputs.attention_mask.defined() && diff.dim() == 3) diff = diff * inputs.attention_mask.unsqueeze(-1).to(diff.dtype());
  EXPECT_LT(diff.max().item<double>(), kLogitsTolerance) << c.model << " tp " << c.tp;

  auto ref_loss = loss_of(*reference, ref_logits, inputs);
  auto loss = loss_of(*split, logits, inputs);
  EXPECT_NEAR(loss.item<double>(), ref_loss.item<double>(), 1e-5);
  ref_loss.backward();
  loss.backward();
  const auto ref_params = reference->named_parameters();
  const auto placements = split->placements();
  std::size_t i = 0;
  for (const auto& item : split->named_parameters()) {
    const auto& placement = placements[i++].second;
    const auto expected = slice_of(ref_params[item.key()].grad(), placement, item.value().sizes());
    auto grad = item.value().grad();
    // A kv slice shared by several ranks holds only its own query heads' part until the
    // trainer sums the sharing ranks; compare it summed the same way.
    if (placement.partial_gradient) {
      auto group = mesh.tp().split(mesh.tp_rank() / placement.replicas, mesh.tp_rank(), "slice");
      grad = grad.clone();
      group->allreduce(grad);
    }
    EXPECT_LT((grad - expected).abs().max().item<double>(), kGradTolerance) << c.model << " " << item.key();
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TensorParallelTest,
                         ::testing::Values(TpCase{"llama", 2}, TpCase{"llama", 4}, TpCase{"llama_tied", 2},
                                           TpCase{"llama_tied", 4}, TpCase{"gpt2", 2}, TpCase{"gpt2", 4},
                                           TpCase{"bert_seqcls", 2}, TpCase{"bert_seqcls", 4},
                                           TpCase{"llama_mqa", 2}, TpCase{"llama_mqa", 4}),
                         [](const auto& info) { return info.param.model + "_tp" + std::to_string(info.param.tp); });

// The five families of ../hf-families (Phi-3's fixture: 4 query heads, 2 kv heads, so its
// qkv_proj is held whole under tp), and a Phi-3 whose qkv_proj splits.
INSTANTIATE_TEST_SUITE_P(
    Families, TensorParallelTest,
    ::testing::Values(TpCase{"../hf-families/qwen2", 2}, TpCase{"../hf-families/qwen2", 4},
                      TpCase{"../hf-families/mistral", 2}, TpCase{"../hf-families/mistral", 4},
                      TpCase{"../hf-families/gemma", 2}, TpCase{"../hf-families/gemma", 4},
                      TpCase{"../hf-families/gemma2", 2}, TpCase{"../hf-families/gemma2", 4},
                      TpCase{"../hf-families/phi3", 2}, TpCase{"../hf-families/phi3", 4}, TpCase{"phi3_mha", 2},
                      TpCase{"phi3_mha", 4}),
    [](const auto& info) {
      return info.param.model.substr(info.param.model.rfind('/') + 1) + "_tp" + std::to_string(info.param.tp);
    });

TEST(TensorParallel, VocabParallelCrossEntropyMatchesFullOne) {
  comm::Mesh mesh(world(), world()->size());
  parallel::TensorParallel tp(mesh.tp_ptr());
  torch::manual_seed(7);  // the same logits on every rank
  const std::int64_t vocab = 8 * tp.size();
  auto full = torch::randn({6, vocab}, torch::kFloat32).requires_grad_(true);
  auto targets = torch::tensor({0L, vocab - 1, 3L, -100L, vocab / 2, 1L});
  auto expected = torch::nn::functional::cross_entropy(
      full, targets, torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-100).reduction(torch::kNone));
  const auto width = vocab / tp.size();
  auto local = full.detach().narrow(1, tp.rank() * width, width).clone().requires_grad_(true);
  auto losses = tp.vocab_parallel_cross_entropy(local, targets, tp.rank() * width);
  EXPECT_LT((losses - expected).abs().max().item<double>(), 1e-6);
  EXPECT_EQ(losses[3].item<double>(), 0.0);  // ignored target
  expected.sum().backward();
  losses.sum().backward();
  EXPECT_LT((local.grad() - full.grad().narrow(1, tp.rank() * width, width)).abs().max().item<double>(), 1e-6);
}

TEST(TensorParallel, SizesTheGroupDoesNotDivideAreAClearError) {
  if (world()->size() != 4) GTEST_SKIP() << "needs 4 ranks";
  // tp 4 with 6 heads: the config names the key and the size.
  comm::Mesh mesh(world(), 4);
  auto tp = std::make_shared<const parallel::TensorParallel>(mesh.tp_ptr());
  nlohmann::json config = {{"model_type", "llama"}, {"vocab_size", 64},        {"hidden_size", 48},
                           {"intermediate_size", 64}, {"num_hidden_layers", 1}, {"num_attention_heads", 6},
                           {"num_key_value_heads", 3}};
  try {
    create_model(config, "cfg.json", tp);
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("cfg.json: num_attention_heads 6 is not divisible by tensor_parallel_size 4"),
              std::string::npos)
        << e.what();
  }
  config["num_attention_heads"] = 4;
  config["num_key_value_heads"] = 4;
  config["vocab_size"] = 66;
  try {
    create_model(config, "cfg.json", tp);
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("vocab_size 66 is not divisible by tensor_parallel_size 4"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace mpitrain::models
