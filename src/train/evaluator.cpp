// Evaluation over the eval split shared by the dp ranks: the token- (or row-) weighted mean loss, classification metrics of the whole split, perplexity for causal LMs.
#include "src/train/evaluator.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "src/train/classification_metrics.h"
#include "src/train/task_forward.h"
#include "src/train/train_metrics.h"

namespace mpitrain::train {

nlohmann::json evaluate(models::HfModel& model, const data::Hdf5Dataset& eval_data, comm::Communicator& dp,
                        const EvaluationOptions& options, EvaluationOutcome* outcome) {
  EvaluationOutcome done;
  torch::NoGradGuard no_grad;
  model.eval();
  const auto batch = static_cast<std::size_t>(options.batch_size);
  const bool classification = eval_data.is_classification();
  // Every eval sample counts once: ranks may run a different number of batches, since the only
  // collective is the final sum (except where every forward is one, forwards_in_step).
  std::vector<std::int64_t> mine;
  for (std::int64_t i = dp.rank(); i < eval_data.size(); i += dp.size()) mine.push_back(i);
  const auto most = static_cast<std::size_t>((eval_data.size() + dp.size() - 1) / dp.size());
  const auto batches = ((options.forwards_in_step ? most : mine.size()) + batch - 1) / batch;
  // The batches every rank runs (the ranks with the fewest samples run this many): the stop
  // checks, being collective, come only among them.
  const auto fewest = static_cast<std::size_t>(eval_data.size() / dp.size());
  const auto common = options.forwards_in_step ? batches : (fewest + batch - 1) / batch;
  const auto check_every = static_cast<std::size_t>(std::max<std::int64_t>(1, options.stop_check_batches));
  done.batches = static_cast<std::int64_t>(batches);
  double loss_sum = 0;
  std::int64_t count_sum = 0;
  // Classification: confusion[true * labels + predicted], summed over the ranks (exact in
  // float64 below 2^53 samples), so every metric is of the whole eval set, not a mean of ranks'.
  std::int64_t labels = 0;
  torch::Tensor confusion;
  for (std::size_t b = 0; b < batches; ++b) {
    if (options.stop_requested && b > 0 && b % check_every == 0 && b < common && options.stop_requested()) {
      done.cut_short = true;
      break;
    }
    done.batches_run = static_cast<std::int64_t>(b) + 1;
    const auto start = b * batch, end = std::min(mine.size(), start + batch);
    const bool padding = start >= mine.size();  // in step with the other ranks' gathers
    const auto indices = padding ? std::vector<std::int64_t>{0}
                                 : std::vector<std::int64_t>(mine.begin() + static_cast<std::ptrdiff_t>(start),
                                                             mine.begin() + static_cast<std::ptrdiff_t>(end));
    const auto data = on_device(eval_data.read(indices), options.device);
    const auto logits = forward_logits(model, data, options.device, options.bf16);
    if (padding) continue;
    const auto loss = task_loss(model, logits, data, classification);
    const auto count = loss.count.item<std::int64_t>();
    loss_sum += loss.loss.item<double>() * static_cast<double>(count);
    count_sum += count;
    if (!classification) continue;
    labels = logits.size(-1);
    const auto pairs = (data.labels.to(torch::kCPU) * labels + logits.argmax(-1).to(torch::kCPU)).to(torch::kInt64);
    const auto counts = torch::bincount(pairs, {}, labels * labels).to(torch::kFloat64);
    confusion = confusion.defined() ? confusion + counts : counts;
  }
  if (done.cut_short) {
    if (outcome) *outcome = done;
    return nlohmann::json::object();
  }
  // Every rank's label count (a rank without a sample has none): the model's, agreed by max.
  auto label_count = torch::tensor({static_cast<double>(labels)}, torch::kFloat64);
  if (classification) dp.allreduce(label_count, comm::ReduceOp::kMax);
  labels = static_cast<std::int64_t>(label_count.item<double>());
  if (classification && !confusion.defined()) confusion = torch::zeros({labels * labels}, torch::kFloat64);
  auto totals = torch::tensor({loss_sum, static_cast<double>(count_sum)}, torch::kFloat64);
  if (classification) totals = torch::cat({totals, confusion});
  dp.allreduce(totals, comm::ReduceOp::kSum);
  nlohmann::json result;
  const double n = std::max(1.0, totals[1].item<double>());
  const double loss = totals[0].item<double>() / n;
  result["eval_loss"] = round_to(loss, 4);
  if (classification) {
    if (labels > 0) {  // 0: no rank had a sample (an empty split)
      std::vector<std::int64_t> counts(static_cast<std::size_t>(labels * labels));
      for (std::size_t i = 0; i < counts.size(); ++i)
        counts[i] = static_cast<std::int64_t>(totals[2 + static_cast<std::int64_t>(i)].item<double>());
      const auto metrics = classification_metrics(counts, labels);
      for (const auto& name : classification_metric_names())
        result["eval_" + name] = round_to(metrics[name].get<double>(), 4);
    }
  } else {
    // transformers' language-modelling examples: exp of the token-mean eval loss (float64's
    // largest value where that overflows: JSON has no inf).
    const double perplexity = std::exp(loss);
    result["eval_perplexity"] = std::isfinite(perplexity) ? round_to(perplexity, 4) : std::numeric_limits<double>::max();
  }
  done.empty = totals[1].item<double>() == 0;
  if (outcome) *outcome = done;
  return result;
}

}  // namespace mpitrain::train
