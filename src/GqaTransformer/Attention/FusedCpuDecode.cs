using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// One decode step of grouped attention on the CPU in a single pass over the cache. For each KV head the keys are taken
/// in blocks of <see cref="KeyBlock"/>: a block of K rows is read once and scored against all G queries of the group,
/// the scores go through an online softmax, and the matching block of V rows is read once and accumulated for all G
/// queries. Work is split over (KV head, range of keys) and the ranges merged by log-sum-exp, so even one KV head keeps
/// every core busy, on libtorch's own OpenMP threads (<see cref="OpenMpTeam"/>). Computes in float32; half-precision
/// caches are read at half the bytes, in place in the four-query form and otherwise widened block by block into a
/// scratch buffer that stays in L1.
/// </summary>
/// <remarks>
/// Register tiling (ADR 0006). Scores, 256-bit form: the G queries are stored transposed, [D, G'] with G' = G rounded up
/// to 8, so one vector holds the same coordinate of 8 queries; each key element is broadcast once and multiplied into
/// it, 8 keys at a time — no horizontal sums. For G ≤ 4 that leaves half the lanes or more empty, so where the CPU has
/// AVX-512 the 512-bit lane-group form takes over (ADR 0009): a vector holds 4 consecutive coordinates of each of 4
/// queries (or 8 of 2), one 128-bit (256-bit) broadcast of the key lines up with all of them, and each key row is read
/// once, in order. For G = 3 or 4 the rows are scored four at a time (ADR 0010): each query vector is loaded once for
/// four rows, and the four rows' partial sums fold into one vector by two rounds of shuffles, so the scores come out in
/// quads of rows, 16 to a vector, and the softmax runs with all 16 lanes busy. A 16-bit cache is then read in place,
/// not widened: read as 32-bit lanes, a bfloat16 pair gives its even value by a shift and its odd one by a mask, and a
/// float16 pair its values times 2^-112 by shifts and masks (the queries and the softmax weights carry the 2^112; a
/// block holding a float16 infinity or NaN sends the task back through widening). The queries are laid out in the
/// same even/odd order, and the value accumulators are put back in order once per task. Values are read in place that
/// way by the other forms too, wherever the CPU has AVX-512 and D is a multiple of 32. Values: 4 queries × 32
/// coordinates of the output (× 64 with AVX-512 in the lane-group form) stay in registers while the block's V rows
/// stream past. MHA (G = 1) uses a dot-product form instead, since there is one
/// query per head. Rows are fetched ahead into L2: reading 8 rows at a time is a pattern the hardware prefetcher does
/// not follow (prefetching alone made it 2x faster); the kernel asks for the K rows of a block ahead while it scores and
/// for the V rows while it accumulates, so requests go out evenly rather than in one burst (ADR 0008).
/// </remarks>
internal static unsafe class FusedCpuDecode
{
    /// <summary>How many blocks ahead the single-query (MHA) kernel fetches K and V.</summary>
    private const int PrefetchDistance = 4;

    /// <summary>How many blocks ahead the grouped kernel fetches K (while scoring) and V (while accumulating).</summary>
    private const int GroupPrefetchDistance = 2;

    /// <summary>The same for the 512-bit score form, which reads K one row at a time.</summary>
    private const int WidePrefetchDistance = 1;

    /// <summary>Whether the grouped kernel can use the 512-bit score form (AVX-512 F and DQ); otherwise it uses the 256-bit transposed form.</summary>
    internal static bool WideScores => Avx512F.IsSupported && Avx512DQ.IsSupported && Vector512.IsHardwareAccelerated;

    /// <summary>Keys per block: a block of K or V rows (32 × D floats) stays in L1 between its two uses.</summary>
    public const int KeyBlock = 32;

    /// <summary>
    /// Whether the kernel takes these tensors: CPU, float32/bfloat16/float16 (the queries' dtype may differ from the
    /// cache's), no mask, head size a multiple of 8 up to 512, and rows of K and V contiguous (a cache view qualifies).
    /// </summary>
    public static bool Supports(Tensor folded, Tensor key, Tensor value, Tensor? mask)
        => mask is null && Vector256.IsHardwareAccelerated
           && folded.device_type == DeviceType.CPU && key.device_type == DeviceType.CPU && value.device_type == DeviceType.CPU
           && SmallCpuOps.IsSupported(key.dtype) && SmallCpuOps.IsSupported(folded.dtype) && value.dtype == key.dtype
           && key.size(-1) % 8 == 0 && key.size(-1) <= 512 && key.size(2) > 0
           && key.stride(3) == 1 && key.stride(2) == key.size(3) && value.stride(3) == 1 && value.stride(2) == value.size(3);

    /// <summary>
    /// folded [B, Hkv, G, D], key/value [B, Hkv, S, D] → [B, Hkv, G, D] in <paramref name="outputDtype"/> (default the
    /// cache's). The queries are read in their own dtype, so a float16 model over a bfloat16 cache needs no conversion.
    /// </summary>
    public static Tensor Run(Tensor folded, Tensor key, Tensor value, ScalarType? outputDtype = null) => Run(folded, key, value, outputDtype, WideScores);

    /// <summary>As <see cref="Run(Tensor, Tensor, Tensor, ScalarType?)"/>, with the grouped score form chosen (tests run both).</summary>
    internal static Tensor Run(Tensor folded, Tensor key, Tensor value, ScalarType? outputDtype, bool wideScores)
    {
        if (wideScores && !WideScores) throw new PlatformNotSupportedException("The 512-bit score form needs AVX-512 F and DQ.");
        long b = key.size(0), kvHeads = key.size(1), s = key.size(2);
        int d = (int)key.size(3), g = (int)folded.size(2);
        int groupLanes = wideScores && g is >= 2 and <= 4 ? (g == 2 ? 2 : 4) : 0;    // 0: the 256-bit transposed form
        int padded = g == 1 ? 1 : (g + 7) / 8 * 8;
        int heads = (int)(b * kvHeads);
        var dtype = key.dtype;
        var queryDtype = folded.dtype;
        var resultDtype = outputDtype ?? dtype;
        if (!SmallCpuOps.IsSupported(resultDtype))
            throw new ArgumentException($"outputDtype must be float32, bfloat16 or float16, but was {resultDtype}.", nameof(outputDtype));
        using var scope = NewDisposeScope();
        var query = folded.is_contiguous() ? folded : folded.contiguous();                  // [B, Hkv, G, D]
        var output = empty([b, kvHeads, g, d], resultDtype);

        // Each head's [S, D] block of K and V (rows contiguous, heads strided), its queries and its outputs.
        long headStride = key.stride(1), batchStride = key.stride(0);
        long valueHeadStride = value.stride(1), valueBatchStride = value.stride(0);
        byte* kBase = FirstHead(key), vBase = FirstHead(value);
        byte* qBase = TensorMemory.Address(query), oBase = TensorMemory.Address(output);
        int elementSize = (int)key.element_size(), queryElementSize = (int)query.element_size();

        int workers = Math.Max(1, get_num_threads());
        int rangesPerHead = (int)Math.Clamp((2L * workers + heads - 1) / heads, 1, Math.Max(1, s / (4 * KeyBlock)));
        long range = (s + rangesPerHead - 1) / rangesPerHead;
        range = (range + KeyBlock - 1) / KeyBlock * KeyBlock;
        int tasks = heads * rangesPerHead;
        var pool = ArrayPool<float>.Shared;
        var partialMax = pool.Rent(tasks * padded);
        var partialSum = pool.Rent(tasks * padded);
        var partialAcc = pool.Rent(tasks * padded * d);
        float scale = 1f / MathF.Sqrt(d);
        try
        {
            OpenMpTeam.For(tasks, workers, task =>
            {
                int h = task / rangesPerHead;
                long bi = h / kvHeads, hi = h % kvHeads;
                long start = task % rangesPerHead * range, end = Math.Min(s, start + range);
                var state = new State(partialMax.AsSpan(task * padded, padded), partialSum.AsSpan(task * padded, padded),
                    partialAcc.AsSpan(task * padded * d, padded * d));
                state.Reset();
                if (start >= end) return;
                byte* k = kBase + (bi * batchStride + hi * headStride + start * d) * elementSize;
                byte* v = vBase + (bi * valueBatchStride + hi * valueHeadStride + start * d) * elementSize;
                byte* q = qBase + (long)h * g * d * queryElementSize;
                if (g == 1) AttendSingle(q, queryDtype, k, v, (int)(end - start), d, dtype, scale, state);
                else AttendGroup(q, queryDtype, k, v, (int)(end - start), d, g, padded, groupLanes, dtype, scale, state);
            });
            Merge(partialMax, partialSum, partialAcc, oBase, resultDtype, heads, rangesPerHead, g, padded, d);
        }
        finally
        {
            pool.Return(partialMax);
            pool.Return(partialSum);
            pool.Return(partialAcc);
        }
        return output.MoveToOuterDisposeScope();
    }

    /// <summary>Running softmax state of one task: per query, max score, Σ e^(score−max), and Σ e^(score−max)·v.</summary>
    private readonly ref struct State(Span<float> max, Span<float> sum, Span<float> acc)
    {
        public readonly Span<float> Max = max, Sum = sum, Acc = acc;

        public void Reset()
        {
            Max.Fill(float.NegativeInfinity);
            Sum.Clear();
            Acc.Clear();
        }
    }

    /// <summary>G ≥ 2 queries over one head's key range; <paramref name="groupLanes"/> &gt; 0 selects the 512-bit score form.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: skip the unoptimised first tier
    private static void AttendGroup(byte* q, ScalarType queryDtype, byte* k, byte* v, int length, int d, int g, int padded, int groupLanes,
        ScalarType dtype, float scale, State state)
    {
        var pool = ArrayPool<float>.Shared;
        int queryFloats = groupLanes > 0 ? groupLanes * d : d * padded;
        var queries = pool.Rent(queryFloats);                                    // lane groups, or [D, G'] transposed
        var scores = pool.Rent(KeyBlock * padded);                               // [block, G']
        var widened = pool.Rent(KeyBlock * d);                                   // widened K/V rows; first the queries
        try
        {
            fixed (float* qt = queries, sc = scores, wide = widened, max = state.Max, sum = state.Sum, acc = state.Acc)
            {
                bool quads = groupLanes == 4;                                   // scores in quads of rows, softmax at 16 lanes
                // 16-bit caches are read in place where the CPU has AVX-512: keys by the quads form (bfloat16 always,
                // float16 unless a query is too large for its 2^112 scale), values by every form when D is a multiple
                // of 32; a float16 infinity or NaN in a block read in place sends the task back through widening.
                bool inPlace = Avx512F.IsSupported && Vector512.IsHardwareAccelerated && (dtype == ScalarType.BFloat16 || dtype == ScalarType.Float16);
                bool half = dtype == ScalarType.Float16;
                int querySize = KvCache.ElementSize(queryDtype);
                if (inPlace && half && quads)
                    for (int j = 0; j < g && inPlace; j++)
                    {
                        SmallCpuOps.ToSingle(q + (long)j * d * querySize, queryDtype, new Span<float>(wide, d));
                        for (int i = 0; i < d; i++) inPlace &= MathF.Abs(wide[i] * scale) < 65504f;
                    }
                int rowsOfG = (g + 3) / 4 * 4;
                int size = KvCache.ElementSize(dtype);
                int distance = groupLanes > 0 ? WidePrefetchDistance : GroupPrefetchDistance;
                var weights = quads ? WeightLayout.Quads : WeightLayout.Rows(padded);
                var runMax = Vector512.Create(float.NegativeInfinity);          // quads: per query, repeated in its 4 lanes
                var runSum = Vector512<float>.Zero;
                while (true)
                {
                    bool keysInPlace = inPlace && quads;
                    bool valuesInPlace = inPlace && d % 32 == 0;
                    float queryScale = keysInPlace && half ? HalfPairs.Scale : 1f;
                    new Span<float>(qt, queryFloats).Clear();
                    for (int j = 0; j < g; j++)
                    {
                        SmallCpuOps.ToSingle(q + (long)j * d * querySize, queryDtype, new Span<float>(wide, d));
                        if (groupLanes > 0) PlaceInLaneGroup(wide, j, d, groupLanes, keysInPlace, scale * queryScale, qt);
                        else for (int i = 0; i < d; i++) qt[i * padded + j] = wide[i] * scale;
                    }
                    bool specials = false;                                        // an fp16 infinity or NaN in a block read in place
                    for (int t0 = 0; t0 < length; t0 += KeyBlock)
                    {
                        int n = Math.Min(KeyBlock, length - t0);
                        // Rows of the block `distance` ahead, if it is whole: K fetched while scoring, V while accumulating.
                        long ahead = n == KeyBlock && t0 + (distance + 1) * KeyBlock <= length ? (long)KeyBlock * d * size : 0;
                        byte* nextK = k + (long)(t0 + distance * KeyBlock) * d * size;
                        byte* nextV = v + (long)(t0 + distance * KeyBlock) * d * size;
                        byte* block = k + (long)t0 * d * size;
                        ushort* rows = (ushort*)v + (long)t0 * d;
                        if (half && ((keysInPlace && Specials((ushort*)block, n * d)) || (valuesInPlace && Specials(rows, n * d))))
                        {
                            specials = true;
                            break;
                        }
                        if (quads)
                        {
                            byte* fetch = ahead > 0 ? nextK : null;
                            if (!keysInPlace) ScoreQuads<SingleKeys>((byte*)Rows(k, t0, n, d, dtype, wide), n, d, qt, sc, fetch, d * size);
                            else if (half) ScoreQuads<InPlaceKeys<HalfPairs>>(block, n, d, qt, sc, fetch, d * size);
                            else ScoreQuads<InPlaceKeys<BFloat16Pairs>>(block, n, d, qt, sc, fetch, d * size);
                            SoftmaxQuads(sc, n, ref runMax, ref runSum, acc, d);
                            if (!valuesInPlace) AccumulateValues4(sc, weights, Rows(v, t0, n, d, dtype, wide), n, d, acc, nextV, ahead, true);
                            else if (half) AccumulateInPlaceValues4<HalfPairs>(sc, weights, rows, n, d, acc, nextV, ahead);
                            else AccumulateInPlaceValues4<BFloat16Pairs>(sc, weights, rows, n, d, acc, nextV, ahead);
                            continue;
                        }
                        float* keys = Rows(k, t0, n, d, dtype, wide);                // [n, D]
                        if (groupLanes > 0) ScoreTwoQueries(keys, n, d, qt, sc, padded, ahead > 0 ? nextK : null, d * size);
                        else
                        {
                            long perCall = ahead / (KeyBlock / 8);                   // each of the block's Score8 calls fetches a share
                            for (int r = 0; r < n; r += 8)
                            {
                                for (int j = 0; j < padded; j += 8)
                                    if (n - r >= 8) Score8(keys + r * d, qt + j, padded, d, sc + r * padded + j, j == 0 ? nextK + r / 8 * perCall : null, perCall);
                                    else for (int rr = r; rr < n; rr++) Score1(keys + rr * d, qt + j, padded, d, sc + rr * padded + j);
                            }
                        }
                        for (int j = 0; j < padded; j += 8)
                            SoftmaxBlock(sc + j, padded, n, max + j, sum + j, acc + j * d, d);
                        float* values = valuesInPlace ? null : Rows(v, t0, n, d, dtype, wide); // [n, D]
                        for (int j = 0; j < rowsOfG; j += 4)
                        {
                            byte* fetchV = j == 0 ? nextV : null;
                            if (!valuesInPlace) AccumulateValues4(sc + j, weights, values, n, d, acc + j * d, fetchV, ahead, groupLanes > 0);
                            else if (half) AccumulateInPlaceValues4<HalfPairs>(sc + j, weights, rows, n, d, acc + j * d, fetchV, ahead);
                            else AccumulateInPlaceValues4<BFloat16Pairs>(sc + j, weights, rows, n, d, acc + j * d, fetchV, ahead);
                        }
                    }
                    if (!specials)
                    {
                        if (valuesInPlace) Interleave(acc, rowsOfG, d);
                        break;
                    }
                    inPlace = false;                                              // an fp16 infinity or NaN: once more, widened
                    state.Reset();
                    runMax = Vector512.Create(float.NegativeInfinity);
                    runSum = Vector512<float>.Zero;
                }
                if (quads)
                    for (int j = 0; j < 4; j++)
                    {
                        max[j] = runMax[4 * j];
                        sum[j] = runSum[4 * j];
                    }
            }
        }
        finally
        {
            pool.Return(queries);
            pool.Return(scores);
            pool.Return(widened);
        }
    }

    /// <summary>
    /// Writes query <paramref name="j"/> (scaled) into the lane-group layout: with L queries per vector and m = 16/L,
    /// vector c holds coordinates c·m … c·m + m − 1 of each of the L queries, query by query. With
    /// <paramref name="evenOdd"/> (L = 4, keys that <see cref="IKeyOctets"/> splits into even and odd coordinates),
    /// vectors 2c and 2c + 1 hold the even and the odd coordinates of octet c instead.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // per task and query: skip the unoptimised first tier
    private static void PlaceInLaneGroup(float* query, int j, int d, int groupLanes, bool evenOdd, float scale, float* lanes)
    {
        int m = 16 / groupLanes, steps = d / m;
        float* first = lanes + j * m;
        for (int c = 0; c < steps; c++)
            for (int i = 0; i < m; i++)
            {
                int coordinate = evenOdd ? c / 2 * 8 + 2 * i + c % 2 : c * m + i;
                first[c * 16 + i] = query[coordinate] * scale;
            }
    }

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
            if (n - r < 4)
                quad = Vector512.ConditionalSelect(Vector512.LessThan(Vector512.Create(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3), Vector512.Create(n - r)).AsSingle(),
                    quad, Vector512.Create(float.NegativeInfinity));
            quad.Store(scores + r * 4);
        }
    }

    /// <summary>
    /// Online softmax over one block of quads (<see cref="ScoreQuads"/>) for 4 queries, 16 lanes busy: updates the
    /// running max and sum (per query, repeated in its 4 lanes), rescales a query's accumulator when its max grows, and
    /// leaves e^(score − max) in place of the scores.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: skip the unoptimised first tier
    private static void SoftmaxQuads(float* scores, int n, ref Vector512<float> runMax, ref Vector512<float> runSum, float* acc, int d)
    {
        int quads = (n + 3) / 4;
        var blockMax = Vector512.Create(float.NegativeInfinity);
        for (int i = 0; i < quads; i++) blockMax = Vector512.Max(blockMax, Vector512.Load(scores + i * 16));
        blockMax = Vector512.Max(blockMax, Avx512F.Permute4x32(blockMax, 0xB1));
        blockMax = Vector512.Max(blockMax, Avx512F.Permute4x32(blockMax, 0x4E));   // per query, in all 4 of its lanes
        var newMax = Vector512.Max(runMax, blockMax);
        var correction = Exp(runMax - newMax);                                        // e^(−∞) = 0 on the first block
        runMax = newMax;
        if (correction != Vector512<float>.One)
            for (int j = 0; j < 4; j++)
                if (correction[4 * j] != 1f) Scale(acc + j * d, d, correction[4 * j]);
        var total = Vector512<float>.Zero;
        for (int i = 0; i < quads; i++)
        {
            var p = Exp(Vector512.Load(scores + i * 16) - newMax);
            p.Store(scores + i * 16);
            total += p;
        }
        total += Avx512F.Permute4x32(total, 0xB1);
        total += Avx512F.Permute4x32(total, 0x4E);
        runSum = runSum * correction + total;
    }

    /// <summary>e^x for 16 floats, as <see cref="Exp(Vector256{float})"/> on each half.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Exp(Vector512<float> x) => Vector512.Create(Exp(x.GetLower()), Exp(x.GetUpper()));

    /// <summary>One query (MHA) over one head's key range: dot products along D.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: skip the unoptimised first tier
    private static void AttendSingle(byte* q, ScalarType queryDtype, byte* k, byte* v, int length, int d, ScalarType dtype, float scale, State state)
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
                VectorOps.Scale(new Span<float>(qs, d), scale);
                long rowBytes = (long)d * KvCache.ElementSize(dtype);
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

    /// <summary>
    /// Online softmax over one block for 8 queries (a column strip of the [n, G'] scores): updates the running max and
    /// sum, rescales those queries' accumulators when the max grows, and leaves e^(score−max) in place of the scores.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: skip the unoptimised first tier
    private static void SoftmaxBlock(float* scores, int padded, int n, float* max, float* sum, float* acc, int d)
    {
        var blockMax = Vector256.Create(float.NegativeInfinity);
        for (int r = 0; r < n; r++) blockMax = Vector256.Max(blockMax, Vector256.Load(scores + r * padded));
        var oldMax = Vector256.Load(max);
        var newMax = Vector256.Max(oldMax, blockMax);
        var correction = Exp(oldMax - newMax);                         // e^(−∞) = 0 on the first block
        newMax.Store(max);
        var total = Vector256.Load(sum) * correction;
        if (correction != Vector256<float>.One)
            for (int j = 0; j < 8; j++)
                if (correction[j] != 1f) Scale(acc + j * d, d, correction[j]);
        for (int r = 0; r < n; r++)
        {
            var p = Exp(Vector256.Load(scores + r * padded) - newMax);
            p.Store(scores + r * padded);
            total += p;
        }
        total.Store(sum);
    }

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
    private static void Prefetch(byte* address)
    {
        if (System.Runtime.Intrinsics.X86.Sse.IsSupported) System.Runtime.Intrinsics.X86.Sse.Prefetch1(address);
    }

    /// <summary>Rows [start, start + n) of a [rows, D] block as float32: in place for float32, else widened into <paramref name="scratch"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: skip the unoptimised first tier
    private static float* Rows(byte* block, int start, int n, int d, ScalarType dtype, float* scratch)
    {
        ushort* bits = (ushort*)block + (long)start * d;
        switch (dtype)
        {
            case ScalarType.Float32:
                return (float*)block + (long)start * d;
            case ScalarType.Float16:
                SmallCpuOps.Widen<SmallCpuOps.HalfBits>(bits, n * d, scratch);  // inlined: this runs twice per block
                return scratch;
            default:
                SmallCpuOps.Widen<SmallCpuOps.BFloat16Bits>(bits, n * d, scratch);
                return scratch;
        }
    }

    /// <summary>
    /// e^x for 8 floats (Cephes' expf: x = n·ln2 + r, a degree-6 polynomial in r, 2^n from the exponent bits); relative
    /// error about 1e-7, and 0 below −87.3 (so e^(−∞) = 0). .NET's Vector256.Exp is not vectorised (about 4 ns a value
    /// here, slower than MathF.Exp); this takes about 0.7 ns.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Exp(Vector256<float> x)
    {
        var underflow = Vector256.LessThan(x, Vector256.Create(-87.33654f));
        x = Vector256.Min(Vector256.Max(x, Vector256.Create(-87.33654f)), Vector256.Create(88.37626f));
        var n = Vector256.Round(x * Vector256.Create(1.44269504088896341f));                       // x / ln2
        var r = Vector256.FusedMultiplyAdd(n, Vector256.Create(-0.693359375f), x);                  // x − n·ln2, in two parts
        r = Vector256.FusedMultiplyAdd(n, Vector256.Create(2.12194440e-4f), r);
        var p = Vector256.Create(1.9875691500e-4f);
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1.3981999507e-3f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(8.3334519073e-3f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(4.1665795894e-2f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1.6666665459e-1f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(5.0000001201e-1f));
        p = Vector256.FusedMultiplyAdd(p, r * r, r) + Vector256<float>.One;
        var twoToN = Vector256.ShiftLeft(Vector256.ConvertToInt32(n) + Vector256.Create(127), 23).AsSingle();
        return Vector256.AndNot(p * twoToN, underflow.AsSingle());
    }

    /// <summary>Merges each head's ranges: out = Σ acc·e^(m−M) / Σ l·e^(m−M), written in <paramref name="dtype"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: skip the unoptimised first tier
    private static void Merge(float[] partialMax, float[] partialSum, float[] partialAcc, byte* output, ScalarType dtype, int heads, int ranges, int g, int padded, int d)
    {
        Span<float> row = stackalloc float[d];
        int elementSize = KvCache.ElementSize(dtype);
        for (int h = 0; h < heads; h++)
            for (int j = 0; j < g; j++)
            {
                float max = float.NegativeInfinity;
                for (int c = 0; c < ranges; c++) max = MathF.Max(max, partialMax[(h * ranges + c) * padded + j]);
                float total = 0;
                row.Clear();
                for (int c = 0; c < ranges; c++)
                {
                    int task = h * ranges + c;
                    float m = partialMax[task * padded + j];
                    if (float.IsNegativeInfinity(m)) continue;
                    float w = MathF.Exp(m - max);
                    total += partialSum[task * padded + j] * w;
                    var acc = partialAcc.AsSpan((task * padded + j) * d, d);
                    VectorOps.AddScaled(acc, w, row);
                }
                VectorOps.Divide(row, total);
                SmallCpuOps.FromSingle(row, dtype, output + ((long)h * g + j) * d * elementSize);
            }
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

    /// <summary>Address of the first element of a [B, Hkv, S, D] view whose [S, D] blocks are contiguous (other heads by stride).</summary>
    private static byte* FirstHead(Tensor keysOrValues)
    {
        using var head = keysOrValues.select(0, 0).select(0, 0);                 // [S, D], contiguous
        return TensorMemory.Address(head);
    }
}
