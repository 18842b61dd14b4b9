// Writes one safetensors file atomically, from tensors in memory or streamed to it one tensor at a time.
#include "runtime/checkpoint/safetensors_writer.h"

#include <unordered_map>

#include "runtime/checkpoint/atomic_file.h"

namespace mpitrain::checkpoint {

namespace {

// Each planned entry's index in `specs` (names are unique in a file).
std::vector<std::size_t> indices_in_file_order(const SafetensorsPlan& plan, const std::vector<TensorSpec>& specs) {
  std::unordered_map<std::string, std::size_t> index_of;
  for (std::size_t k = 0; k < specs.size(); ++k) index_of[specs[k].name] = k;
  std::vector<std::size_t> order;
  for (const auto& entry : plan.tensors) order.push_back(index_of.at(entry.name));
  return order;
}

}  // namespace

std::vector<std::size_t> safetensors_file_order(const std::vector<TensorSpec>& specs,
                                                const std::map<std::string, std::string>& metadata) {
  return indices_in_file_order(plan_safetensors(specs, metadata), specs);
}

SafetensorsPlan write_safetensors_streamed(const std::string& path, const std::vector<TensorSpec>& specs,
                                           const std::function<const void*(std::size_t)>& bytes_of,
                                           const std::function<void(std::size_t)>& written,
                                           const std::map<std::string, std::string>& metadata) {
  SafetensorsPlan plan = plan_safetensors(specs, metadata);
  const auto order = indices_in_file_order(plan, specs);
  AtomicFile file(path);
  file.write(plan.preamble);
  // Tensors go straight from their own memory to the kernel: no staging copy.
  for (std::size_t e = 0; e < order.size(); ++e) {
    file.write(bytes_of(order[e]), plan.tensors[e].nbytes());
    written(order[e]);
  }
  file.commit();
  return plan;
}

SafetensorsPlan write_safetensors(const std::string& path, const std::vector<TensorBytes>& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  std::vector<TensorSpec> specs;
  for (const auto& t : tensors) specs.push_back(t.spec);
  return write_safetensors_streamed(
      path, specs, [&](std::size_t k) { return tensors[k].data; }, [](std::size_t) {}, metadata);
}

}  // namespace mpitrain::checkpoint
