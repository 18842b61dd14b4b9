"""The figures of a GPU run in one place: tokens/s and MFU against the measured matmul rate, the ratio to PyTorch eager, the save against a raw write."""
import argparse
import json
import re
import statistics


def load_json(path):
    try:
        return json.load(open(path))
    except (OSError, ValueError):
        return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--metrics", required=True, help="mpitrain's metrics.jsonl of the 100M run")
    parser.add_argument("--eager", required=True)
    parser.add_argument("--bench_save", required=True)
    parser.add_argument("--check_hf", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    report = {}
    try:
        lines = [json.loads(line) for line in open(args.metrics) if line.strip()]
    except OSError:
        lines = []
    windows = [entry["tokens_per_second"] for entry in lines if "tokens_per_second" in entry]
    # The first window holds start-up (allocator growth, kernel selection): left out, as the
    # eager baseline leaves out its warm-up steps.
    steady = windows[1:] or windows
    if steady:
        report["mpitrain_tokens_per_second"] = statistics.median(steady)
        report["mpitrain_windows"] = windows
    summary = next((entry for entry in reversed(lines) if "train_runtime" in entry), None)
    if summary:
        report["mpitrain_summary"] = summary
    eager = load_json(args.eager)
    if eager:
        report.update(eager)
    if eager and steady:
        peak = eager["matmul_tflops"] * 1e12
        report["mpitrain_mfu"] = report["mpitrain_tokens_per_second"] * eager["flops_per_token"] / peak
        report["eager_mfu"] = eager["eager_tokens_per_second"] * eager["flops_per_token"] / peak
        report["mpitrain_over_eager"] = report["mpitrain_tokens_per_second"] / eager["eager_tokens_per_second"]
        # Against the datasheet too: H100 and H200 SXM, dense bf16 989 TFLOP/s.
        if any(chip in eager.get("device", "") for chip in ("H100", "H200")):
            report["spec_bf16_tflops"] = 989.0
            report["mpitrain_mfu_spec"] = report["mpitrain_tokens_per_second"] * eager["flops_per_token"] / 989e12
    try:
        text = open(args.bench_save).read()
        for key, pattern in {"save_over_raw_write": r"ratio \(save/raw throughput[^)]*\)\s+([\d.]+)",
                             "raw_write_gb_per_s": r"raw parallel write\+fsync\s+([\d.]+)",
                             "save_gb_per_s": r"save \(\w+\)\s+([\d.]+)",
                             "load_over_raw_read": r"ratio \(load/raw read throughput[^)]*\)\s+([\d.]+)"}.items():
            match = re.search(pattern, text)
            if match:
                report[key] = float(match.group(1))
    except OSError:
        pass
    report["check_hf"] = load_json(args.check_hf)
    json.dump(report, open(args.out, "w"), indent=1)
    for key in ("device", "mpitrain_tokens_per_second", "eager_tokens_per_second", "mpitrain_over_eager", "mpitrain_mfu",
                "eager_mfu", "matmul_tflops", "mpitrain_mfu_spec", "save_gb_per_s", "raw_write_gb_per_s", "save_over_raw_write"):
        if key in report:
            value = report[key]
            print(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")
    if report["check_hf"]:
        print("check_hf:", json.dumps(report["check_hf"]))


if __name__ == "__main__":
    main()
