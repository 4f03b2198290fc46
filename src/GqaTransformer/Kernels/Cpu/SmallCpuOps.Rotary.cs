using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>RoPE for a decode step's few values, in one managed pass (ADR 0007).</summary>
internal static unsafe partial class SmallCpuOps
{
    /// <summary>
    /// HuggingFace's RoPE, <c>x * cos + rotate_half(x) * sin</c>, for queries [B, H, T, D] and keys [B, Hkv, T, D]
    /// with tables [B, T, R]: each product and the sum rounded to the dtype, as the libtorch chain does. With R &lt; D
    /// (partial rotary, Phi-3's) only the first R dimensions rotate, rotate_half within them; the rest pass unchanged.
    /// </summary>
    public static (Tensor Query, Tensor Key) Rotary(Tensor query, Tensor key, Tensor cos, Tensor sin)
    {
        int d = (int)query.size(-1);
        var buffer = ArrayPool<float>.Shared.Rent(5 * d);
        try
        {
            var rotatedQuery = RotateRows(query, cos, sin, buffer.AsSpan(0, 5 * d));
            return (rotatedQuery, RotateRows(key, cos, sin, buffer.AsSpan(0, 5 * d)));
        }
        finally
        {
            ArrayPool<float>.Shared.Return(buffer);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // called per decode step: skip the unoptimised first tier
    private static Tensor RotateRows(Tensor x, Tensor cos, Tensor sin, Span<float> buffer)
    {
        var output = empty_like(x);
        var dtype = x.dtype;
        long heads = x.size(1), tokens = x.size(2);
        int d = (int)x.size(3), rotary = (int)cos.size(2), half = rotary / 2, elementSize = dtype.ElementSize();
        long rowBytes = (long)d * elementSize, tableRowBytes = (long)rotary * elementSize;
        var values = buffer[..rotary];                                         // the rotating part of a row
        var rotated = buffer.Slice(d, rotary);
        var c = buffer.Slice(2 * d, rotary);
        var s = buffer.Slice(3 * d, rotary);
        var product = buffer.Slice(4 * d, rotary);
        byte* input = TensorMemory.Address(x), result = TensorMemory.Address(output);
        byte* cosines = TensorMemory.Address(cos), sines = TensorMemory.Address(sin);
        long rows = x.size(0) * heads * tokens;
        for (long r = 0; r < rows; r++)
        {
            long table = r / (heads * tokens) * tokens + r % tokens;          // row [b, t] of the tables
            ToSingle(cosines + table * tableRowBytes, dtype, c);
            ToSingle(sines + table * tableRowBytes, dtype, s);
            ToSingle(input + r * rowBytes, dtype, values);
            VectorOps.Negate(values[half..], rotated[..half]);                // rotate_half: [−x₂, x₁]
            values[..half].CopyTo(rotated[half..]);
            VectorOps.Multiply(values, c, values);
            RoundInPlace(values, dtype);                                      // x * cos
            VectorOps.Multiply(rotated, s, product);
            RoundInPlace(product, dtype);                                     // rotate_half(x) * sin
            VectorOps.Add(values, product, values);
            FromSingle(values, dtype, result + r * rowBytes);                 // the sum, rounded
            if (rotary < d)                                                   // partial rotary: the rest as it was
                new ReadOnlySpan<byte>(input + r * rowBytes + tableRowBytes, (int)(rowBytes - tableRowBytes))
                    .CopyTo(new Span<byte>(result + r * rowBytes + tableRowBytes, (int)(rowBytes - tableRowBytes)));
        }
        return output;
    }
}
