using System.ComponentModel;
using System.Globalization;
using Microsoft.ML.Tokenizers;
using Spectre.Console;
using Spectre.Console.Cli;

namespace GqaTransformer.Cli;

/// <summary><c>gqa eval</c>: mean causal-LM loss and perplexity of a checkpoint on a text file; the last line is for scripts.</summary>
public sealed class EvalCommand(IAnsiConsole console, ErrorConsole errors) : Command<EvalCommand.Settings>
{
    /// <summary>Options of <c>gqa eval</c>.</summary>
    public sealed class Settings : GqaSettings
    {
        /// <summary>Checkpoint.</summary>
        [CommandOption("--model <DIR>")][Description("Checkpoint directory (config.json + safetensors).")]
        public string? Model { get; init; }

        /// <summary>Text.</summary>
        [CommandOption("--data <FILE>")][Description("A UTF-8 text file, or a folder of .txt files.")]
        public string? Data { get; init; }

        /// <summary>Tokenizer.</summary>
        [CommandOption("--tokenizer <FILE>")][Description("Tokenizer (as gqa generate); default: the model folder's tokenizer.model if any, else UTF-8 bytes.")]
        public string? Tokenizer { get; init; }

        /// <summary>Sequence length.</summary>
        [CommandOption("--seq <T>")][Description("Tokens per sequence. Default 256.")][DefaultValue(256)]
        public int Seq { get; init; } = 256;

        /// <summary>Token limit.</summary>
        [CommandOption("--max-tokens <N>")][Description("Read at most N tokens of the text. Default: all.")]
        public long? MaxTokens { get; init; }

        /// <summary>Batch.</summary>
        [CommandOption("--batch <B>")][Description("Sequences per forward. Default 8.")][DefaultValue(8)]
        public int Batch { get; init; } = 8;

        /// <summary>Device.</summary>
        [CommandOption("--device <DEVICE>")][Description("cpu (default) or cuda.")][DefaultValue("cpu")]
        public string Device { get; init; } = "cpu";

        /// <inheritdoc />
        public override ValidationResult Validate()
            => string.IsNullOrEmpty(Model) ? ValidationResult.Error("--model DIR is required.")
             : string.IsNullOrEmpty(Data) ? ValidationResult.Error("--data FILE is required.")
             : Seq < 2 ? ValidationResult.Error($"--seq must be at least 2, but was {Seq}.")
             : Batch < 1 ? ValidationResult.Error($"--batch must be positive, but was {Batch}.")
             : MaxTokens is < 2 ? ValidationResult.Error($"--max-tokens must be at least 2, but was {MaxTokens}.")
             : ValidationResult.Success();
    }

    /// <inheritdoc />
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        Parsing.ModelDirectory(settings.Model!);
        var device = Parsing.Device(settings.Device);
        string? tokenizerPath = settings.Tokenizer
            ?? (File.Exists(Path.Combine(settings.Model!, "tokenizer.model")) ? Path.Combine(settings.Model!, "tokenizer.model") : null);
        Tokenizer? tokenizer = tokenizerPath is null ? null : TextGeneration.LoadTokenizer(tokenizerPath);
        using var model = DecoderModel.FromPretrained(settings.Model!, TorchSharp.torch.ScalarType.Float32, device);
        IEnumerable<int> tokens = Parsing.Text(settings.Data!, model.Config, tokenizer);
        if (settings.MaxTokens is { } limit) tokens = tokens.Take((int)Math.Min(limit, int.MaxValue));
        int seq = Math.Min(settings.Seq, model.Config.MaxPositionEmbeddings);
        var result = Evaluation.Evaluate(model, TextTokens.Pack(tokens, seq), settings.Batch, cancellationToken);
        errors.Console.MarkupLineInterpolated($"[grey]{(tokenizer is null ? "UTF-8 bytes" : "tokenizer " + tokenizerPath)}, sequences of {seq}[/]");
        console.WritePlainLine(string.Create(CultureInfo.InvariantCulture, $"loss={result.Loss:0.######} perplexity={result.Perplexity:0.####} tokens={result.Tokens}"));
        return 0;
    }
}
