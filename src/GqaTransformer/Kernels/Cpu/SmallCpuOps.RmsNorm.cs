using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>RMSNorm for a decode step's few values, in one managed pass (ADR 0007).</summary>
internal static unsafe partial class SmallCpuOps
{
    /// <summary>
    /// HuggingFace's Llama RMSNorm: <c>weight * (x32 * rsqrt(mean(x32²) + eps)).to(dtype)</c> over the last dimension,
    /// with <c>x32 = x.to(float32)</c>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // called per decode step: skip the unoptimised first tier
    public static Tensor RmsNorm(Tensor x, Tensor weight, double eps)
    {
        var output = empty_like(x);
        int size = (int)weight.numel();
        long rows = x.numel() / size;
        var dtype = x.dtype;
        byte* input = TensorMemory.Address(x), scale = TensorMemory.Address(weight), result = TensorMemory.Address(output);
        int elementSize = dtype.ElementSize();
        var buffer = ArrayPool<float>.Shared.Rent(2 * size);
        try
        {
            var values = buffer.AsSpan(0, size);
            var weights = buffer.AsSpan(size, size);
            ToSingle(scale, dtype, weights);
            for (long r = 0; r < rows; r++)
            {
                ToSingle(input + r * size * elementSize, dtype, values);
                float inverse = 1f / MathF.Sqrt(VectorOps.SumOfSquares(values) / size + (float)eps);
                VectorOps.Scale(values, inverse);
                RoundInPlace(values, dtype);                                  // (x32 * rsqrt(…)).to(dtype)
                VectorOps.Multiply(values, weights, values);
                FromSingle(values, dtype, result + r * size * elementSize);   // weight * …, in dtype
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(buffer);
        }
        return output;
    }
}
