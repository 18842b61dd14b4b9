// Who tokenizes a preparation's documents: this process all of them, or each rank its share, gathered where the file is written.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace mpitrain::data {

// One document as a task encodes it: its token lists (ids; type ids or labels) and, for
// classification, its label.
struct EncodedDocument {
  std::vector<std::vector<std::int32_t>> lists;
  std::int64_t label = 0;
};

// This process encodes every document. Contract for every share: `encode_all` returns all
// `count` documents' encodings in document order where writes() is true, nothing elsewhere;
// an exception from `encode_one` (naming the document) leaves it on every process taking part.
class EncodingShare {
 public:
  virtual ~EncodingShare() = default;
  virtual std::vector<EncodedDocument> encode_all(std::size_t count,
                                                  const std::function<EncodedDocument(std::size_t)>& encode_one) const;
  virtual bool writes() const { return true; }
};

}  // namespace mpitrain::data
