// Who tokenizes a preparation's documents: this process all of them, or each rank its share, gathered where the file is written.
#include "src/data/encoding_share.h"

namespace mpitrain::data {

std::vector<EncodedDocument> EncodingShare::encode_all(std::size_t count,
                                                       const std::function<EncodedDocument(std::size_t)>& encode_one) const {
  std::vector<EncodedDocument> documents;
  documents.reserve(count);
  for (std::size_t i = 0; i < count; ++i) documents.push_back(encode_one(i));
  return documents;
}

}  // namespace mpitrain::data
