using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>The single-query form (MHA, G = 1): dot products along D, one query per head (ADR 0006).</summary>
internal static unsafe partial class FusedCpuDecode
{
    /// <summary>One query (MHA) over one head's key range: dot products along D.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: skip the unoptimised first tier
    private static void AttendSingle(byte* q, ScalarType queryDtype, byte* k, byte* v, int length, int d, ScalarType dtype, ScoreMap map, State state)
    {
        var pool = ArrayPool<float>.Shared;
        var scores = pool.Rent(KeyBlock);
        var scaled = pool.Rent(d);
        var widened = dtype == ScalarType.Float32 ? null : pool.Rent(KeyBlock * d);
        try
        {
            fixed (float* sc = scores, qs = scaled, wide = widened, max = state.Max, sum = state.Sum, acc = state.Acc)
            {
                SmallCpuOps.ToSingle(q, queryDtype, new Span<float>(qs, d));
                VectorOps.Scale(new Span<float>(qs, d), map.Scale);
                long rowBytes = (long)d * dtype.ElementSize();
                for (int t0 = 0; t0 < length; t0 += KeyBlock)
                {
                    int n = Math.Min(KeyBlock, length - t0);
                    float* keys = Rows(k, t0, n, d, dtype, wide);
                    float blockMax = float.NegativeInfinity;
                    long ahead = t0 + PrefetchDistance * KeyBlock;                // the block whose rows are fetched meanwhile
                    for (int r = 0; r < n; r++)
                    {
                        if (ahead + r < length)
                            for (long offset = (ahead + r) * rowBytes, end = offset + rowBytes; offset < end; offset += 64)
                            {
                                Prefetch(k + offset);
                                Prefetch(v + offset);
                            }
                        sc[r] = Dot(qs, keys + r * d, d);
                        blockMax = MathF.Max(blockMax, sc[r]);
                    }
                    if (map.Capped)
                    {
                        CapInPlace(sc, n, map.Cap);
                        blockMax = float.NegativeInfinity;
                        for (int r = 0; r < n; r++) blockMax = MathF.Max(blockMax, sc[r]);
                    }
                    float newMax = MathF.Max(*max, blockMax);
                    float correction = MathF.Exp(*max - newMax);
                    *max = newMax;
                    if (correction != 1f) { *sum *= correction; Scale(acc, d, correction); }
                    *sum += ExpInPlace(sc, n, newMax);
                    float* values = Rows(v, t0, n, d, dtype, wide);
                    AccumulateValues1(sc, values, n, d, acc);
                }
            }
        }
        finally
        {
            pool.Return(scores);
            pool.Return(scaled);
            if (widened is not null) pool.Return(widened);
        }
    }

    /// <summary>acc[D] += Σ_r p[r] · values[r, D] for one query; 32 outputs at a time stay in registers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: skip the unoptimised first tier
    private static void AccumulateValues1(float* p, float* values, int n, int d, float* acc)
    {
        int i = 0;
        for (; i + 32 <= d; i += 32)
        {
            var c0 = Vector256.Load(acc + i); var c1 = Vector256.Load(acc + i + 8); var c2 = Vector256.Load(acc + i + 16); var c3 = Vector256.Load(acc + i + 24);
            for (int r = 0; r < n; r++)
            {
                float* row = values + r * d + i;
                var w = Vector256.Create(p[r]);
                c0 = Vector256.FusedMultiplyAdd(w, Vector256.Load(row), c0);
                c1 = Vector256.FusedMultiplyAdd(w, Vector256.Load(row + 8), c1);
                c2 = Vector256.FusedMultiplyAdd(w, Vector256.Load(row + 16), c2);
                c3 = Vector256.FusedMultiplyAdd(w, Vector256.Load(row + 24), c3);
            }
            c0.Store(acc + i); c1.Store(acc + i + 8); c2.Store(acc + i + 16); c3.Store(acc + i + 24);
        }
        for (; i < d; i += 8)
        {
            var c0 = Vector256.Load(acc + i);
            for (int r = 0; r < n; r++) c0 = Vector256.FusedMultiplyAdd(Vector256.Create(p[r]), Vector256.Load(values + r * d + i), c0);
            c0.Store(acc + i);
        }
    }

    /// <summary>scores[i] = e^(scores[i] − max); returns their sum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: skip the unoptimised first tier
    private static float ExpInPlace(float* scores, int n, float max)
    {
        var total = Vector256<float>.Zero;
        var m = Vector256.Create(max);
        int i = 0;
        for (; i + 8 <= n; i += 8)
        {
            var p = Exp(Vector256.Load(scores + i) - m);
            p.Store(scores + i);
            total += p;
        }
        float sum = Vector256.Sum(total);
        for (; i < n; i++) sum += scores[i] = MathF.Exp(scores[i] - max);
        return sum;
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

    private static void Scale(float* x, int n, float factor) => VectorOps.Scale(new Span<float>(x, n), factor);
}
