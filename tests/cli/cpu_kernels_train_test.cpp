// `mpitrain train` with the fused CPU kernels against the eager ATen ops for every rotary family, and profile_steps' table.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "tests/cli/layout_train_fixture.h"

namespace mpitrain {
namespace {

class CpuKernelsTrain : public LayoutTrain {
 protected:
  static std::string family_dir(const std::string& family) { return fixture("../hf-families/" + family + "/single"); }
  std::string config(const std::string& name, const std::string& family, const json& extra = json::object()) {
    json training = {{"max_steps", 12}, {"per_device_train_batch_size", 2}, {"learning_rate", 3e-3}};
    training.update(extra);
    return fixture_config(name, family_dir(family), false, training);
  }
};

// Twelve steps from each fixture (Qwen2's biases, Mistral's and Gemma2's windows, Gemma's GeLU
// and 1 + weight norms, Phi-3's fused projections) with the kernels and without: the losses
// agree within 2e-4 (float32 sums in another order, amplified by AdamW), as the layouts' do.
TEST_F(CpuKernelsTrain, EachFamilyTrainsAsWithTheEagerOps) {
  for (const std::string family : {"qwen2", "mistral", "gemma", "gemma2", "phi3"}) {
    auto r = run(0, "train " + config(family + "_fused", family));
    ASSERT_EQ(r.status, 0) << family << "\n" << r.err;
    r = run(0, "train " + config(family + "_eager", family, {{"cpu_fused_kernels", false}}));
    ASSERT_EQ(r.status, 0) << family << "\n" << r.err;
    const auto fused = losses(out(family + "_fused")), eager = losses(out(family + "_eager"));
    ASSERT_EQ(fused.size(), 12u) << family;
    ASSERT_EQ(eager.size(), fused.size()) << family;
    for (std::size_t i = 0; i < fused.size(); ++i) EXPECT_NEAR(fused[i], eager[i], 2e-4) << family << " step " << i + 1;
  }
}

// bfloat16 autocast: the kernels round where the eager ops do; the losses agree within 1%.
TEST_F(CpuKernelsTrain, Bfloat16TrainsAsWithTheEagerOps) {
  auto r = run(0, "train " + config("bf16_fused", "qwen2", {{"bf16", true}}));
  ASSERT_EQ(r.status, 0) << r.err;
  r = run(0, "train " + config("bf16_eager", "qwen2", {{"bf16", true}, {"cpu_fused_kernels", false}}));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto fused = losses(out("bf16_fused")), eager = losses(out("bf16_eager"));
  ASSERT_EQ(fused.size(), eager.size());
  for (std::size_t i = 0; i < fused.size(); ++i) EXPECT_NEAR(fused[i], eager[i], 0.01 * eager[i]) << "step " << i + 1;
}

// profile_steps=3 after the first two: rank 0 writes the table, the matrix products in it.
TEST_F(CpuKernelsTrain, ProfileStepsWritesTheTimeByOperation) {
  const auto r = run(2, "train " + config("profiled", "qwen2", {{"max_steps", 6}, {"profile_steps", 3}}));
  ASSERT_EQ(r.status, 0) << r.err;
  std::ifstream in(out("profiled") + "/profile.txt");
  std::stringstream table;
  table << in.rdbuf();
  EXPECT_EQ(table.str().rfind("3 steps profiled, ", 0), 0u) << table.str();
  EXPECT_NE(table.str().find("aten::mm "), std::string::npos) << table.str();
  EXPECT_NE(r.out.find("the profile of 3 steps (time by operation) is in "), std::string::npos) << r.out;
}

TEST_F(CpuKernelsTrain, ANegativeProfileStepsIsRefused) {
  const auto r = run(0, "train " + config("negative", "qwen2", {{"profile_steps", -1}}));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("profile_steps"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace mpitrain
