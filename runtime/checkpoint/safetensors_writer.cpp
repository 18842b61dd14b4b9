// Writes one safetensors file atomically from tensors already in memory.
#include "runtime/checkpoint/safetensors_writer.h"

#include <unordered_map>

#include "runtime/checkpoint/atomic_file.h"

namespace mpitrain::checkpoint {

SafetensorsPlan write_safetensors(const std::string& path, const std::vector<TensorBytes>& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  std::vector<TensorSpec> specs;
  std::unordered_map<std::string, const void*> data_by_name;
  for (const auto& t : tensors) {
    specs.push_back(t.spec);
    data_by_name[t.spec.name] = t.data;
  }
  SafetensorsPlan plan = plan_safetensors(std::move(specs), metadata);
  AtomicFile file(path);
  file.write(plan.preamble);
  // Tensors go straight from their own memory to the kernel: no staging copy.
  for (const auto& entry : plan.tensors) file.write(data_by_name.at(entry.name), entry.nbytes());
  file.commit();
  return plan;
}

}  // namespace mpitrain::checkpoint
