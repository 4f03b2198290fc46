using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>Raw access to a CPU tensor's memory for the managed kernels.</summary>
internal static unsafe class TensorMemory
{
    /// <summary>Address of a contiguous CPU tensor's first element; the tensor must stay alive while it is used.</summary>
    public static byte* Address(Tensor contiguous) => (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(contiguous.bytes));
}
