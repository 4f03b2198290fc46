#!/usr/bin/env bash
# Builds libgqa_cuda_graphs.so against the PyTorch installed for python3 (its headers and libraries) on a machine with
# the CUDA toolkit, and writes BUILDINFO beside it. One command: bash native/build.sh [OUT_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/prebuilt/linux-x64}
mkdir -p "$out"
torch_dir=$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')
torch_version=$(python3 -c 'import torch; print(torch.__version__)')
cuda_home=${CUDA_HOME:-/usr/local/cuda}
cxx11_abi=$(python3 -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
g++ -O2 -std=c++17 -Wno-interference-size -shared -fPIC \
  -D_GLIBCXX_USE_CXX11_ABI="$cxx11_abi" \
  -I"$torch_dir/include" -I"$torch_dir/include/torch/csrc/api/include" -I"$cuda_home/include" \
  "$here/gqa_cuda_graphs.cpp" -o "$out/libgqa_cuda_graphs.so" \
  -L"$torch_dir/lib" -ltorch_cuda -lc10_cuda -ltorch_cpu -lc10 -L"$cuda_home/lib64" -lcudart \
  -Wl,--no-as-needed -Wl,-rpath,'$ORIGIN'
# exported C symbols only
nm -D --defined-only "$out/libgqa_cuda_graphs.so" | grep -q gqa_graph_replay
cat > "$out/BUILDINFO" <<INFO
libgqa_cuda_graphs.so built $(date -u +%Y-%m-%dT%H:%MZ)
libtorch: $torch_version (python3's torch at $torch_dir), _GLIBCXX_USE_CXX11_ABI=$cxx11_abi
compiler: $(g++ --version | head -1)
CUDA: $("$cuda_home/bin/nvcc" --version | tail -1)
INFO
cat "$out/BUILDINFO"
