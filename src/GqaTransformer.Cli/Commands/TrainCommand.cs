using System.ComponentModel;
using System.Globalization;
using Microsoft.ML.Tokenizers;
using Spectre.Console;
using Spectre.Console.Cli;
using static TorchSharp.torch;

namespace GqaTransformer.Cli;

/// <summary>Options shared by <c>gqa train</c> and <c>gqa uptrain</c>.</summary>
public class TrainingSettings : GqaSettings
{
    /// <summary>Text.</summary>
    [CommandOption("--data <FILE>")][Description("A UTF-8 text file, or a folder of .txt files; every 20th sequence is held out.")]
    public string? Data { get; init; }

    /// <summary>Output.</summary>
    [CommandOption("--out <DIR>")][Description("Where to write the trained checkpoint (HF format, plus the optimizer's state).")]
    public string? Out { get; init; }

    /// <summary>Steps.</summary>
    [CommandOption("--steps <N>")][Description("Optimizer steps. Default 1000.")][DefaultValue(1000)]
    public int Steps { get; init; } = 1000;

    /// <summary>Batch.</summary>
    [CommandOption("--batch <B>")][Description("Sequences per step. Default 16.")][DefaultValue(16)]
    public int Batch { get; init; } = 16;

    /// <summary>Sequence length.</summary>
    [CommandOption("--seq <T>")][Description("Tokens per sequence. Default 256.")][DefaultValue(256)]
    public int Seq { get; init; } = 256;

    /// <summary>Learning rate.</summary>
    [CommandOption("--lr <X>")][Description("Peak learning rate. Default 1e-3.")][DefaultValue(1e-3)]
    public double Lr { get; init; } = 1e-3;

    /// <summary>Warm-up.</summary>
    [CommandOption("--warmup <N>")][Description("Warm-up steps. Default a tenth of --steps.")]
    public int? Warmup { get; init; }

    /// <summary>Device.</summary>
    [CommandOption("--device <DEVICE>")][Description("cpu (default) or cuda.")][DefaultValue("cpu")]
    public string Device { get; init; } = "cpu";

    /// <summary>Seed.</summary>
    [CommandOption("--seed <S>")][Description("Seed of the initial weights and of libtorch's generator. Default 0.")][DefaultValue(0L)]
    public long Seed { get; init; }

    /// <summary>Compute precision.</summary>
    [CommandOption("--precision <P>")][Description("fp32 (default), or bf16: matmuls in bfloat16 from float32 weights (CUDA autocast; needs --device cuda and the native shim).")][DefaultValue("fp32")]
    public string Precision { get; init; } = "fp32";

    /// <summary>Progress interval.</summary>
    [CommandOption("--log-every <N>")][Description("Print progress every N steps. Default 10.")][DefaultValue(10)]
    public int LogEvery { get; init; } = 10;

    /// <inheritdoc />
    public override ValidationResult Validate()
        => string.IsNullOrEmpty(Data) ? ValidationResult.Error("--data FILE is required.")
         : string.IsNullOrEmpty(Out) ? ValidationResult.Error("--out DIR is required.")
         : Seq < 2 ? ValidationResult.Error($"--seq must be at least 2, but was {Seq}.")
         : LogEvery < 1 ? ValidationResult.Error($"--log-every must be positive, but was {LogEvery}.")
         : Precision is not ("fp32" or "bf16") ? ValidationResult.Error($"--precision must be fp32 or bf16, but was '{Precision}'.")
         : Precision == "bf16" && !Device.StartsWith("cuda", StringComparison.Ordinal) ? ValidationResult.Error($"--precision bf16 needs --device cuda, but the device is '{Device}'.")
         : ValidationResult.Success();

    internal TrainingOptions Options()
    {
        var options = new TrainingOptions
        {
            Steps = Steps, BatchSize = Batch, LearningRate = Lr, MinLearningRate = Lr / 10, WarmupSteps = Warmup ?? Steps / 10,
            AutocastDtype = Precision == "bf16" ? ScalarType.BFloat16 : null,
        };
        try
        {
            return options.Validate();
        }
        catch (ArgumentOutOfRangeException e)
        {
            throw new ArgumentException(Parsing.Message(e, new Dictionary<string, string>
            {
                [nameof(TrainingOptions.Steps)] = "--steps", [nameof(TrainingOptions.BatchSize)] = "--batch",
                [nameof(TrainingOptions.LearningRate)] = "--lr", [nameof(TrainingOptions.WarmupSteps)] = "--warmup",
            }));
        }
    }
}

/// <summary>The loop of <c>gqa train</c> and <c>gqa uptrain</c>: train, save, and report the held-out loss.</summary>
internal static class TrainingLoop
{
    public static int Run(DecoderModel model, TrainingSettings settings, Tokenizer? tokenizer, IAnsiConsole console, IAnsiConsole errors, CancellationToken cancellationToken)
    {
        var options = settings.Options();
        int seq = Math.Min(settings.Seq, model.Config.MaxPositionEmbeddings);
        IEnumerable<long[]> Sequences(bool heldOut) => TextTokens.Pack(Parsing.Text(settings.Data!, model.Config, tokenizer), seq)
            .Where((_, i) => (i % 20 == 19) == heldOut);
        if (!Sequences(false).Skip(options.BatchSize - 1).Any())
            throw new ArgumentException($"--data holds fewer than --batch ({options.BatchSize}) training sequences of {seq} tokens.");
        IEnumerable<long[]> Epochs() { while (true) foreach (var s in Sequences(false)) yield return s; }

        using var trainer = new Trainer(model, options);
        var progress = new Progress(p =>
        {
            if (p.Step % settings.LogEvery == 0 || p.Step == options.Steps)
                errors.MarkupLineInterpolated(CultureInfo.InvariantCulture,
                    $"step {p.Step}/{options.Steps}  loss {p.Loss:0.0000}  lr {p.LearningRate:0.###e+0}  grad {p.GradientNorm:0.00}  {p.TokensPerSecond:0} tok/s");
        });
        trainer.Train(Epochs(), progress, cancellationToken);
        trainer.Save(settings.Out!);
        model.eval();
        var result = Evaluation.Evaluate(model, Sequences(true), 8, cancellationToken);
        console.WritePlainLine(string.Create(CultureInfo.InvariantCulture, $"loss={result.Loss:0.######} perplexity={result.Perplexity:0.####} tokens={result.Tokens}"));
        return 0;
    }

    private sealed class Progress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }
}

/// <summary><c>gqa train</c>: trains a model from scratch on a text file, from a config or a preset.</summary>
public sealed class TrainCommand(IAnsiConsole console, ErrorConsole errors) : Command<TrainCommand.Settings>
{
    /// <summary>Options of <c>gqa train</c>.</summary>
    public sealed class Settings : TrainingSettings
    {
        /// <summary>Config.</summary>
        [CommandOption("--config <FILE>")][Description("A HuggingFace config.json (or a directory holding one) for the new model.")]
        public string? Config { get; init; }

        /// <summary>Preset.</summary>
        [CommandOption("--preset <NAME>")][Description("A preset shape instead of --config (see gqa kv-memory --help).")]
        public string? Preset { get; init; }

        /// <inheritdoc />
        public override ValidationResult Validate()
            => (Config is null) == (Preset is null) ? ValidationResult.Error("Give exactly one of --config FILE or --preset NAME.") : base.Validate();
    }

    /// <inheritdoc />
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        string? file = settings.Config is { } path && Directory.Exists(path) ? Path.Combine(path, "config.json") : settings.Config;
        var config = file is not null ? DecoderConfig.FromFile(file) : ModelPresets.Get(settings.Preset!);
        var device = Parsing.Device(settings.Device);
        manual_seed(settings.Seed);
        using var model = new DecoderModel(config, ScalarType.Float32, device);
        errors.Console.MarkupLineInterpolated($"[grey]{model.parameters().Sum(p => p.numel()) / 1e6:0.0}M parameters, {config.NumAttentionHeads} query heads over {Parsing.KvHeads(config.NumKeyValueHeads)}, UTF-8 bytes[/]");
        return TrainingLoop.Run(model, settings, null, console, errors.Console, cancellationToken);
    }
}

/// <summary><c>gqa uptrain</c>: continues training a checkpoint (a converted GQA model, say) on a text file.</summary>
public sealed class UptrainCommand(IAnsiConsole console, ErrorConsole errors) : Command<UptrainCommand.Settings>
{
    /// <summary>Options of <c>gqa uptrain</c>.</summary>
    public sealed class Settings : TrainingSettings
    {
        /// <summary>Checkpoint.</summary>
        [CommandOption("--model <DIR>")][Description("Checkpoint directory to start from.")]
        public string? Model { get; init; }

        /// <inheritdoc />
        public override ValidationResult Validate()
            => string.IsNullOrEmpty(Model) ? ValidationResult.Error("--model DIR is required.") : base.Validate();
    }

    /// <inheritdoc />
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var device = Parsing.Device(settings.Device);
        manual_seed(settings.Seed);
        using var model = DecoderModel.FromPretrained(Parsing.ModelDirectory(settings.Model!), ScalarType.Float32, device);
        string tokenizerPath = Path.Combine(settings.Model!, "tokenizer.model");
        var tokenizer = File.Exists(tokenizerPath) ? TextGeneration.LoadTokenizer(tokenizerPath) : null;
        return TrainingLoop.Run(model, settings, tokenizer, console, errors.Console, cancellationToken);
    }
}
