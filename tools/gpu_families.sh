#!/usr/bin/env bash
# Runs on the GPU machine (docs/gpu.md): makes the family fixtures with transformers (tools/make_family_fixtures.py),
# then checks our CUDA path against them with the packed self-contained gqa: fp32 logits and greedy tokens with CUDA
# graphs on and off, both config layouts, bf16 within bf16 rounding; and loads our own saved checkpoints
# (.device/saved, written by ModelFamilyTests with GQA_KEEP_SAVED) with transformers. Output: $OUT/hf-families.tar.
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh" .device/gqa.tar.xz
fam=$(mktemp -d)/hf-families
python3 tools/make_family_fixtures.py "$fam" || exit 1
tar cf "$OUT/hf-families.tar" -C "$(dirname "$fam")" hf-families
# the left-padded batch and its generation under the names gqa verify reads
python3 - "$fam" <<'PY'
import os, sys
from safetensors.torch import load_file, save_file
for name in os.listdir(sys.argv[1]):
    e = load_file(os.path.join(sys.argv[1], name, "expected.safetensors"))
    save_file({"input_ids": e["padded_input_ids"], "logits": e["padded_logits"], "attention_mask": e["padded_attention_mask"],
               "position_ids": e["padded_position_ids"], "gen_prompt": e["gen_padded_prompt"],
               "gen_attention_mask": e["gen_padded_attention_mask"], "gen_tokens": e["gen_padded_tokens"]},
              os.path.join(sys.argv[1], name, "padded.safetensors"))
PY
echo "== our saved checkpoints, read by transformers"
python3 tools/check_saved_with_transformers.py .device/saved/*
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
for dir in "$fam"/*; do
  name=$(basename "$dir")
  for graphs in on $([ "${QUICK:-0}" = 2 ] || echo off); do
    for ref in expected $([ "${QUICK:-0}" = 0 ] && echo padded); do
      echo "== $name $ref cuda fp32 graphs $graphs"; "$gqa" verify --model "$dir" --reference "$dir/$ref.safetensors" --device cuda --cuda-graphs $graphs; echo "exit $?"
    done
  done
  [ "${QUICK:-0}" != 0 ] && continue   # QUICK=1: graphs on and off only; QUICK=2: graphs on only (the CPU tests cover the rest)
  v5=$(mktemp -d); cp "$dir"/model*.safetensors "$v5"/; cp "$dir/config.hf-saved.json" "$v5/config.json"
  echo "== $name cuda fp32, transformers-5 config"; "$gqa" verify --model "$v5" --reference "$dir/expected.safetensors" --device cuda; echo "exit $?"
  echo "== $name cuda bf16"; "$gqa" verify --model "$dir" --reference "$dir/expected.safetensors" --device cuda --dtype bf16 --tolerance 0.5; echo "exit $?"
done
