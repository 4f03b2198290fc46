using System.ComponentModel;
using Spectre.Console;
using Spectre.Console.Cli;
using static TorchSharp.torch;

namespace GqaTransformer.Cli;

/// <summary><c>gqa kv-memory</c>: the KV-cache size table for a config and its MHA/GQA/MQA variants.</summary>
public sealed class KvMemoryCommand(IAnsiConsole console) : Command<KvMemoryCommand.Settings>
{
    /// <summary>Options of <c>gqa kv-memory</c>.</summary>
    public sealed class Settings : GqaSettings
    {
        /// <summary>A config.json file.</summary>
        [CommandOption("--config <FILE>")][Description("A HuggingFace config.json, or a checkpoint directory holding one.")]
        public string? Config { get; init; }

        /// <summary>A preset name.</summary>
        [CommandOption("--preset <NAME>")][Description("A known model, e.g. llama-3.2-3b, qwen3-8b, gemma-3-4b, phi-4-mini, smollm3-3b; a name it does not know lists them all.")]
        public string? Preset { get; init; }

        /// <summary>Batch size.</summary>
        [CommandOption("--batch <N>")][Description("Sequences decoded together. Default 1.")][DefaultValue(1)]
        public int Batch { get; init; } = 1;

        /// <summary>Context lengths.</summary>
        [CommandOption("--context <LIST>")][Description("Comma-separated context lengths (4096 or 4k). Default 1k,4k,32k,128k.")][DefaultValue("1k,4k,32k,128k")]
        public string Context { get; init; } = "1k,4k,32k,128k";

        /// <summary>Element type.</summary>
        [CommandOption("--dtype <DTYPE>")][Description("fp32, bf16 or fp16. Default bf16.")][DefaultValue("bf16")]
        public string Dtype { get; init; } = "bf16";

        /// <summary>Memory budget.</summary>
        [CommandOption("--budget <SIZE>")][Description("Memory for the cache, e.g. 24GiB: prints the longest context that fits.")]
        public string? Budget { get; init; }

        /// <inheritdoc />
        public override ValidationResult Validate()
        {
            if ((Config is null) == (Preset is null)) return ValidationResult.Error("Give exactly one of --config FILE or --preset NAME.");
            if (Batch <= 0) return ValidationResult.Error($"--batch must be positive, but was {Batch}.");
            return ValidationResult.Success();
        }
    }

    /// <inheritdoc />
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        string? file = settings.Config is { } path && Directory.Exists(path) ? Path.Combine(path, "config.json") : settings.Config;
        var config = file is not null ? DecoderConfig.FromFile(file) : ModelPresets.Get(settings.Preset!);
        string name = settings.Preset ?? Path.GetFileName(Path.GetDirectoryName(Path.GetFullPath(file!))) ?? file!;
        var contexts = Parsing.IntList(settings.Context, "--context");
        var dtype = Parsing.Dtype(settings.Dtype);
        long? budget = settings.Budget is null ? null : Parsing.Bytes(settings.Budget);

        var variants = Variants(config);
        if (budget is { } b)
        {
            long smallest = variants.Min(v => KvCache.EstimateBytes(v.Config, settings.Batch, 1, dtype));
            if (b < smallest)
                throw new ArgumentException($"A budget of {Parsing.Size(b)} holds less than one token of KV cache ({Parsing.Size(smallest)} per token even for the smallest variant).");
        }

        var table = Tables.Create($"KV cache of {name}: {config.NumHiddenLayers} layers, {config.NumAttentionHeads} query heads × {config.HeadDim}, batch {settings.Batch}, {Parsing.DtypeName(dtype)}");
        table.AddColumn(Tables.Left("attention")).AddColumn(Tables.Right("per token"));
        foreach (int c in contexts) table.AddColumn(Tables.Right(Parsing.Tokens(c)));
        table.AddColumn(Tables.Right("vs MHA"));
        if (budget is not null) table.AddColumn(Tables.Right($"fits {settings.Budget}"));
        long mhaPerToken = KvCache.EstimateBytes(config with { NumKeyValueHeads = config.NumAttentionHeads }, settings.Batch, 1, dtype);
        foreach (var (label, variant) in variants)
        {
            long perToken = KvCache.EstimateBytes(variant, settings.Batch, 1, dtype);
            var row = new List<string> { label, Parsing.Size(perToken) };
            row.AddRange(contexts.Select(c => Parsing.Size(KvCache.EstimateBytes(variant, settings.Batch, c, dtype))));
            row.Add($"1/{mhaPerToken / perToken}");
            if (budget is { } limit)
            {
                long tokens = KvCache.MaxTokensForBudget(variant, settings.Batch, limit, dtype);
                row.Add(tokens == long.MaxValue ? $"any (window {variant.SlidingWindow})" : $"{tokens:N0}");
            }
            table.AddRow(row.Select(Markup.Escape).ToArray());
        }
        console.Write(table);
        console.MarkupLine("[grey]* this model. Columns are tokens of context; the cache is 2 · batch · kv heads · head_dim · bytes · Σ over layers of the " +
                           "tokens each keeps (a sliding layer at most its window), weights and activations not included.[/]");
        if (Enumerable.Range(0, config.NumHiddenLayers).Count(config.IsSlidingLayer) is var sliding and > 0)
            console.MarkupLine($"[grey]{sliding} of {config.NumHiddenLayers} layers slide over a window of {config.SlidingWindow:N0} tokens.[/]");
        return 0;
    }

    /// <summary>The config itself and its MHA, GQA-8 and MQA variants, without repeats.</summary>
    internal static List<(string Label, DecoderConfig Config)> Variants(DecoderConfig config)
    {
        var kvCounts = new SortedSet<int>(Comparer<int>.Create((a, b) => b.CompareTo(a))) { config.NumAttentionHeads, config.NumKeyValueHeads, 1 };
        if (config.NumAttentionHeads % 8 == 0 && config.NumAttentionHeads > 8) kvCounts.Add(8);
        return kvCounts.Select(kv =>
        {
            string kind = kv == config.NumAttentionHeads ? "MHA" : kv == 1 ? "MQA" : "GQA";
            string mark = kv == config.NumKeyValueHeads ? " *" : "";
            return ($"{kind} {config.NumAttentionHeads}/{kv}{mark}", config with { NumKeyValueHeads = kv });
        }).ToList();
    }
}
