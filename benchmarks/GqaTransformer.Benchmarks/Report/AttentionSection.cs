using GqaTransformer;
using ScottPlot;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer.Benchmarks.Report;

/// <summary>One decode step of attention (query length 1) over a cache: 32 query heads × 128, fp32.</summary>
internal static class AttentionSection
{
    private const int Heads = 32, HeadDim = 128;

    /// <summary>
    /// Medians of one configuration. <paramref name="ReadGBs"/> is the read bandwidth measured in the same rounds, and
    /// <paramref name="FloorRatio"/> the median over rounds of the library's time / that round's floor (KV bytes / bandwidth);
    /// <paramref name="ColdReadRatio"/> the same against a plain read of the very K/V bytes, cold as the kernel meets them.
    /// <paramref name="ArithmeticFloorMs"/> is the step's multiply-adds at the FMA rate measured in the same rounds
    /// (<see cref="ArithmeticProbe"/>), and <paramref name="LargerFloorRatio"/> the median over rounds of the library's
    /// time / the larger of that round's two floors. <paramref name="OrderReadRatio"/> is the median over rounds of a
    /// read of the same K/V in the kernel's order with no arithmetic (<see cref="KernelOrderRead"/>) / that round's memory floor.
    /// </summary>
    public sealed record Result(int Batch, int Context, int KvHeads, double LibraryMs, double SdpaMs, double CopyMs, double ReadGBs, double FloorRatio, double ColdReadRatio,
        double ArithmeticFloorMs, double LargerFloorRatio, double OrderReadRatio)
    {
        public double KvBytes => KvBytesOf(Batch, KvHeads, Context);
    }

    /// <summary>Bytes of K and V (fp32) that one decode step of attention reads.</summary>
    private static double KvBytesOf(int batch, int kvHeads, int context) => 2.0 * batch * kvHeads * context * HeadDim * 4;

    /// <summary>Multiply-adds of one decode step of attention: q·k and p·v for every query head, key and coordinate.</summary>
    private static double MultiplyAddsOf(int batch, int context) => 2.0 * batch * Heads * context * HeadDim;

    public static List<Result> Run(int[] contexts, int[] batches, int rounds, Action<string> progress)
    {
        var results = new List<Result>();
        // Every timed call starts with the caches cold (without it the last variant's writes, K/V copied, or a cache
        // left warm by the previous call would favour one variant over another), and the read bandwidth is measured in
        // the same rounds.
        using var cold = new ColdRounds();
        foreach (int batch in batches)
            foreach (int context in contexts)
            {
                if (batch > 1 && context > 4096) continue; // 8 × 32 heads × 8k in fp32 would be 2 GiB per copy
                foreach (int kv in new[] { 32, 8, 4, 1 })
                {
                    progress($"attention: batch {batch}, context {context}, {kv} kv heads");
                    using var scope = NewDisposeScope();
                    manual_seed(0);
                    var q = randn(batch, Heads, 1, HeadDim);
                    // Keys and values as a cache view: [B, Hkv, capacity, D] narrowed to the context, as in decoding.
                    var k = randn(batch, kv, context + 64, HeadDim).narrow(2, 0, context);
                    var v = randn(batch, kv, context + 64, HeadDim).narrow(2, 0, context);
                    int group = Heads / kv;
                    var samples = Measure.InterleavedSamples(
                    [
                        () => { using var s = NewDisposeScope(); MultiHeadAttention.GroupedScaledDotProduct(q, k, v, null, causal: true); },
                        () => { using var s = NewDisposeScope(); nn.functional.scaled_dot_product_attention(q.reshape(batch, kv, group, HeadDim), k, v); },
                        () => { using var s = NewDisposeScope(); nn.functional.scaled_dot_product_attention(q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)); },
                        cold.Read,
                        () => { using var s = NewDisposeScope(); k.sum(); v.sum(); },
                        ArithmeticProbe.Run,
                        () => KernelOrderRead.Run(k, v),
                    ], rounds, beforeEach: cold.Evict);
                    var medians = samples.Select(Measure.Median).ToArray();
                    double kvBytes = KvBytesOf(batch, kv, context);
                    double floorRatio = Measure.FloorRatio(samples[0], samples[3], kvBytes);
                    double coldReadRatio = Measure.Median(samples[0].Zip(samples[4], (library, read) => library / read).ToList());
                    double multiplyAdds = MultiplyAddsOf(batch, context);
                    var arithmeticFloors = samples[5].Select(ms => multiplyAdds / ArithmeticProbe.Rate(ms) * 1000).ToList();
                    var memoryFloors = samples[3].Select(ms => Measure.FloorMs(ms, kvBytes)).ToList();
                    double largerFloorRatio = Measure.Median(samples[0].Select((ms, r) => ms / Math.Max(memoryFloors[r], arithmeticFloors[r])).ToList());
                    results.Add(new Result(batch, context, kv, medians[0], medians[1], medians[2], Measure.ReadGBs(medians[3]), floorRatio, coldReadRatio,
                        Measure.Median(arithmeticFloors), largerFloorRatio, Measure.FloorRatio(samples[6], samples[3], kvBytes)));
                }
            }
        return results;
    }

    public static void Write(Markdown md, List<Result> results, string outputDirectory)
    {
        md.Line("## 2. Decode attention on the CPU").Line();
        md.Line("One decode step of attention (query length 1), 32 query heads of 128, fp32, keys/values as views of a preallocated cache.");
        md.Line("*library* is `MultiHeadAttention.GroupedScaledDotProduct` (K/V read in place); *SDPA folded* is TorchSharp's SDPA with each group's");
        md.Line("query heads folded into the query length (also in place); *K/V copied* repeats K/V per query head first, as HF's eager path and");
        md.Line("Microsoft.ML.GenAI do. GB/s = KV bytes / median time. *read GB/s* is this machine's read bandwidth, a sum over 1 GiB run as one more");
        md.Line("variant in the same interleaved rounds; *× floor* is the median over rounds of the library's time / that round's floor");
        md.Line("(KV bytes / that round's read bandwidth), so the machine's drift moves both alike. *× cold read* compares the library with a");
        md.Line("plain read (a sum) of the very K/V bytes, cold as the kernel meets them: how much of the gap to the floor any read of them pays.");
        md.Line("Each timed call follows an untimed read of 256 MiB, so K/V comes from memory, not from a cache the previous call left warm,");
        md.Line("as in a decode step, where the layer's weights pass through the caches between one attention and the next.");
        md.Line("*arith. floor* is the step's multiply-adds (2 · batch · 32 heads · context · 128) at this machine's FMA rate, measured in the same");
        md.Line("rounds as one more variant (independent 16-lane FMAs on the same threads); it is the same for every kv-head count, since the");
        md.Line("query heads set the arithmetic. *× larger floor* is the library's time / the larger of the two floors, per round. A kernel");
        md.Line("that overlapped its arithmetic with its reads perfectly would reach 1.00 there; one that did them in turn, the sum of the floors.");
        md.Line("*order read × floor* is a read of the same K/V with no arithmetic, in the kernel's order (per KV head, 32 rows of K, then of V,");
        md.Line("each block fetched one block ahead), over the memory floor: what that order of reading costs before any arithmetic.").Line();
        foreach (var batch in results.Select(r => r.Batch).Distinct())
        {
            md.Line($"Batch {batch}, median ms:").Line();
            md.Table(["context", "kv heads", "KV bytes", "library", "GB/s", "read GB/s", "× floor", "× cold read", "arith. floor", "× larger floor", "order read × floor", "speed-up vs MHA", "SDPA folded", "K/V copied", "copied / library"],
                results.Where(r => r.Batch == batch).Select(r =>
                {
                    var mha = results.First(x => x.Batch == batch && x.Context == r.Context && x.KvHeads == 32);
                    return new[]
                    {
                        $"{r.Context}", $"{r.KvHeads}", Measure.Bytes(r.KvBytes), Measure.F(r.LibraryMs, "0.000"), Measure.F(r.KvBytes / (r.LibraryMs / 1000) / 1e9, "0.0"),
                        Measure.F(r.ReadGBs, "0.0"), Measure.F(r.FloorRatio, "0.00"), Measure.F(r.ColdReadRatio, "0.00"),
                        Measure.F(r.ArithmeticFloorMs, "0.000"), Measure.F(r.LargerFloorRatio, "0.00"), Measure.F(r.OrderReadRatio, "0.00"),
                        Measure.F(mha.LibraryMs / r.LibraryMs) + "x", Measure.F(r.SdpaMs, "0.000"),
                        Measure.F(r.CopyMs, "0.000"), Measure.F(r.CopyMs / r.LibraryMs, "0.0") + "x",
                    };
                }));
        }

        var plot = new Plot();
        foreach (int kv in new[] { 32, 8, 4, 1 })
        {
            var series = results.Where(r => r.Batch == 1 && r.KvHeads == kv).OrderBy(r => r.Context).ToArray();
            var line = plot.Add.Scatter(series.Select(r => Math.Log2(r.Context)).ToArray(), series.Select(r => r.LibraryMs).ToArray());
            line.LegendText = kv == 32 ? "MHA (32 kv heads)" : kv == 1 ? "MQA (1 kv head)" : $"GQA ({kv} kv heads)";
        }
        var copied = results.Where(r => r.Batch == 1 && r.KvHeads == 8).OrderBy(r => r.Context).ToArray();
        var baseline = plot.Add.Scatter(copied.Select(r => Math.Log2(r.Context)).ToArray(), copied.Select(r => r.CopyMs).ToArray());
        baseline.LegendText = "GQA 8, K/V copied per query head";
        baseline.LinePattern = LinePattern.Dashed;
        var contexts = results.Select(r => r.Context).Distinct().Order().ToArray();
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(contexts.Select(c => Math.Log2(c)).ToArray(), contexts.Select(c => $"{c}").ToArray());
        plot.Title("Decode attention step, batch 1, 32 query heads × 128, fp32, CPU");
        plot.XLabel("context (tokens)");
        plot.YLabel("median ms");
        plot.ShowLegend(Alignment.UpperLeft);
        plot.SavePng(Path.Combine(outputDirectory, "decode-attention.png"), 800, 500);
        md.Line("![Decode attention latency vs context](decode-attention.png)").Line();
    }
}
