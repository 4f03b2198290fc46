#!/usr/bin/env bash
# Per-part timing of one decode step on the GPU (see tools/gpu_check.sh for the set-up).
set -uo pipefail
work=$(mktemp -d); tar xJf "${1:-.device/gqa.tar.xz}" -C "$work"
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"lib"))')
export DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1
"$work/gqa/gqa" bench --model --profile --device cuda --dtype bf16 --context 512 --batch 1 --kv-heads 8 --new-tokens 64
