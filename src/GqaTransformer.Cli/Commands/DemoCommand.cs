using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using Spectre.Console;
using Spectre.Console.Cli;
using static TorchSharp.torch;

namespace GqaTransformer.Cli;

/// <summary>
/// <c>gqa demo</c>: the README's main job. No download, no arguments: prints the KV-cache memory of real 7B/8B/70B
/// configs, then builds MHA, GQA and MQA versions of one small model, prefills a prompt into each one's KvCache and
/// decodes with it, and prints decode tokens/s for each.
/// </summary>
public sealed class DemoCommand(IAnsiConsole console) : Command<DemoCommand.Settings>
{
    /// <summary>Options of <c>gqa demo</c>.</summary>
    public sealed class Settings : GqaSettings
    {
        /// <summary>Prompt length.</summary>
        [CommandOption("--context <N>")][Description("Prompt tokens prefilled before decoding. Default 2048.")][DefaultValue(2048)]
        public int Context { get; init; } = 2048;

        /// <summary>Decode steps.</summary>
        [CommandOption("--new-tokens <N>")][Description("Tokens decoded per variant. Default 32.")][DefaultValue(32)]
        public int NewTokens { get; init; } = 32;

        /// <inheritdoc />
        public override ValidationResult Validate()
            => Context is < 1 or > 32768 ? ValidationResult.Error($"--context must be in [1, 32768], but was {Context}.")
             : NewTokens is < 2 or > 4096 ? ValidationResult.Error($"--new-tokens must be in [2, 4096], but was {NewTokens}.")
             : ValidationResult.Success();
    }

    /// <summary>The small model the demo runs: 2 layers, hidden 1024, 16 query heads of 64.</summary>
    internal static DecoderConfig SmallModel(int kvHeads) => new()
    {
        HiddenSize = 1024, NumAttentionHeads = 16, NumKeyValueHeads = kvHeads, NumHiddenLayers = 2,
        IntermediateSize = 1024, VocabSize = 4096, MaxPositionEmbeddings = 32768, RmsNormEps = 1e-5,
    };

    /// <inheritdoc />
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        console.Write(new Rule("[bold]GqaTransformer demo[/]: grouped-query attention shrinks the KV cache").LeftJustified());
        WriteMemoryTable();

        console.WriteLine();
        console.Write(new Rule($"Decoding with the KvCache: small model, {settings.Context} prompt tokens + {settings.NewTokens} new, fp32, {get_num_threads()} threads").LeftJustified());
        var results = new List<(string Name, int KvHeads, long CacheBytes, double PrefillTps, double DecodeTps, IReadOnlyList<long> Tokens)>();
        console.Status().Start("building and running MHA, GQA and MQA variants...", status =>
        {
            foreach (var (name, kv) in new[] { ("MHA", 16), ("GQA", 4), ("MQA", 1) })
            {
                cancellationToken.ThrowIfCancellationRequested();
                status.Status($"{name}: {kv} kv heads");
                results.Add(Run(name, kv, settings, cancellationToken));
            }
        });

        var table = new Table().AddColumn("variant").AddColumn(new TableColumn("KV cache").RightAligned())
            .AddColumn(new TableColumn("prefill tok/s").RightAligned()).AddColumn(new TableColumn("decode tok/s").RightAligned())
            .AddColumn(new TableColumn("decode vs MHA").RightAligned());
        double mha = results[0].DecodeTps;
        foreach (var r in results)
            table.AddRow(
                $"{r.Name} ({r.KvHeads} kv heads)", Parsing.Size(r.CacheBytes),
                r.PrefillTps.ToString("0", CultureInfo.InvariantCulture), r.DecodeTps.ToString("0.0", CultureInfo.InvariantCulture),
                (r.DecodeTps / mha).ToString("0.00x", CultureInfo.InvariantCulture));
        console.Write(table);
        console.MarkupLine("[grey]Random weights (seeded), greedy decoding. Decode is bound by memory traffic: weights plus the KV cache each step; " +
                           "the cache share grows with context, and so does what GQA saves. Speeds are of this machine, now; see docs/benchmarks.md for the measured series.[/]");
        return 0;
    }

    private void WriteMemoryTable()
    {
        int[] contexts = [4096, 32768, 131072];
        var table = new Table().Title("KV cache per sequence, bf16").AddColumn("model").AddColumn("attention");
        foreach (int c in contexts) table.AddColumn(new TableColumn($"{c / 1024}k tokens").RightAligned());
        foreach (var (name, config) in new[]
        {
            ("Llama-2-7B", ModelPresets.Get("llama-2-7b")),
            ("Llama-3-8B", ModelPresets.Get("llama-3-8b")),
            ("Llama-3-8B as MQA", ModelPresets.Get("llama-3-8b") with { NumKeyValueHeads = 1 }),
            ("Llama-2-70B", ModelPresets.Get("llama-2-70b")),
            ("Llama-2-70B as MHA", ModelPresets.Get("llama-2-70b") with { NumKeyValueHeads = 64 }),
        })
        {
            string kind = config.NumKeyValueHeads == config.NumAttentionHeads ? "MHA" : config.NumKeyValueHeads == 1 ? "MQA" : "GQA";
            var row = new List<string> { name, $"{kind} {config.NumAttentionHeads}/{config.NumKeyValueHeads}" };
            row.AddRange(contexts.Select(c => Parsing.Size(KvCache.EstimateBytes(config, 1, c, ScalarType.BFloat16))));
            table.AddRow(row.ToArray());
        }
        console.Write(table);
    }

    private static (string, int, long, double, double, IReadOnlyList<long>) Run(string name, int kvHeads, Settings settings, CancellationToken cancellationToken)
    {
        using var scope = NewDisposeScope();
        var config = SmallModel(kvHeads);
        manual_seed(1);
        using var model = new DecoderModel(config);
        model.eval();
        var random = new Random(7);
        var prompt = Enumerable.Range(0, settings.Context).Select(_ => random.Next(config.VocabSize)).ToArray();
        using var session = new GenerationSession(model, 1, settings.Context + settings.NewTokens);

        var clock = Stopwatch.StartNew();
        var logits = session.Prefill([prompt]);
        double prefillSeconds = clock.Elapsed.TotalSeconds;
        var tokens = new List<long>();
        var steps = new List<double>();
        for (int i = 0; i < settings.NewTokens; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            long next = logits.argmax(-1).item<long>();
            logits.Dispose();
            tokens.Add(next);
            long start = Stopwatch.GetTimestamp();
            logits = session.DecodeStep([next]);
            steps.Add(Stopwatch.GetElapsedTime(start).TotalSeconds);
        }
        logits.Dispose();
        return (name, kvHeads, session.Cache.SizeInBytes, settings.Context / prefillSeconds, 1.0 / Timing.Median(steps), tokens);
    }
}
