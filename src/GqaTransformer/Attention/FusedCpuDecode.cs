using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// One decode step of grouped attention on the CPU in a single pass over the cache: for each KV head, every key row is
/// read once and dotted with the group's G queries, every value row read once and accumulated with online-softmax
/// weights. Work is split over (KV head, chunk of keys) and the chunks merged by log-sum-exp, so even one KV head keeps
/// every core busy. float32 only; the caller falls back to <see cref="MultiHeadAttention.GroupedScaledDotProduct"/>'s
/// matmul path for anything else.
/// </summary>
internal static unsafe class FusedCpuDecode
{
    /// <summary>
    /// Query heads per KV head up to which the kernel beats the matmul path. Measured with BenchmarkDotNet
    /// (DecodeKernelBenchmarks, docs/benchmarkdotnet.md): 1.3x faster for MHA (G = 1), 1.43x slower for G = 4, where
    /// it dots each key row with the G queries one by one while BLAS blocks them.
    /// </summary>
    public const int MaxGroup = 1;

    /// <summary>Whether the kernel takes these tensors: CPU float32, no mask, G ≤ <see cref="MaxGroup"/>, rows of K and V contiguous, head size a multiple of 8.</summary>
    public static bool Supports(Tensor folded, Tensor key, Tensor value, Tensor? mask)
        => mask is null && Vector256.IsHardwareAccelerated && folded.shape[2] <= MaxGroup
           && folded.device_type == DeviceType.CPU && key.device_type == DeviceType.CPU && value.device_type == DeviceType.CPU
           && folded.dtype == ScalarType.Float32 && key.dtype == ScalarType.Float32 && value.dtype == ScalarType.Float32
           && key.shape[^1] % 8 == 0 && key.shape[^1] <= 512
           && key.stride(3) == 1 && key.stride(2) == key.shape[3] && value.stride(3) == 1 && value.stride(2) == value.shape[3];

    /// <summary>folded [B, Hkv, G, D], key/value [B, Hkv, S, D] → [B, Hkv, G, D].</summary>
    public static Tensor Run(Tensor folded, Tensor key, Tensor value)
    {
        long b = key.shape[0], kvHeads = key.shape[1], s = key.shape[2], d = key.shape[3], g = folded.shape[2];
        int heads = (int)(b * kvHeads);
        float scale = 1f / MathF.Sqrt(d);
        using var scope = NewDisposeScope();
        var query = folded.contiguous();
        var output = zeros([b, kvHeads, g, d], ScalarType.Float32);

        // Pointers to each head's [S, D] block of K and V, its [G, D] queries and outputs (all alive during the call).
        var k = new IntPtr[heads];
        var v = new IntPtr[heads];
        var q = new IntPtr[heads];
        var o = new IntPtr[heads];
        for (int h = 0; h < heads; h++)
        {
            long bi = h / kvHeads, hi = h % kvHeads;
            k[h] = Address(key.select(0, bi).select(0, hi));
            v[h] = Address(value.select(0, bi).select(0, hi));
            q[h] = Address(query.select(0, bi).select(0, hi));
            o[h] = Address(output.select(0, bi).select(0, hi));
        }

        int workers = Math.Max(1, get_num_threads());
        int chunksPerHead = (int)Math.Clamp((2L * workers + heads - 1) / heads, 1, Math.Max(1, s / 64));
        long chunk = (s + chunksPerHead - 1) / chunksPerHead;
        int tasks = heads * chunksPerHead;
        var partialMax = new float[tasks * g];
        var partialSum = new float[tasks * g];
        var partialAcc = new float[tasks * g * d];

        Parallel.For(0, tasks, new ParallelOptions { MaxDegreeOfParallelism = workers }, task =>
        {
            int h = task / chunksPerHead;
            long start = (task % chunksPerHead) * chunk, end = Math.Min(s, start + chunk);
            if (start >= end) { for (int j = 0; j < g; j++) partialMax[task * g + j] = float.NegativeInfinity; return; }
            Attend((float*)q[h], (float*)k[h] + start * d, (float*)v[h] + start * d, (int)(end - start), (int)d, (int)g, scale,
                partialMax.AsSpan(task * (int)g, (int)g), partialSum.AsSpan(task * (int)g, (int)g), partialAcc.AsSpan(task * (int)(g * d), (int)(g * d)));
        });

        // Merge the chunks of each head: out = Σ acc·e^(m−M) / Σ l·e^(m−M).
        for (int h = 0; h < heads; h++)
        {
            var outRow = (float*)o[h];
            for (int j = 0; j < g; j++)
            {
                float max = float.NegativeInfinity;
                for (int c = 0; c < chunksPerHead; c++) max = MathF.Max(max, partialMax[(h * chunksPerHead + c) * g + j]);
                float total = 0;
                for (int c = 0; c < chunksPerHead; c++)
                {
                    int t = h * chunksPerHead + c;
                    float m = partialMax[t * g + j];
                    if (float.IsNegativeInfinity(m)) continue;
                    float w = MathF.Exp(m - max);
                    total += partialSum[t * g + j] * w;
                    for (int i = 0; i < d; i++) outRow[j * d + i] += partialAcc[(t * g + j) * d + i] * w;
                }
                for (int i = 0; i < d; i++) outRow[j * d + i] /= total;
            }
        }
        return output.MoveToOuterDisposeScope();
    }

    /// <summary>One chunk of keys for one head: per query, the chunk's max score, Σ e^(score−max), and Σ e^(score−max)·v.</summary>
    private static void Attend(float* q, float* k, float* v, int length, int d, int g, float scale, Span<float> max, Span<float> sum, Span<float> acc)
    {
        var pooled = System.Buffers.ArrayPool<float>.Shared.Rent(length * g);
        var scores = pooled.AsSpan(0, length * g);
        max.Fill(float.NegativeInfinity);
        for (int t = 0; t < length; t++)
        {
            float* row = k + (long)t * d;
            for (int j = 0; j < g; j++)
            {
                float dot = Dot(q + j * d, row, d) * scale;
                scores[t * g + j] = dot;
                if (dot > max[j]) max[j] = dot;
            }
        }
        sum.Clear();
        acc.Clear();
        fixed (float* a = acc)
        {
            for (int t = 0; t < length; t++)
            {
                float* row = v + (long)t * d;
                for (int j = 0; j < g; j++)
                {
                    float w = MathF.Exp(scores[t * g + j] - max[j]);
                    sum[j] += w;
                    Axpy(w, row, a + j * d, d);
                }
            }
        }
        System.Buffers.ArrayPool<float>.Shared.Return(pooled);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot(float* x, float* y, int n)
    {
        var s0 = Vector256<float>.Zero;
        var s1 = Vector256<float>.Zero;
        int i = 0;
        for (; i + 16 <= n; i += 16)
        {
            s0 = Vector256.FusedMultiplyAdd(Vector256.Load(x + i), Vector256.Load(y + i), s0);
            s1 = Vector256.FusedMultiplyAdd(Vector256.Load(x + i + 8), Vector256.Load(y + i + 8), s1);
        }
        for (; i < n; i += 8) s0 = Vector256.FusedMultiplyAdd(Vector256.Load(x + i), Vector256.Load(y + i), s0);
        return Vector256.Sum(s0 + s1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Axpy(float w, float* x, float* y, int n)
    {
        var weight = Vector256.Create(w);
        for (int i = 0; i < n; i += 8)
            Vector256.FusedMultiplyAdd(weight, Vector256.Load(x + i), Vector256.Load(y + i)).Store(y + i);
    }

    private static IntPtr Address(Tensor contiguousBlock)
    {
        var bytes = contiguousBlock.bytes;
        return (IntPtr)Unsafe.AsPointer(ref MemoryMarshal.GetReference(bytes));
    }
}
