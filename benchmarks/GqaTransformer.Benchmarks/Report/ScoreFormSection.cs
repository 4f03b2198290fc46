using GqaTransformer;
using static TorchSharp.torch;

namespace GqaTransformer.Benchmarks.Report;

/// <summary>
/// The grouped decode kernel's two score forms on the same tensors, cold as in a decode step: the 256-bit transposed
/// form (any AVX2 CPU) against the 512-bit lane groups (AVX-512), with the read bandwidth in the same rounds.
/// </summary>
internal static class ScoreFormSection
{
    public static void Write(Markdown md, int rounds, Action<string> progress)
    {
        if (!FusedCpuDecode.WideScores) return;
        md.Line("## 8. The grouped decode kernel's score forms").Line();
        md.Line("One decode step of attention at 4096 tokens (32 query heads, head 128 unless stated), batch 1, each call after an untimed");
        md.Line("read of 256 MiB: `FusedCpuDecode` with the 256-bit transposed scores (queries padded to 8 lanes, 8 key rows read side by side)");
        md.Line("against the 512-bit lane groups (ADR 0009: 16/G coordinates broadcast to each of G queries; for G = 3-4 four key rows per pass,");
        md.Line("the scores in quads of rows and a bf16 or fp16 cache read in place, ADR 0010), and a read of 1 GiB in the same rounds. Median of");
        md.Line($"{rounds} interleaved rounds; *× floor* as in section 2. The lane groups serve G = 2 to 4; for larger groups the 256-bit form");
        md.Line("fills its lanes and both forms are the same code.").Line();
        using var cold = new ColdRounds();
        var rows = new List<string[]>();
        foreach (var (kv, dim, dtype) in new[] { (8, 128, ScalarType.Float32), (16, 128, ScalarType.Float32), (8, 128, ScalarType.BFloat16), (8, 128, ScalarType.Float16), (8, 64, ScalarType.Float32) })
        {
            progress($"score forms: {kv} kv heads, head {dim}, {dtype}");
            using var scope = NewDisposeScope();
            manual_seed(0);
            const int context = 4096;
            var q = randn(1, kv, 32 / kv, dim);
            var k = randn(1, kv, context + 64, dim).to(dtype).narrow(2, 0, context);
            var v = randn(1, kv, context + 64, dim).to(dtype).narrow(2, 0, context);
            var samples = Measure.InterleavedSamples(
            [
                () => { using var s = NewDisposeScope(); FusedCpuDecode.Run(q, k, v, null, false); },
                () => { using var s = NewDisposeScope(); FusedCpuDecode.Run(q, k, v, null, true); },
                cold.Read,
            ], rounds, beforeEach: cold.Evict);
            double kvBytes = 2.0 * kv * context * dim * k.element_size();
            double Floor(int variant) => Measure.FloorRatio(samples[variant], samples[2], kvBytes);
            var ms = samples.Select(Measure.Median).ToArray();
            rows.Add([$"{32 / kv}", $"{dim}", Measure.DtypeName(dtype), Measure.Bytes(kvBytes), Measure.F(ms[0], "0.000"), Measure.F(ms[1], "0.000"),
                Measure.F(ms[0] / ms[1]) + "x", Measure.F(Floor(0)), Measure.F(Floor(1)), Measure.F(Measure.ReadGBs(ms[2]), "0.0")]);
        }
        md.Table(["G", "head", "cache", "KV bytes", "256-bit ms", "512-bit ms", "speed-up", "× floor, 256-bit", "× floor, 512-bit", "read GB/s"], rows);
    }
}
