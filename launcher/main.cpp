// The mpitrain command line: dispatches a subcommand and turns any failure into one error line.
#include <exception>
#include <iostream>
#include <map>
#include <string>

#include "launcher/commands.h"

namespace {

const char* kUsage =
    "usage: mpitrain <command> [options]\n"
    "commands:\n"
    "  train CONFIG.json [--key=value]    train (under mpirun/srun for several ranks); ends in an HF directory\n"
    "  estimate-memory CONFIG.json [--np N] [--memory_gb G]\n"
    "                                     per-rank bytes of that run for each ZeRO stage, before queueing it\n"
    "  prepare-data SOURCE OUT.h5         text files or JSON lines to the HDF5 training format\n"
    "  generate MODEL_DIR --prompt TEXT   sample text from a causal LM trained with the byte tokenizer\n"
    "  inspect PATH                       list the tensors of a safetensors file or HF directory and every format problem\n"
    "  logits MODEL_DIR --inputs F --output F.npy\n"
    "                                     forward pass of an HF model on inputs.json; float32 logits as .npy\n"
    "  convert SRC_DIR DST_DIR            load an HF model directory and save it again (--dtype, --max_shard_size)\n"
    "  consolidate SRC_DIR OUT_DIR        a sharded checkpoint (save_mode=sharded) to a standard HF directory\n"
    "  init CONFIG.json OUT_DIR           a randomly initialised model saved as an HF directory\n"
    "  tokenize TOKENIZER_DIR --input F.jsonl --output F.jsonl\n"
    "                                     a tokenizer.json on JSON lines of text (or ids, --decode), as HF's tokenizers\n"
    "  bench io                           safetensors write/read throughput against raw disk I/O\n"
    "  bench allreduce                    (under mpirun) allreduce size sweep: ours and the reducer vs raw MPI\n"
    "  bench save                         (under mpirun) collective save of a ~1 GB model vs a raw write\n"
    "  bench tokenize TOKENIZER_DIR --input docs.jsonl   encode tokens/s on one thread (tests/bench/tokenize.sh)\n"
    "run 'mpitrain <command> --help' for its options\n";

// Only the first line of an exception's text: LibTorch appends backtraces to its messages.
std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

}  // namespace

int main(int argc, char** argv) {
  using namespace mpitrain::launcher;
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::cout << kUsage;
    return argc < 2 ? 2 : 0;
  }
  const std::map<std::string, int (*)(const Args&)> commands = {
      {"inspect", run_inspect}, {"logits", run_logits}, {"convert", run_convert}, {"init", run_init},
      {"bench", run_bench}, {"train", run_train}, {"estimate-memory", run_estimate_memory}, {"prepare-data", run_prepare_data}, {"tokenize", run_tokenize}, {"generate", run_generate},
      {"consolidate", run_consolidate}};
  const std::string name = argv[1];
  const Args args(argv + 2, argv + argc);
  auto it = commands.find(name);
  try {
    if (it == commands.end()) throw UsageError("unknown command '" + name + "'");
    return it->second(args);
  } catch (const UsageError& e) {
    std::cerr << "mpitrain: error: " << first_line(e.what()) << " (see mpitrain --help)\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "mpitrain: error: " << first_line(e.what()) << "\n";
    return 1;
  }
}
