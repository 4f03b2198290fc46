#!/usr/bin/env bash
# Runs on the GPU machine: checkpoints split between the GPU and the CPU (activations cross devices at the layer
# boundary) checked against transformers' logits and greedy tokens, as tools/gpu_check.sh does for one device, and an
# automatic map fitted to the GPU's free memory. Takes the packed self-contained gqa (as tools/gpu_check.sh).
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
data=tests/GqaTransformer.Tests/TestData
pass=0; fail=0
check() {
  if "$gqa" verify "$@" > /tmp/v.log 2>&1; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL $*"; cat /tmp/v.log; fi
}
for dir in "$data"/hf-tiny/* "$data"/hf-ref/*; do
  [ -f "$dir/expected.safetensors" ] || continue
  layers=$(python3 -c "import json;print(json.load(open('$dir/config.json'))['num_hidden_layers'])")
  first=$((layers / 2)); [ "$first" -ge 1 ] || first=1
  rest=$((layers - first))
  map="cuda:0=$first"; [ "$rest" -gt 0 ] && map="$map,cpu=$rest"
  check --model "$dir" --reference "$dir/expected.safetensors" --device-map "$map"
  check --model "$dir" --reference "$dir/expected.safetensors" --device-map auto
done
echo "== verify with a device map: $pass passed, $fail failed"
[ "$fail" = 0 ]
