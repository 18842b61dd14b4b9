// Comparing logits with a fixture's logits.npy the way the fixtures' READMEs say: at the positions whose attention_mask is 1.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "runtime/checkpoint/npy.h"
#include "src/models/model.h"

namespace mpitrain::testing {

// Max |logits - reference| over the positions whose attention_mask is 1 (all of them for a classifier).
inline double max_masked_difference(const torch::Tensor& logits, const checkpoint::NpyArray& reference,
                                    const models::ModelInputs& inputs) {
  auto ref = torch::from_blob(const_cast<float*>(reference.data.data()), reference.shape, torch::kFloat32);
  EXPECT_EQ(logits.sizes(), ref.sizes());
  auto diff = (logits.to(torch::kFloat32) - ref).abs();
  if (logits.dim() == 3 && inputs.attention_mask.defined())
    diff = diff * inputs.attention_mask.unsqueeze(-1).to(torch::kFloat32);
  return diff.max().item<double>();
}

}  // namespace mpitrain::testing
