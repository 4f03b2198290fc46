using System.Diagnostics;
using GqaTransformer;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer.Benchmarks.Report;

/// <summary>Whole-model figures: prefill and decode tokens/s with the cache, decode without it, training steps, and memory per decode step.</summary>
internal static class ModelSection
{
    /// <summary>The ~150M Llama-style model of the llama.cpp comparison: vocab 32000, hidden 1024, 8 layers, 16 heads × 64, FFN 2816.</summary>
    public static DecoderConfig Small(int kvHeads) => new()
    {
        HiddenSize = 1024, NumAttentionHeads = 16, NumKeyValueHeads = kvHeads, NumHiddenLayers = 8, IntermediateSize = 2816,
        VocabSize = 32000, MaxPositionEmbeddings = 8192, RmsNormEps = 1e-5,
    };

    public static void Write(Markdown md, int[] contexts, ScalarType[] dtypes, int decodeSteps, Action<string> progress)
    {
        md.Line("## 3. End to end: prefill and decode with the KvCache").Line();
        md.Line("A ~150M Llama-style model (vocab 32000, hidden 1024, 8 layers, 16 query heads × 64, FFN 2816), random weights, batch 1.");
        md.Line($"Prefill: the whole prompt in one forward. Decode: median of {decodeSteps} single-token steps after the prompt (`GenerationSession.DecodeStep`,");
        md.Line("greedy). Variants run interleaved step by step, so drift hits all alike.").Line();
        var rows = new List<string[]>();
        foreach (var dtype in dtypes)
            foreach (int context in contexts)
            {
                var variants = new[] { 16, 4, 1 }.Select(kv =>
                {
                    progress($"model: {dtype}, context {context}, {kv} kv heads: prefill");
                    manual_seed(1);
                    var model = new DecoderModel(Small(kv), dtype);
                    model.eval();
                    var session = new GenerationSession(model, 1, context + decodeSteps + 8);
                    var prompt = Enumerable.Range(0, context).Select(i => (i * 7919) % 32000).ToArray();
                    var clock = Stopwatch.StartNew();
                    session.Prefill([prompt]).Dispose();
                    return (kv, model, session, prefillMs: clock.Elapsed.TotalMilliseconds);
                }).ToArray();
                progress($"model: {dtype}, context {context}: decode");
                long token = 17;
                var decode = Measure.InterleavedMedians(variants.Select(v => (Action)(() => v.session.DecodeStep([token]).Dispose())).ToArray(), decodeSteps, warmup: 1);
                for (int i = 0; i < variants.Length; i++)
                    rows.Add([Measure.DtypeName(dtype), $"{context}", Kind(variants[i].kv), Measure.F(context / (variants[i].prefillMs / 1000), "0"),
                        Measure.F(decode[i], "0.0"), Measure.F(1000 / decode[i], "0.0"), Measure.F(decode[0] / decode[i]) + "x",
                        Measure.Bytes(variants[i].session.Cache.SizeInBytes)]);
                foreach (var v in variants) { v.session.Dispose(); v.model.Dispose(); }
            }
        md.Table(["dtype", "context", "attention", "prefill tok/s", "decode ms/token", "decode tok/s", "decode vs MHA", "KV cache"], rows);
    }

    public static void WriteNoCache(Markdown md, int context, Action<string> progress)
    {
        progress("model: decode without a cache");
        md.Line("### What the cache buys").Line();
        md.Line($"Decoding one token after {context} tokens, fp32, GQA (4 kv heads): with the KvCache (one token through the model) against");
        md.Line($"recomputing the whole sequence ({context + 1} tokens) for every new token, as a cache-less loop must.").Line();
        manual_seed(1);
        using var model = new DecoderModel(Small(4));
        model.eval();
        var prompt = Enumerable.Range(0, context).Select(i => (long)((i * 7919) % 32000)).ToArray();
        using var session = new GenerationSession(model, 1, context + 16);
        session.Prefill([prompt.Select(t => (int)t).ToArray()]).Dispose();
        using var full = tensor(prompt.Append(17L).ToArray()).view(1, -1);
        var medians = Measure.InterleavedMedians(
        [
            () => session.DecodeStep([17]).Dispose(),
            () => { using var s = NewDisposeScope(); using var _ = no_grad(); model.forward(full, null, lastTokenOnly: true); },
        ], 5, warmup: 1);
        md.Table(["", "ms per new token", "tok/s"],
        [
            ["with KvCache", Measure.F(medians[0], "0.0"), Measure.F(1000 / medians[0], "0.0")],
            ["recompute (no cache)", Measure.F(medians[1], "0.0"), Measure.F(1000 / medians[1], "0.0")],
            ["cache speed-up", Measure.F(medians[1] / medians[0], "0.0") + "x", ""],
        ]);
    }

    public static void WriteTraining(Markdown md, int rounds, Action<string> progress)
    {
        progress("training steps");
        md.Line("## 4. Training step").Line();
        md.Line("Forward + backward + AdamW step, model of hidden 512, 4 layers, 8 query heads × 64, FFN 1376, vocab 4096, batch 4 × 256 tokens, fp32.");
        md.Line($"MHA (8 kv heads) and GQA (2 kv heads) alternate step by step; median of {rounds}.").Line();
        DecoderConfig Config(int kv) => new()
        {
            HiddenSize = 512, NumAttentionHeads = 8, NumKeyValueHeads = kv, NumHiddenLayers = 4, IntermediateSize = 1376, VocabSize = 4096, RmsNormEps = 1e-5,
        };
        var setups = new[] { 8, 2 }.Select(kv =>
        {
            manual_seed(3);
            var model = new DecoderModel(Config(kv));
            model.train();
            return (kv, model, optimizer: optim.AdamW(model.parameters(), lr: 1e-3), parameters: model.parameters().Sum(p => p.numel()));
        }).ToArray();
        var ids = randint(0, 4096, [4, 257], ScalarType.Int64, generator: new torch.Generator(5));
        var inputs = ids.narrow(1, 0, 256);
        var targets = ids.narrow(1, 1, 256).reshape(-1);
        var medians = Measure.InterleavedMedians(setups.Select(s => (Action)(() =>
        {
            using var scope = NewDisposeScope();
            s.optimizer.zero_grad();
            var loss = nn.functional.cross_entropy(s.model.forward(inputs).reshape(-1, 4096), targets);
            loss.backward();
            s.optimizer.step();
        })).ToArray(), rounds, warmup: 2);
        md.Table(["attention", "parameters", "ms per step", "vs MHA"], setups.Select((s, i) => new[]
        {
            Kind(s.kv, 8), $"{s.parameters / 1e6:0.00}M", Measure.F(medians[i], "0.0"), Measure.F(medians[i] / medians[0]) + "x",
        }));
        foreach (var s in setups) { s.optimizer.Dispose(); s.model.Dispose(); }
    }

    public static void WriteStepMemory(Markdown md, int[] contexts, int steps, Action<string> progress)
    {
        md.Line("## 5. Memory per decode step").Line();
        md.Line($"GQA model of section 3 (4 kv heads), fp32. After the prompt and 20 warm-up steps, {steps} more decode steps: growth of the");
        md.Line("process's resident memory and of TorchSharp's live-tensor count. A decode step must not allocate anything proportional to the cache.").Line();
        var rows = new List<string[]>();
        foreach (int context in contexts)
        {
            progress($"step memory: context {context}");
            manual_seed(1);
            using var model = new DecoderModel(Small(4));
            model.eval();
            using var session = new GenerationSession(model, 1, context + steps + 32);
            session.Prefill([Enumerable.Range(0, context).Select(i => (i * 7919) % 32000).ToArray()]).Dispose();
            for (int i = 0; i < 20; i++) session.DecodeStep([17]).Dispose();
            Measure.ReleaseFreedMemory();
            long rss = Measure.ResidentBytes(), live = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
            for (int i = 0; i < steps; i++) session.DecodeStep([17]).Dispose();
            Measure.ReleaseFreedMemory();
            long rssGrowth = Measure.ResidentBytes() - rss, liveGrowth = DisposeScopeManager.Statistics.ThreadTotalLiveCount - live;
            rows.Add([$"{context}", Measure.Bytes(session.Cache.SizeInBytes), $"{steps}", Measure.Bytes(Math.Max(0, rssGrowth)) + (rssGrowth < 0 ? " (shrank)" : ""), $"{liveGrowth}"]);
        }
        md.Table(["context", "KV cache", "steps", "RSS growth", "live tensors growth"], rows);
    }

    private static string Kind(int kv, int heads = 16) => kv == heads ? $"MHA ({kv} kv)" : kv == 1 ? "MQA (1 kv)" : $"GQA ({kv} kv)";
}
