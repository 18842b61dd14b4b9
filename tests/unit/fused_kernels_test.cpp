// The CPU's fused kernels against the eager ATen passes they replace, forward and backward.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "src/models/attention.h"
#include "src/models/autocast.h"
#include "src/models/cpu_causal_attention.h"
#include "src/models/fused/batched_gemm.h"
#include "src/models/fused/fused_ops.h"
#include "src/models/fused/kernels.h"

namespace mpitrain::models {
namespace {

struct Grads {
  torch::Tensor out, dq, dk, dv;
};

// Attention of fresh leaf copies of q, k, v, and their gradients for the upstream gradient `up`.
// `eager` passes the causal mask explicitly, which takes transformers' eager path.
Grads attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& up,
             bool eager) {
  auto ql = q.clone().requires_grad_(), kl = k.clone().requires_grad_(), vl = v.clone().requires_grad_();
  AttentionOptions options;
  options.scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
  options.causal = true;
  const auto mask = eager ? additive_attention_mask({}, q.size(0), q.size(2), true, q.scalar_type()) : torch::Tensor();
  auto out = dot_product_attention(ql, kl, vl, mask, options);
  out.backward(up);
  return {out.detach(), ql.grad(), kl.grad(), vl.grad()};
}

// The largest difference relative to the reference's largest magnitude.
double relative_error(const torch::Tensor& a, const torch::Tensor& reference) {
  const auto r = reference.to(torch::kFloat);
  return (a.to(torch::kFloat) - r).abs().max().item<double>() / r.abs().max().item<double>();
}

// Sets the block rows for one test and restores them after.
class BlockRows {
 public:
  explicit BlockRows(std::int64_t rows) : before_(set_cpu_attention_block_rows(rows)) {}
  ~BlockRows() { set_cpu_attention_block_rows(before_); }

 private:
  std::int64_t before_;
};

void expect_same_as_eager(at::ScalarType dtype, std::int64_t heads, std::int64_t kv_heads, std::int64_t seq,
                          double tolerance) {
  torch::manual_seed(7);
  const auto options = torch::TensorOptions().dtype(dtype);
  const auto q = torch::randn({2, heads, seq, 16}, options), k = torch::randn({2, kv_heads, seq, 16}, options),
             v = torch::randn({2, kv_heads, seq, 16}, options);
  const auto up = torch::randn({2, seq, heads * 16}, options);
  const auto fused = attend(q, k, v, up, false), eager = attend(q, k, v, up, true);
  ASSERT_EQ(fused.out.sizes(), eager.out.sizes());
  EXPECT_LT(relative_error(fused.out, eager.out), tolerance) << "output";
  EXPECT_LT(relative_error(fused.dq, eager.dq), tolerance) << "dq";
  EXPECT_LT(relative_error(fused.dk, eager.dk), tolerance) << "dk";
  EXPECT_LT(relative_error(fused.dv, eager.dv), tolerance) << "dv";
}

// A sequence of 40 rows in blocks of 16: full blocks, a partial last block, and the diagonal
// of each. Tolerances, relative to the largest value: float32 sums in another order (1e-5);
// bfloat16 rounds the scores and products to 8 bits of mantissa at other points (2e-2).
TEST(CpuCausalAttention, MatchesEagerInFloat32) {
  BlockRows rows(16);
  expect_same_as_eager(torch::kFloat, 4, 4, 40, 1e-5);
}

TEST(CpuCausalAttention, MatchesEagerWithGroupedKvHeads) {
  BlockRows rows(16);
  expect_same_as_eager(torch::kFloat, 6, 2, 40, 1e-5);
}

TEST(CpuCausalAttention, MatchesEagerInBfloat16) {
  BlockRows rows(16);
  expect_same_as_eager(torch::kBFloat16, 4, 2, 40, 2e-2);
}

// Under autocast, float32 q, k, v (as RoPE leaves q and k) are multiplied in bfloat16, as the
// eager path's matmuls are; the gradients come back in float32.
TEST(CpuCausalAttention, MatchesEagerUnderAutocast) {
  BlockRows rows(16);
  torch::manual_seed(3);
  const auto q = torch::randn({1, 4, 40, 16}), k = torch::randn({1, 2, 40, 16}), v = torch::randn({1, 2, 40, 16});
  const auto up = torch::randn({1, 40, 64});
  AutocastScope autocast(at::kCPU, true);
  const auto fused = attend(q, k, v, up, false), eager = attend(q, k, v, up, true);
  EXPECT_EQ(fused.out.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(fused.dq.scalar_type(), torch::kFloat);
  EXPECT_LT(relative_error(fused.out, eager.out), 2e-2) << "output";
  EXPECT_LT(relative_error(fused.dq, eager.dq), 2e-2) << "dq";
  EXPECT_LT(relative_error(fused.dk, eager.dk), 2e-2) << "dk";
  EXPECT_LT(relative_error(fused.dv, eager.dv), 2e-2) << "dv";
}

TEST(CpuCausalAttention, OneBlockCoveringTheSequence) {
  BlockRows rows(128);
  expect_same_as_eager(torch::kFloat, 2, 1, 40, 1e-5);
}

TEST(CpuCausalAttention, MatchesEagerOnSeveralThreads) {
  BlockRows rows(16);
  const auto before = at::get_num_threads();
  at::set_num_threads(2);
  expect_same_as_eager(torch::kFloat, 4, 2, 40, 1e-5);
  at::set_num_threads(before);
}

TEST(CpuCausalAttention, RefusesMismatchedShapes) {
  const auto q = torch::randn({1, 3, 8, 4}), k = torch::randn({1, 2, 8, 4});
  EXPECT_THROW(cpu_causal_attention(q, k, k, 0.5), std::invalid_argument);
  EXPECT_THROW(cpu_causal_attention(q, q, q.to(torch::kDouble), 0.5), std::invalid_argument);
}

}  // namespace
}  // namespace mpitrain::models

namespace mpitrain::models::fused {
namespace {

// Every kernel table this CPU runs: the portable one always, the vector ones where supported.
std::vector<KernelTable> runnable_tables() {
  std::vector<KernelTable> tables{isa_default::table()};
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) tables.push_back(isa_avx2::table());
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq"))
    tables.push_back(isa_avx512::table());
  return tables;
}

// n = 1031: whole vectors, a partial last vector and more than one 256-element chunk.
TEST(FusedKernels, SwiGluMatchesEagerForwardAndBackward) {
  for (const auto dtype : {torch::kFloat, torch::kBFloat16}) {
    torch::manual_seed(1);
    const auto options = torch::TensorOptions().dtype(dtype);
    auto gate = (3 * torch::randn({1031}, options)).requires_grad_(), up = torch::randn({1031}, options).requires_grad_();
    const auto dout = torch::randn({1031}, options);
    const auto out = torch::silu(gate) * up;
    out.backward(dout);
    // bfloat16: ATen's silu_backward rounds its intermediate differently; a value may land one
    // bfloat16 step (2^-8 of it) away, 2e-2 of the largest value at most.
    const double tolerance = dtype == torch::kFloat ? 1e-6 : 2e-2;
    for (const auto& table : runnable_tables()) {
      auto fused_out = torch::empty_like(out), dgate = torch::empty_like(out), dup = torch::empty_like(out);
      const auto g = gate.detach(), u = up.detach();
      if (dtype == torch::kFloat) {
        table.swiglu_forward_f32(g.data_ptr<float>(), u.data_ptr<float>(), fused_out.data_ptr<float>(), 1031);
        table.swiglu_backward_f32(g.data_ptr<float>(), u.data_ptr<float>(), dout.data_ptr<float>(),
                                  dgate.data_ptr<float>(), dup.data_ptr<float>(), 1031);
      } else {
        table.swiglu_forward_bf16(g.data_ptr<bf16>(), u.data_ptr<bf16>(), fused_out.data_ptr<bf16>(), 1031);
        table.swiglu_backward_bf16(g.data_ptr<bf16>(), u.data_ptr<bf16>(), dout.data_ptr<bf16>(),
                                   dgate.data_ptr<bf16>(), dup.data_ptr<bf16>(), 1031);
      }
      EXPECT_LT(relative_error(fused_out, out.detach()), tolerance) << table.instruction_set << " " << dtype;
      EXPECT_LT(relative_error(dgate, gate.grad()), tolerance) << table.instruction_set << " " << dtype;
      EXPECT_LT(relative_error(dup, up.grad()), tolerance) << table.instruction_set << " " << dtype;
    }
  }
}

// 37 rows of 200: a partial last vector in each row.
TEST(FusedKernels, RmsNormMatchesEagerForwardAndBackward) {
  torch::manual_seed(2);
  auto x = torch::randn({37, 200}).requires_grad_(), weight = (1 + 0.1 * torch::randn({200})).requires_grad_();
  const auto dout = torch::randn({37, 200});
  const auto out = weight * (x * torch::rsqrt(x.pow(2).mean(-1, true) + 1e-6));
  out.backward(dout);
  for (const auto& table : runnable_tables()) {
    auto fused_out = torch::empty_like(x), inv_rms = torch::empty({37}), dx = torch::empty_like(x);
    auto dweight = torch::zeros({200});
    const auto xd = x.detach(), w = weight.detach();
    table.rms_norm_forward(xd.data_ptr<float>(), w.data_ptr<float>(), fused_out.data_ptr<float>(),
                           inv_rms.data_ptr<float>(), 37, 200, 1e-6f);
    table.rms_norm_backward(xd.data_ptr<float>(), w.data_ptr<float>(), inv_rms.data_ptr<float>(),
                            dout.data_ptr<float>(), dx.data_ptr<float>(), dweight.data_ptr<float>(), 37, 200);
    EXPECT_LT(relative_error(fused_out, out.detach()), 1e-6) << table.instruction_set;
    EXPECT_LT(relative_error(dx, x.grad()), 1e-5) << table.instruction_set;
    EXPECT_LT(relative_error(dweight, weight.grad()), 1e-5) << table.instruction_set;
  }
}

torch::Tensor rotate_half(const torch::Tensor& x) {
  const auto half = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

// x [2, 3 heads, 5, 40] viewed from [2, 5, 3, 40] (as split_heads leaves q): strided rows, and a
// half of 20 (a partial vector). Angles per batch row.
TEST(FusedKernels, RopeMatchesEagerForwardAndBackward) {
  for (const auto dtype : {torch::kFloat, torch::kBFloat16}) {
    torch::manual_seed(3);
    auto x = torch::randn({2, 5, 3, 40}).to(dtype).transpose(1, 2).detach().requires_grad_();
    const auto angles = torch::randn({2, 1, 5, 40});
    const auto cos = angles.cos(), sin = angles.sin();
    const auto out = x * cos + rotate_half(x) * sin;
    const auto dout = torch::randn({2, 3, 5, 40});
    out.backward(dout);
    RopeRows shape;
    shape.heads = 3, shape.seq = 5, shape.dim = 40;
    shape.x_batch = x.stride(0), shape.x_head = x.stride(1), shape.x_seq = x.stride(2);
    shape.angle_batch = cos.stride(0), shape.angle_seq = cos.stride(2);
    const double tolerance = dtype == torch::kFloat ? 1e-6 : 1e-2;
    for (const auto& table : runnable_tables()) {
      auto fused_out = torch::empty({2, 3, 5, 40}), dx = torch::empty({2, 3, 5, 40}, torch::TensorOptions().dtype(dtype));
      const auto xd = x.detach();
      if (dtype == torch::kFloat) {
        table.rope_forward_f32(xd.data_ptr<float>(), cos.data_ptr<float>(), sin.data_ptr<float>(),
                               fused_out.data_ptr<float>(), shape, 0, 30);
        table.rope_backward_f32(dout.data_ptr<float>(), cos.data_ptr<float>(), sin.data_ptr<float>(),
                                dx.data_ptr<float>(), shape, 0, 30);
      } else {
        table.rope_forward_bf16(xd.data_ptr<bf16>(), cos.data_ptr<float>(), sin.data_ptr<float>(),
                                fused_out.data_ptr<float>(), shape, 0, 30);
        table.rope_backward_bf16(dout.data_ptr<float>(), cos.data_ptr<float>(), sin.data_ptr<float>(),
                                 dx.data_ptr<bf16>(), shape, 0, 30);
      }
      EXPECT_LT(relative_error(fused_out, out.detach()), 1e-6) << table.instruction_set << " " << dtype;
      EXPECT_LT(relative_error(dx, x.grad()), tolerance) << table.instruction_set << " " << dtype;
    }
  }
}

// The autograd operations as the models call them, against the eager passes, on two threads
// (the RMSNorm weight gradient sums per-thread partials).
TEST(FusedKernels, OperationsMatchEagerThroughAutograd) {
  const auto before = at::get_num_threads();
  at::set_num_threads(2);
  torch::manual_seed(4);
  auto x = torch::randn({64, 300, 48}).requires_grad_(), weight = torch::randn({48}).requires_grad_();
  ASSERT_TRUE(rms_norm_fusable(x, weight));
  const auto dout = torch::randn({64, 300, 48});
  rms_norm(x, weight, 1e-5).backward(dout);
  const auto fused_dx = x.grad().clone(), fused_dw = weight.grad().clone();
  x.mutable_grad().reset();
  weight.mutable_grad().reset();
  (weight * (x * torch::rsqrt(x.pow(2).mean(-1, true) + 1e-5))).backward(dout);
  EXPECT_LT(relative_error(fused_dx, x.grad()), 1e-5);
  EXPECT_LT(relative_error(fused_dw, weight.grad()), 1e-5);

  auto gate = torch::randn({64, 300, 48}).requires_grad_(), up = torch::randn({64, 300, 48}).requires_grad_();
  ASSERT_TRUE(swiglu_fusable(gate, up));
  swiglu(gate, up).backward(dout);
  const auto fused_dgate = gate.grad().clone();
  gate.mutable_grad().reset();
  (torch::silu(gate) * up).backward(dout);
  EXPECT_LT(relative_error(fused_dgate, gate.grad()), 1e-6);
  at::set_num_threads(before);
}

TEST(FusedKernels, SwitchedOffNothingIsFusable) {
  const auto x = torch::randn({4, 8}), w = torch::randn({8});
  set_cpu_fused_kernels(false);
  EXPECT_FALSE(rms_norm_fusable(x, w));
  EXPECT_FALSE(swiglu_fusable(x, x));
  set_cpu_fused_kernels(true);
  EXPECT_TRUE(rms_norm_fusable(x, w));
  EXPECT_FALSE(rms_norm_fusable(x.to(torch::kBFloat16), w));  // bfloat16 norms run eagerly
}

}  // namespace
}  // namespace mpitrain::models::fused

namespace mpitrain::models::fused {
namespace {

// Transposed operands and an output that is a narrowed view (row stride wider than its rows,
// batch stride wider than its matrix), with beta 0 over garbage and beta 1 accumulating.
TEST(BatchedGemm, MatchesBaddbmmOnViews) {
  torch::manual_seed(5);
  const auto a = torch::randn({3, 7, 5}), b_stored = torch::randn({3, 9, 5});
  const auto b = b_stored.transpose(1, 2);  // [3, 5, 9], read transposed
  auto buffer = torch::full({3, 12, 9}, std::nan(""));
  auto out = buffer.narrow(1, 2, 7);
  gemm_into(out, a, b, 0.5f, 0.0f);
  EXPECT_TRUE(torch::allclose(out, 0.5 * torch::bmm(a, b), 1e-5, 1e-6));
  gemm_into(out, a.transpose(1, 2).contiguous().transpose(1, 2), b, 1.0f, 1.0f);
  EXPECT_TRUE(torch::allclose(out, 1.5 * torch::bmm(a, b), 1e-5, 1e-6));
  EXPECT_TRUE(torch::isnan(buffer.narrow(1, 0, 2)).all().item<bool>());  // nothing outside the view written
  EXPECT_THROW(gemm_into(out, a, a, 1.0f, 0.0f), std::invalid_argument);
}

}  // namespace
}  // namespace mpitrain::models::fused
