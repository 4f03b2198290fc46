using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using Spectre.Console;
using Spectre.Console.Cli;
using static TorchSharp.torch;

namespace GqaTransformer.Cli;

/// <summary>
/// <c>gqa demo</c>: the README's main job. No download, no arguments: prints the KV-cache memory of real 8B/70B configs,
/// then builds MHA, GQA and MQA versions of one small model, prefills a prompt into each one's KvCache and decodes with
/// it, in several rounds with the variants' order rotated, and prints the median decode tokens/s of each, warning when
/// the rounds disagree (a busy machine).
/// </summary>
public sealed class DemoCommand(IAnsiConsole console, ErrorConsole errors) : Command<DemoCommand.Settings>
{
    /// <summary>Options of <c>gqa demo</c>.</summary>
    public sealed class Settings : GqaSettings
    {
        /// <summary>Prompt length.</summary>
        [CommandOption("--context <N>")][Description("Prompt tokens prefilled before decoding. Default 2048.")][DefaultValue(2048)]
        public int Context { get; init; } = 2048;

        /// <summary>Decode steps.</summary>
        [CommandOption("--new-tokens <N>")][Description("Tokens decoded per variant and round. Default 32.")][DefaultValue(32)]
        public int NewTokens { get; init; } = 32;

        /// <summary>Rounds.</summary>
        [CommandOption("--rounds <N>")][Description("Rounds of all three variants, in rotated order; medians are shown. Default 3.")][DefaultValue(3)]
        public int Rounds { get; init; } = 3;

        /// <inheritdoc />
        public override ValidationResult Validate()
            => Context is < 1 or > 32768 ? ValidationResult.Error($"--context must be in [1, 32768], but was {Context}.")
             : NewTokens is < 2 or > 4096 ? ValidationResult.Error($"--new-tokens must be in [2, 4096], but was {NewTokens}.")
             : Rounds is < 1 or > 50 ? ValidationResult.Error($"--rounds must be in [1, 50], but was {Rounds}.")
             : ValidationResult.Success();
    }

    /// <summary>How far apart two rounds' GQA/MHA ratios may be (as a share of their median) before the demo warns.</summary>
    internal const double Disagreement = 0.25;

    private static readonly (string Name, int KvHeads)[] Variants = [("MHA", 16), ("GQA", 4), ("MQA", 1)];

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
        console.Write(new Rule($"Decoding with the KvCache: {settings.Context} + {settings.NewTokens} tokens, fp32, {get_num_threads()} threads").LeftJustified());
        // decode tokens/s of each variant in each round
        var perRound = Variants.Select(_ => new List<double>()).ToArray();
        long[] cacheBytes = new long[Variants.Length];
        var models = Variants.Select(v => { manual_seed(1); var m = new DecoderModel(SmallModel(v.KvHeads)); m.eval(); return m; }).ToArray();
        try
        {
            for (int round = 0; round < settings.Rounds; round++)
                for (int i = 0; i < Variants.Length; i++)
                {
                    int v = (i + round) % Variants.Length; // rotated, so no variant always runs first
                    cancellationToken.ThrowIfCancellationRequested();
                    errors.Console.MarkupLineInterpolated($"[grey]round {round + 1}/{settings.Rounds}: {Variants[v].Name}, {Parsing.KvHeads(Variants[v].KvHeads)}[/]");
                    var (bytes, decodeTps) = Run(models[v], settings, cancellationToken);
                    cacheBytes[v] = bytes;
                    perRound[v].Add(decodeTps);
                }
        }
        finally
        {
            foreach (var model in models) model.Dispose();
        }

        var table = Tables.Create().AddColumn(Tables.Left("variant")).AddColumn(Tables.Right("KV cache"))
            .AddColumn(Tables.Right("decode tok/s")).AddColumn(Tables.Right("vs MHA"));
        var ratios = Variants.Select((_, v) => perRound[v].Zip(perRound[0], (x, mha) => x / mha).ToArray()).ToArray();
        for (int v = 0; v < Variants.Length; v++)
            table.AddRow(
                $"{Variants[v].Name}, {Parsing.KvHeads(Variants[v].KvHeads)}", Parsing.Size(cacheBytes[v]),
                Timing.Median(perRound[v]).ToString("0.0", CultureInfo.InvariantCulture),
                Timing.Median(ratios[v]).ToString("0.00x", CultureInfo.InvariantCulture));
        console.Write(table);
        console.MarkupLineInterpolated($"[grey]Medians of {settings.Rounds} rounds; random weights (seeded), greedy. Decode reads the weights and the whole KV cache every step, so the smaller cache decodes faster, and more so as the context grows.[/]");
        var gqa = ratios[1];
        double spread = (gqa.Max() - gqa.Min()) / Timing.Median(gqa);
        if (settings.Rounds > 1 && spread > Disagreement)
            console.MarkupLineInterpolated(
                $"[yellow]warning:[/] the rounds disagree: GQA ran at {gqa.Min():0.00}x to {gqa.Max():0.00}x MHA. Something else is using this machine; rerun when it is idle, or with more --rounds.");
        return 0;
    }

    private void WriteMemoryTable()
    {
        int[] contexts = [4096, 32768, 131072];
        var table = Tables.Create("KV cache per sequence, bf16").AddColumn(Tables.Left("model")).AddColumn(Tables.Left("attention"));
        foreach (int c in contexts) table.AddColumn(Tables.Right($"{Parsing.Tokens(c)} tokens"));
        foreach (var (name, config) in new[]
        {
            ("Llama-2-7B", ModelPresets.Get("llama-2-7b")),
            ("Llama-3-8B", ModelPresets.Get("llama-3-8b")),
            ("Llama-3-8B as MQA", ModelPresets.Get("llama-3-8b") with { NumKeyValueHeads = 1 }),
            ("Llama-3-70B", ModelPresets.Get("llama-3-70b")),
            ("Llama-3-70B as MHA", ModelPresets.Get("llama-3-70b") with { NumKeyValueHeads = 64 }),
        })
        {
            string kind = config.NumKeyValueHeads == config.NumAttentionHeads ? "MHA" : config.NumKeyValueHeads == 1 ? "MQA" : "GQA";
            var row = new List<string> { name, $"{kind} {config.NumAttentionHeads}/{config.NumKeyValueHeads}" };
            row.AddRange(contexts.Select(c => Parsing.Size(KvCache.EstimateBytes(config, 1, c, ScalarType.BFloat16))));
            table.AddRow(row.ToArray());
        }
        console.Write(table);
        var llama3 = ModelPresets.Get("llama-3-8b");
        long gqaTokens = KvCache.MaxTokensForBudget(llama3, 1, 24L << 30, ScalarType.BFloat16);
        long mhaTokens = KvCache.MaxTokensForBudget(llama3 with { NumKeyValueHeads = llama3.NumAttentionHeads }, 1, 24L << 30, ScalarType.BFloat16);
        console.MarkupLineInterpolated($"[grey]In 24 GiB of cache, Llama-3-8B holds {gqaTokens:N0} tokens with its 8 KV heads; as MHA it would hold {mhaTokens:N0}.[/]");
    }

    private static (long CacheBytes, double DecodeTps) Run(DecoderModel model, Settings settings, CancellationToken cancellationToken)
    {
        using var scope = NewDisposeScope();
        var config = model.Config;
        var random = new Random(7);
        var prompt = Enumerable.Range(0, settings.Context).Select(_ => random.Next(config.VocabSize)).ToArray();
        using var session = new GenerationSession(model, 1, settings.Context + settings.NewTokens);

        var logits = session.Prefill([prompt]);
        var steps = new List<double>();
        for (int i = 0; i < settings.NewTokens; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            long next = logits.argmax(-1).item<long>();
            logits.Dispose();
            long start = Stopwatch.GetTimestamp();
            logits = session.DecodeStep([next]);
            steps.Add(Stopwatch.GetElapsedTime(start).TotalSeconds);
        }
        logits.Dispose();
        return (session.Cache.SizeInBytes, 1.0 / Timing.Median(steps));
    }
}
