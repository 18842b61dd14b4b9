// Evaluation over the eval split shared by the dp ranks: the token- (or row-) weighted mean loss, classification metrics of the whole split, perplexity for causal LMs.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>

#include "runtime/comm/communicator.h"
#include "src/data/hdf5_dataset.h"
#include "src/models/model.h"

namespace mpitrain::train {

struct EvaluationOptions {
  std::int64_t batch_size = 8;  // per_device_eval_batch_size
  at::Device device = at::kCPU;
  bool bf16 = false;  // the training forward's autocast
  // zero3: every forward all-gathers parameters over dp, so every rank runs as many batches
  // as the rank with the most samples (a rank out of samples runs sample 0 and ignores it).
  bool forwards_in_step = false;
  // Asked at the same batches on every rank (every `stop_check_batches`-th of those every rank
  // runs), so a collective answer is safe; true ends the evaluation there, unfinished.
  std::function<bool()> stop_requested;
  std::int64_t stop_check_batches = 4;
};

// What an evaluation did besides its metrics.
struct EvaluationOutcome {
  bool empty = false;      // the split holds no sample
  bool cut_short = false;  // stop_requested said so: the metrics are of no use
  std::int64_t batches_run = 0, batches = 0;  // this rank's
};

// Collective over `dp`: rank r evaluates samples r, r + dp, ...; the sums meet in one
// all-reduce. Returns "eval_loss", and for classification eval_ plus each of
// classification_metric_names() over the whole split (a confusion matrix summed over the ranks),
// for a causal LM "eval_perplexity" (exp of the token-mean loss; float64's largest where it overflows); rounded
// to 4 places as transformers logs them. Cut short (see `outcome`), it returns an empty object
// and runs no final collective (every rank stopped at the same batch).
nlohmann::json evaluate(models::HfModel& model, const data::Hdf5Dataset& eval_data, comm::Communicator& dp,
                        const EvaluationOptions& options, EvaluationOutcome* outcome = nullptr);

}  // namespace mpitrain::train
