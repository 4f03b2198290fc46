using System.ComponentModel;
using System.Globalization;
using Spectre.Console;
using Spectre.Console.Cli;
using static TorchSharp.torch;

namespace GqaTransformer.Cli;

/// <summary>
/// <c>gqa bench</c>: a quick version of the decode-attention benchmark. One decode step (query length 1) of 32 query
/// heads of 128 over a cache of each context length, for several KV-head counts, plus GQA that copies K/V per query
/// head first. Median of repeated runs; effective GB/s is KV bytes read per step over the median time.
/// </summary>
public sealed class BenchCommand(IAnsiConsole console) : Command<BenchCommand.Settings>
{
    /// <summary>Options of <c>gqa bench</c>.</summary>
    public sealed class Settings : GqaSettings
    {
        /// <summary>Contexts.</summary>
        [CommandOption("--context <LIST>")][Description("Cache lengths. Default 1k,4k.")][DefaultValue("1k,4k")]
        public string Context { get; init; } = "1k,4k";

        /// <summary>KV-head counts.</summary>
        [CommandOption("--kv-heads <LIST>")][Description("KV-head counts out of 32 query heads. Default 32,8,4,1.")][DefaultValue("32,8,4,1")]
        public string KvHeads { get; init; } = "32,8,4,1";

        /// <summary>Batch.</summary>
        [CommandOption("--batch <N>")][Description("Batch size. Default 1.")][DefaultValue(1)]
        public int Batch { get; init; } = 1;

        /// <summary>Iterations.</summary>
        [CommandOption("--iterations <N>")][Description("Timed runs per case (the median is reported). Default 15.")][DefaultValue(15)]
        public int Iterations { get; init; } = 15;

        /// <summary>Element type.</summary>
        [CommandOption("--dtype <DTYPE>")][Description("fp32 (default), bf16 or fp16.")][DefaultValue("fp32")]
        public string Dtype { get; init; } = "fp32";

        /// <summary>Device.</summary>
        [CommandOption("--device <DEVICE>")][Description("cpu (default) or cuda.")][DefaultValue("cpu")]
        public string Device { get; init; } = "cpu";

        /// <summary>Whole-model decode instead of attention alone.</summary>
        [CommandOption("--model")][Description("Benchmark whole-model decode of a 1.1B Llama shape (16 layers, hidden 2048, 32 heads × 64, FFN 5632, random weights): prefill --context tokens per sequence, then --new-tokens steps.")]
        public bool Model { get; init; }

        /// <summary>Decode steps for --model.</summary>
        [CommandOption("--new-tokens <N>")][Description("Decode steps with --model. Default 128.")][DefaultValue(128)]
        public int NewTokens { get; init; } = 128;

        /// <inheritdoc />
        public override ValidationResult Validate()
            => Iterations < 1 ? ValidationResult.Error("--iterations must be positive.")
             : Batch < 1 ? ValidationResult.Error("--batch must be positive.")
             : ValidationResult.Success();
    }

    /// <summary>The 1.1B Llama shape (TinyLlama's) used for whole-model decode numbers.</summary>
    internal static DecoderConfig OneBillion(int kvHeads) => new()
    {
        HiddenSize = 2048, NumAttentionHeads = 32, NumKeyValueHeads = kvHeads, NumHiddenLayers = 16, IntermediateSize = 5632,
        VocabSize = 32000, MaxPositionEmbeddings = 65536, RmsNormEps = 1e-5,
    };

    private int BenchModel(Settings settings, int[] contexts, int[] kvCounts, ScalarType dtype, Device device, CancellationToken cancellationToken)
    {
        var table = new Table().Title($"Whole-model decode, 1.1B Llama shape, batch {settings.Batch}, {Parsing.DtypeName(dtype)}, {device}, {settings.NewTokens} new tokens")
            .AddColumn("prompt").AddColumn("kv heads").AddColumn(new TableColumn("prefill ms").RightAligned())
            .AddColumn(new TableColumn("decode ms/step").RightAligned()).AddColumn(new TableColumn("decode tok/s").RightAligned())
            .AddColumn(new TableColumn("vs MHA").RightAligned()).AddColumn(new TableColumn("KV cache").RightAligned());
        foreach (int context in contexts)
        {
            double? mha = null;
            foreach (int kv in kvCounts)
            {
                cancellationToken.ThrowIfCancellationRequested();
                manual_seed(1);
                using var model = new DecoderModel(OneBillion(kv), dtype, device);
                model.eval();
                using var session = new GenerationSession(model, settings.Batch, context + settings.NewTokens + 1);
                var random = new Random(3);
                var prompts = Enumerable.Range(0, settings.Batch).Select(_ => (IReadOnlyList<int>)Enumerable.Range(0, context).Select(_ => random.Next(32000)).ToArray()).ToList();
                var clock = System.Diagnostics.Stopwatch.StartNew();
                var logits = session.Prefill(prompts);
                double prefillMs = clock.Elapsed.TotalMilliseconds;
                var next = logits.argmax(-1).data<long>().ToArray();
                logits.Dispose();
                clock.Restart();
                for (int step = 0; step < settings.NewTokens; step++)
                {
                    logits = session.DecodeStep(next);          // ends in a copy to the CPU: every step is synchronised
                    next = logits.argmax(-1).data<long>().ToArray();
                    logits.Dispose();
                }
                double stepMs = clock.Elapsed.TotalMilliseconds / settings.NewTokens;
                double tokensPerSecond = settings.Batch * 1000 / stepMs;
                mha ??= kv == 32 ? tokensPerSecond : null;
                table.AddRow($"{context}", $"{kv}", prefillMs.ToString("0.0", CultureInfo.InvariantCulture), stepMs.ToString("0.00", CultureInfo.InvariantCulture),
                    tokensPerSecond.ToString("0.0", CultureInfo.InvariantCulture), mha is { } m ? (tokensPerSecond / m).ToString("0.00x", CultureInfo.InvariantCulture) : "-",
                    Parsing.Size(session.Cache.SizeInBytes));
            }
        }
        console.Write(table);
        return 0;
    }

    /// <inheritdoc />
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var contexts = Parsing.IntList(settings.Context, "--context");
        var kvCounts = Parsing.IntList(settings.KvHeads, "--kv-heads");
        foreach (int kv in kvCounts)
            if (kv < 1 || 32 % kv != 0) throw new ArgumentException($"--kv-heads values must divide 32, but {kv} does not.");
        var dtype = Parsing.Dtype(settings.Dtype);
        var device = Parsing.Device(settings.Device);
        const int heads = 32, headDim = 128;
        if (settings.Model) return BenchModel(settings, contexts, kvCounts, dtype, device, cancellationToken);

        var table = new Table().Title($"Decode attention, 32 query heads × 128, batch {settings.Batch}, {Parsing.DtypeName(dtype)}, {device}, {get_num_threads()} threads, median of {settings.Iterations}")
            .AddColumn("context").AddColumn("kv heads").AddColumn(new TableColumn("in place ms").RightAligned())
            .AddColumn(new TableColumn("GB/s").RightAligned()).AddColumn(new TableColumn("vs MHA").RightAligned())
            .AddColumn(new TableColumn("K/V copied ms").RightAligned()).AddColumn(new TableColumn("copy / in place").RightAligned())
            .AddColumn(new TableColumn("stride-0 view ms").RightAligned());
        foreach (int ctx in contexts)
        {
            double? mhaMs = null;
            foreach (int kv in kvCounts)
            {
                cancellationToken.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                var q = randn([settings.Batch, heads, 1, headDim], dtype, device);
                var k = randn([settings.Batch, kv, ctx, headDim], dtype, device);
                var v = randn([settings.Batch, kv, ctx, headDim], dtype, device);
                void Sync() { if (device.type == TorchSharp.DeviceType.CUDA) TorchSharp.torch.cuda.synchronize(); }
                double inPlace = Timing.MedianMilliseconds(() =>
                {
                    using var s = NewDisposeScope();
                    MultiHeadAttention.GroupedScaledDotProduct(q, k, v, null, causal: true);
                    Sync();
                }, settings.Iterations);
                double copied = Timing.MedianMilliseconds(() =>
                {
                    using var s = NewDisposeScope();
                    int group = heads / kv;
                    nn.functional.scaled_dot_product_attention(q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1));
                    Sync();
                }, settings.Iterations);
                // Experimental: K/V as a stride-0 expand over each group (no copy), batch and KV heads merged, q_len 1.
                double expanded = Timing.MedianMilliseconds(() =>
                {
                    using var s = NewDisposeScope();
                    int group = heads / kv;
                    long bk = (long)settings.Batch * kv;
                    var ke = k.view(bk, 1, ctx, headDim).expand(bk, group, ctx, headDim);
                    var ve = v.view(bk, 1, ctx, headDim).expand(bk, group, ctx, headDim);
                    nn.functional.scaled_dot_product_attention(q.view(bk, group, 1, headDim), ke, ve);
                    Sync();
                }, settings.Iterations);
                mhaMs ??= kv == heads ? inPlace : null;
                double gbPerSecond = 2.0 * k.numel() * k.element_size() / (inPlace / 1000) / 1e9;
                table.AddRow(ctx.ToString("N0", CultureInfo.InvariantCulture), kv.ToString(CultureInfo.InvariantCulture),
                    inPlace.ToString("0.000", CultureInfo.InvariantCulture), gbPerSecond.ToString("0.0", CultureInfo.InvariantCulture),
                    mhaMs is { } m ? (m / inPlace).ToString("0.00x", CultureInfo.InvariantCulture) : "-",
                    copied.ToString("0.000", CultureInfo.InvariantCulture), (copied / inPlace).ToString("0.0x", CultureInfo.InvariantCulture),
                    expanded.ToString("0.000", CultureInfo.InvariantCulture));
            }
        }
        console.Write(table);
        console.MarkupLine("[grey]Wall-clock medians on this machine now; for reportable figures use the BenchmarkDotNet suite (docs/benchmarks.md).[/]");
        return 0;
    }
}
