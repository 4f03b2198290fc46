using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>The grouped form (G ≥ 2): one task's pass over its keys, block by block (ADR 0006).</summary>
internal static unsafe partial class FusedCpuDecode
{
    /// <summary>How the grouped kernel scores a block of keys.</summary>
    private enum ScoreForm
    {
        /// <summary>256-bit: the queries transposed, [D, G'], each key element broadcast against 8 queries (ADR 0006).</summary>
        Transposed,

        /// <summary>512-bit lane groups of 2 queries, one key row at a time (G = 2, AVX-512; ADR 0009).</summary>
        LaneGroups,

        /// <summary>512-bit lane groups of 4 queries, four key rows at a time, scores in quads of rows (G = 3-4; ADR 0010).</summary>
        Quads,
    }

    /// <summary>One task of the grouped kernel: G ≥ 2 queries over one KV head's key range, and its scratch buffers.</summary>
    private readonly struct GroupTask(byte* q, ScalarType queryDtype, byte* k, byte* v, ScalarType dtype, int length, int d, int g,
        int padded, ScoreForm form, ScoreMap map, float* queries, float* scores, float* wide, float* max, float* sum, float* acc)
    {
        public readonly byte* Q = q, K = k, V = v;
        public readonly ScalarType QueryDtype = queryDtype, Dtype = dtype;
        public readonly int Length = length, D = d, G = g, Padded = padded;
        public readonly ScoreForm Form = form;
        public readonly ScoreMap Map = map;
        public readonly float* Queries = queries, Scores = scores, Wide = wide, Max = max, Sum = sum, Acc = acc;

        public int ElementSize => Dtype.ElementSize();
        public int GroupLanes => Form switch { ScoreForm.LaneGroups => 2, ScoreForm.Quads => 4, _ => 0 };
        public int QueryFloats => Form == ScoreForm.Transposed ? D * Padded : GroupLanes * D;
        public bool Half => Dtype == ScalarType.Float16;
        public float Scale => Map.Scale;
    }

    /// <summary>G ≥ 2 queries over one head's key range; <paramref name="groupLanes"/> &gt; 0 selects a 512-bit score form.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // per task: skip the unoptimised first tier
    private static void AttendGroup(byte* q, ScalarType queryDtype, byte* k, byte* v, int length, int d, int g, int padded, int groupLanes,
        ScalarType dtype, ScoreMap map, State state)
    {
        var form = groupLanes switch { 0 => ScoreForm.Transposed, 2 => ScoreForm.LaneGroups, _ => ScoreForm.Quads };
        var pool = ArrayPool<float>.Shared;
        var queries = pool.Rent(form == ScoreForm.Transposed ? d * padded : groupLanes * d); // lane groups, or [D, G'] transposed
        var scores = pool.Rent(KeyBlock * padded);                                            // [block, G']
        var widened = pool.Rent(KeyBlock * d);                                                // widened K/V rows; first the queries
        try
        {
            fixed (float* qt = queries, sc = scores, wide = widened, max = state.Max, sum = state.Sum, acc = state.Acc)
            {
                var task = new GroupTask(q, queryDtype, k, v, dtype, length, d, g, padded, form, map, qt, sc, wide, max, sum, acc);
                bool inPlace = ReadsInPlace(task);
                if (!Pass(task, inPlace))
                {
                    state.Reset();                  // a float16 infinity or NaN in a block read in place: once more, widened
                    Pass(task, inPlace: false);
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
    /// Whether a 16-bit cache is read in place rather than widened (AVX-512 only): values by every form when D is a
    /// multiple of 32, keys by the quads form; float16 keys only when no scaled query is too large for the 2^112 scale.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // per task: skip the unoptimised first tier
    private static bool ReadsInPlace(in GroupTask t)
    {
        bool inPlace = Avx512F.IsSupported && Vector512.IsHardwareAccelerated && t.Dtype is ScalarType.BFloat16 or ScalarType.Float16;
        if (inPlace && t.Half && t.Form == ScoreForm.Quads)
            for (int j = 0; j < t.G && inPlace; j++)
            {
                SmallCpuOps.ToSingle(t.Q + (long)j * t.D * t.QueryDtype.ElementSize(), t.QueryDtype, new Span<float>(t.Wide, t.D));
                for (int i = 0; i < t.D; i++) inPlace &= MathF.Abs(t.Wide[i] * t.Scale) < 65504f;
            }
        return inPlace;
    }

    /// <summary>
    /// One pass over the task's keys, block by block: score, online softmax, accumulate values. False if a float16 block
    /// read in place held an infinity or a NaN; the state is then incomplete and the caller runs the pass again, widened.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: skip the unoptimised first tier
    private static bool Pass(in GroupTask t, bool inPlace)
    {
        bool quads = t.Form == ScoreForm.Quads;
        bool keysInPlace = inPlace && quads, valuesInPlace = inPlace && t.D % 32 == 0;
        PlaceQueries(t, keysInPlace);
        int d = t.D, size = t.ElementSize;
        int distance = t.Form == ScoreForm.Transposed ? GroupPrefetchDistance : WidePrefetchDistance;
        var runMax = Vector512.Create(float.NegativeInfinity);          // quads: per query, repeated in its 4 lanes
        var runSum = Vector512<float>.Zero;
        for (int t0 = 0; t0 < t.Length; t0 += KeyBlock)
        {
            int n = Math.Min(KeyBlock, t.Length - t0);
            // Rows of the block `distance` ahead, if it is whole: K fetched while scoring, V while accumulating.
            long ahead = n == KeyBlock && t0 + (distance + 1) * KeyBlock <= t.Length ? (long)KeyBlock * d * size : 0;
            byte* nextK = t.K + (long)(t0 + distance * KeyBlock) * d * size;
            byte* nextV = t.V + (long)(t0 + distance * KeyBlock) * d * size;
            if (t.Half && ((keysInPlace && Specials((ushort*)(t.K + (long)t0 * d * size), n * d))
                           || (valuesInPlace && Specials((ushort*)t.V + (long)t0 * d, n * d))))
                return false;
            ScoreBlock(t, keysInPlace, t0, n, ahead > 0 ? nextK : null, ahead);
            if (t.Map.Capped) CapBlock(t, n);
            if (quads) SoftmaxQuads(t.Scores, n, ref runMax, ref runSum, t.Acc, d);
            else
                for (int j = 0; j < t.Padded; j += 8)
                    SoftmaxBlock(t.Scores + j, t.Padded, n, t.Max + j, t.Sum + j, t.Acc + j * d, d);
            AccumulateBlock(t, valuesInPlace, t0, n, nextV, ahead);
        }
        if (valuesInPlace) Interleave(t.Acc, RowsOfQueries(t), d);
        if (quads)
            for (int j = 0; j < 4; j++)
            {
                t.Max[j] = runMax[4 * j];
                t.Sum[j] = runSum[4 * j];
            }
        return true;
    }

    /// <summary>The G queries, scaled by the task's scale, in the layout of the task's score form (float16 keys read in place: times 2^112 too).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // per task: skip the unoptimised first tier
    private static void PlaceQueries(in GroupTask t, bool keysInPlace)
    {
        float scale = t.Scale * (keysInPlace && t.Half ? HalfPairs.Scale : 1f);
        int querySize = t.QueryDtype.ElementSize();
        new Span<float>(t.Queries, t.QueryFloats).Clear();
        for (int j = 0; j < t.G; j++)
        {
            SmallCpuOps.ToSingle(t.Q + (long)j * t.D * querySize, t.QueryDtype, new Span<float>(t.Wide, t.D));
            if (t.Form != ScoreForm.Transposed) PlaceInLaneGroup(t.Wide, j, t.D, t.GroupLanes, keysInPlace, scale, t.Queries);
            else for (int i = 0; i < t.D; i++) t.Queries[i * t.Padded + j] = t.Wide[i] * scale;
        }
    }

    /// <summary>Scores of the block's <paramref name="n"/> key rows from <paramref name="t0"/> against the G queries, into the task's scores buffer.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // per block: skip the unoptimised first tier
    private static void ScoreBlock(in GroupTask t, bool keysInPlace, int t0, int n, byte* fetch, long ahead)
    {
        int d = t.D, rowBytes = d * t.ElementSize;
        switch (t.Form)
        {
            case ScoreForm.Quads when !keysInPlace:
                ScoreQuads<SingleKeys>((byte*)Rows(t.K, t0, n, d, t.Dtype, t.Wide), n, d, t.Queries, t.Scores, fetch, rowBytes);
                break;
            case ScoreForm.Quads when t.Half:
                ScoreQuads<InPlaceKeys<HalfPairs>>(t.K + (long)t0 * rowBytes, n, d, t.Queries, t.Scores, fetch, rowBytes);
                break;
            case ScoreForm.Quads:
                ScoreQuads<InPlaceKeys<BFloat16Pairs>>(t.K + (long)t0 * rowBytes, n, d, t.Queries, t.Scores, fetch, rowBytes);
                break;
            case ScoreForm.LaneGroups:
                ScoreTwoQueries(Rows(t.K, t0, n, d, t.Dtype, t.Wide), n, d, t.Queries, t.Scores, t.Padded, fetch, rowBytes);
                break;
            default:
            {
                float* keys = Rows(t.K, t0, n, d, t.Dtype, t.Wide);          // [n, D]
                long perCall = ahead / (KeyBlock / 8);                       // each of the block's Score8 calls fetches a share
                for (int r = 0; r < n; r += 8)
                    for (int j = 0; j < t.Padded; j += 8)
                        if (n - r >= 8) Score8(keys + r * d, t.Queries + j, t.Padded, d, t.Scores + r * t.Padded + j, j == 0 && fetch is not null ? fetch + r / 8 * perCall : null, perCall);
                        else for (int rr = r; rr < n; rr++) Score1(keys + rr * d, t.Queries + j, t.Padded, d, t.Scores + rr * t.Padded + j);
                break;
            }
        }
    }

    /// <summary>acc += p · V for the block's rows, four queries at a time, from float32 rows or 16-bit rows read in place.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // per block: skip the unoptimised first tier
    private static void AccumulateBlock(in GroupTask t, bool valuesInPlace, int t0, int n, byte* nextV, long ahead)
    {
        int d = t.D;
        var weights = t.Form == ScoreForm.Quads ? WeightLayout.Quads : WeightLayout.Rows(t.Padded);
        float* values = valuesInPlace ? null : Rows(t.V, t0, n, d, t.Dtype, t.Wide);   // [n, D]
        ushort* rows = (ushort*)t.V + (long)t0 * d;
        for (int j = 0; j < RowsOfQueries(t); j += 4)
        {
            byte* fetch = j == 0 ? nextV : null;
            if (!valuesInPlace) AccumulateValues4(t.Scores + j, weights, values, n, d, t.Acc + j * d, fetch, ahead, t.Form != ScoreForm.Transposed);
            else if (t.Half) AccumulateInPlaceValues4<HalfPairs>(t.Scores + j, weights, rows, n, d, t.Acc + j * d, fetch, ahead);
            else AccumulateInPlaceValues4<BFloat16Pairs>(t.Scores + j, weights, rows, n, d, t.Acc + j * d, fetch, ahead);
        }
    }

    /// <summary>G rounded up to the four queries that one value pass serves.</summary>
    private static int RowsOfQueries(in GroupTask t) => (t.G + 3) / 4 * 4;

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
}
