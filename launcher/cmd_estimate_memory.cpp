// `mpitrain estimate-memory CONFIG.json [--np N] [--memory_gb G] [--key=value ...]`: what each rank would hold training the run, per ZeRO stage, before the job is queued.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "launcher/options.h"
#include "src/train/memory_check.h"
#include "src/train/memory_estimate.h"
#include "src/train/run_config.h"

namespace mpitrain::launcher {

namespace {

using nlohmann::json;
using parallel::ShardingStage;

const char* stage_name(ShardingStage stage) {
  switch (stage) {
    case ShardingStage::kNone: return "none";
    case ShardingStage::kZero1: return "zero1";
    case ShardingStage::kZero2: return "zero2";
    case ShardingStage::kZero3: return "zero3";
  }
  return "";
}

json row_json(const train::RankEstimate& e, double memory_bytes) {
  json row = {{"sharding", stage_name(e.layout.sharding)},
              {"parameter_bytes", e.state.parameters},
              {"gradient_bytes", e.state.gradients},
              {"optimizer_bytes", e.state.optimizer},
              {"zero3_gathered_bytes", e.state.zero3_gathered},
              {"activation_bytes", e.activations},
              {"activation_bytes_checkpointed", e.activations_checkpointed},
              {"save_extra_bytes", e.save_extra},
              {"total_bytes", e.total(false)},
              {"total_bytes_checkpointed", e.total(true)}};
  if (memory_bytes > 0) {
    row["fits"] = e.total(false) <= memory_bytes;
    row["fits_checkpointed"] = e.total(true) <= memory_bytes;
  }
  return row;
}

std::string cell(double bytes) { return bytes > 0 ? train::human_bytes(bytes) : "-"; }

void print_table(const json& report, const train::RunArguments& args, double memory_bytes) {
  std::printf("%s from %s: %.0f parameters\n", report["architecture"].get<std::string>().c_str(),
              report["source"].get<std::string>().c_str(), report["parameters"].get<double>());
  std::printf("per rank at np %d = dp %d x tp %d, micro-batch %lld x %lld tokens, %s compute\n", report["np"].get<int>(),
              report["dp"].get<int>(), report["tp"].get<int>(),
              static_cast<long long>(args.training.per_device_train_batch_size), report["seq_len"].get<long long>(),
              args.training.bf16 ? "bfloat16" : "float32");
  std::printf("\n  %-8s %11s %11s %11s %11s %12s %11s %11s %13s%s\n", "sharding", "parameters", "gradients", "optimizer",
              "zero3 gather", "activations", "save extra", "total", "total (ckpt)", memory_bytes > 0 ? "  fits" : "");
  for (const auto& row : report["rows"]) {
    const bool configured = row["sharding"] == report["configured"]["sharding"];
    std::string fits;
    if (memory_bytes > 0)
      fits = row["fits"].get<bool>() ? "  yes" : row["fits_checkpointed"].get<bool>() ? "  with gradient_checkpointing" : "  no";
    std::printf("%s %-8s %11s %11s %11s %11s %12s %11s %11s %13s%s\n", configured ? "*" : " ",
                row["sharding"].get<std::string>().c_str(), cell(row["parameter_bytes"]).c_str(),
                cell(row["gradient_bytes"]).c_str(), cell(row["optimizer_bytes"]).c_str(),
                cell(row["zero3_gathered_bytes"]).c_str(), cell(row["activation_bytes"]).c_str(),
                cell(row["save_extra_bytes"]).c_str(), cell(row["total_bytes"]).c_str(),
                cell(row["total_bytes_checkpointed"]).c_str(), fits.c_str());
  }
  std::printf("\n* the configured parallel.sharding; total (ckpt): with training.gradient_checkpointing (the\n"
              "  activations of one layer at a time). Parameters, gradients and optimizer state are what the\n"
              "  trainer reports as memory_*_bytes; activations and the save's extra are estimates (see\n"
              "  docs/parallelism.md#will-it-fit).%s\n",
              memory_bytes > 0 ? (" fits: in " + train::human_bytes(memory_bytes) + " per rank.").c_str() : "");
}

}  // namespace

int run_estimate_memory(const Args& args) {
  po::options_description options("estimate-memory options (any run config key may follow, as for train)");
  std::string config_path;
  int np = 1;
  double memory_gb = 0;
  bool as_json = false;
  options.add_options()("config", po::value(&config_path)->required(), "the run config (as for train)")(
      "np", po::value(&np)->default_value(1), "ranks the job would run on (dp = np / tensor_parallel_size)")(
      "memory_gb", po::value(&memory_gb)->default_value(0), "memory per rank, in GB (10^9 bytes): which rows fit")(
      "json", po::bool_switch(&as_json), "one JSON object instead of the table");
  po::positional_options_description positional;
  positional.add("config", 1);
  po::variables_map values;
  std::vector<std::string> overrides;
  if (!parse_options("estimate-memory", "CONFIG.json [--np N] [--memory_gb G] [--json] [--key=value ...]", args, options,
                     positional, values, &overrides))
    return 0;
  if (np < 1) throw UsageError("estimate-memory: --np " + std::to_string(np) + " is not a number of ranks");
  if (memory_gb < 0) throw UsageError("estimate-memory: --memory_gb must not be negative");
  const auto run = train::RunArguments::from_config(train::load_run_config(config_path, overrides));
  const int tp = run.parallel.tensor_parallel_size;
  if (np % tp != 0)
    throw UsageError("estimate-memory: --np " + std::to_string(np) + " is not a multiple of parallel.tensor_parallel_size " +
                     std::to_string(tp));
  std::string source;
  const auto config = run.model.built_config(&source);
  if (config.is_null()) throw std::runtime_error(run.model.model_name_or_path + "/config.json: not found");
  double parameters = 0;
  for (const auto& p : train::tp_local_parameters(config, source, 1, 0)) parameters += static_cast<double>(p.hf_numel);
  json report = {{"architecture", config.contains("architectures") ? config["architectures"][0] : config.value("model_type", json(""))},
                 {"source", source},
                 {"parameters", parameters},
                 {"np", np},
                 {"dp", np / tp},
                 {"tp", tp},
                 {"seq_len", run.data.task == "causal_lm" ? run.data.seq_len : run.data.max_length},
                 {"rows", json::array()}};
  const double memory_bytes = memory_gb * 1e9;
  for (auto stage : {ShardingStage::kNone, ShardingStage::kZero1, ShardingStage::kZero2, ShardingStage::kZero3}) {
    train::MemoryLayout layout{np / tp, tp, stage, run.training.bf16};
    report["rows"].push_back(row_json(train::estimate_rank(run, layout), memory_bytes));
  }
  report["configured"] = {{"sharding", stage_name(run.parallel.sharding)},
                          {"gradient_checkpointing", run.training.gradient_checkpointing}};
  if (as_json)
    std::cout << report.dump() << "\n";
  else
    print_table(report, run, memory_bytes);
  return 0;
}

}  // namespace mpitrain::launcher
