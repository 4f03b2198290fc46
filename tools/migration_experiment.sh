#!/usr/bin/env bash
# MHA -> GQA on the Brown corpus (tools/prepare_brown.py), with the gqa tool only: pre-train a byte-level MHA model
# (6 layers, hidden 384, 8 heads x 48, as the PyTorch anchor run), convert it to 2 KV heads (H/4) by mean, first head
# and random, uptrain each for 0 / 1 / 2.5 / 5 / 10% of the pre-training steps, and report held-out perplexity.
# Results go line by line to $OUT/results.txt. Usage: migration_experiment.sh GQA_TARBALL DATA_DIR [device]
set -uo pipefail
pkg=$1; data=$2; device=${3:-cuda}
steps=${STEPS:-1000}; kv=${KV:-2}; out=${OUT:-/tmp/migration}
if [ -n "${GQA:-}" ]; then gqa=$GQA; else work=$(mktemp -d); tar xJf "$pkg" -C "$work"; gqa="$work/gqa/gqa"; fi
if [ "$device" = cuda ]; then
  export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"lib"))')
fi
export DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1
mkdir -p "$out"; results="$out/results.txt"
cat > "$out/config.json" <<JSON
{"model_type": "llama", "hidden_size": 384, "num_attention_heads": 8, "num_key_value_heads": 8, "num_hidden_layers": 6,
 "intermediate_size": 1024, "vocab_size": 256, "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0}
JSON
held() { "$gqa" eval --model "$1" --data "$data/heldout.txt" --seq 256 --batch 32 --device "$device" 2>/dev/null | tail -1; }
echo "pre-train: $steps steps, batch 64 x 256 bytes, lr 1e-3" | tee -a "$results"
start=$(date +%s)
"$gqa" train --config "$out/config.json" --data "$data/train.txt" --out "$out/mha" --steps "$steps" --batch 64 --seq 256 \
  --lr 1e-3 --device "$device" --log-every 100 > /dev/null 2> "$out/train.log"
echo "pre-train took $(( $(date +%s) - start )) s; $(grep "step $steps/" "$out/train.log")" | tee -a "$results"
echo "mha: $(held "$out/mha")" | tee -a "$results"
for method in mean first random; do
  "$gqa" convert --model "$out/mha" --kv-heads "$kv" --out "$out/kv$kv-$method-0" --method "$method" > /dev/null
  echo "kv$kv $method 0%: $(held "$out/kv$kv-$method-0")" | tee -a "$results"
  for pct in 1 2.5 5 10; do
    n=$(python3 -c "print(max(1, round($steps * $pct / 100)))")
    "$gqa" uptrain --model "$out/kv$kv-$method-0" --data "$data/train.txt" --out "$out/kv$kv-$method-$pct" --steps "$n" \
      --batch 64 --seq 256 --lr 3e-4 --device "$device" > /dev/null 2>&1
    echo "kv$kv $method $pct% ($n steps): $(held "$out/kv$kv-$method-$pct")" | tee -a "$results"
  done
done
