using GqaTransformer;
using static TorchSharp.torch;

namespace GqaTransformer.Benchmarks.Report;

/// <summary>
/// A decode step's linear layers alone: every weight matrix of the ~150M model (8 layers of q, k, v, o, gate, up, down,
/// then the 32000-row output head), one token through each, by libtorch's linear and by the library's managed product,
/// against a plain read of the same bytes, all in the same interleaved rounds. 244 MB of fp16 weights is far more than
/// the caches hold, so every matrix comes from memory, as in a decode step.
/// </summary>
internal static class LinearSection
{
    public static void Write(Markdown md, int rounds, Action<string> progress)
    {
        md.Line("## 7. A decode step's linear layers").Line();
        md.Line("Every weight matrix of the ~150M model of section 3 (8 layers of q 1024², k and v 256×1024, o 1024², gate and up 2816×1024,");
        md.Line("down 1024×2816, then the 32000×1024 output head), one token through each in turn: libtorch's `linear` against the library's");
        md.Line("managed matrix-vector product (`DecodeLinear`, ADR 0009), and a read of the same bytes (a sum over each matrix, libtorch).");
        md.Line($"Median of {rounds} interleaved rounds; GB/s = weight bytes / time.").Line();
        var rows = new List<string[]>();
        var config = ModelSection.Small(4);
        (int Rows, int Columns)[] layer =
        [
            (config.HiddenSize, config.HiddenSize), (256, config.HiddenSize), (256, config.HiddenSize), (config.HiddenSize, config.HiddenSize),
            (config.IntermediateSize, config.HiddenSize), (config.IntermediateSize, config.HiddenSize), (config.HiddenSize, config.IntermediateSize),
        ];
        var shapes = Enumerable.Repeat(layer, config.NumHiddenLayers).SelectMany(s => s).Append((Rows: config.VocabSize, Columns: config.HiddenSize)).ToArray();
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16 })
        {
            progress($"linears: {dtype}");
            using var scope = NewDisposeScope();
            manual_seed(3);
            var weights = shapes.Select(s => (randn(s.Rows, s.Columns) * 0.02).to(dtype)).ToArray();
            var inputs = shapes.Select(s => randn(1, 1, s.Columns).to(dtype)).ToArray();
            double bytes = weights.Sum(w => (double)w.numel() * w.element_size());
            Action Each(Func<Tensor, Tensor, Tensor> run) => () =>
            {
                using var inner = NewDisposeScope();
                for (int i = 0; i < weights.Length; i++) run(inputs[i], weights[i]);
            };
            Tensor Read(Tensor x, Tensor w) => w.sum();
            var variants = new List<(string Name, Action Run)>
            {
                ("libtorch linear", Each((x, w) => nn.functional.linear(x, w))),
                ("managed", Each(DecodeLinear.Product)),
                ("read", Each(Read)),
            };
            double[] ms;
            using (no_grad()) ms = Measure.InterleavedMedians(variants.Select(v => v.Run).ToArray(), rounds);
            double read = ms[2];
            for (int i = 0; i < variants.Count; i++)
                rows.Add([Measure.DtypeName(dtype), variants[i].Name, Measure.Bytes(bytes), Measure.F(ms[i], "0.00"), Measure.F(bytes / (ms[i] / 1000) / 1e9, "0.0"),
                    Measure.F(read / ms[i]), Measure.F(ms[0] / ms[i]) + "x"]);
        }
        md.Table(["dtype", "variant", "weights", "ms", "GB/s", "of read bandwidth", "vs libtorch"], rows);
    }
}
