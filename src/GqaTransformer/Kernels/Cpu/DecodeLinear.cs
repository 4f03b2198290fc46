using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// A linear layer for one token on the CPU: <c>y = W·x</c> as a managed matrix-vector product over float32, bfloat16 or
/// float16 weights. A decode step is mostly this, every weight read once from memory, so each row of W is read as one
/// sequential stream the hardware prefetcher follows, and 16-bit weights as 32-bit pairs (<see cref="IHalfPairs"/>).
/// x is widened to float32 once and each output rounded once, as libtorch does. Inference only: one row of x, no bias,
/// no autograd (ADR 0009).
/// </summary>
internal static unsafe class DecodeLinear
{
    /// <summary>Rows of W per task of the parallel loop.</summary>
    private const int RowsPerTask = 64;

    /// <summary>
    /// Whether the seam takes this path: <see cref="Fits"/>, on a processor with 512-bit vectors. Elsewhere
    /// <see cref="Vector512"/> runs in software, correct but slower than libtorch's linear, which then serves.
    /// </summary>
    public static bool Supports(Tensor x, Tensor weight) => Vector512.IsHardwareAccelerated && Fits(x, weight);

    /// <summary>x [..., K] with one row in all, W [N, K]: same dtype (float32, bfloat16 or float16), contiguous, K a multiple of 16, no autograd.</summary>
    public static bool Fits(Tensor x, Tensor weight)
        => SmallCpuOps.IsInferenceInput(x, weight.dtype) && SmallCpuOps.IsInferenceInput(weight, x.dtype)
           && weight.dim() == 2 && x.numel() == weight.size(1) && weight.size(1) % 16 == 0;

    /// <summary>
    /// W·x for one row: [..., K] → [..., N] in x's dtype. A float16 W holding an infinity or a NaN is handed to
    /// libtorch's linear instead (the pair decoding in <see cref="HalfPairs"/> is exact for finite values only).
    /// </summary>
    public static Tensor Product(Tensor x, Tensor weight)
    {
        int n = (int)weight.size(0), k = (int)weight.size(1);
        var dtype = x.dtype;
        var shape = new long[x.dim()];                                  // x's shape with N last (Tensor.shape allocates natively)
        for (int i = 0; i < shape.Length - 1; i++) shape[i] = x.size(i);
        shape[^1] = n;
        var output = empty(shape, dtype);
        byte* w = TensorMemory.Address(weight), result = TensorMemory.Address(output);
        var pool = ArrayPool<float>.Shared;
        var input = pool.Rent(2 * k);                                   // x in float32, then (16-bit W) its even and odd elements
        var sums = pool.Rent(n);
        int nonFinite = 0;
        try
        {
            var widened = input.AsSpan(0, k);
            SmallCpuOps.ToSingle(TensorMemory.Address(x), dtype, widened);
            if (dtype != ScalarType.Float32)
                SplitEvenOdd(widened, input.AsSpan(k, k / 2), input.AsSpan(k + k / 2, k / 2), dtype == ScalarType.Float16 ? HalfPairs.Scale : BFloat16Pairs.Scale);
            int tasks = (n + RowsPerTask - 1) / RowsPerTask;
            int elementSize = dtype.ElementSize();
            fixed (float* xs = input, ys = sums)
            {
                float* xp = xs, yp = ys;
                OpenMpTeam.For(tasks, Math.Max(1, get_num_threads()), task =>
                {
                    int first = task * RowsPerTask, end = Math.Min(n, first + RowsPerTask);
                    if (dtype == ScalarType.Float32) Rows(w, xp, yp, first, end, k);
                    else if (!(dtype == ScalarType.BFloat16 ? Rows<BFloat16Pairs>(w, xp + k, yp, first, end, k) : Rows<HalfPairs>(w, xp + k, yp, first, end, k)))
                        Volatile.Write(ref nonFinite, 1);
                    SmallCpuOps.FromSingle(new ReadOnlySpan<float>(yp + first, end - first), dtype, result + (long)first * elementSize);
                });
            }
        }
        finally
        {
            pool.Return(input);
            pool.Return(sums);
        }
        if (nonFinite == 0) return output;
        output.Dispose();
        return nn.functional.linear(x, weight);
    }

    /// <summary>even[j] = x[2j]·scale, odd[j] = x[2j+1]·scale: the order in which <see cref="IHalfPairs"/> reads W's elements.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // called per decode step: skip the unoptimised first tier
    private static void SplitEvenOdd(ReadOnlySpan<float> x, Span<float> even, Span<float> odd, float scale)
    {
        for (int j = 0; j < even.Length; j++)
        {
            even[j] = x[2 * j] * scale;
            odd[j] = x[2 * j + 1] * scale;
        }
    }

    /// <summary>y[r] = W[r]·x for float32 rows [first, end), each row one sequential stream into four accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // called per decode step: skip the unoptimised first tier
    private static void Rows(byte* weights, float* x, float* y, int first, int end, int k)
    {
        for (int r = first; r < end; r++)
        {
            float* p = (float*)weights + (long)r * k;
            var a0 = Vector512<float>.Zero; var a1 = a0; var a2 = a0; var a3 = a0;
            int i = 0;
            for (; i + 64 <= k; i += 64)
            {
                a0 = Vector512.FusedMultiplyAdd(Vector512.Load(p + i), Vector512.Load(x + i), a0);
                a1 = Vector512.FusedMultiplyAdd(Vector512.Load(p + i + 16), Vector512.Load(x + i + 16), a1);
                a2 = Vector512.FusedMultiplyAdd(Vector512.Load(p + i + 32), Vector512.Load(x + i + 32), a2);
                a3 = Vector512.FusedMultiplyAdd(Vector512.Load(p + i + 48), Vector512.Load(x + i + 48), a3);
            }
            for (; i < k; i += 16) a0 = Vector512.FusedMultiplyAdd(Vector512.Load(p + i), Vector512.Load(x + i), a0);
            y[r] = Vector512.Sum((a0 + a1) + (a2 + a3));
        }
    }

    /// <summary>
    /// y[r] = W[r]·x for 16-bit rows [first, end): 64 weights (two 512-bit loads of 32-bit words) per iteration into four
    /// accumulators, then a 32- and a 16-weight tail. <paramref name="evenOdd"/> holds x's even elements, then its odd
    /// ones, each K/2 long. False if any weight was not finite (see <see cref="IHalfPairs.Specials"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // called per decode step: skip the unoptimised first tier
    private static bool Rows<TPairs>(byte* weights, float* evenOdd, float* y, int first, int end, int k) where TPairs : struct, IHalfPairs
    {
        int words = k / 2;                                  // a multiple of 8: K is a multiple of 16
        float* even = evenOdd, odd = evenOdd + words;
        var special = Vector512<uint>.Zero;
        for (int r = first; r < end; r++)
        {
            uint* p = (uint*)weights + (long)r * words;
            var a0 = Vector512<float>.Zero; var a1 = a0; var a2 = a0; var a3 = a0;
            int j = 0;
            for (; j + 32 <= words; j += 32)
            {
                var w0 = Vector512.Load(p + j);
                var w1 = Vector512.Load(p + j + 16);
                special |= TPairs.Specials(w0) | TPairs.Specials(w1);
                var (e0, o0) = TPairs.Split(w0);
                var (e1, o1) = TPairs.Split(w1);
                a0 = Vector512.FusedMultiplyAdd(e0, Vector512.Load(even + j), a0);
                a1 = Vector512.FusedMultiplyAdd(o0, Vector512.Load(odd + j), a1);
                a2 = Vector512.FusedMultiplyAdd(e1, Vector512.Load(even + j + 16), a2);
                a3 = Vector512.FusedMultiplyAdd(o1, Vector512.Load(odd + j + 16), a3);
            }
            if (j + 16 <= words)
            {
                var w0 = Vector512.Load(p + j);
                special |= TPairs.Specials(w0);
                var (e0, o0) = TPairs.Split(w0);
                a0 = Vector512.FusedMultiplyAdd(e0, Vector512.Load(even + j), a0);
                a1 = Vector512.FusedMultiplyAdd(o0, Vector512.Load(odd + j), a1);
                j += 16;
            }
            if (j < words)                                  // 8 words: the lower half of a 512-bit load, upper lanes zero
            {
                var w0 = Vector256.Load(p + j).ToVector512();
                special |= TPairs.Specials(w0);
                var (e0, o0) = TPairs.Split(w0);
                a2 = Vector512.FusedMultiplyAdd(e0, Vector256.Load(even + j).ToVector512(), a2);
                a3 = Vector512.FusedMultiplyAdd(o0, Vector256.Load(odd + j).ToVector512(), a3);
            }
            y[r] = Vector512.Sum((a0 + a1) + (a2 + a3));
        }
        return special == Vector512<uint>.Zero;
    }
}
