// Data preparation shared over the ranks: rank r tokenizes documents r, r + size, ...; rank 0 gathers them in order and writes the file.
#include "src/data/rank_encoding_share.h"

#include <torch/torch.h>

#include "runtime/comm/agreement.h"

namespace mpitrain::data {

namespace {

// A rank's documents as one int32 run: per document its list count, label, the lists'
// lengths, then their tokens.
std::vector<std::int32_t> flatten(const std::vector<EncodedDocument>& documents) {
  std::vector<std::int32_t> flat;
  for (const auto& d : documents) {
    flat.push_back(static_cast<std::int32_t>(d.lists.size()));
    flat.push_back(static_cast<std::int32_t>(d.label));
    for (const auto& list : d.lists) flat.push_back(static_cast<std::int32_t>(list.size()));
    for (const auto& list : d.lists) flat.insert(flat.end(), list.begin(), list.end());
  }
  return flat;
}

// Reads documents back from `flat` until `end`, placing the k-th at documents[first + k * stride].
void unflatten(const std::int32_t* flat, const std::int32_t* end, std::size_t first, std::size_t stride,
               std::vector<EncodedDocument>& documents) {
  for (std::size_t index = first; flat < end; index += stride) {
    EncodedDocument d;
    const auto lists = static_cast<std::size_t>(*flat++);
    d.label = *flat++;
    const std::int32_t* lengths = flat;
    flat += lists;
    for (std::size_t l = 0; l < lists; ++l) {
      d.lists.emplace_back(flat, flat + lengths[l]);
      flat += lengths[l];
    }
    documents[index] = std::move(d);
  }
}

}  // namespace

std::vector<EncodedDocument> RankEncodingShare::encode_all(
    std::size_t count, const std::function<EncodedDocument(std::size_t)>& encode_one) const {
  const auto rank = static_cast<std::size_t>(world_.rank()), size = static_cast<std::size_t>(world_.size());
  // Ranks listing different documents (each its own copy of the source) would gather nonsense.
  const auto counts = world_.allgatherv(torch::tensor({static_cast<std::int64_t>(count)}, torch::kInt64));
  if (!counts.eq(counts[0]).all().item<bool>())
    throw comm::AgreedError("the ranks see different data sources (document counts " +
                            std::to_string(counts.min().item<std::int64_t>()) + " to " +
                            std::to_string(counts.max().item<std::int64_t>()) + "): data.source must be one shared source");
  std::vector<EncodedDocument> mine;
  comm::run_agreed(world_, [&] {
    for (std::size_t i = rank; i < count; i += size) mine.push_back(encode_one(i));
  });
  auto flat = flatten(mine);
  mine.clear();
  auto sizes = world_.allgatherv(torch::tensor({static_cast<std::int64_t>(flat.size())}, torch::kInt64));
  auto tokens = world_.allgatherv(torch::from_blob(flat.data(), {static_cast<std::int64_t>(flat.size())}, torch::kInt32));
  if (!writes()) return {};
  std::vector<EncodedDocument> documents(count);
  const auto* at = tokens.data_ptr<std::int32_t>();
  for (std::size_t r = 0; r < size; ++r) {
    const auto n = sizes[static_cast<std::int64_t>(r)].item<std::int64_t>();
    unflatten(at, at + n, r, size, documents);
    at += n;
  }
  return documents;
}

}  // namespace mpitrain::data
