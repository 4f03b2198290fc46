using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// One decode step of grouped attention on the CPU in a single pass over the cache: for each KV head, a block of
/// <see cref="KeyBlock"/> K rows is read once and scored against all G queries of the group, the scores go through an
/// online softmax, and the matching V rows are read once and accumulated for all G queries. Work is split over
/// (KV head, range of keys), merged by log-sum-exp, on libtorch's own OpenMP threads (<see cref="OpenMpTeam"/>).
/// float32 arithmetic; 16-bit caches are read in place where the CPU allows, else widened block by block in L1.
/// </summary>
/// <remarks>
/// The forms, one file each: <c>Single</c> (MHA, dot products), <c>Group</c> (G ≥ 2: the pass over blocks),
/// <c>Scores</c> (256-bit transposed queries, ADR 0006; 512-bit lane groups, ADR 0009; quads of rows, ADR 0010),
/// <c>Softmax</c> and <c>Values</c>. Rows are fetched ahead in software because blocks of rows are a pattern the
/// hardware prefetcher does not follow (ADR 0008); why the kernel stops short of the bandwidth floor: ADR 0011.
/// </remarks>
internal static unsafe partial class FusedCpuDecode
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
    /// cache's), scores scaled by 1/√D. The queries are read in their own dtype, so a float16 model over a bfloat16
    /// cache needs no conversion.
    /// </summary>
    public static Tensor Run(Tensor folded, Tensor key, Tensor value, ScalarType? outputDtype = null)
        => Run(folded, key, value, outputDtype, 1.0 / Math.Sqrt(key.size(-1)), null, WideScores);

    /// <summary>As <see cref="Run(Tensor, Tensor, Tensor, ScalarType?)"/>, with the grouped score form chosen (tests run both).</summary>
    internal static Tensor Run(Tensor folded, Tensor key, Tensor value, ScalarType? outputDtype, bool wideScores)
        => Run(folded, key, value, outputDtype, 1.0 / Math.Sqrt(key.size(-1)), null, wideScores);

    /// <summary>
    /// As <see cref="Run(Tensor, Tensor, Tensor, ScalarType?)"/>, with scores <c>s = q·k · scale</c> and, when
    /// <paramref name="softCap"/> is given, <c>s = softCap · tanh(s / softCap)</c> before the softmax (Gemma 2's
    /// attention logit soft-cap).
    /// </summary>
    public static Tensor Run(Tensor folded, Tensor key, Tensor value, ScalarType? outputDtype, double scale, double? softCap)
        => Run(folded, key, value, outputDtype, scale, softCap, WideScores);

    /// <summary>As <see cref="Run(Tensor, Tensor, Tensor, ScalarType?, double, double?)"/>, with the grouped score form chosen (tests run both).</summary>
    internal static Tensor Run(Tensor folded, Tensor key, Tensor value, ScalarType? outputDtype, double scale, double? softCap, bool wideScores)
    {
        if (!IsPositiveSingle(scale))
            throw new ArgumentOutOfRangeException(nameof(scale), scale, "The attention scale must be a positive finite number.");
        if (softCap is { } c && !IsPositiveSingle(c))
            throw new ArgumentOutOfRangeException(nameof(softCap), softCap, "The attention soft-cap must be a positive finite number, or null for none.");
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
        var scores = new ScoreMap((float)scale, softCap is { } cap ? (float)cap : 0f);
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
                if (g == 1) AttendSingle(q, queryDtype, k, v, (int)(end - start), d, dtype, scores, state);
                else AttendGroup(q, queryDtype, k, v, (int)(end - start), d, g, padded, groupLanes, dtype, scores, state);
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

    /// <summary>Whether <paramref name="x"/> is positive and finite as a float32 (the kernel's arithmetic).</summary>
    private static bool IsPositiveSingle(double x) => (float)x > 0 && float.IsFinite((float)x);

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

    /// <summary>Merges each head's ranges: out = Σ acc·e^(m−M) / Σ l·e^(m−M), written in <paramref name="dtype"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: skip the unoptimised first tier
    private static void Merge(float[] partialMax, float[] partialSum, float[] partialAcc, byte* output, ScalarType dtype, int heads, int ranges, int g, int padded, int d)
    {
        Span<float> row = stackalloc float[d];
        int elementSize = dtype.ElementSize();
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

    /// <summary>Address of the first element of a [B, Hkv, S, D] view whose [S, D] blocks are contiguous (other heads by stride).</summary>
    private static byte* FirstHead(Tensor keysOrValues)
    {
        using var head = keysOrValues.select(0, 0).select(0, 0);                 // [S, D], contiguous
        return TensorMemory.Address(head);
    }
}
