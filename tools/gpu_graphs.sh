#!/usr/bin/env bash
# Runs on the GPU machine: CUDA-graph decoding checked and measured beside PyTorch in one run. Takes the packed
# self-contained gqa (as tools/gpu_check.sh). Parity with every transformers reference with graphs on; whole-model
# decode of the 1.1B shape with graphs off and on; PyTorch eager and compiled (CUDA graphs) on the same shapes.
# Env: SKIP_VERIFY=1, SKIP_BENCH=1, GRAPHS="on" (bench one mode), SKIP_B32=1, SKIP_TORCH_REFERENCE=1.
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
data=tests/GqaTransformer.Tests/TestData
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
if [ "${SKIP_VERIFY:-0}" != 1 ]; then
pass=0; fail=0
for dir in "$data"/hf-tiny/* "$data"/hf-ref/*; do
  [ -f "$dir/expected.safetensors" ] || continue
  if "$gqa" verify --model "$dir" --reference "$dir/expected.safetensors" --device cuda --cuda-graphs on > /tmp/v.log 2>&1; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL $(basename "$dir")"; cat /tmp/v.log; fi
done
for name in llama_gqa llama_mqa; do
  if "$gqa" verify --model "$data/hf-tiny/$name" --reference "$data/hf-tiny/$name/expected.safetensors" --device cuda --dtype bf16 --tolerance 0.5 --cuda-graphs on > /tmp/v.log 2>&1; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL $name bf16"; cat /tmp/v.log; fi
done
echo "== verify with CUDA graphs: $pass passed, $fail failed"
"$gqa" generate --model "$data/hf-tiny/llama_gqa" --ids 5,9,13 --max-new 12 --device cuda --cuda-graphs on
"$gqa" generate --model "$data/hf-tiny/llama_gqa" --ids 5,9,13 --max-new 12 --device cuda --cuda-graphs off --quiet
fi
[ "${SKIP_BENCH:-0}" = 1 ] && exit 0
for graphs in ${GRAPHS:-off on}; do
  "$gqa" bench --model --device cuda --dtype bf16 --context 512 --batch 1 --kv-heads 32,8,1 --new-tokens 128 --cuda-graphs $graphs
  "$gqa" bench --model --device cuda --dtype bf16 --context 2048 --batch 8 --kv-heads 32,8,1 --new-tokens 64 --cuda-graphs $graphs
done
[ "${SKIP_B32:-0}" = 1 ] || "$gqa" bench --model --device cuda --dtype bf16 --context 4096 --batch 32 --kv-heads 32,8 --new-tokens 32 --cuda-graphs on
[ "${SKIP_TORCH_REFERENCE:-0}" = 1 ] && exit 0
python3 tools/gpu_decode_reference.py 1 512 128 32,8 both
python3 tools/gpu_decode_reference.py 8 2048 64 32,8 both
