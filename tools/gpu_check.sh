#!/usr/bin/env bash
# Runs on the GPU machine (see README, "CUDA"): a self-contained publish of `gqa` (without CPU natives) against the
# machine's own PyTorch CUDA libraries. Checks parity with every transformers fixture on CUDA, runs the attention
# benchmark there, and PyTorch's own numbers for the same shapes.
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
data=tests/GqaTransformer.Tests/TestData
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
# Every reference on CUDA, and on the machine's own CPU: an Intel Xeon with AVX-512, so the managed decode paths
# (DecodeLinear, the fused kernel's lane groups, SmallCpuOps) run on a second x86 vendor.
for device in cuda cpu; do
  for dir in "$data"/hf-tiny/* "$data"/hf-ref/*; do
    [ -f "$dir/expected.safetensors" ] || continue
    echo "== verify $(basename "$dir") on $device, fp32"
    "$gqa" verify --model "$dir" --reference "$dir/expected.safetensors" --device $device; echo "exit $?"
  done
  for name in llama_gqa llama_mqa; do
    for dtype in bf16 fp16; do
      echo "== verify $name on $device, $dtype (tolerance 0.5)"
      "$gqa" verify --model "$data/hf-tiny/$name" --reference "$data/hf-tiny/$name/expected.safetensors" --device $device --dtype $dtype --tolerance 0.5; echo "exit $?"
    done
  done
done
echo "== generate, fp16 weights with a bf16 cache, cuda and cpu"
"$gqa" generate --model "$data/hf-tiny/llama_gqa" --ids 5,9,13 --max-new 12 --device cuda --dtype fp16 --cache-dtype bf16
"$gqa" generate --model "$data/hf-tiny/llama_gqa" --ids 5,9,13 --max-new 12 --device cpu --dtype fp16 --cache-dtype bf16
echo "== generate on cuda"
"$gqa" generate --model "$data/hf-tiny/llama_gqa" --ids 5,9,13 --max-new 12 --device cuda
"$gqa" generate --model "$data/hf-tiny/llama_gqa" --ids 5,9,13 --max-new 12 --device cpu
[ "${SKIP_BENCH:-0}" = 1 ] && exit 0
for batch in 1 8; do
  echo "== gqa bench, cuda, bf16, batch $batch"
  "$gqa" bench --device cuda --dtype bf16 --context 1k,4k,8k,32k --batch $batch --iterations 50
done
echo "== whole-model decode, 1.1B Llama shape, bf16, cuda"
"$gqa" bench --model --device cuda --dtype bf16 --context 512 --batch 1 --kv-heads 32,8,1 --new-tokens 128
"$gqa" bench --model --device cuda --dtype bf16 --context 2048 --batch 8 --kv-heads 32,8,1 --new-tokens 64
[ "${SKIP_TORCH_REFERENCE:-0}" = 1 ] && exit 0
echo "== PyTorch reference"
python3 tools/gpu_attention_reference.py
