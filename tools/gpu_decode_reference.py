#!/usr/bin/env python3
"""PyTorch's decode tokens/s for the 1.1B Llama shape, to set beside `gqa bench --model` in the same run.

gpt-fast style: a static KV cache sized by KV heads, positions as a GPU tensor, SDPA with enable_gqa=True, fused
q/k/v and gate/up projections, bf16, random weights. Eager, and torch.compile(mode="reduce-overhead") (CUDA graphs).
Usage: gpu_decode_reference.py BATCH PROMPT NEW KV[,KV...] [eager|compiled|both]
"""
import statistics, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F

DIM, HEADS, HEAD_DIM, LAYERS, FFN, VOCAB = 2048, 32, 64, 16, 5632, 32000


class Layer(nn.Module):
    def __init__(self, kv):
        super().__init__()
        self.kv = kv
        self.wqkv = nn.Linear(DIM, (HEADS + 2 * kv) * HEAD_DIM, bias=False)
        self.wo = nn.Linear(HEADS * HEAD_DIM, DIM, bias=False)
        self.w13 = nn.Linear(DIM, 2 * FFN, bias=False)
        self.w2 = nn.Linear(FFN, DIM, bias=False)
        self.n1 = nn.RMSNorm(DIM, eps=1e-5)
        self.n2 = nn.RMSNorm(DIM, eps=1e-5)

    def forward(self, x, cos, sin, mask, pos, kc, vc):
        b, t, _ = x.shape
        q, k, v = self.wqkv(self.n1(x)).split([HEADS * HEAD_DIM, self.kv * HEAD_DIM, self.kv * HEAD_DIM], -1)
        q = q.view(b, t, HEADS, HEAD_DIM).transpose(1, 2)
        k = k.view(b, t, self.kv, HEAD_DIM).transpose(1, 2)
        v = v.view(b, t, self.kv, HEAD_DIM).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        kc.index_copy_(2, pos, k)
        vc.index_copy_(2, pos, v)
        y = F.scaled_dot_product_attention(q, kc, vc, attn_mask=mask, enable_gqa=True)
        h = x + self.wo(y.transpose(1, 2).reshape(b, t, DIM))
        gate, up = self.w13(self.n2(h)).chunk(2, -1)
        return h + self.w2(F.silu(gate) * up)


def rope(x, cos, sin):
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + rotated * sin


class Model(nn.Module):
    def __init__(self, kv, batch, capacity):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, DIM)
        self.layers = nn.ModuleList(Layer(kv) for _ in range(LAYERS))
        self.norm = nn.RMSNorm(DIM, eps=1e-5)
        self.head = nn.Linear(DIM, VOCAB, bias=False)
        shape = (batch, kv, capacity, HEAD_DIM)
        self.kcache = [torch.zeros(shape, dtype=torch.bfloat16, device="cuda") for _ in range(LAYERS)]
        self.vcache = [torch.zeros(shape, dtype=torch.bfloat16, device="cuda") for _ in range(LAYERS)]
        inv = 1.0 / (10000 ** (torch.arange(0, HEAD_DIM, 2, device="cuda").float() / HEAD_DIM))
        angles = torch.outer(torch.arange(capacity, device="cuda").float(), inv)
        self.cos = torch.cat([angles, angles], -1).cos().to(torch.bfloat16)
        self.sin = torch.cat([angles, angles], -1).sin().to(torch.bfloat16)
        self.causal = torch.ones(capacity, capacity, dtype=torch.bool, device="cuda").tril()

    def forward(self, ids, pos):
        x = self.embed(ids)
        cos, sin = self.cos[pos], self.sin[pos]
        mask = self.causal[pos].view(1, 1, ids.shape[1], -1)
        for layer, kc, vc in zip(self.layers, self.kcache, self.vcache):
            x = layer(x, cos, sin, mask, pos, kc, vc)
        return self.head(self.norm(x))


def decode_one(model, ids, pos):
    logits = model(ids, pos)
    return logits[:, -1].argmax(-1, keepdim=True)


@torch.no_grad()
def run(batch, prompt, new, kv, mode):
    torch.manual_seed(1)
    model = Model(kv, batch, prompt + new + 8).to(device="cuda", dtype=torch.bfloat16)
    model.kcache = [c for c in model.kcache]
    step = torch.compile(decode_one, mode="reduce-overhead", fullgraph=True) if mode == "compiled" else decode_one
    ids = torch.randint(0, VOCAB, (batch, prompt), device="cuda")
    next_ids = decode_one(model, ids, torch.arange(prompt, device="cuda"))
    position = prompt
    for _ in range(3):  # warm-up (and, compiled, the captures)
        next_ids = step(model, next_ids, torch.tensor([position], device="cuda")).clone()
        position += 1
    torch.cuda.synchronize()
    start = time.perf_counter()
    steps = new - 3
    for _ in range(steps):
        next_ids = step(model, next_ids, torch.tensor([position], device="cuda")).clone()
        position += 1
    next_ids.cpu()
    seconds = time.perf_counter() - start
    return batch * steps / seconds


if __name__ == "__main__":
    batch, prompt, new = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    kvs = [int(k) for k in sys.argv[4].split(",")]
    modes = ["eager", "compiled"] if len(sys.argv) < 6 or sys.argv[5] == "both" else [sys.argv[5]]
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, batch {batch}, {prompt} + {new} tokens, bf16")
    for mode in modes:
        for kv in kvs:
            print(f"pytorch {mode:8s} kv {kv:2d}: {run(batch, prompt, new, kv, mode):8.1f} tok/s", flush=True)
