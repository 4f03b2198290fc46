#!/usr/bin/env python3
"""Writes tiny HuggingFace reference checkpoints and the outputs transformers computes for them.

Run where torch and transformers are installed (the GPU machine has both):
    python3 tools/make_fixtures.py OUTDIR
Every case is a checkpoint directory (config.json, safetensors weights) plus expected.safetensors:
  input_ids [B,T] int64, logits [B,T,V] float32 (one forward, eager attention, float32 on the CPU),
  optionally attention_mask / position_ids (left padding), and gen_prompt / gen_tokens
  (and gen_attention_mask) from greedy generate() with HF's KV cache, no EOS stop.
Weights are drawn wider than HF's default init so mistakes show in the logits.
"""
import json, math, os, sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM)

OUT = sys.argv[1] if len(sys.argv) > 1 else "fixtures"
COMMON = dict(vocab_size=256, hidden_size=128, intermediate_size=344, num_hidden_layers=2,
              num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=512,
              rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, pad_token_id=0)


def widen(model, seed):
    """Wider than HF's init so mistakes show in the logits; norms stay near their neutral value (1 for w, 0 for 1+w)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[1]))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            elif torch.all(p == 0):  # Gemma's (1 + w) norms start at zero
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:  # norm weights
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))


def build(cls, config, seed):
    torch.manual_seed(seed)
    config._attn_implementation = "eager"
    model = cls(config).eval()
    widen(model, seed)
    if config.tie_word_embeddings:
        model.tie_weights()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model


def classic_config(model, dtype_name):
    """config.json in the classic hub layout (rope_theta / rope_scaling at top level)."""
    d = model.config.to_dict()
    rope = d.pop("rope_parameters", None) or {}
    d["rope_theta"] = rope.get("rope_theta", 10000.0)
    scaling = {k: v for k, v in rope.items() if k != "rope_theta"}
    d["rope_scaling"] = None if scaling.get("rope_type", "default") == "default" else scaling
    d.pop("dtype", None)
    d["torch_dtype"] = dtype_name
    return d


def greedy(model, prompt, new_tokens, attention_mask=None):
    with torch.no_grad():
        return model.generate(prompt, attention_mask=attention_mask, max_new_tokens=new_tokens,
                              do_sample=False, eos_token_id=None, pad_token_id=0)


def write_case(name, model, *, seq=24, batch=2, gen_prompt=8, gen_new=16, save_dtype=torch.float32,
               layout="classic", shard=None, padded=False, seed=0):
    path = os.path.join(OUT, name)
    os.makedirs(path, exist_ok=True)
    g = torch.Generator().manual_seed(1000 + seed)
    expected = {}
    if save_dtype != torch.float32:  # the reference must see the weights as they are stored...
        with torch.no_grad():        # ...but not a rounded RoPE inv_freq buffer, which from_pretrained recomputes
            for p in model.parameters():
                p.copy_(p.to(save_dtype).to(torch.float32))
    with torch.no_grad():
        ids = torch.randint(3, model.config.vocab_size, (batch, seq), generator=g)
        if padded:
            pads = [0, 5, 11][:batch]
            mask = torch.ones(batch, seq, dtype=torch.long)
            for b, p in enumerate(pads):
                mask[b, :p] = 0
                ids[b, :p] = 0
            position_ids = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
            logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids).logits
            expected.update(attention_mask=mask, position_ids=position_ids)
        else:
            logits = model(input_ids=ids).logits
        expected.update(input_ids=ids, logits=logits.float().contiguous())

        if gen_prompt:
            if padded:
                prompt = torch.randint(3, model.config.vocab_size, (batch, gen_prompt), generator=g)
                gmask = torch.ones(batch, gen_prompt, dtype=torch.long)
                for b, p in enumerate([0, 3, 6][:batch]):
                    gmask[b, :p] = 0
                    prompt[b, :p] = 0
                expected.update(gen_prompt=prompt, gen_attention_mask=gmask,
                                gen_tokens=greedy(model, prompt, gen_new, gmask))
            else:
                prompt = torch.randint(3, model.config.vocab_size, (1, gen_prompt), generator=g)
                expected.update(gen_prompt=prompt, gen_tokens=greedy(model, prompt, gen_new))

    dtype_name = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[save_dtype]
    inv_freq = {n: b.clone() for n, b in model.named_buffers()}
    to_save = model.to(save_dtype)
    if shard:
        to_save.save_pretrained(path, max_shard_size=shard)
    else:
        to_save.save_pretrained(path)
    if layout == "classic":  # transformers 5 writes rope_parameters; the hub mostly has the classic layout
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(classic_config(model, dtype_name), f, indent=2)
    model.to(torch.float32)
    with torch.no_grad():
        for n, b in model.named_buffers():
            b.copy_(inv_freq[n])
    save_file({k: v.contiguous() for k, v in expected.items()}, os.path.join(path, "expected.safetensors"),
              metadata={"case": name, "torch": torch.__version__, "transformers": transformers.__version__})
    print(name, {k: list(v.shape) for k, v in expected.items()}, sorted(os.listdir(path)))


def main():
    print("torch", torch.__version__, "transformers", transformers.__version__)
    only = set(sys.argv[2:])  # optional case names: write only those
    global write_case
    if only:
        everything = write_case
        write_case = lambda name, *a, **k: everything(name, *a, **k) if name in only else None
    write_case("mistral_sliding", build(MistralForCausalLM, MistralConfig(**COMMON, head_dim=16, sliding_window=8), 21),
               seq=24, gen_prompt=8, gen_new=24, seed=1)
    write_case("qwen2_bias", build(Qwen2ForCausalLM, Qwen2Config(**COMMON, tie_word_embeddings=False), 22), seed=2)
    write_case("llama3_rope", build(LlamaForCausalLM, LlamaConfig(**COMMON, head_dim=16, rope_scaling=dict(
        rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=64),
        rope_theta=500000.0), 23), seq=48, seed=3)
    write_case("linear_rope", build(LlamaForCausalLM, LlamaConfig(**COMMON, head_dim=16, rope_scaling=dict(
        type="linear", factor=4.0)), 24), seed=4)
    odd = dict(COMMON, hidden_size=96, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=3,
               intermediate_size=200)
    write_case("llama_v5_headdim", build(LlamaForCausalLM, LlamaConfig(**odd, head_dim=32, rope_theta=500000.0), 25),
               layout="v5", seed=5)
    write_case("llama_bf16", build(LlamaForCausalLM, LlamaConfig(**COMMON, head_dim=16), 26),
               save_dtype=torch.bfloat16, gen_prompt=0, seed=6)
    write_case("llama_sharded", build(LlamaForCausalLM, LlamaConfig(**COMMON, head_dim=16), 27), shard="400KB", seed=7)
    write_case("llama_padded", build(LlamaForCausalLM, LlamaConfig(**COMMON, head_dim=16), 28), batch=3, padded=True,
               seed=8)


if __name__ == "__main__":
    main()
