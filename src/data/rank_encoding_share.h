// Data preparation shared over the ranks: rank r tokenizes documents r, r + size, ...; rank 0 gathers them in order and writes the file.
#pragma once

#include "runtime/comm/communicator.h"
#include "src/data/encoding_share.h"

namespace mpitrain::data {

// Collective over `world`: every rank calls encode_all with the same count. A document that
// fails fails every rank with its message (agreed); only then are the encodings gathered
// (one all-gather of the sizes, one of the tokens).
class RankEncodingShare : public EncodingShare {
 public:
  explicit RankEncodingShare(comm::Communicator& world) : world_(world) {}
  std::vector<EncodedDocument> encode_all(std::size_t count,
                                          const std::function<EncodedDocument(std::size_t)>& encode_one) const override;
  bool writes() const override { return world_.rank() == 0; }

 private:
  comm::Communicator& world_;
};

}  // namespace mpitrain::data
