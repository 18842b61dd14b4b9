#!/usr/bin/env python3
"""The peer for `tests/bench/train_throughput.sh`: the same Llama as the given config, in
PyTorch eager (Debian's python3-torch 1.13), trained with gloo DDP under mpirun. Prints one JSON
line with tokens/s. Same model, batch, sequence length, optimizer and thread count as mpitrain."""
import json, math, os, sys, time

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        h, n, kv, d = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], c["hidden_size"] // c["num_attention_heads"]
        self.n, self.kv, self.d = n, kv, d
        self.q_proj = nn.Linear(h, n * d, bias=False)
        self.k_proj = nn.Linear(h, kv * d, bias=False)
        self.v_proj = nn.Linear(h, kv * d, bias=False)
        self.o_proj = nn.Linear(n * d, h, bias=False)
        self.gate_proj = nn.Linear(h, c["intermediate_size"], bias=False)
        self.up_proj = nn.Linear(h, c["intermediate_size"], bias=False)
        self.down_proj = nn.Linear(c["intermediate_size"], h, bias=False)
        self.input_layernorm = RMSNorm(h, c["rms_norm_eps"])
        self.post_attention_layernorm = RMSNorm(h, c["rms_norm_eps"])

    def forward(self, x, cos, sin, mask):
        b, s, _ = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(b, s, self.n, self.d).transpose(1, 2)
        k = self.k_proj(h).view(b, s, self.kv, self.d).transpose(1, 2)
        v = self.v_proj(h).view(b, s, self.kv, self.d).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(self.n // self.kv, 1), v.repeat_interleave(self.n // self.kv, 1)
        w = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.d) + mask
        o = torch.matmul(torch.softmax(w, -1, dtype=torch.float32).to(q.dtype), v)
        x = x + self.o_proj(o.transpose(1, 2).reshape(b, s, -1))
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(Layer(c) for _ in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        d = c["hidden_size"] // c["num_attention_heads"]
        self.lm_head = None if c.get("tie_word_embeddings", True) else nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        self.register_buffer("inv_freq", 1.0 / (c["rope_theta"] ** (torch.arange(0, d, 2).float() / d)))

    def forward(self, ids):
        s = ids.shape[1]
        x = self.embed_tokens(ids)
        f = torch.outer(torch.arange(s).float(), self.inv_freq)
        e = torch.cat((f, f), -1)
        mask = torch.full((s, s), torch.finfo(x.dtype).min).triu(1)
        for layer in self.layers:
            x = layer(x, e.cos(), e.sin(), mask)
        head = self.embed_tokens.weight if self.lm_head is None else self.lm_head.weight
        return F.linear(self.norm(x), head)


def main():
    config_path, steps = sys.argv[1], int(sys.argv[2])
    run = json.load(open(config_path))
    c, t, seq = run["model"]["config"], run["training"], run["data"]["seq_len"]
    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", 0))
    world = int(os.environ.get("OMPI_COMM_WORLD_SIZE", 1))
    local = int(os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE", 1))
    # The same rule as mpitrain: the cores this rank is bound to, else cores / local ranks.
    bound = len(os.sched_getaffinity(0))
    torch.set_num_threads(bound if bound < os.cpu_count() else max(1, os.cpu_count() // local))
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29517")
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = nn.parallel.DistributedDataParallel(Llama(c))
    opt = torch.optim.AdamW(model.parameters(), lr=t["learning_rate"], weight_decay=t.get("weight_decay", 0.0))
    batch = t["per_device_train_batch_size"]
    g = torch.Generator().manual_seed(rank)
    dist.barrier()
    start = time.time()
    for _ in range(steps):
        ids = torch.randint(0, 256, (batch, seq), generator=g)
        logits = model(ids)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
    dist.barrier()
    elapsed = time.time() - start
    if rank == 0:
        print(json.dumps({"ranks": world, "tokens_per_second": steps * batch * seq * world / elapsed, "loss": loss.item()}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
