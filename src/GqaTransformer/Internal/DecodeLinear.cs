using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// A linear layer for one token on the CPU: <c>y = W·x</c> as a managed matrix-vector product for float32 and bfloat16
/// weights, where libtorch's single-row matmul streams the weights at about half the memory bandwidth (13-16 GB/s
/// against 20-26 GB/s here, ADR 0007; its float16 path is already fast and keeps it). Four weight rows at a time are
/// dotted with x in 512-bit float32 accumulators, the rows fetched a few KB ahead; bfloat16 widens by a shift. x is
/// widened to float32 once, and each output rounded once to the dtype, as libtorch's float32 accumulation does.
/// Inference only: one row of x, no bias, autograd not recording.
/// </summary>
internal static unsafe class DecodeLinear
{
    /// <summary>Rows of W per task of the parallel loop (a multiple of 4).</summary>
    private const int RowsPerTask = 64;

    /// <summary>How far ahead in each row the weights are fetched, in bytes.</summary>
    private const int PrefetchBytes = 2048;

    /// <summary><paramref name="linear"/>(<paramref name="x"/>), by the managed product where it applies.</summary>
    public static Tensor Forward(Linear linear, Tensor x)
    {
        if (x.device_type != DeviceType.CPU || x.dtype is not (ScalarType.Float32 or ScalarType.BFloat16) || !Vector512.IsHardwareAccelerated)
            return linear.forward(x);
        // No dispose scope of its own here: with one around these getters, 1-2 in 15 test runs saw a tensor of the
        // enclosing forward disposed under it ("empty handle"); without it, none in 45. Whatever the getters create
        // belongs to the caller's scope, as every forward of this library runs in one.
        var weight = linear.weight!;
        return linear.bias is null && Supports(x, weight) ? Product(x, weight) : linear.forward(x);
    }

    /// <summary><c>linear(x, weight)</c> without bias, by the managed product where it applies.</summary>
    public static Tensor Forward(Tensor x, Tensor weight)
        => Supports(x, weight) ? Product(x, weight) : nn.functional.linear(x, weight);

    /// <summary>x [..., K] with one row in all, W [N, K]: same dtype (float32 or bfloat16), contiguous, K a multiple of 16, no autograd.</summary>
    public static bool Supports(Tensor x, Tensor weight)
        => Vector512.IsHardwareAccelerated && x.dtype is ScalarType.Float32 or ScalarType.BFloat16
           && SmallCpuOps.IsInferenceInput(x, weight.dtype) && SmallCpuOps.IsInferenceInput(weight, x.dtype)
           && weight.dim() == 2 && x.numel() == weight.size(1) && weight.size(1) % 16 == 0;

    /// <summary>W·x for one row: [..., K] → [..., N] in x's dtype.</summary>
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
        var input = pool.Rent(k);
        var sums = pool.Rent(n);
        try
        {
            SmallCpuOps.ToSingle(TensorMemory.Address(x), dtype, input.AsSpan(0, k));
            int tasks = (n + RowsPerTask - 1) / RowsPerTask;
            int elementSize = KvCache.ElementSize(dtype);
            fixed (float* xs = input, ys = sums)
            {
                float* xp = xs, yp = ys;
                OpenMpTeam.For(tasks, Math.Max(1, get_num_threads()), task =>
                {
                    int first = task * RowsPerTask, end = Math.Min(n, first + RowsPerTask);
                    if (dtype == ScalarType.Float32) Rows<Float32Row>(w, xp, yp, first, end, k);
                    else Rows<BFloat16Row>(w, xp, yp, first, end, k);
                    SmallCpuOps.FromSingle(new ReadOnlySpan<float>(yp + first, end - first), dtype, result + (long)first * elementSize);
                });
            }
        }
        finally
        {
            pool.Return(input);
            pool.Return(sums);
        }
        return output;
    }

    /// <summary>
    /// y[r] = W[r]·x for rows [first, end): 4 rows at a time in 512-bit accumulators, each row fetched
    /// <see cref="PrefetchBytes"/> ahead, one prefetch per 64-byte line.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // called per decode step: skip the unoptimised first tier
    private static void Rows<TWeight>(void* weights, float* x, float* y, int first, int end, int k) where TWeight : struct, IWeightRow
    {
        int ahead = PrefetchBytes / TWeight.ElementSize, perLine = 64 / TWeight.ElementSize;
        byte* w = (byte*)weights;
        long rowBytes = (long)k * TWeight.ElementSize;
        int r = first;
        for (; r + 4 <= end; r += 4)
        {
            var a0 = Vector512<float>.Zero; var a1 = a0; var a2 = a0; var a3 = a0;
            byte* p0 = w + r * rowBytes, p1 = p0 + rowBytes, p2 = p1 + rowBytes, p3 = p2 + rowBytes;
            for (int i = 0; i < k; i += 16)
            {
                if (i % perLine == 0)
                {
                    int next = (i + ahead) * TWeight.ElementSize;
                    Prefetch(p0 + next); Prefetch(p1 + next); Prefetch(p2 + next); Prefetch(p3 + next);
                }
                var xv = Vector512.Load(x + i);
                int at = i * TWeight.ElementSize;
                a0 = Vector512.FusedMultiplyAdd(TWeight.Load(p0 + at), xv, a0);
                a1 = Vector512.FusedMultiplyAdd(TWeight.Load(p1 + at), xv, a1);
                a2 = Vector512.FusedMultiplyAdd(TWeight.Load(p2 + at), xv, a2);
                a3 = Vector512.FusedMultiplyAdd(TWeight.Load(p3 + at), xv, a3);
            }
            y[r] = Vector512.Sum(a0); y[r + 1] = Vector512.Sum(a1); y[r + 2] = Vector512.Sum(a2); y[r + 3] = Vector512.Sum(a3);
        }
        for (; r < end; r++)
        {
            var a0 = Vector512<float>.Zero;
            byte* p0 = w + r * rowBytes;
            for (int i = 0; i < k; i += 16) a0 = Vector512.FusedMultiplyAdd(TWeight.Load(p0 + i * TWeight.ElementSize), Vector512.Load(x + i), a0);
            y[r] = Vector512.Sum(a0);
        }
    }

    /// <summary>How 16 weights of one dtype are read as float32 (a struct, so each use is inlined).</summary>
    private interface IWeightRow
    {
        static abstract int ElementSize { get; }
        static abstract Vector512<float> Load(byte* p);
    }

    private readonly struct Float32Row : IWeightRow
    {
        public static int ElementSize => sizeof(float);
        public static Vector512<float> Load(byte* p) => Vector512.Load((float*)p);
    }

    /// <summary>bfloat16: each value is the upper half of a float32.</summary>
    private readonly struct BFloat16Row : IWeightRow
    {
        public static int ElementSize => sizeof(ushort);
        public static Vector512<float> Load(byte* p) => Vector512.ShiftLeft(Vector512.WidenLower(Vector256.Load((ushort*)p).ToVector512Unsafe()), 16).AsSingle();
    }

    /// <summary>A prefetch past the end of a row or of W is harmless: prefetches never fault.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Prefetch(void* address)
    {
        if (Sse.IsSupported) Sse.Prefetch0(address);
    }
}
