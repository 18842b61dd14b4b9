// Causal attention for the CPU computed block by block (see cpu_causal_attention.h).
#include "src/models/cpu_causal_attention.h"

#include <ATen/Parallel.h>

#include <c10/core/impl/LocalDispatchKeySet.h>

#include <algorithm>
#include <atomic>
#include <stdexcept>

#include "src/models/fused/batched_gemm.h"
#include "src/models/fused/fused_ops.h"
#include "src/models/fused/kernels.h"

namespace mpitrain::models {
namespace {

std::atomic<std::int64_t> block_rows_setting{64};

// What every block of one call shares. Tensors are viewed as [b·kv_heads, ...] batches: the
// `group` query heads that read one kv head are stacked, row by row, into one matrix.
struct AttentionPlan {
  std::int64_t batch = 0, heads = 0, kv_heads = 0, seq = 0, head_dim = 0, block = 0;
  double scale = 1.0;
  at::ScalarType dtype = at::kFloat;
  torch::Tensor no_bias;  // [1, 1, 1]: baddbmm's ignored input (beta 0)

  std::int64_t group() const { return heads / kv_heads; }
  std::int64_t batches() const { return batch * kv_heads; }
};

AttentionPlan plan_for(const torch::Tensor& q, const torch::Tensor& k, double scale) {
  AttentionPlan plan;
  plan.batch = q.size(0);
  plan.heads = q.size(1);
  plan.kv_heads = k.size(1);
  plan.seq = q.size(2);
  plan.head_dim = q.size(3);
  plan.block = std::min(block_rows_setting.load(), plan.seq);
  plan.scale = scale;
  plan.dtype = q.scalar_type();
  plan.no_bias = torch::zeros({1, 1, 1}, torch::TensorOptions().dtype(plan.dtype));
  return plan;
}

// Query rows [row, row + rows) of every head, as [b·kv, group·rows, d] (a copy).
torch::Tensor block_rows_of(const torch::Tensor& q, std::int64_t row, std::int64_t rows, const AttentionPlan& plan) {
  return q.view({plan.batch, plan.kv_heads, plan.group(), plan.seq, plan.head_dim})
      .narrow(3, row, rows)
      .reshape({plan.batches(), plan.group() * rows, plan.head_dim});
}

// Rows [row, row + rows) of an output-shaped [b, s, h·d] tensor, viewed as [b, rows, kv, group, d].
torch::Tensor output_rows_of(const torch::Tensor& out, std::int64_t row, std::int64_t rows, const AttentionPlan& plan) {
  return out.view({plan.batch, plan.seq, plan.kv_heads, plan.group(), plan.head_dim}).narrow(1, row, rows);
}

// The probabilities of one block of query rows over keys [0, row + rows): float32 (the
// softmax's dtype) and in q's dtype for the products.
struct BlockProbs {
  torch::Tensor fp32, in_dtype;
};

// Every product here runs in q's dtype on purpose, whatever autocast the caller runs under.
struct NoAutocast {
  c10::impl::ExcludeDispatchKeyGuard guard{c10::DispatchKeySet(c10::DispatchKey::AutocastCPU)};
};

// alpha · a·b over the batch in q's dtype: BLAS for float32, ATen's (oneDNN) bmm for bfloat16.
torch::Tensor product(const torch::Tensor& a, const torch::Tensor& b, double alpha, const AttentionPlan& plan) {
  if (plan.dtype == at::kFloat) return fused::gemm(a, b, static_cast<float>(alpha));
  return alpha == 1.0 ? at::bmm(a, b) : at::baddbmm(plan.no_bias, a, b, /*beta=*/0, alpha);
}

// acc += alpha · a·b over the batch, where acc is float32 and a, b may be in a lower dtype.
void accumulate(torch::Tensor acc, const torch::Tensor& a, const torch::Tensor& b, double alpha) {
  if (a.scalar_type() == acc.scalar_type())
    fused::gemm_into(acc, a, b, static_cast<float>(alpha), 1.0f);
  else
    acc.add_(at::bmm(a, b), alpha);
}

fused::CausalRows causal_rows(std::int64_t row, std::int64_t rows) {
  fused::CausalRows shape;
  shape.keys = row + rows;
  shape.rows_per_head = rows;
  shape.first_keys = row + 1;
  return shape;
}

// Runs kernel(begin, end) over the rows of a [b·kv, group·rows, keys] block on ATen's threads.
template <typename Kernel>
void over_block_rows(const torch::Tensor& block, const Kernel& kernel) {
  at::parallel_for(0, block.size(0) * block.size(1), fused::rows_per_grain(block.size(2)), kernel);
}

BlockProbs block_probs(const torch::Tensor& q_rows, const torch::Tensor& keys, std::int64_t row, std::int64_t rows,
                       const AttentionPlan& plan) {
  const auto scores = product(q_rows, keys.transpose(1, 2), plan.scale, plan);
  const auto shape = causal_rows(row, rows);
  BlockProbs probs{at::empty(scores.sizes(), scores.options().dtype(at::kFloat)), {}};
  const auto& k = fused::kernels();
  if (plan.dtype == at::kFloat) {
    over_block_rows(scores, [&](std::int64_t begin, std::int64_t end) {
      k.causal_softmax_forward_f32(scores.data_ptr<float>(), probs.fp32.data_ptr<float>(), nullptr, shape, begin, end);
    });
    probs.in_dtype = probs.fp32;
  } else {
    probs.in_dtype = at::empty_like(scores);
    over_block_rows(scores, [&](std::int64_t begin, std::int64_t end) {
      k.causal_softmax_forward_bf16(scores.data_ptr<fused::bf16>(), probs.fp32.data_ptr<float>(),
                                    probs.in_dtype.data_ptr<fused::bf16>(), shape, begin, end);
    });
  }
  return probs;
}

// The scores' gradient from the probabilities' (both [b·kv, group·rows, keys], in q's dtype).
torch::Tensor scores_gradient(const torch::Tensor& dprobs, const BlockProbs& probs, std::int64_t row,
                              std::int64_t rows, const AttentionPlan& plan) {
  const auto shape = causal_rows(row, rows);
  auto dscores = at::empty_like(dprobs);
  const auto& k = fused::kernels();
  over_block_rows(dprobs, [&](std::int64_t begin, std::int64_t end) {
    auto scratch = at::empty({shape.keys}, dprobs.options().dtype(at::kFloat));
    if (plan.dtype == at::kFloat)
      k.causal_softmax_backward_f32(dprobs.data_ptr<float>(), probs.fp32.data_ptr<float>(),
                                    dscores.data_ptr<float>(), shape, begin, end, scratch.data_ptr<float>());
    else
      k.causal_softmax_backward_bf16(dprobs.data_ptr<fused::bf16>(), probs.fp32.data_ptr<float>(),
                                     dscores.data_ptr<fused::bf16>(), shape, begin, end, scratch.data_ptr<float>());
  });
  return dscores;
}

torch::Tensor attention_forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                const AttentionPlan& plan) {
  const auto keys_all = k.reshape({plan.batches(), plan.seq, plan.head_dim});
  const auto values_all = v.reshape({plan.batches(), plan.seq, plan.head_dim});
  auto out = at::empty({plan.batch, plan.seq, plan.heads * plan.head_dim}, q.options());
  for (std::int64_t row = 0; row < plan.seq; row += plan.block) {
    const auto rows = std::min(plan.block, plan.seq - row), keys = row + rows;
    const auto probs = block_probs(block_rows_of(q, row, rows, plan), keys_all.narrow(1, 0, keys), row, rows, plan);
    const auto out_rows = product(probs.in_dtype, values_all.narrow(1, 0, keys), 1.0, plan);
    output_rows_of(out, row, rows, plan)
        .copy_(out_rows.view({plan.batch, plan.kv_heads, plan.group(), rows, plan.head_dim}).permute({0, 3, 1, 2, 4}));
  }
  return out;
}

torch::autograd::tensor_list attention_backward(const torch::Tensor& q, const torch::Tensor& k,
                                                const torch::Tensor& v, const torch::Tensor& grad_out,
                                                const AttentionPlan& plan) {
  const auto keys_all = k.reshape({plan.batches(), plan.seq, plan.head_dim});
  const auto values_all = v.reshape({plan.batches(), plan.seq, plan.head_dim});
  auto dq = at::empty({plan.batch, plan.kv_heads, plan.group(), plan.seq, plan.head_dim}, q.options());
  auto dk = at::zeros({plan.batches(), plan.seq, plan.head_dim}, q.options().dtype(at::kFloat)), dv = at::zeros_like(dk);
  for (std::int64_t row = 0; row < plan.seq; row += plan.block) {
    const auto rows = std::min(plan.block, plan.seq - row), keys = row + rows;
    const auto q_rows = block_rows_of(q, row, rows, plan), k_keys = keys_all.narrow(1, 0, keys);
    const auto dout_rows =
        output_rows_of(grad_out, row, rows, plan).permute({0, 2, 3, 1, 4}).reshape({plan.batches(), plan.group() * rows, plan.head_dim});
    const auto probs = block_probs(q_rows, k_keys, row, rows, plan);
    accumulate(dv.narrow(1, 0, keys), probs.in_dtype.transpose(1, 2), dout_rows, 1.0);
    const auto dscores =
        scores_gradient(product(dout_rows, values_all.narrow(1, 0, keys).transpose(1, 2), 1.0, plan), probs, row, rows, plan);
    dq.narrow(3, row, rows)
        .copy_(product(dscores, k_keys, plan.scale, plan)
                   .view({plan.batch, plan.kv_heads, plan.group(), rows, plan.head_dim}));
    accumulate(dk.narrow(1, 0, keys), dscores.transpose(1, 2), q_rows, plan.scale);
  }
  return {dq.view_as(q), dk.view_as(k).to(plan.dtype), dv.view_as(v).to(plan.dtype)};
}

struct CausalAttentionFunction : torch::autograd::Function<CausalAttentionFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, double scale) {
    ctx->save_for_backward({q, k, v});
    ctx->saved_data["scale"] = scale;
    const NoAutocast no_autocast;
    return attention_forward(q.detach(), k.detach(), v.detach(), plan_for(q, k, scale));
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const NoAutocast no_autocast;
    const auto saved = ctx->get_saved_variables();
    const auto& q = saved[0];
    const auto plan = plan_for(q, saved[1], ctx->saved_data["scale"].toDouble());
    auto grad_out = grads[0].detach().to(plan.dtype);
    auto result = attention_backward(q.detach(), saved[1].detach(), saved[2].detach(), grad_out, plan);
    result.emplace_back();  // scale
    return result;
  }
};

}  // namespace

torch::Tensor cpu_causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                   double scale) {
  if (q.dim() != 4 || k.sizes() != v.sizes() || k.size(0) != q.size(0) || k.size(2) != q.size(2) ||
      k.size(3) != q.size(3) || q.size(1) % k.size(1) != 0)
    throw std::invalid_argument("cpu_causal_attention: q [b, h, s, d] and k, v [b, kv_heads, s, d] with kv_heads "
                                "dividing h expected");
  if (k.scalar_type() != q.scalar_type() || v.scalar_type() != q.scalar_type())
    throw std::invalid_argument("cpu_causal_attention: q, k and v must share a dtype");
  return CausalAttentionFunction::apply(q, k, v, scale);
}

std::int64_t set_cpu_attention_block_rows(std::int64_t rows) {
  if (rows <= 0 || rows % 16 != 0) throw std::invalid_argument("cpu attention block rows must be a positive multiple of 16");
  return block_rows_setting.exchange(rows);
}

}  // namespace mpitrain::models
