using System.ComponentModel;
using Spectre.Console;
using Spectre.Console.Cli;

namespace GqaTransformer.Cli;

/// <summary>
/// <c>gqa tokenize --model DIR [--no-special-tokens] -- TEXT</c>: the ids of TEXT as one JSON array on one line, for
/// scripts to check against transformers' tokenizer.
/// </summary>
public sealed class TokenizeCommand(IAnsiConsole console) : Command<TokenizeCommand.Settings>
{
    /// <summary>Options of <c>gqa tokenize</c>.</summary>
    public sealed class Settings : GqaSettings
    {
        /// <summary>Model directory or tokenizer file.</summary>
        [CommandOption("--model <DIR>")][Description("A model directory holding tokenizer.json (or tokenizer.model), or a tokenizer file.")]
        public string? Model { get; init; }

        /// <summary>Leave out the post-processor's tokens.</summary>
        [CommandOption("--no-special-tokens")][Description("Leave out what the tokenizer adds around the text (BOS, say); special tokens written in the text still count.")]
        public bool NoSpecialTokens { get; init; }

        /// <inheritdoc />
        public override ValidationResult Validate()
            => string.IsNullOrEmpty(Model) ? ValidationResult.Error("--model DIR is required.") : ValidationResult.Success();
    }

    /// <inheritdoc />
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        if (context.Remaining.Raw.Count == 0)
            throw new ArgumentException("Give the text after --, e.g. gqa tokenize --model DIR -- \"Hello, world\".");
        string text = string.Join(' ', context.Remaining.Raw);
        var tokenizer = TextGeneration.LoadTokenizer(settings.Model!);
        IReadOnlyList<int> ids = tokenizer is HfTokenizer hf ? hf.Encode(text, addSpecialTokens: !settings.NoSpecialTokens)
            : settings.NoSpecialTokens ? throw new ArgumentException("--no-special-tokens needs a tokenizer.json; this model's tokenizer decides its special tokens itself.")
            : tokenizer.EncodeToIds(text);
        console.WriteLine("[" + string.Join(",", ids) + "]");
        return 0;
    }
}
