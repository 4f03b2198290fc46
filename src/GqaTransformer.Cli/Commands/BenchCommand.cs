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
public sealed class BenchCommand(IAnsiConsole console, ErrorConsole errors) : Command<BenchCommand.Settings>
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
        [CommandOption("--model")][Description("Benchmark whole-model decode of a 1.1B Llama shape (16 layers, hidden 2048, 32 heads × 64, FFN 5632, random weights): prefill --context tokens per sequence, then --new-tokens steps, the first 3 (warm-up, graph capture) untimed.")]
        public bool Model { get; init; }

        /// <summary>Print a per-part breakdown of one decode step (diagnostics).</summary>
        [CommandOption("--profile")][Description("With --model: time the parts of one decode step (whole forward, one layer, attention, MLP), each synchronised.")]
        public bool Profile { get; init; }

        /// <summary>GPUs the layers are spread over, with --model.</summary>
        [CommandOption("--devices <N>")][Description("With --model on CUDA: spread the layers over the first N GPUs (a device map; each GPU holds its layers' part of the cache). Default 1.")][DefaultValue(1)]
        public int Devices { get; init; } = 1;

        /// <summary>Decode steps with --model.</summary>
        [CommandOption("--new-tokens <N>")][Description("Decode steps with --model. Default 128.")][DefaultValue(128)]
        public int NewTokens { get; init; } = 128;

        /// <summary>CUDA graphs.</summary>
        [CommandOption("--cuda-graphs <on|off>")][Description("On CUDA, replay each decode step from a CUDA graph: on (default) or off.")][DefaultValue("on")]
        public string CudaGraphs { get; init; } = "on";

        /// <inheritdoc />
        public override ValidationResult Validate()
            => CudaGraphs is not ("on" or "off") ? ValidationResult.Error($"--cuda-graphs must be on or off, but was '{CudaGraphs}'.")
             : Iterations < 1 ? ValidationResult.Error("--iterations must be positive.")
             : Batch < 1 ? ValidationResult.Error("--batch must be positive.")
             : Devices < 1 ? ValidationResult.Error($"--devices must be positive, but was {Devices}.")
             : Devices > 1 && !Model ? ValidationResult.Error("--devices needs --model.")
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
        if (device.type == TorchSharp.DeviceType.CUDA)
            errors.Console.MarkupLineInterpolated($"[grey]CUDA graphs: {(settings.CudaGraphs == "off" ? "off" : GqaTransformer.CudaGraphs.UnavailableReason ?? "on")}[/]");
        var table = Tables.Create($"Whole-model decode, 1.1B Llama shape, batch {settings.Batch}, {Parsing.DtypeName(dtype)}, {device}, {settings.NewTokens} new tokens, graphs {settings.CudaGraphs}")
            .AddColumn(Tables.Left("prompt")).AddColumn(Tables.Left("kv heads")).AddColumn(Tables.Right("prefill ms"))
            .AddColumn(Tables.Right("decode ms/step")).AddColumn(Tables.Right("decode tok/s"))
            .AddColumn(Tables.Right("vs MHA")).AddColumn(Tables.Right("KV cache")).AddColumn(Tables.Right("KV per GPU"));
        foreach (int context in contexts)
        {
            double? mha = null;
            foreach (int kv in kvCounts)
            {
                cancellationToken.ThrowIfCancellationRequested();
                manual_seed(1);
                using var model = settings.Devices == 1 ? new DecoderModel(OneBillion(kv), dtype, device)
                    : new DecoderModel(OneBillion(kv), dtype, EvenMap(OneBillion(kv).NumHiddenLayers, settings.Devices));
                model.eval();
                using var session = new GenerationSession(model, settings.Batch, context + settings.NewTokens + 1, useCudaGraphs: settings.CudaGraphs == "on");
                var random = new Random(3);
                var prompts = Enumerable.Range(0, settings.Batch).Select(_ => (IReadOnlyList<int>)Enumerable.Range(0, context).Select(_ => random.Next(32000)).ToArray()).ToList();
                var clock = System.Diagnostics.Stopwatch.StartNew();
                var logits = session.Prefill(prompts);
                double prefillMs = clock.Elapsed.TotalMilliseconds;
                var next = logits.argmax(-1).data<long>().ToArray();
                logits.Dispose();
                // The first steps warm up (and, with graphs, capture) and are not timed, as in tools/gpu_decode_reference.py.
                int warmUp = Math.Min(WarmUpSteps, settings.NewTokens - 1);
                for (int step = 0; step < settings.NewTokens; step++)
                {
                    if (step == warmUp) clock.Restart();
                    logits = session.DecodeStep(next);          // ends in a copy to the CPU: every step is synchronised
                    next = logits.argmax(-1).data<long>().ToArray();
                    logits.Dispose();
                }
                double stepMs = clock.Elapsed.TotalMilliseconds / (settings.NewTokens - warmUp);
                if (settings.Profile) ProfileStep(model, session.Cache, device);
                double tokensPerSecond = settings.Batch * 1000 / stepMs;
                mha ??= kv == 32 ? tokensPerSecond : null;
                table.AddRow($"{context}", $"{kv}", prefillMs.ToString("0.0", CultureInfo.InvariantCulture), stepMs.ToString("0.00", CultureInfo.InvariantCulture),
                    tokensPerSecond.ToString("0.0", CultureInfo.InvariantCulture), mha is { } m ? (tokensPerSecond / m).ToString("0.00x", CultureInfo.InvariantCulture) : "-",
                    Parsing.Size(session.Cache.SizeInBytes), Parsing.Size(KvPerDevice(session.Cache, model.DeviceMap)));
            }
        }
        console.Write(table);
        return 0;
    }

    private const int WarmUpSteps = 3;

    /// <summary>The layers split evenly over the first <paramref name="devices"/> GPUs, in order.</summary>
    private static DeviceMap EvenMap(int layers, int devices)
    {
        if (devices > TorchSharp.torch.cuda.device_count())
            throw new ArgumentException($"--devices {devices} needs {devices} CUDA devices, but TorchSharp finds {TorchSharp.torch.cuda.device_count()}.");
        return DeviceMap.Parse(string.Join(",", Enumerable.Range(0, devices).Select(d => $"cuda:{d}={layers / devices + (d < layers % devices ? 1 : 0)}")), layers);
    }

    /// <summary>The cache bytes on the device that holds the most layers.</summary>
    private static long KvPerDevice(KvCache cache, DeviceMap map)
        => cache.SizeInBytes / map.Layers.Count * map.Layers.GroupBy(d => d.ToString()).Max(g => g.Count());

    private void ProfileStep(DecoderModel model, KvCache cache, Device device)
    {
        void Sync() { if (device.type == TorchSharp.DeviceType.CUDA) TorchSharp.torch.cuda.synchronize(); }
        double Time(Action action, int n = 30)
        {
            action(); Sync();
            var clock = System.Diagnostics.Stopwatch.StartNew();
            for (int i = 0; i < n; i++) action();
            Sync();
            return clock.Elapsed.TotalMilliseconds / n;
        }
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var ids = zeros([cache.BatchSize, 1], ScalarType.Int64, device);
        var x = randn([cache.BatchSize, 1, model.Config.HiddenSize], model.Dtype, device);
        using var rope = new RotaryEmbedding(model.Config.HeadDim, model.Config.RopeTheta);
        var positions = zeros([cache.BatchSize, 1], ScalarType.Int64, device);
        var (cos, sin) = rope.forward(positions, model.Dtype);
        var layer = model.Layers[0];
        using var fresh = model.CreateCache(cache.BatchSize, 2048);
        model.forward(zeros([cache.BatchSize, 512], ScalarType.Int64, device), fresh).Dispose();
        var (cachedKeys, cachedValues) = fresh.Layer(0);
        var query = randn([cache.BatchSize, model.Config.NumAttentionHeads, 1, model.Config.HeadDim], model.Dtype, device);
        var contiguousKeys = cachedKeys.contiguous();
        var contiguousValues = cachedValues.contiguous();
        var rows = new (string, double)[]
        {
            ("model.forward with cache (decode)", Time(() => { using var s = NewDisposeScope(); model.forward(ids, fresh); })),
            ("all layers by hand, with cache", Time(() => { using var s = NewDisposeScope(); var h = x; foreach (var l in model.Layers) h = l.forward(h, cos, sin, null, fresh); })),
            ("all layers by hand, no cache", Time(() => { using var s = NewDisposeScope(); var h = x; foreach (var l in model.Layers) h = l.forward(h, cos, sin, null, null); })),
            ("model.forward, no cache, position 512", Time(() => { using var s = NewDisposeScope(); model.forward(ids, null, positionIds: full([cache.BatchSize, 1], 512L, ScalarType.Int64, device)); })),
            ("model.forward, empty cache each time", Time(() => { using var s = NewDisposeScope(); using var c = model.CreateCache(cache.BatchSize, 8); model.forward(ids, c); })),
            ("attention 0 with cache", Time(() => { using var s = NewDisposeScope(); layer.Attention.forward(x, cos, sin, null, fresh); })),
            ("grouped SDPA on the cache view", Time(() => { using var s = NewDisposeScope(); MultiHeadAttention.GroupedScaledDotProduct(query, cachedKeys, cachedValues, null, true); })),
            ("grouped SDPA on contiguous K/V", Time(() => { using var s = NewDisposeScope(); MultiHeadAttention.GroupedScaledDotProduct(query, contiguousKeys, contiguousValues, null, true); })),
            ("SDPA folded on the cache view", Time(() => { using var s = NewDisposeScope(); nn.functional.scaled_dot_product_attention(query.reshape(cache.BatchSize, model.Config.NumKeyValueHeads, -1, model.Config.HeadDim), cachedKeys, cachedValues); })),
            ("model.forward, no cache (1 token)", Time(() => { using var s = NewDisposeScope(); model.forward(ids); })),
            ("layer 0, no cache", Time(() => { using var s = NewDisposeScope(); layer.forward(x, cos, sin, null, null); })),
            ("attention 0, no cache", Time(() => { using var s = NewDisposeScope(); layer.Attention.forward(x, cos, sin, null, null); })),
            ("rope tables", Time(() => { using var s = NewDisposeScope(); rope.forward(positions, model.Dtype); })),
            ("ids.min().item()", Time(() => { using var s = NewDisposeScope(); ids.min().item<long>(); })),
            ("x + x", Time(() => { using var s = NewDisposeScope(); var y = x + x; })),
        };
        var table = Tables.Create("one decode step, by part (ms, synchronised)").AddColumn(Tables.Left("part")).AddColumn(Tables.Right("ms"));
        foreach (var (name, ms) in rows) table.AddRow(name, ms.ToString("0.000", CultureInfo.InvariantCulture));
        console.Write(table);
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

        var table = Tables.Create($"Decode attention, 32 query heads × 128, batch {settings.Batch}, {Parsing.DtypeName(dtype)}, {device}, {get_num_threads()} threads, median of {settings.Iterations}")
            .AddColumn(Tables.Left("context")).AddColumn(Tables.Left("kv heads")).AddColumn(Tables.Right("in place ms"))
            .AddColumn(Tables.Right("GB/s")).AddColumn(Tables.Right("vs MHA"))
            .AddColumn(Tables.Right("K/V copied ms")).AddColumn(Tables.Right("copy / in place"));
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
                mhaMs ??= kv == heads ? inPlace : null;
                double gbPerSecond = 2.0 * k.numel() * k.element_size() / (inPlace / 1000) / 1e9;
                table.AddRow(ctx.ToString("N0", CultureInfo.InvariantCulture), kv.ToString(CultureInfo.InvariantCulture),
                    inPlace.ToString("0.000", CultureInfo.InvariantCulture), gbPerSecond.ToString("0.0", CultureInfo.InvariantCulture),
                    mhaMs is { } m ? (m / inPlace).ToString("0.00x", CultureInfo.InvariantCulture) : "-",
                    copied.ToString("0.000", CultureInfo.InvariantCulture), (copied / inPlace).ToString("0.0x", CultureInfo.InvariantCulture));
            }
        }
        console.Write(table);
        console.MarkupLine("[grey]Wall-clock medians on this machine now; for reportable figures use the BenchmarkDotNet suite (docs/benchmarks.md).[/]");
        return 0;
    }
}
