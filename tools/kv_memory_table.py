#!/usr/bin/env python3
"""KV-cache bytes per sequence for the preset config.json files, by the per-layer rule.

    python3 tools/kv_memory_table.py [PRESET_DIR]     (default: src/GqaTransformer/Configuration/Presets)

Each full-attention layer holds min(tokens, capacity) tokens, each sliding layer min(tokens, sliding_window); the
capacity here is the sequence length asked for, so a full layer holds every token. Bytes in bf16:
    2 (K and V) x kv_heads x head_dim x 2 bytes x sum over layers of tokens held.
Which layers slide is read the way transformers reads it: layer_types if present, else the family's rule.
Prints a Markdown table; a value marked * is past the model's max_position_embeddings (its native context).
"""
import json
import os
import sys

LENGTHS = [(4096, "4k"), (32768, "32k"), (131072, "128k")]
BYTES_PER_VALUE = 2  # bf16


def layer_types(c):
    """'full_attention' or 'sliding_attention' per layer, as the config says."""
    n = c["num_hidden_layers"]
    if c.get("layer_types"):
        return list(c["layer_types"])
    kind = c["model_type"]
    if kind == "gemma3_text":  # 5 local layers to 1 global: layer i is global when (i + 1) % pattern == 0
        pattern = c.get("sliding_window_pattern", c.get("_sliding_window_pattern", 6))
        return ["full_attention" if (i + 1) % pattern == 0 else "sliding_attention" for i in range(n)]
    if kind == "gemma2":  # even layers local, odd layers global
        return ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n)]
    if kind in ("qwen2", "qwen3") and c.get("use_sliding_window") and c.get("sliding_window"):
        first = c.get("max_window_layers", n)
        return ["sliding_attention" if i >= first else "full_attention" for i in range(n)]
    if kind in ("mistral", "phi3") and c.get("sliding_window"):  # one window for every layer
        return ["sliding_attention"] * n
    return ["full_attention"] * n


def head_dim(c):
    return c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]


def kv_bytes(c, tokens, all_full=False):
    held = 0
    for kind in layer_types(c):
        if kind == "sliding_attention" and not all_full:
            held += min(tokens, c["sliding_window"])
        else:
            held += tokens
    return 2 * c["num_key_value_heads"] * head_dim(c) * BYTES_PER_VALUE * held


def gib(n):
    return f"{n / 2**30:.2f} GiB"


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "src", "GqaTransformer", "Configuration", "Presets")
    configs = []
    for name in sorted(os.listdir(root)):
        if name.endswith(".json"):
            with open(os.path.join(root, name)) as f:
                configs.append((name[:-5], json.load(f)))

    print("| preset | layers (sliding) | kv heads x head_dim | window | " +
          " | ".join(label for _, label in LENGTHS) + " |")
    print("|---|---|---|---|" + "---|" * len(LENGTHS))
    for name, c in configs:
        types = layer_types(c)
        sliding = types.count("sliding_attention")
        window = c.get("sliding_window") if sliding else "-"
        cells = []
        for tokens, _ in LENGTHS:
            mark = "*" if tokens > c["max_position_embeddings"] else ""
            cells.append(f"{kv_bytes(c, tokens):,} ({gib(kv_bytes(c, tokens))}){mark}")
        print(f"| {name} | {len(types)} ({sliding}) | {c['num_key_value_heads']} x {head_dim(c)} | {window} | " +
              " | ".join(cells) + " |")

    for name, c in configs:
        if name == "gemma-3-4b":
            tokens = 131072
            per_layer, full = kv_bytes(c, tokens), kv_bytes(c, tokens, all_full=True)
            print(f"\n{name} at {tokens:,} tokens: {per_layer:,} bytes ({gib(per_layer)}) against {full:,} bytes "
                  f"({gib(full)}) with every layer full: {full - per_layer:,} bytes saved, "
                  f"{100 * (full - per_layer) / full:.1f}% less ({full / per_layer:.2f}x smaller).")


if __name__ == "__main__":
    main()
