#!/usr/bin/env bash
# Runs on the GPU machine: load, generate and dispose a checkpoint 20 times with `gqa soak`, which exits 1 unless every
# cycle after the first gives back the CUDA bytes it took (docs/reliability.md). Takes the packed self-contained gqa
# (tools/gpu_env.sh) and uses the shim at GQA_CUDA_GRAPHS_LIBRARY when set (a fresh native/build.sh output).
# Checkpoints: the tiny GQA fixture in fp32, and a Llama of the 1.1B shape with random weights saved by transformers in
# bf16 (2.2 GB), with CUDA graphs on and off.
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
big="$work/llama-1.1b-random"
python3 - "$big" <<'PY'
import sys, torch
from transformers import LlamaConfig, LlamaForCausalLM
config = LlamaConfig(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                     num_key_value_heads=4, vocab_size=32000, max_position_embeddings=2048, torch_dtype="bfloat16")
torch.manual_seed(0)
with torch.device("cuda"):
    model = LlamaForCausalLM(config).to(torch.bfloat16)
model.save_pretrained(sys.argv[1])
print("saved", sys.argv[1], sum(p.numel() for p in model.parameters()), "parameters")
PY
status=0
run() { echo "== gqa soak $*"; "$gqa" soak "$@" || status=1; }
run --model tests/GqaTransformer.Tests/TestData/hf-tiny/llama_gqa --device cuda --cycles 20 --max-new 32
run --model "$big" --device cuda --dtype bf16 --cycles 20 --max-new 32 --cuda-graphs on
run --model "$big" --device cuda --dtype bf16 --cycles 20 --max-new 32 --cuda-graphs off
exit $status
