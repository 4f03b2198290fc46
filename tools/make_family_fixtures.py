#!/usr/bin/env python3
"""Writes tiny reference checkpoints of today's GQA families and the outputs transformers computes for them.

Run where torch and transformers are installed (the GPU machine has both), from the repository root:
    python3 tools/make_family_fixtures.py OUTDIR [CASE...]
Each case is a checkpoint directory (model.safetensors, generation_config.json) with two configs:
  config.json           the classic (transformers 4.x) layout: rope_theta / rope_scaling / rope_local_base_freq /
                        sliding_window_pattern at the top level, no layer_types;
  config.hf-saved.json  what transformers 5 writes itself (rope_parameters, layer_types).
The script checks that transformers reads both layouts into the same model (same logits) and stops if not.
expected.safetensors holds, all from transformers in eager attention:
  input_ids [2,T], logits [2,T,V] float32 (CPU, float32);  logits_bf16 [2,T,V] (the model cast to bfloat16, CPU)
  padded_input_ids [3,T], padded_attention_mask, padded_position_ids, padded_logits (left padding 0/5/11)
  gen_prompt [1,P], gen_tokens [1,P+N]: greedy generate() with HF's cache, no EOS stop (P+N passes every window)
  gen_padded_prompt [2,P], gen_padded_attention_mask, gen_padded_tokens: the same for a left-padded batch
  long_input_ids [1,L], long_logits (cases whose RoPE changes past a length: Phi-3's LongRoPE)
"""
import copy
import json
import os
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import greedy, widen  # noqa: E402  (the same init and greedy generate as the Llama fixtures)

OUT = sys.argv[1] if len(sys.argv) > 1 else "fixtures"
BASE = dict(vocab_size=256, hidden_size=128, intermediate_size=344, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-6, bos_token_id=1, eos_token_id=2,
            pad_token_id=0)


def build(model_type, seed, **config):
    cfg = transformers.AutoConfig.for_model(model_type, **config)
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    widen(model, seed)
    if cfg.tie_word_embeddings:
        model.tie_weights()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model


def classic_config(saved, extra):
    """The transformers 4.x layout of a config that transformers 5 wrote."""
    d = dict(saved)
    rope = d.pop("rope_parameters", None) or {}
    d.pop("layer_types", None)
    if "full_attention" in rope or "sliding_attention" in rope:  # Gemma 3: one RoPE per layer type
        full = dict(rope.get("full_attention") or {})
        local = dict(rope.get("sliding_attention") or {})
        d["rope_theta"] = full.pop("rope_theta")
        d["rope_local_base_freq"] = local.pop("rope_theta")
        d["rope_scaling"] = None if full.get("rope_type", "default") == "default" else full
    else:
        rope = dict(rope)
        d["rope_theta"] = rope.pop("rope_theta", 10000.0)
        if "partial_rotary_factor" in rope:
            d["partial_rotary_factor"] = rope.pop("partial_rotary_factor")
        if rope.get("rope_type") == "longrope":  # Phi-3 on the hub: {"type": "longrope", short/long factors}
            rope.pop("rope_type")
            if "original_max_position_embeddings" in rope:
                d["original_max_position_embeddings"] = rope.pop("original_max_position_embeddings")
            if rope.get("attention_factor") is None:
                rope.pop("attention_factor", None)
            rope = {"type": "longrope", **rope}
        d["rope_scaling"] = None if rope.get("rope_type", "default") == "default" and "type" not in rope else rope
    if "dtype" in d:
        d["torch_dtype"] = d.pop("dtype")
    d.update(extra)
    return d


def left_pad(ids, pads):
    mask = torch.ones_like(ids)
    for b, p in enumerate(pads):
        mask[b, :p] = 0
        ids[b, :p] = 0
    return ids, mask


def write_case(name, model, *, seq=24, gen_prompt=8, gen_new=32, long_seq=0, classic_extra=None, seed=0):
    path = os.path.join(OUT, name)
    os.makedirs(path, exist_ok=True)
    g = torch.Generator().manual_seed(1000 + seed)
    vocab = model.config.vocab_size
    e = {}
    with torch.no_grad():
        ids = torch.randint(3, vocab, (2, seq), generator=g)
        e.update(input_ids=ids, logits=model(input_ids=ids).logits.float())
        pids, pmask = left_pad(torch.randint(3, vocab, (3, seq), generator=g), [0, 5, 11])
        ppos = (pmask.cumsum(-1) - 1).masked_fill(pmask == 0, 1)
        e.update(padded_input_ids=pids, padded_attention_mask=pmask, padded_position_ids=ppos,
                 padded_logits=model(input_ids=pids, attention_mask=pmask, position_ids=ppos).logits.float())
        prompt = torch.randint(3, vocab, (1, gen_prompt), generator=g)
        e.update(gen_prompt=prompt, gen_tokens=greedy(model, prompt, gen_new))
        gp, gmask = left_pad(torch.randint(3, vocab, (2, gen_prompt), generator=g), [0, 3])
        e.update(gen_padded_prompt=gp, gen_padded_attention_mask=gmask, gen_padded_tokens=greedy(model, gp, gen_new, gmask))
        if long_seq:
            lids = torch.randint(3, vocab, (1, long_seq), generator=g)
            e.update(long_input_ids=lids, long_logits=model(input_ids=lids).logits.float())
        half = copy.deepcopy(model).to(torch.bfloat16)
        e.update(logits_bf16=half(input_ids=ids).logits.float())
        del half

    model.save_pretrained(path)
    with open(os.path.join(path, "config.json")) as f:
        saved = json.load(f)
    with open(os.path.join(path, "config.hf-saved.json"), "w") as f:
        json.dump(saved, f, indent=2)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(classic_config(saved, classic_extra or {}), f, indent=2)

    # transformers must read the classic layout into the same model
    for config_name in ("config.json", "config.hf-saved.json"):
        probe = os.path.join(path, "probe")
        os.makedirs(probe, exist_ok=True)
        for f in os.listdir(path):
            if f.endswith(".safetensors") and f != "expected.safetensors":
                os.link(os.path.join(path, f), os.path.join(probe, f))
        with open(os.path.join(path, config_name)) as src, open(os.path.join(probe, "config.json"), "w") as dst:
            dst.write(src.read())
        again = AutoModelForCausalLM.from_pretrained(probe, attn_implementation="eager", dtype=torch.float32).eval()
        with torch.no_grad():
            diff = (again(input_ids=ids).logits.float() - e["logits"]).abs().max().item()
            if long_seq:
                diff = max(diff, (again(input_ids=e["long_input_ids"]).logits.float() - e["long_logits"]).abs().max().item())
        for f in os.listdir(probe):
            os.remove(os.path.join(probe, f))
        os.rmdir(probe)
        print(f"  {name}: {config_name} reloads with max|dlogits| = {diff:.3g}")
        if diff > 1e-5:
            raise SystemExit(f"{name}: transformers reads {config_name} into another model")

    save_file({k: v.contiguous() for k, v in e.items()}, os.path.join(path, "expected.safetensors"),
              metadata={"case": name, "torch": torch.__version__, "transformers": transformers.__version__})
    print(name, model.config.model_type, {k: list(v.shape) for k, v in e.items()}, sorted(os.listdir(path)))


def longrope_factors(n, seed, lo, hi):
    g = torch.Generator().manual_seed(seed)
    return [round(float(x), 4) for x in lo + (hi - lo) * torch.rand(n, generator=g)]


CASES = {
    # Qwen3: per-head q/k norm, explicit head_dim (4 x 48 = 192 != 128), sliding on layers >= max_window_layers
    "qwen3": lambda: build("qwen3", 31, **BASE, head_dim=48, num_hidden_layers=3, use_sliding_window=True,
                           sliding_window=8, max_window_layers=1, rope_theta=1000000.0, tie_word_embeddings=False),
    "qwen3_tied": lambda: build("qwen3", 32, **BASE, head_dim=32, tie_word_embeddings=True),
    # Qwen2.5 with use_sliding_window: only layers >= max_window_layers slide
    "qwen2_sliding": lambda: build("qwen2", 33, **BASE, num_hidden_layers=3, use_sliding_window=True,
                                   sliding_window=8, max_window_layers=1, tie_word_embeddings=False),
    # Gemma 3: 1+w norms, sandwich norms, q/k norm, GELU-tanh, query_pre_attn_scalar != head_dim, pattern 6 over 7
    # layers, linear RoPE scaling on the full layers only, a local RoPE base, embeddings x sqrt(hidden)
    "gemma3": lambda: build("gemma3_text", 34, **dict(BASE, num_hidden_layers=7), head_dim=64, sliding_window=8,
                            query_pre_attn_scalar=48, rope_theta=1000000.0, rope_local_base_freq=10000.0,
                            rope_scaling=dict(rope_type="linear", factor=2.0), sliding_window_pattern=6,
                            tie_word_embeddings=True),
    # Gemma 2: even layers slide, soft-caps small enough to bite, no q/k norm
    "gemma2": lambda: build("gemma2", 35, **dict(BASE, num_hidden_layers=4), head_dim=32, sliding_window=8,
                            query_pre_attn_scalar=24, attn_logit_softcapping=5.0, final_logit_softcapping=3.0,
                            tie_word_embeddings=True),
    # Phi-4-mini shape: fused qkv / gate_up, 75% partial rotary, LongRoPE switched past 32 positions, tied
    "phi3_longrope": lambda: build("phi3", 36, **dict(BASE, max_position_embeddings=128), partial_rotary_factor=0.75,
                                   original_max_position_embeddings=32, rope_scaling=dict(
                                       rope_type="longrope", short_factor=longrope_factors(12, 1, 1.0, 1.5),
                                       long_factor=longrope_factors(12, 2, 1.0, 8.0)),
                                   tie_word_embeddings=True),
    # Phi-3-mini-4k shape: MHA, full rotary, no scaling, untied
    "phi3_mini": lambda: build("phi3", 37, **dict(BASE, num_key_value_heads=4), tie_word_embeddings=False),
    # SmolLM3: every 4th layer without RoPE (no_rope_layers[i] == 0)
    "smollm3": lambda: build("smollm3", 38, **dict(BASE, num_hidden_layers=4), no_rope_layer_interval=4,
                             rope_theta=5000000.0, tie_word_embeddings=True),
    # OLMo 2: post-norm residuals, q/k norm over the whole projection
    "olmo2": lambda: build("olmo2", 39, **BASE, rope_theta=500000.0, tie_word_embeddings=False),
    # Llama 3.2: tied embeddings and llama3 RoPE
    "llama32": lambda: build("llama", 40, **BASE, head_dim=32, tie_word_embeddings=True, rope_theta=500000.0,
                             rope_scaling=dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0,
                                               high_freq_factor=4.0, original_max_position_embeddings=16)),
    # Mistral Nemo / Ministral: head_dim given beside hidden (4 x 64 = 256 != 128), no window
    "mistral_nemo": lambda: build("mistral", 41, **BASE, head_dim=64, sliding_window=None, rope_theta=1000000.0,
                                  tie_word_embeddings=False),
}
EXTRA = {"gemma3": dict(sliding_window_pattern=6)}
LONG = {"phi3_longrope": 48}


def main():
    print("torch", torch.__version__, "transformers", transformers.__version__)
    only = set(sys.argv[2:])
    for seed, (name, make) in enumerate(CASES.items()):
        if only and name not in only:
            continue
        write_case(name, make(), classic_extra=EXTRA.get(name), long_seq=LONG.get(name, 0), seed=50 + seed)


if __name__ == "__main__":
    main()
