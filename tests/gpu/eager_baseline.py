"""The same Llama, batch and sequence as mpitrain's GPU run, trained by PyTorch eager (transformers' model, bf16 autocast, AdamW), and the chip's bf16 matmul rate for MFU."""
import argparse
import json
import time

import torch
import transformers


def matmul_tflops(n=8192, repeats=20):
    """The chip's measured bf16 matrix-product rate (TFLOP/s): what MFU is taken against."""
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e12


def flops_per_token(config, seq_len):
    """PaLM's count: 6 x the parameters every token multiplies (all linear layers and the LM
    head) + 12 x layers x hidden x sequence for attention's two matrix products."""
    h, layers = config["hidden_size"], config["num_hidden_layers"]
    heads, kv = config["num_attention_heads"], config.get("num_key_value_heads", config["num_attention_heads"])
    head_dim = h // heads
    per_layer = h * h * 2 + h * kv * head_dim * 2 + 3 * h * config["intermediate_size"]
    linear = layers * per_layer + config["vocab_size"] * h
    return 6 * linear + 12 * layers * h * seq_len


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True, help="mpitrain config JSON (model, data.seq_len, training)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    cfg = json.load(open(args.config))
    model_cfg = {k: v for k, v in cfg["model"]["config"].items() if k not in ("architectures", "model_type")}
    seq, t = cfg["data"]["seq_len"], cfg["training"]
    batch = t["per_device_train_batch_size"]

    torch.manual_seed(0)
    config = transformers.LlamaConfig(**model_cfg, use_cache=False)  # training: no KV cache
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").cuda().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=t["learning_rate"], weight_decay=t.get("weight_decay", 0.0))
    tokens = torch.randint(0, 259, (batch, seq), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=tokens, labels=tokens).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.get("max_grad_norm", 1.0))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    loss.item()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    result = {
        "eager_tokens_per_second": args.steps * batch * seq / seconds,
        "eager_step_seconds": seconds / args.steps,
        "eager_peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9,
        "parameters": sum(p.numel() for p in model.parameters()),
        "flops_per_token": flops_per_token(cfg["model"]["config"], seq),
        "matmul_tflops": matmul_tflops(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": torch.cuda.get_device_name(),
    }
    json.dump(result, open(args.out, "w"), indent=1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
