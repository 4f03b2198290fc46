using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>The grouped kernel's value pass: Σ p · v for four queries at a time, from float32 rows or 16-bit rows read in place (ADR 0006, 0010).</summary>
internal static unsafe partial class FusedCpuDecode
{
    /// <summary>
    /// acc[4, D] += p[:, 4]ᵀ · values[n, D] for 4 queries; 4 × 64 outputs (<paramref name="wide"/>, 512-bit) or 4 × 32
    /// stay in registers while the rows stream past. Meanwhile the first <paramref name="prefetchBytes"/> at
    /// <paramref name="prefetch"/> are fetched in order, as many lines per row step as the step reads.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: skip the unoptimised first tier
    private static void AccumulateValues4(float* p, WeightLayout layout, float* values, int n, int d, float* acc, byte* prefetch, long prefetchBytes, bool wide)
    {
        int i = 0, qs = layout.QueryStride;
        long fetched = prefetch is null ? prefetchBytes : 0;                    // bytes of the block ahead asked for so far
        if (wide && Avx512F.IsSupported)
            for (; i + 64 <= d; i += 64)
            {
                float* a0 = acc + i, a1 = a0 + d, a2 = a1 + d, a3 = a2 + d;
                var c00 = Vector512.Load(a0); var c01 = Vector512.Load(a0 + 16); var c02 = Vector512.Load(a0 + 32); var c03 = Vector512.Load(a0 + 48);
                var c10 = Vector512.Load(a1); var c11 = Vector512.Load(a1 + 16); var c12 = Vector512.Load(a1 + 32); var c13 = Vector512.Load(a1 + 48);
                var c20 = Vector512.Load(a2); var c21 = Vector512.Load(a2 + 16); var c22 = Vector512.Load(a2 + 32); var c23 = Vector512.Load(a2 + 48);
                var c30 = Vector512.Load(a3); var c31 = Vector512.Load(a3 + 16); var c32 = Vector512.Load(a3 + 32); var c33 = Vector512.Load(a3 + 48);
                for (int r = 0; r < n; r++)
                {
                    if (fetched < prefetchBytes)
                    {
                        Prefetch(prefetch + fetched); Prefetch(prefetch + fetched + 64); Prefetch(prefetch + fetched + 128); Prefetch(prefetch + fetched + 192);
                        fetched += 256;
                    }
                    float* row = values + r * d + i;
                    var v0 = Vector512.Load(row); var v1 = Vector512.Load(row + 16); var v2 = Vector512.Load(row + 32); var v3 = Vector512.Load(row + 48);
                    float* w = layout.Row(p, r);
                    var w0 = Vector512.Create(w[0]);
                    c00 = Vector512.FusedMultiplyAdd(w0, v0, c00); c01 = Vector512.FusedMultiplyAdd(w0, v1, c01);
                    c02 = Vector512.FusedMultiplyAdd(w0, v2, c02); c03 = Vector512.FusedMultiplyAdd(w0, v3, c03);
                    var w1 = Vector512.Create(w[qs]);
                    c10 = Vector512.FusedMultiplyAdd(w1, v0, c10); c11 = Vector512.FusedMultiplyAdd(w1, v1, c11);
                    c12 = Vector512.FusedMultiplyAdd(w1, v2, c12); c13 = Vector512.FusedMultiplyAdd(w1, v3, c13);
                    var w2 = Vector512.Create(w[2 * qs]);
                    c20 = Vector512.FusedMultiplyAdd(w2, v0, c20); c21 = Vector512.FusedMultiplyAdd(w2, v1, c21);
                    c22 = Vector512.FusedMultiplyAdd(w2, v2, c22); c23 = Vector512.FusedMultiplyAdd(w2, v3, c23);
                    var w3 = Vector512.Create(w[3 * qs]);
                    c30 = Vector512.FusedMultiplyAdd(w3, v0, c30); c31 = Vector512.FusedMultiplyAdd(w3, v1, c31);
                    c32 = Vector512.FusedMultiplyAdd(w3, v2, c32); c33 = Vector512.FusedMultiplyAdd(w3, v3, c33);
                }
                c00.Store(a0); c01.Store(a0 + 16); c02.Store(a0 + 32); c03.Store(a0 + 48);
                c10.Store(a1); c11.Store(a1 + 16); c12.Store(a1 + 32); c13.Store(a1 + 48);
                c20.Store(a2); c21.Store(a2 + 16); c22.Store(a2 + 32); c23.Store(a2 + 48);
                c30.Store(a3); c31.Store(a3 + 16); c32.Store(a3 + 32); c33.Store(a3 + 48);
            }
        for (; i + 32 <= d; i += 32)
        {
            float* a0 = acc + i, a1 = a0 + d, a2 = a1 + d, a3 = a2 + d;
            var c00 = Vector256.Load(a0); var c01 = Vector256.Load(a0 + 8); var c02 = Vector256.Load(a0 + 16); var c03 = Vector256.Load(a0 + 24);
            var c10 = Vector256.Load(a1); var c11 = Vector256.Load(a1 + 8); var c12 = Vector256.Load(a1 + 16); var c13 = Vector256.Load(a1 + 24);
            var c20 = Vector256.Load(a2); var c21 = Vector256.Load(a2 + 8); var c22 = Vector256.Load(a2 + 16); var c23 = Vector256.Load(a2 + 24);
            var c30 = Vector256.Load(a3); var c31 = Vector256.Load(a3 + 8); var c32 = Vector256.Load(a3 + 16); var c33 = Vector256.Load(a3 + 24);
            for (int r = 0; r < n; r++)
            {
                if (fetched < prefetchBytes)
                {
                    Prefetch(prefetch + fetched);
                    Prefetch(prefetch + fetched + 64);
                    fetched += 128;
                }
                float* row = values + r * d + i;
                var v0 = Vector256.Load(row); var v1 = Vector256.Load(row + 8); var v2 = Vector256.Load(row + 16); var v3 = Vector256.Load(row + 24);
                float* w = layout.Row(p, r);
                var w0 = Vector256.Create(w[0]);
                c00 = Vector256.FusedMultiplyAdd(w0, v0, c00); c01 = Vector256.FusedMultiplyAdd(w0, v1, c01);
                c02 = Vector256.FusedMultiplyAdd(w0, v2, c02); c03 = Vector256.FusedMultiplyAdd(w0, v3, c03);
                var w1 = Vector256.Create(w[qs]);
                c10 = Vector256.FusedMultiplyAdd(w1, v0, c10); c11 = Vector256.FusedMultiplyAdd(w1, v1, c11);
                c12 = Vector256.FusedMultiplyAdd(w1, v2, c12); c13 = Vector256.FusedMultiplyAdd(w1, v3, c13);
                var w2 = Vector256.Create(w[2 * qs]);
                c20 = Vector256.FusedMultiplyAdd(w2, v0, c20); c21 = Vector256.FusedMultiplyAdd(w2, v1, c21);
                c22 = Vector256.FusedMultiplyAdd(w2, v2, c22); c23 = Vector256.FusedMultiplyAdd(w2, v3, c23);
                var w3 = Vector256.Create(w[3 * qs]);
                c30 = Vector256.FusedMultiplyAdd(w3, v0, c30); c31 = Vector256.FusedMultiplyAdd(w3, v1, c31);
                c32 = Vector256.FusedMultiplyAdd(w3, v2, c32); c33 = Vector256.FusedMultiplyAdd(w3, v3, c33);
            }
            c00.Store(a0); c01.Store(a0 + 8); c02.Store(a0 + 16); c03.Store(a0 + 24);
            c10.Store(a1); c11.Store(a1 + 8); c12.Store(a1 + 16); c13.Store(a1 + 24);
            c20.Store(a2); c21.Store(a2 + 8); c22.Store(a2 + 16); c23.Store(a2 + 24);
            c30.Store(a3); c31.Store(a3 + 8); c32.Store(a3 + 16); c33.Store(a3 + 24);
        }
        for (; i < d; i += 8)
        {
            float* a0 = acc + i;
            var c0 = Vector256.Load(a0); var c1 = Vector256.Load(a0 + d); var c2 = Vector256.Load(a0 + 2 * d); var c3 = Vector256.Load(a0 + 3 * d);
            for (int r = 0; r < n; r++)
            {
                var v0 = Vector256.Load(values + r * d + i);
                float* w = layout.Row(p, r);
                c0 = Vector256.FusedMultiplyAdd(Vector256.Create(w[0]), v0, c0);
                c1 = Vector256.FusedMultiplyAdd(Vector256.Create(w[qs]), v0, c1);
                c2 = Vector256.FusedMultiplyAdd(Vector256.Create(w[2 * qs]), v0, c2);
                c3 = Vector256.FusedMultiplyAdd(Vector256.Create(w[3 * qs]), v0, c3);
            }
            c0.Store(a0); c1.Store(a0 + d); c2.Store(a0 + 2 * d); c3.Store(a0 + 3 * d);
        }
    }

    /// <summary>
    /// As <see cref="AccumulateValues4"/> for 4 queries over 16-bit rows read in place (<typeparamref name="TWords"/>; D a
    /// multiple of 32): a 512-bit load holds 32 values, split into 16 even and 16 odd coordinates, so each 32 outputs of
    /// <paramref name="acc"/> are kept as 16 even, then 16 odd (<see cref="Interleave"/> restores the order). The weights
    /// are multiplied by the split's scale. 4 × 32 outputs stay in registers while the rows stream past.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: skip the unoptimised first tier
    private static void AccumulateInPlaceValues4<TWords>(float* p, WeightLayout layout, ushort* values, int n, int d, float* acc,
        byte* prefetch, long prefetchBytes) where TWords : struct, IHalfPairs
    {
        int qs = layout.QueryStride;
        long fetched = prefetch is null ? prefetchBytes : 0;
        for (int i = 0; i < d; i += 32)
        {
            float* a0 = acc + i, a1 = a0 + d, a2 = a1 + d, a3 = a2 + d;
            var e0 = Vector512.Load(a0); var o0 = Vector512.Load(a0 + 16); var e1 = Vector512.Load(a1); var o1 = Vector512.Load(a1 + 16);
            var e2 = Vector512.Load(a2); var o2 = Vector512.Load(a2 + 16); var e3 = Vector512.Load(a3); var o3 = Vector512.Load(a3 + 16);
            for (int r = 0; r < n; r++)
            {
                if (fetched < prefetchBytes)
                {
                    Prefetch(prefetch + fetched);
                    fetched += 64;
                }
                var (even, odd) = TWords.Split(Vector512.Load((uint*)(values + (long)r * d + i)));
                float* w = layout.Row(p, r);
                var w0 = Vector512.Create(w[0] * TWords.Scale);
                e0 = Vector512.FusedMultiplyAdd(w0, even, e0); o0 = Vector512.FusedMultiplyAdd(w0, odd, o0);
                var w1 = Vector512.Create(w[qs] * TWords.Scale);
                e1 = Vector512.FusedMultiplyAdd(w1, even, e1); o1 = Vector512.FusedMultiplyAdd(w1, odd, o1);
                var w2 = Vector512.Create(w[2 * qs] * TWords.Scale);
                e2 = Vector512.FusedMultiplyAdd(w2, even, e2); o2 = Vector512.FusedMultiplyAdd(w2, odd, o2);
                var w3 = Vector512.Create(w[3 * qs] * TWords.Scale);
                e3 = Vector512.FusedMultiplyAdd(w3, even, e3); o3 = Vector512.FusedMultiplyAdd(w3, odd, o3);
            }
            e0.Store(a0); o0.Store(a0 + 16); e1.Store(a1); o1.Store(a1 + 16);
            e2.Store(a2); o2.Store(a2 + 16); e3.Store(a3); o3.Store(a3 + 16);
        }
    }

    /// <summary>
    /// Whether one of the first <paramref name="count"/> float16 values of a block is an infinity or a NaN
    /// (<see cref="HalfPairs.Specials"/>). Count is a multiple of 8.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // per block: skip the unoptimised first tier
    private static bool Specials(ushort* block, int count)
    {
        var flags = Vector512<uint>.Zero;
        int i = 0;
        for (; i + 64 <= count; i += 64)
            flags |= HalfPairs.Specials(Vector512.Load((uint*)(block + i))) | HalfPairs.Specials(Vector512.Load((uint*)(block + i + 32)));
        for (; i + 32 <= count; i += 32) flags |= HalfPairs.Specials(Vector512.Load((uint*)(block + i)));
        bool found = flags != Vector512<uint>.Zero;
        for (; i < count && !found; i += 8) found = HalfPairs.Specials(Vector512.Create(Vector128.Load((uint*)(block + i)))) != Vector512<uint>.Zero;
        return found;
    }

    /// <summary>Restores the order of <paramref name="rows"/> rows of D outputs kept as 16 even, then 16 odd coordinates per 32.</summary>
    private static void Interleave(float* acc, int rows, int d)
    {
        float* chunk = stackalloc float[32];
        for (float* a = acc, end = acc + (long)rows * d; a < end; a += 32)
        {
            for (int t = 0; t < 16; t++)
            {
                chunk[2 * t] = a[t];
                chunk[2 * t + 1] = a[16 + t];
            }
            new Span<float>(chunk, 32).CopyTo(new Span<float>(a, 32));
        }
    }
}
