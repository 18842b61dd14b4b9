"""Loads mpitrain's saved directory with the installed transformers: no missing, unexpected or mismatched keys, and logits equal to `mpitrain logits` on the same inputs."""
import argparse
import json
import sys

import numpy as np
import torch
import transformers


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("--inputs", required=True, help="inputs.json: input_ids [, attention_mask]")
    parser.add_argument("--logits", required=True, help="mpitrain logits' .npy for the same inputs")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="of the largest |logit| (at least 1): two float32 implementations of a 12-layer "
                             "model differ in summation order, not only in the last digit of a tiny one's")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    # No dtype argument (renamed across transformers versions): the save is float32, and
    # .float() makes sure of it.
    model, info = transformers.AutoModelForCausalLM.from_pretrained(
        args.model_dir, output_loading_info=True, attn_implementation="eager")
    model = model.float().eval()
    inputs = json.load(open(args.inputs))
    feed = {"input_ids": torch.tensor(inputs["input_ids"])}
    if "attention_mask" in inputs:
        feed["attention_mask"] = torch.tensor(inputs["attention_mask"])
    with torch.no_grad():
        logits = model(**feed).logits.float().numpy()
    ours = np.load(args.logits)
    real = feed["attention_mask"].numpy().astype(bool) if "attention_mask" in feed else np.ones(logits.shape[:2], bool)
    diff = float(np.abs(logits - ours)[real].max()) if logits.shape == ours.shape else float("inf")
    scale = max(1.0, float(np.abs(logits)[real].max()))
    problems = {k: [str(x) for x in v] for k, v in dict(info).items() if v}
    result = {"loading_problems": problems, "logits_shape": list(logits.shape), "max_abs_logit_diff": diff,
              "max_abs_logit": scale, "tolerance": args.tolerance,
              "ok": not problems and diff <= args.tolerance * scale}
    json.dump(result, open(args.out, "w"), indent=1)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
