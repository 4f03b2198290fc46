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
    public static Tensor RmsNorm(Tensor x, Tensor weight, double eps) => RmsNorm(x, weight, eps, RmsNormKind.Llama);

    /// <summary>
    /// RMSNorm over the last dimension, the weight applied as <paramref name="kind"/> says: x̂ = x32 · rsqrt(mean(x32²) + eps),
    /// then <c>w · x̂.to(dtype)</c> (Llama), <c>(w · x̂).to(dtype)</c> (OLMo 2) or <c>((1 + w) · x̂).to(dtype)</c> in float32 (Gemma).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // called per decode step: skip the unoptimised first tier
    public static Tensor RmsNorm(Tensor x, Tensor weight, double eps, RmsNormKind kind)
    {
        if (kind is not (RmsNormKind.Llama or RmsNormKind.WeightFirst or RmsNormKind.OnePlusWeight))
            throw new ArgumentOutOfRangeException(nameof(kind), kind, "Expected an RmsNormKind: Llama, WeightFirst or OnePlusWeight.");
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
            if (kind == RmsNormKind.OnePlusWeight)
                foreach (ref float w in weights) w += 1f;                        // 1 + w.float(), in float32
            for (long r = 0; r < rows; r++)
            {
                ToSingle(input + r * size * elementSize, dtype, values);
                float inverse = 1f / MathF.Sqrt(VectorOps.SumOfSquares(values) / size + (float)eps);
                VectorOps.Scale(values, inverse);
                if (kind == RmsNormKind.Llama) RoundInPlace(values, dtype);   // (x32 * rsqrt(…)).to(dtype) before the weight
                VectorOps.Multiply(values, weights, values);
                FromSingle(values, dtype, result + r * size * elementSize);   // the product, in dtype
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(buffer);
        }
        return output;
    }
}
