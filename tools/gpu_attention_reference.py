#!/usr/bin/env python3
"""PyTorch's own decode-attention timings on the GPU, for comparison with `gqa bench --device cuda`.

One decode step (query length 1), 32 query heads x 128, bf16: SDPA with enable_gqa=True (K/V read in place) and
SDPA over K/V repeated per query head. Median of 50 runs after warm-up, CUDA-synchronised.
"""
import statistics, time, torch
import torch.nn.functional as F

def median_ms(fn, n=50):
    for _ in range(5): fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(n):
        t = time.perf_counter(); fn(); torch.cuda.synchronize(); samples.append((time.perf_counter() - t) * 1e3)
    return statistics.median(samples)

print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
print("batch context kv  enable_gqa_ms  repeated_ms")
for batch in (1, 8):
    for context in (1024, 4096, 8192, 32768):
        for kv in (32, 8, 4, 1):
            q = torch.randn(batch, 32, 1, 128, device="cuda", dtype=torch.bfloat16)
            k = torch.randn(batch, kv, context, 128, device="cuda", dtype=torch.bfloat16)
            v = torch.randn_like(k)
            g = 32 // kv
            a = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True))
            b = median_ms(lambda: F.scaled_dot_product_attention(q, k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)))
            print(f"{batch:5d} {context:7d} {kv:3d}  {a:12.4f}  {b:11.4f}")
