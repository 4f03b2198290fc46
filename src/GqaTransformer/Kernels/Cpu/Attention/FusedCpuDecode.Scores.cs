using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>The grouped kernel's score forms: 256-bit transposed queries, 512-bit lane groups, and quads of rows (ADR 0006, 0009, 0010).</summary>
internal static unsafe partial class FusedCpuDecode
{
    /// <summary>
    /// Scores of a block's key rows against 2 queries in the lane-group layout, one key row at a time, so K is read as
    /// one stream: each of the D/8 steps broadcasts 8 coordinates of the key to both queries' lanes (one load) and
    /// multiplies them into the queries' vector, 16 useful products per instruction; the 8 partial sums of each query
    /// are added at the end of the row. Meanwhile the row of the block ahead at <paramref name="prefetch"/> is fetched.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: skip the unoptimised first tier
    private static void ScoreTwoQueries(float* keys, int n, int d, float* lanes, float* scores, int padded, byte* prefetch, int rowBytes)
    {
        int steps = d / 8;
        for (int r = 0; r < n; r++)
        {
            if (prefetch is not null)
                for (int line = 0; line < rowBytes; line += 64) Prefetch(prefetch + (long)r * rowBytes + line);
            float* key = keys + (long)r * d;
            var a0 = Vector512<float>.Zero; var a1 = a0; var a2 = a0; var a3 = a0;
            int c = 0;
            for (; c + 4 <= steps; c += 4)
            {
                float* at = key + c * 8;
                a0 = Vector512.FusedMultiplyAdd(Vector512.Load(lanes + c * 16), Avx512DQ.BroadcastVector256ToVector512(at), a0);
                a1 = Vector512.FusedMultiplyAdd(Vector512.Load(lanes + c * 16 + 16), Avx512DQ.BroadcastVector256ToVector512(at + 8), a1);
                a2 = Vector512.FusedMultiplyAdd(Vector512.Load(lanes + c * 16 + 32), Avx512DQ.BroadcastVector256ToVector512(at + 16), a2);
                a3 = Vector512.FusedMultiplyAdd(Vector512.Load(lanes + c * 16 + 48), Avx512DQ.BroadcastVector256ToVector512(at + 24), a3);
            }
            for (; c < steps; c++) a0 = Vector512.FusedMultiplyAdd(Vector512.Load(lanes + c * 16), Avx512DQ.BroadcastVector256ToVector512(key + c * 8), a0);
            var sums = (a0 + a1) + (a2 + a3);                                     // lanes 8j … 8j + 7: query j
            sums += Avx512F.Permute4x32(sums, 0xB1);                                // pairs
            sums += Avx512F.Permute4x32(sums, 0x4E);                                // fours
            sums += Avx512F.Shuffle4x128(sums, sums, 0xB1);                         // eights: 128-bit lanes swapped in pairs
            Avx512F.PermuteVar16x32(sums, Vector512.Create(0, 8, 0, 8, 0, 8, 0, 8, 0, 8, 0, 8, 0, 8, 0, 8)).GetLower().Store(scores + (long)r * padded);
        }
    }

    /// <summary>Where the softmax weight of key row r for query j lies in the scores buffer: Row(p, r)[j · QueryStride].</summary>
    private readonly struct WeightLayout(int shift, int step, int mask, int queryStride)
    {
        /// <summary>[block, G'] rows: row r at r · padded, queries adjacent.</summary>
        public static WeightLayout Rows(int padded) => new(0, padded, 0, 1);

        /// <summary>Quads of rows (<see cref="ScoreQuads"/>): rows 4i … 4i + 3 in vector i, query j in lanes 4j … 4j + 3.</summary>
        public static WeightLayout Quads => new(2, 16, 3, 4);

        public int QueryStride => queryStride;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public float* Row(float* p, int r) => p + (r >> shift) * step + (r & mask);
    }

    /// <summary>
    /// Eight consecutive coordinates of a key row as two float32 vectors, each with four coordinates repeated in every
    /// 128-bit lane (one lane per query). Which four go in which vector is the type's choice; the queries are placed in
    /// the same order (<see cref="PlaceInLaneGroup"/>), and a dot product does not care about the order.
    /// </summary>
    private interface IKeyOctets
    {
        /// <summary>Bytes per key element.</summary>
        static abstract int ElementSize { get; }

        /// <summary>The octet at <paramref name="at"/>.</summary>
        static abstract (Vector512<float> First, Vector512<float> Second) Octet(byte* at);
    }

    /// <summary>float32 keys: coordinates 0–3 and 4–7, each broadcast by one load.</summary>
    private readonly struct SingleKeys : IKeyOctets
    {
        public static int ElementSize => 4;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static (Vector512<float>, Vector512<float>) Octet(byte* at)
            => (Avx512F.BroadcastVector128ToVector512((float*)at), Avx512F.BroadcastVector128ToVector512((float*)at + 4));
    }

    /// <summary>16-bit keys read in place (<typeparamref name="TWords"/>): one 128-bit broadcast of 8 values, split into even and odd coordinates.</summary>
    private readonly struct InPlaceKeys<TWords> : IKeyOctets where TWords : struct, IHalfPairs
    {
        public static int ElementSize => 2;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static (Vector512<float>, Vector512<float>) Octet(byte* at)
            => TWords.Split(Avx512F.BroadcastVector128ToVector512((uint*)at));
    }

    /// <summary>
    /// Scores of a block's key rows against 4 queries in the lane-group layout, four rows at a time: each step's query
    /// vector is loaded once for the four rows, and the four rows' partial sums are folded together by two rounds of
    /// shuffles, so vector i of <paramref name="scores"/> holds rows 4i … 4i + 3, query j in lanes 4j … 4j + 3. Rows past
    /// <paramref name="n"/> score −∞. Meanwhile the rows of the block ahead at <paramref name="prefetch"/> are fetched.
    /// The keys are read in their own dtype (<typeparamref name="TKeys"/>), 8 coordinates a step.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: skip the unoptimised first tier
    private static void ScoreQuads<TKeys>(byte* keys, int n, int d, float* lanes, float* scores, byte* prefetch, int prefetchRowBytes)
        where TKeys : struct, IKeyOctets
    {
        int rowBytes = d * TKeys.ElementSize;
        for (int r = 0; r < n; r += 4)
        {
            if (prefetch is not null)
                for (int line = 0; line < 4 * prefetchRowBytes; line += 64) Prefetch(prefetch + (long)r * prefetchRowBytes + line);
            byte* k0 = keys + (long)r * rowBytes;
            byte* k1 = r + 1 < n ? k0 + rowBytes : k0, k2 = r + 2 < n ? k0 + 2 * rowBytes : k0, k3 = r + 3 < n ? k0 + 3 * rowBytes : k0;
            var a0 = Vector512<float>.Zero; var b0 = a0; var a1 = a0; var b1 = a0; var a2 = a0; var b2 = a0; var a3 = a0; var b3 = a0;
            for (int c = 0; c < d; c += 8)
            {
                var l0 = Vector512.Load(lanes + c * 4);                           // the queries' lanes for this octet's two halves
                var l1 = Vector512.Load(lanes + c * 4 + 16);
                int at = c * TKeys.ElementSize;
                var (e0, o0) = TKeys.Octet(k0 + at); a0 = Vector512.FusedMultiplyAdd(l0, e0, a0); b0 = Vector512.FusedMultiplyAdd(l1, o0, b0);
                var (e1, o1) = TKeys.Octet(k1 + at); a1 = Vector512.FusedMultiplyAdd(l0, e1, a1); b1 = Vector512.FusedMultiplyAdd(l1, o1, b1);
                var (e2, o2) = TKeys.Octet(k2 + at); a2 = Vector512.FusedMultiplyAdd(l0, e2, a2); b2 = Vector512.FusedMultiplyAdd(l1, o2, b2);
                var (e3, o3) = TKeys.Octet(k3 + at); a3 = Vector512.FusedMultiplyAdd(l0, e3, a3); b3 = Vector512.FusedMultiplyAdd(l1, o3, b3);
            }
            Vector512<float> x0 = a0 + b0, x1 = a1 + b1, x2 = a2 + b2, x3 = a3 + b3;  // lane 4j + i: query j, coordinates ≡ i (mod 4)
            var x01 = Avx512F.Shuffle(x0, x1, 0x88) + Avx512F.Shuffle(x0, x1, 0xDD);   // [x0 0+1, x0 2+3, x1 0+1, x1 2+3] per query
            var x23 = Avx512F.Shuffle(x2, x3, 0x88) + Avx512F.Shuffle(x2, x3, 0xDD);
            var quad = Avx512F.Shuffle(x01, x23, 0x88) + Avx512F.Shuffle(x01, x23, 0xDD); // lane 4j + i: query j, row r + i
            if (n - r < 4) quad = MaskRowsPast(quad, n - r);
            quad.Store(scores + r * 4);
        }
    }

    /// <summary>Scores of 8 keys (rows of <paramref name="keys"/>) against 8 queries (columns of <paramref name="qt"/>), into 8 rows of <paramref name="scores"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Score8(float* keys, float* qt, int padded, int d, float* scores, byte* prefetch, long prefetchBytes)
    {
        var s0 = Vector256<float>.Zero; var s1 = s0; var s2 = s0; var s3 = s0; var s4 = s0; var s5 = s0; var s6 = s0; var s7 = s0;
        float* k0 = keys, k1 = k0 + d, k2 = k1 + d, k3 = k2 + d, k4 = k3 + d, k5 = k4 + d, k6 = k5 + d, k7 = k6 + d;
        float* column = qt;                                                       // coordinate i of 8 queries
        for (nint i = 0; i < d; i++, column += padded)
        {
            if (prefetch is not null && i * 64 < prefetchBytes) Prefetch(prefetch + i * 64);
            var c = Vector256.Load(column);
            s0 = Vector256.FusedMultiplyAdd(Vector256.Create(k0[i]), c, s0);
            s1 = Vector256.FusedMultiplyAdd(Vector256.Create(k1[i]), c, s1);
            s2 = Vector256.FusedMultiplyAdd(Vector256.Create(k2[i]), c, s2);
            s3 = Vector256.FusedMultiplyAdd(Vector256.Create(k3[i]), c, s3);
            s4 = Vector256.FusedMultiplyAdd(Vector256.Create(k4[i]), c, s4);
            s5 = Vector256.FusedMultiplyAdd(Vector256.Create(k5[i]), c, s5);
            s6 = Vector256.FusedMultiplyAdd(Vector256.Create(k6[i]), c, s6);
            s7 = Vector256.FusedMultiplyAdd(Vector256.Create(k7[i]), c, s7);
        }
        s0.Store(scores); s1.Store(scores + padded); s2.Store(scores + 2 * padded); s3.Store(scores + 3 * padded);
        s4.Store(scores + 4 * padded); s5.Store(scores + 5 * padded); s6.Store(scores + 6 * padded); s7.Store(scores + 7 * padded);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Score1(float* key, float* qt, int padded, int d, float* scores)
    {
        var s0 = Vector256<float>.Zero;
        for (int i = 0; i < d; i++) s0 = Vector256.FusedMultiplyAdd(Vector256.Create(key[i]), Vector256.Load(qt + i * padded), s0);
        s0.Store(scores);
    }
}
