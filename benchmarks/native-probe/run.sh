#!/usr/bin/env bash
# Builds and runs the C attention probe (see attention_probe.c). Usage: benchmarks/native-probe/run.sh [runs]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${TMPDIR:-/tmp}/gqa-attention-probe"
gcc -O3 -march=native -pthread -Wall -Wextra -Werror "$here/attention_probe.c" -o "$out"
for ((i = 1; i <= ${1:-1}; i++)); do
  date -u +%H:%M:%S
  "$out"
done
