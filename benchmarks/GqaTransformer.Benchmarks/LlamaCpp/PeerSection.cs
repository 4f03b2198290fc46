using System.Diagnostics;
using GqaTransformer;
using GqaTransformer.Benchmarks.Report;
using LLama;
using LLama.Common;
using LLama.Native;
using static TorchSharp.torch;

namespace GqaTransformer.Benchmarks.LlamaCpp;

/// <summary>
/// The same ~150M model, the same weights, both engines in one process: ours (f16 weights with a bf16 KvCache, and bf16
/// throughout) and llama.cpp through LLamaSharp (f16 weights and cache, CPU backend), 2 threads each, batch 1. Steps alternate between the two so
/// that the machine's drift hits both alike; reported as ratios.
/// </summary>
internal static class PeerSection
{
    public static void Write(Markdown md, int[] contexts, int decodeSteps, Action<string> progress)
    {
        NativeLibraryConfig.All.WithCuda(false).WithVulkan(false).WithLogCallback((_, _) => { });
        md.Line("## 6. Against llama.cpp on the same model").Line();
        md.Line("The ~150M model of section 3 (vocab 32000, hidden 1024, 8 layers, 16 query heads × 64, FFN 2816) with the same random weights,");
        md.Line("written as GGUF (f16 matrices, q/k rows in llama.cpp's RoPE order) and run by llama.cpp through LLamaSharp 0.30.0 (CPU backend,");
        md.Line("f16 KV cache, 2 threads). Ours, 2 threads, runs twice: fp16 weights (the same weights; libtorch's fastest single-token matmul here)");
        md.Line("with a bf16 KvCache (the same bytes as llama.cpp's f16 cache; our fused decode kernel widens bf16 more cheaply than fp16), and bf16");
        md.Line("weights and cache (libtorch's fastest prefill here). Prefill: the whole prompt, median of 3.");
        md.Line($"Decode: {decodeSteps} rounds of one single-token step of each engine after the prompt; tok/s from each one's median step, and the");
        md.Line("ratio is the median over rounds of llama.cpp's step time / the faster of our two (paired within a round, since the machine drifts).").Line();
        var rows = new List<string[]>();
        string directory = Path.Combine(Path.GetTempPath(), "gqa-peer-" + Environment.ProcessId);
        Directory.CreateDirectory(directory);
        try
        {
            foreach (int kv in new[] { 16, 4, 1 })
            {
                progress($"peer: {kv} kv heads: writing GGUF");
                manual_seed(1);
                using var half = new DecoderModel(ModelSection.Small(kv), ScalarType.Float16);
                half.eval();
                using var bf16 = new DecoderModel(ModelSection.Small(kv), ScalarType.BFloat16);
                bf16.load_state_dict(half.state_dict().ToDictionary(p => p.Key, p => p.Value.to(ScalarType.BFloat16)));
                bf16.eval();
                string gguf = Path.Combine(directory, $"kv{kv}.gguf");
                GgufWriter.Write(half, gguf);
                var parameters = new ModelParams(gguf)
                {
                    ContextSize = (uint)(contexts.Max() + decodeSteps + 16), GpuLayerCount = 0, Threads = 2, BatchThreads = 2, BatchSize = 512, UBatchSize = 512,
                };
                using var weights = LLamaWeights.LoadFromFile(parameters);
                foreach (int context in contexts)
                {
                    progress($"peer: {kv} kv heads, context {context}");
                    var prompt = Enumerable.Range(0, context).Select(i => (i * 7919) % 32000).ToArray();
                    var ours = new[] { half, bf16 };
                    var sessions = new GenerationSession?[2];
                    var caches = new KvCache?[2]; // a session does not own a cache it is given
                    var prefill = new List<double>[] { new(), new(), new() }; // ours fp16, ours bf16, llama.cpp
                    LLamaContext? llama = null;
                    double agreement = 0;
                    for (int round = 0; round < 3; round++)
                    {
                        for (int e = 0; e < 2; e++)
                        {
                            sessions[e]?.Dispose();
                            caches[e]?.Dispose();
                            int capacity = context + decodeSteps + 8;
                            caches[e] = ours[e].CreateCache(1, capacity, ScalarType.BFloat16);
                            sessions[e] = new GenerationSession(ours[e], 1, capacity, caches[e]);
                            var clock = Stopwatch.StartNew();
                            using var logits = sessions[e]!.Prefill([prompt]);
                            prefill[e].Add(clock.Elapsed.TotalMilliseconds);
                            if (round == 0 && e == 0)
                            {
                                llama = weights.CreateContext(parameters);
                                LlamaPrefill(llama, prompt);
                                // Same weights, so the same next-token distribution: how far apart are the logits?
                                using var difference = (logits.view(-1) - tensor(llama.NativeHandle.GetLogitsIth(-1).ToArray())).abs();
                                agreement = difference.max().item<float>();
                            }
                        }
                        llama?.Dispose();
                        llama = weights.CreateContext(parameters);
                        var llamaClock = Stopwatch.StartNew();
                        LlamaPrefill(llama, prompt);
                        prefill[2].Add(llamaClock.Elapsed.TotalMilliseconds);
                    }
                    int position = context;
                    var steps = Measure.InterleavedSamples(
                    [
                        () => sessions[0]!.DecodeStep([17]).Dispose(),
                        () => sessions[1]!.DecodeStep([17]).Dispose(),
                        () => LlamaDecode(llama!, 17, position++),
                    ], decodeSteps, warmup: 1);
                    var decode = steps.Select(Measure.Median).ToArray();
                    // The ratio pairs the three steps of each round (the machine drifts between rounds, not within one).
                    var ratio = Measure.Median(Enumerable.Range(0, decodeSteps).Select(r => steps[2][r] / Math.Min(steps[0][r], steps[1][r])).ToArray());
                    var prefillMs = prefill.Select(Measure.Median).ToArray();
                    rows.Add([Kind(kv), $"{context}",
                        Measure.F(context / (prefillMs[0] / 1000), "0"), Measure.F(context / (prefillMs[1] / 1000), "0"), Measure.F(context / (prefillMs[2] / 1000), "0"),
                        Measure.F(prefillMs[2] / Math.Min(prefillMs[0], prefillMs[1])) + "x",
                        Measure.F(1000 / decode[0], "0.0"), Measure.F(1000 / decode[1], "0.0"), Measure.F(1000 / decode[2], "0.0"),
                        Measure.F(ratio) + "x",
                        Measure.F(agreement, "0.000")]);
                    foreach (var session in sessions) session?.Dispose();
                    foreach (var cache in caches) cache?.Dispose();
                    llama?.Dispose();
                }
            }
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
        md.Table(["attention", "context", "prefill tok/s, ours fp16 + bf16 cache", "ours bf16", "llama.cpp", "best of ours / llama.cpp", "decode tok/s, ours fp16 + bf16 cache", "ours bf16", "llama.cpp", "best of ours / llama.cpp", "max \\|Δ logit\\| (fp16 + bf16 cache)"], rows);
        md.Line("The last column compares the two engines' next-token logits after the prompt (identical f16 weights, each engine's own arithmetic):");
        md.Line("both compute the same model.").Line();
    }

    private static void LlamaPrefill(LLamaContext context, int[] prompt)
    {
        var batch = new LLamaBatch();
        for (int start = 0; start < prompt.Length; start += 512)
        {
            batch.Clear();
            int end = Math.Min(prompt.Length, start + 512);
            for (int i = start; i < end; i++) batch.Add((LLamaToken)prompt[i], i, LLamaSeqId.Zero, i == prompt.Length - 1);
            var result = context.Decode(batch);
            if (result != DecodeResult.Ok) throw new InvalidOperationException($"llama.cpp prefill failed: {result}");
        }
    }

    private static void LlamaDecode(LLamaContext context, int token, int position)
    {
        var batch = new LLamaBatch();
        batch.Add((LLamaToken)token, position, LLamaSeqId.Zero, true);
        var result = context.Decode(batch);
        if (result != DecodeResult.Ok) throw new InvalidOperationException($"llama.cpp decode failed: {result}");
        _ = context.NativeHandle.GetLogitsIth(batch.TokenCount - 1)[0]; // read the logits, as a sampler would
    }

    private static string Kind(int kv) => kv == 16 ? "MHA (16 kv)" : kv == 1 ? "MQA (1 kv)" : $"GQA ({kv} kv)";
}
