// Classification metrics from a confusion matrix summed over every rank's eval samples: accuracy, F1, precision, recall and Matthews correlation, as scikit-learn defines them.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

namespace mpitrain::train {

// confusion[t * labels + p]: the eval samples of true label t predicted as p.
// Returns, unprefixed and unrounded:
//   accuracy;
//   f1_macro: the mean F1 over the labels that occur (true or predicted), sklearn's "macro";
//   f1, precision, recall: of label 1 for 2 labels (sklearn's "binary", pos_label 1), else macro;
//   matthews_correlation: sklearn's multiclass MCC (the binary one for 2 labels).
// A ratio whose denominator is 0 is 0, as sklearn's zero_division gives it.
nlohmann::json classification_metrics(const std::vector<std::int64_t>& confusion, std::int64_t labels);

// The names classification_metrics returns, for metric_for_best_model.
const std::vector<std::string>& classification_metric_names();

}  // namespace mpitrain::train
