#!/usr/bin/env bash
# MHA -> GQA on the Brown corpus (tools/prepare_brown.py), with the gqa tool only. Pre-trains a byte-level MHA model
# (6 layers, hidden 384, 8 heads x 48, as the PyTorch anchor run) and each GQA shape from scratch for 105% of its steps;
# converts the MHA model to every KV shape in KVS by mean, first head and random; uptrains each for 1 / 2.5 / 5 / 10% of
# the pre-training steps; reports held-out perplexity. Independent chains run side by side (a 10M model leaves most of
# an H200 idle); the step-time comparisons at the end run alone. Results go line by line to $OUT/results.txt.
# Usage: migration_experiment.sh GQA_TARBALL DATA_DIR [device]   (env: STEPS, KVS, OUT, GQA, UPTRAIN_LR, PRECISIONS=bf16)
set -uo pipefail
pkg=$1; data=$2; device=${3:-cuda}
steps=${STEPS:-1000}; kvs=${KVS:-4 2 1}; out=${OUT:-/tmp/migration}; uplr=${UPTRAIN_LR:-3e-4}
if [ -n "${GQA:-}" ]; then gqa=$GQA; else work=$(mktemp -d); tar xJf "$pkg" -C "$work"; gqa="$work/gqa/gqa"; fi
if [ "$device" = cuda ]; then
  export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"lib"))')
fi
export DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} # many processes side by side
mkdir -p "$out"; results="$out/results.txt"
config() { # kv heads -> config file
  cat > "$out/config-kv$1.json" <<JSON
{"model_type": "llama", "hidden_size": 384, "num_attention_heads": 8, "num_key_value_heads": $1, "num_hidden_layers": 6,
 "intermediate_size": 1024, "vocab_size": 256, "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0}
JSON
  echo "$out/config-kv$1.json"
}
held() { "$gqa" eval --model "$1" --data "$data/heldout.txt" --seq 256 --batch 32 --device "$device" 2>/dev/null | tail -1; }
say() { echo "$*" | tee -a "$results"; }
train() { # name kv steps [extra args]: train from scratch, report
  local name=$1 kv=$2 n=$3; shift 3
  local start=$(date +%s)
  "$gqa" train --config "$(config "$kv")" --data "$data/train.txt" --out "$out/$name" --steps "$n" --batch 64 --seq 256 \
    --lr 1e-3 --device "$device" --log-every 100 "$@" > /dev/null 2> "$out/$name.log"
  say "$name ($n steps, $(( $(date +%s) - start )) s, $(grep "step $n/" "$out/$name.log" | grep -o '[0-9]* tok/s')): $(held "$out/$name")"
}
chain() { # kv method: convert the MHA model and uptrain the result
  local kv=$1 method=$2 base="$out/kv$1-$2-0"
  "$gqa" convert --model "$out/mha" --kv-heads "$kv" --out "$base" --method "$method" > /dev/null
  say "kv$kv $method 0%: $(held "$base")"
  for pct in 1 2.5 5 10; do
    local n=$(python3 -c "print(max(1, round($steps * $pct / 100)))")
    "$gqa" uptrain --model "$base" --data "$data/train.txt" --out "$out/kv$kv-$method-$pct" --steps "$n" \
      --batch 64 --seq 256 --lr "$uplr" --device "$device" > /dev/null 2>&1
    say "kv$kv $method $pct% ($n steps): $(held "$out/kv$kv-$method-$pct")"
  done
}

say "# $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1); pre-train $steps steps of 64 x 256 bytes, lr 1e-3; uptrain lr $uplr"
# 1. MHA and every GQA shape from scratch (105% of the steps), side by side.
train mha 8 "$steps" &
for precision in ${PRECISIONS:-}; do train "mha-$precision" 8 "$steps" --precision "$precision" & done
for kv in $kvs; do train "kv$kv-scratch" "$kv" $(( steps * 105 / 100 )) & done
wait
# 2. Every shape with every method, side by side.
for kv in $kvs; do for method in mean first random; do chain "$kv" "$method" & done; done
wait
# 3. Training step time, each alone: MHA against each GQA shape, 200 steps (fp32, then bf16 autocast on CUDA).
for precision in fp32 ${PRECISIONS:-}; do
  for kv in 8 $kvs; do
    "$gqa" train --config "$(config "$kv")" --data "$data/train.txt" --out "$out/speed" --steps 200 --batch 64 --seq 256 \
      --device "$device" --log-every 50 --precision "$precision" > /dev/null 2> "$out/speed.log"
    say "step time kv$kv $precision: $(grep -E 'step (100|150|200)/' "$out/speed.log" | grep -o '[0-9]* tok/s' | tr '\n' ' ')"
  done
done
