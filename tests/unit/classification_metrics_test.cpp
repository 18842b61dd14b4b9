// Classification metrics against numbers worked out by hand (and scikit-learn's definitions): binary, three labels, a label that never occurs, an empty split.
#include <gtest/gtest.h>

#include <cmath>

#include "src/train/classification_metrics.h"

namespace mpitrain::train {
namespace {

TEST(ClassificationMetrics, ThreeLabelsMacroAveraged) {
  // true \ predicted: [3 1 0], [1 2 1], [0 0 2]. Column sums 4 3 3, row sums 4 4 2.
  const auto m = classification_metrics({3, 1, 0, 1, 2, 1, 0, 0, 2}, 3);
  EXPECT_DOUBLE_EQ(m["accuracy"].get<double>(), 0.7);
  EXPECT_NEAR(m["precision"].get<double>(), (3.0 / 4 + 2.0 / 3 + 2.0 / 3) / 3, 1e-12);  // 0.694444
  EXPECT_NEAR(m["recall"].get<double>(), (3.0 / 4 + 2.0 / 4 + 2.0 / 2) / 3, 1e-12);     // 0.75
  EXPECT_NEAR(m["f1"].get<double>(), (6.0 / 8 + 4.0 / 7 + 4.0 / 5) / 3, 1e-12);         // 0.707143
  EXPECT_DOUBLE_EQ(m["f1_macro"].get<double>(), m["f1"].get<double>());
  // (7 * 10 - (4*4 + 3*4 + 3*2)) / sqrt((100 - 34) * (100 - 36)) = 36 / sqrt(66 * 64)
  EXPECT_NEAR(m["matthews_correlation"].get<double>(), 0.5539117094069973, 1e-12);
}

TEST(ClassificationMetrics, TwoLabelsAreBinaryOnLabelOne) {
  // tn 5, fp 2, fn 1, tp 2.
  const auto m = classification_metrics({5, 2, 1, 2}, 2);
  EXPECT_DOUBLE_EQ(m["accuracy"].get<double>(), 0.7);
  EXPECT_DOUBLE_EQ(m["precision"].get<double>(), 0.5);
  EXPECT_NEAR(m["recall"].get<double>(), 2.0 / 3, 1e-12);
  EXPECT_NEAR(m["f1"].get<double>(), 4.0 / 7, 1e-12);
  EXPECT_NEAR(m["f1_macro"].get<double>(), (10.0 / 13 + 4.0 / 7) / 2, 1e-12);  // label 0: 2*5 / (6 + 7)
  // (tp tn - fp fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = 8 / sqrt(504)
  EXPECT_NEAR(m["matthews_correlation"].get<double>(), 8.0 / std::sqrt(504.0), 1e-12);
}

TEST(ClassificationMetrics, LabelsThatNeverOccurLeaveTheMacroAverageAndEmptyRatiosAreZero) {
  // Three labels, label 2 neither true nor predicted: macro over labels 0 and 1 only.
  const auto m = classification_metrics({5, 2, 0, 1, 2, 0, 0, 0, 0}, 3);
  EXPECT_NEAR(m["f1_macro"].get<double>(), (10.0 / 13 + 4.0 / 7) / 2, 1e-12);
  // Every prediction one label: its precision is defined, the other's is 0, MCC 0.
  const auto constant = classification_metrics({0, 4, 0, 6}, 2);
  EXPECT_DOUBLE_EQ(constant["precision"].get<double>(), 0.6);
  EXPECT_DOUBLE_EQ(constant["matthews_correlation"].get<double>(), 0.0);
  const auto none = classification_metrics({0, 0, 0, 0}, 2);
  EXPECT_DOUBLE_EQ(none["accuracy"].get<double>(), 0.0);
  EXPECT_THROW(classification_metrics({1, 2, 3}, 2), std::invalid_argument);
}

}  // namespace
}  // namespace mpitrain::train
