using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using Spectre.Console;
using Spectre.Console.Cli;

namespace GqaTransformer.Cli;

/// <summary><c>gqa convert</c>: a checkpoint with fewer key/value heads (MHA → GQA), by mean pooling, first head or at random.</summary>
public sealed class ConvertCommand(IAnsiConsole console) : Command<ConvertCommand.Settings>
{
    /// <summary>Options of <c>gqa convert</c>.</summary>
    public sealed class Settings : GqaSettings
    {
        /// <summary>Source checkpoint.</summary>
        [CommandOption("--model <DIR>")][Description("Checkpoint directory to convert (config.json + safetensors).")]
        public string? Model { get; init; }

        /// <summary>Key/value heads of the result.</summary>
        [CommandOption("--kv-heads <N>")][Description("Key/value heads of the result; divides the model's.")]
        public int? KvHeads { get; init; }

        /// <summary>Output directory.</summary>
        [CommandOption("--out <DIR>")][Description("Directory to write the converted checkpoint to.")]
        public string? Out { get; init; }

        /// <summary>Pooling.</summary>
        [CommandOption("--method <mean|first|random>")][Description("How each new head is made from its group: mean (default), first or random.")][DefaultValue("mean")]
        public string Method { get; init; } = "mean";

        /// <summary>Seed.</summary>
        [CommandOption("--seed <N>")][Description("Seed for --method random. Default 0.")][DefaultValue(0L)]
        public long Seed { get; init; }

        /// <inheritdoc />
        public override ValidationResult Validate()
            => string.IsNullOrEmpty(Model) ? ValidationResult.Error("--model DIR is required.")
             : string.IsNullOrEmpty(Out) ? ValidationResult.Error("--out DIR is required.")
             : KvHeads is null ? ValidationResult.Error("--kv-heads N is required.")
             : Method is not ("mean" or "first" or "random") ? ValidationResult.Error($"--method must be mean, first or random, but was '{Method}'.")
             : ValidationResult.Success();
    }

    /// <inheritdoc />
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var init = settings.Method switch { "first" => KvHeadInit.First, "random" => KvHeadInit.Random, _ => KvHeadInit.Mean };
        var clock = Stopwatch.StartNew();
        DecoderConfig config;
        try
        {
            config = GqaConversion.ConvertCheckpoint(Parsing.ModelDirectory(settings.Model!), settings.Out!, settings.KvHeads!.Value, init, settings.Seed);
        }
        catch (ArgumentOutOfRangeException e) when (e.ParamName == "numKvHeads")
        {
            throw new ArgumentException(Parsing.Message(e, new Dictionary<string, string> { ["numKvHeads"] = "--kv-heads" }));
        }
        console.WritePlainLine(string.Create(CultureInfo.InvariantCulture,
            $"wrote {settings.Out}: {config.NumAttentionHeads} query heads over {Parsing.KvHeads(config.NumKeyValueHeads)} ({settings.Method}), in {clock.Elapsed.TotalSeconds:0.0} s"));
        return 0;
    }
}
