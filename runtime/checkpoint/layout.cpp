// The layout abstraction: which rectangular block of each global tensor a rank holds, and whether it writes it.
#include "runtime/checkpoint/layout.h"

#include <algorithm>
#include <numeric>

namespace mpitrain::checkpoint {

std::int64_t Block::numel() const {
  std::int64_t n = 1;
  for (auto s : sizes) n *= s;
  return n;
}

Block Block::intersect(const Block& other) const {
  Block out;
  for (std::size_t d = 0; d < offsets.size(); ++d) {
    const auto begin = std::max(offsets[d], other.offsets[d]);
    const auto end = std::min(offsets[d] + sizes[d], other.offsets[d] + other.sizes[d]);
    out.offsets.push_back(begin);
    out.sizes.push_back(std::max<std::int64_t>(0, end - begin));
  }
  return out;
}

Block Block::whole(const std::vector<std::int64_t>& shape) {
  return Block{std::vector<std::int64_t>(shape.size(), 0), shape};
}

void for_each_run(const std::vector<std::int64_t>& shape, std::size_t element_size, const Block& block,
                  const std::function<void(std::uint64_t, std::uint64_t, std::uint64_t)>& fn) {
  const std::size_t ndim = shape.size();
  if (block.empty()) return;
  // Trailing dimensions covered whole fold into the run; the innermost partial one extends it.
  std::size_t whole = 0;
  std::uint64_t run = element_size;
  while (whole < ndim && block.offsets[ndim - 1 - whole] == 0 && block.sizes[ndim - 1 - whole] == shape[ndim - 1 - whole]) {
    run *= static_cast<std::uint64_t>(shape[ndim - 1 - whole]);
    ++whole;
  }
  if (whole == ndim) {
    fn(0, 0, run);
    return;
  }
  const std::size_t partial = ndim - 1 - whole;
  const std::uint64_t step = run;  // bytes of one index along `partial`
  run *= static_cast<std::uint64_t>(block.sizes[partial]);
  std::vector<std::uint64_t> strides(ndim, element_size);
  for (std::size_t d = ndim - 1; d > 0; --d) strides[d - 1] = strides[d] * static_cast<std::uint64_t>(shape[d]);
  std::vector<std::int64_t> index(partial, 0);
  std::uint64_t packed = 0;
  while (true) {
    std::uint64_t offset = static_cast<std::uint64_t>(block.offsets[partial]) * step;
    for (std::size_t d = 0; d < partial; ++d)
      offset += static_cast<std::uint64_t>(block.offsets[d] + index[d]) * strides[d];
    fn(offset, packed, run);
    packed += run;
    std::size_t d = partial;
    while (true) {
      if (d == 0) return;
      --d;
      if (++index[d] < block.sizes[d]) break;
      index[d] = 0;
    }
  }
}

std::vector<int> balance_writers(const std::vector<std::uint64_t>& bytes, int writers) {
  std::vector<std::size_t> order(bytes.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return bytes[a] > bytes[b]; });
  std::vector<std::uint64_t> load(static_cast<std::size_t>(std::max(writers, 1)), 0);
  std::vector<int> writer(bytes.size(), 0);
  for (auto i : order) {
    const auto least = static_cast<std::size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    writer[i] = static_cast<int>(least);
    load[least] += bytes[i];
  }
  return writer;
}

}  // namespace mpitrain::checkpoint
