using GqaTransformer;
using ScottPlot;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer.Benchmarks.Report;

/// <summary>KV-cache bytes: predicted for real configs, measured for real allocations, and the longest context in a budget.</summary>
internal static class MemorySection
{
    private static readonly (string Name, DecoderConfig Config)[] Models =
    [
        ("Llama-2-7B (32/32)", ModelPresets.Get("llama-2-7b")),
        ("Llama-3-8B (32/8)", ModelPresets.Get("llama-3-8b")),
        ("Mistral-7B (32/8)", ModelPresets.Get("mistral-7b")),
        ("Llama-3-70B (64/8)", ModelPresets.Get("llama-3-70b")),
        ("Llama-3-8B as MQA (32/1)", ModelPresets.Get("llama-3-8b") with { NumKeyValueHeads = 1 }),
    ];

    public static void Write(Markdown md, string outputDirectory)
    {
        md.Line("## 1. KV-cache memory").Line();
        int[] contexts = [1024, 4096, 16384, 32768, 131072];
        foreach (int batch in new[] { 1, 8 })
        {
            md.Line($"Predicted by `KvCache.EstimateBytes`, batch {batch}, bf16/fp16 (fp32 is exactly twice):").Line();
            md.Table(["model (heads/kv heads)", .. contexts.Select(c => $"{c / 1024}k")],
                Models.Select(m => new[] { m.Name }.Concat(contexts.Select(c => Measure.Bytes(KvCache.EstimateBytes(m.Config, batch, c, ScalarType.BFloat16)))).ToArray()));
        }

        md.Line("Measured: real `KvCache` allocations on this machine (CPU). *tensors* is the sum of numel × element size over the");
        md.Line("cache's tensors; *RSS growth* is the process's resident memory before and after creating the cache (zero-filled, so every page is touched).").Line();
        var rows = new List<string[]>();
        foreach (var (name, config) in new[] { Models[0], Models[1], Models[4] })
            foreach (int context in new[] { 1024, 4096, 8192 })
                foreach (var dtype in new[] { ScalarType.BFloat16, ScalarType.Float32 })
                {
                    Measure.ReleaseFreedMemory();
                    long before = Measure.ResidentBytes();
                    using var cache = new KvCache(config, 1, context, dtype);
                    long after = Measure.ResidentBytes();
                    long predicted = KvCache.EstimateBytes(config, 1, context, dtype);
                    long tensors = cache.Tensors.Sum(t => t.numel() * t.element_size());
                    rows.Add([name, $"{context}", Measure.DtypeName(dtype), Measure.Bytes(predicted), Measure.Bytes(tensors),
                        Measure.F((double)tensors / predicted, "0.0000"), Measure.Bytes(after - before), Measure.F((double)(after - before) / predicted, "0.000")]);
                }
        md.Table(["model", "tokens", "dtype", "predicted", "tensors", "tensors / predicted", "RSS growth", "RSS / predicted"], rows);

        var mha = ModelPresets.Get("llama-3-8b") with { NumKeyValueHeads = 32 };
        md.Line("MHA / GQA / MQA ratio for the Llama-3-8B shape (predicted bytes at 4k, bf16): " +
                $"MHA/GQA-8 = {(double)KvCache.EstimateBytes(mha, 1, 4096, ScalarType.BFloat16) / KvCache.EstimateBytes(Models[1].Config, 1, 4096, ScalarType.BFloat16)}, " +
                $"MHA/MQA = {(double)KvCache.EstimateBytes(mha, 1, 4096, ScalarType.BFloat16) / KvCache.EstimateBytes(Models[4].Config, 1, 4096, ScalarType.BFloat16)}.").Line();

        md.Line("Longest context per sequence whose bf16 KV cache fits in a budget (weights not counted), batch 1:").Line();
        long[] budgets = [16L << 30, 24L << 30, 80L << 30];
        var shapes = new[] { ("MHA, 32 kv heads", mha), ("GQA, 8 kv heads", Models[1].Config), ("GQA, 4 kv heads", Models[1].Config with { NumKeyValueHeads = 4 }), ("MQA, 1 kv head", Models[4].Config) };
        md.Table(["Llama-3-8B shape", .. budgets.Select(b => Measure.Bytes(b))],
            shapes.Select(s => new[] { s.Item1 }.Concat(budgets.Select(b => KvCache.MaxTokensForBudget(s.Item2, 1, b, ScalarType.BFloat16).ToString("N0"))).ToArray()));

        // Chart: KV bytes vs context, Llama-3-8B shape.
        var plot = new Plot();
        double[] xs = [1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072];
        foreach (var (label, config) in shapes)
        {
            var scatter = plot.Add.Scatter(xs.Select(Math.Log2).ToArray(), xs.Select(x => KvCache.EstimateBytes(config, 1, (long)x, ScalarType.BFloat16) / (double)(1L << 30)).Select(Math.Log2).ToArray());
            scatter.LegendText = label;
        }
        plot.Title("KV cache per sequence, Llama-3-8B shape, bf16");
        plot.XLabel("context (tokens, log2)");
        plot.YLabel("KV cache (GiB, log2)");
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(xs.Select(Math.Log2).ToArray(), xs.Select(x => x >= 1024 ? $"{x / 1024}k" : $"{x}").ToArray());
        double[] gib = [1.0 / 16, 0.25, 1, 4, 16, 64];
        plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual(gib.Select(Math.Log2).ToArray(), gib.Select(g => g < 1 ? $"{g * 1024} MiB" : $"{g} GiB").ToArray());
        plot.ShowLegend(Alignment.UpperLeft);
        plot.SavePng(Path.Combine(outputDirectory, "kv-memory.png"), 800, 500);
        md.Line("![KV cache vs context](kv-memory.png)").Line();
    }
}
