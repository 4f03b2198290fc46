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
                    if (dtype == ScalarType.Float32) RowsFloat32((float*)w, xp, yp, first, end, k);
                    else RowsBFloat16((ushort*)w, xp, yp, first, end, k);
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

    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // called per decode step: skip the unoptimised first tier
    private static void RowsBFloat16(ushort* w, float* x, float* y, int first, int end, int k)
    {
        const int ahead = PrefetchBytes / sizeof(ushort);
        int r = first;
        for (; r + 4 <= end; r += 4)
        {
            var a0 = Vector512<float>.Zero; var a1 = a0; var a2 = a0; var a3 = a0;
            ushort* p0 = w + (long)r * k, p1 = p0 + k, p2 = p1 + k, p3 = p2 + k;
            for (int i = 0; i < k; i += 16)
            {
                if ((i & 31) == 0) { Prefetch(p0 + i + ahead); Prefetch(p1 + i + ahead); Prefetch(p2 + i + ahead); Prefetch(p3 + i + ahead); }
                var xv = Vector512.Load(x + i);
                a0 = Vector512.FusedMultiplyAdd(Widen(p0 + i), xv, a0);
                a1 = Vector512.FusedMultiplyAdd(Widen(p1 + i), xv, a1);
                a2 = Vector512.FusedMultiplyAdd(Widen(p2 + i), xv, a2);
                a3 = Vector512.FusedMultiplyAdd(Widen(p3 + i), xv, a3);
            }
            y[r] = Vector512.Sum(a0); y[r + 1] = Vector512.Sum(a1); y[r + 2] = Vector512.Sum(a2); y[r + 3] = Vector512.Sum(a3);
        }
        for (; r < end; r++)
        {
            var a0 = Vector512<float>.Zero;
            ushort* p0 = w + (long)r * k;
            for (int i = 0; i < k; i += 16) a0 = Vector512.FusedMultiplyAdd(Widen(p0 + i), Vector512.Load(x + i), a0);
            y[r] = Vector512.Sum(a0);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // called per decode step: skip the unoptimised first tier
    private static void RowsFloat32(float* w, float* x, float* y, int first, int end, int k)
    {
        const int ahead = PrefetchBytes / sizeof(float);
        int r = first;
        for (; r + 4 <= end; r += 4)
        {
            var a0 = Vector512<float>.Zero; var a1 = a0; var a2 = a0; var a3 = a0;
            float* p0 = w + (long)r * k, p1 = p0 + k, p2 = p1 + k, p3 = p2 + k;
            for (int i = 0; i < k; i += 16)
            {
                Prefetch(p0 + i + ahead); Prefetch(p1 + i + ahead); Prefetch(p2 + i + ahead); Prefetch(p3 + i + ahead);
                var xv = Vector512.Load(x + i);
                a0 = Vector512.FusedMultiplyAdd(Vector512.Load(p0 + i), xv, a0);
                a1 = Vector512.FusedMultiplyAdd(Vector512.Load(p1 + i), xv, a1);
                a2 = Vector512.FusedMultiplyAdd(Vector512.Load(p2 + i), xv, a2);
                a3 = Vector512.FusedMultiplyAdd(Vector512.Load(p3 + i), xv, a3);
            }
            y[r] = Vector512.Sum(a0); y[r + 1] = Vector512.Sum(a1); y[r + 2] = Vector512.Sum(a2); y[r + 3] = Vector512.Sum(a3);
        }
        for (; r < end; r++)
        {
            var a0 = Vector512<float>.Zero;
            float* p0 = w + (long)r * k;
            for (int i = 0; i < k; i += 16) a0 = Vector512.FusedMultiplyAdd(Vector512.Load(p0 + i), Vector512.Load(x + i), a0);
            y[r] = Vector512.Sum(a0);
        }
    }

    /// <summary>16 bfloat16 values as float32: each is the upper half of a float32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Widen(ushort* p) => Vector512.ShiftLeft(Vector512.WidenLower(Vector256.Load(p).ToVector512Unsafe()), 16).AsSingle();

    /// <summary>A prefetch past the end of a row or of W is harmless: prefetches never fault.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Prefetch(void* address)
    {
        if (Sse.IsSupported) Sse.Prefetch0(address);
    }
}
