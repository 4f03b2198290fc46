# Sourced by the tools/gpu_*.sh scripts on the GPU machine: unpacks the packed self-contained gqa (the script's first
# argument, or .device/gqa.tar.xz) into a temporary folder as $work, puts python3's libtorch on the library path, runs
# .NET without ICU (the machine has none), and sets $gqa to the tool.
pkg=${1:-.device/gqa.tar.xz}
work=$(mktemp -d)
tar xJf "$pkg" -C "$work"
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"lib"))')
export DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1
gqa="$work/gqa/gqa"
