// Evaluation over the eval split shared by the dp ranks: the token- (or row-) weighted mean loss, and accuracy for classification.
#include "src/train/evaluator.h"

#include "src/train/task_forward.h"
#include "src/train/train_metrics.h"

namespace mpitrain::train {

nlohmann::json evaluate(models::HfModel& model, const data::Hdf5Dataset& eval_data, comm::Communicator& dp,
                        const EvaluationOptions& options, bool* empty) {
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
  double loss_sum = 0, correct = 0;
  std::int64_t count_sum = 0;
  for (std::size_t b = 0; b < batches; ++b) {
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
    if (classification) correct += (logits.argmax(-1) == data.labels).sum().item<double>();
  }
  auto totals = torch::tensor({loss_sum, static_cast<double>(count_sum), correct}, torch::kFloat64);
  dp.allreduce(totals, comm::ReduceOp::kSum);
  nlohmann::json result;
  const double n = std::max(1.0, totals[1].item<double>());
  result["eval_loss"] = round_to(totals[0].item<double>() / n, 4);
  if (classification) result["eval_accuracy"] = round_to(totals[2].item<double>() / n, 4);
  if (empty) *empty = totals[1].item<double>() == 0;
  return result;
}

}  // namespace mpitrain::train
