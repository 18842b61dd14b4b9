// Classification metrics from a confusion matrix summed over every rank's eval samples: accuracy, F1, precision, recall and Matthews correlation, as scikit-learn defines them.
#include "src/train/classification_metrics.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace mpitrain::train {
namespace {

double ratio(double numerator, double denominator) { return denominator > 0 ? numerator / denominator : 0.0; }

struct LabelCounts {
  double true_positive = 0, predicted = 0, actual = 0;  // predicted: column sum; actual: row sum
  double precision() const { return ratio(true_positive, predicted); }
  double recall() const { return ratio(true_positive, actual); }
  double f1() const { return ratio(2 * true_positive, predicted + actual); }
};

}  // namespace

const std::vector<std::string>& classification_metric_names() {
  static const std::vector<std::string> names = {"accuracy", "f1", "f1_macro", "precision", "recall",
                                                 "matthews_correlation"};
  return names;
}

nlohmann::json classification_metrics(const std::vector<std::int64_t>& confusion, std::int64_t labels) {
  if (labels <= 0 || confusion.size() != static_cast<std::size_t>(labels * labels))
    throw std::invalid_argument("classification_metrics: a confusion matrix of " + std::to_string(confusion.size()) +
                                " entries for " + std::to_string(labels) + " labels");
  const auto n = static_cast<std::size_t>(labels);
  std::vector<LabelCounts> counts(n);
  double total = 0, correct = 0;
  for (std::size_t t = 0; t < n; ++t)
    for (std::size_t p = 0; p < n; ++p) {
      const auto c = static_cast<double>(confusion[t * n + p]);
      counts[t].actual += c;
      counts[p].predicted += c;
      if (t == p) counts[t].true_positive += c, correct += c;
      total += c;
    }
  // Macro averages run over the labels that occur, as sklearn's default label set does.
  double f1_sum = 0, precision_sum = 0, recall_sum = 0, occurring = 0;
  double predicted_squares = 0, actual_squares = 0, predicted_by_actual = 0;
  for (const auto& k : counts) {
    if (k.actual + k.predicted > 0) {
      f1_sum += k.f1(), precision_sum += k.precision(), recall_sum += k.recall();
      ++occurring;
    }
    predicted_squares += k.predicted * k.predicted;
    actual_squares += k.actual * k.actual;
    predicted_by_actual += k.predicted * k.actual;
  }
  nlohmann::json m;
  m["accuracy"] = ratio(correct, total);
  m["f1_macro"] = ratio(f1_sum, occurring);
  const bool binary = labels == 2;
  m["f1"] = binary ? counts[1].f1() : ratio(f1_sum, occurring);
  m["precision"] = binary ? counts[1].precision() : ratio(precision_sum, occurring);
  m["recall"] = binary ? counts[1].recall() : ratio(recall_sum, occurring);
  const double denominator = std::sqrt((total * total - predicted_squares) * (total * total - actual_squares));
  m["matthews_correlation"] = ratio(correct * total - predicted_by_actual, denominator);
  return m;
}

}  // namespace mpitrain::train
