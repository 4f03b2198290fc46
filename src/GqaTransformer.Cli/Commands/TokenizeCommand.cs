using System.ComponentModel;
using Spectre.Console;
using Spectre.Console.Cli;

namespace GqaTransformer.Cli;

/// <summary>
/// <c>gqa tokenize --model DIR [--no-special-tokens] [-- TEXT]</c>: the ids of TEXT (or of standard input, without its
/// final line break) as one JSON array on one line, for scripts to check against transformers' tokenizer.
/// </summary>
public sealed class TokenizeCommand(IAnsiConsole console, StandardInput input) : Command<TokenizeCommand.Settings>
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
        string text = Text(context.Arguments);
        var tokenizer = TextGeneration.LoadTokenizer(settings.Model!);
        IReadOnlyList<int> ids = tokenizer is HfTokenizer hf ? hf.Encode(text, addSpecialTokens: !settings.NoSpecialTokens)
            : settings.NoSpecialTokens ? throw new ArgumentException("--no-special-tokens needs a tokenizer.json; this model's tokenizer decides its special tokens itself.")
            : tokenizer.EncodeToIds(text);
        console.WritePlainLine("[" + string.Join(",", ids) + "]");
        return 0;
    }

    /// <summary>
    /// The words after <c>--</c> joined by spaces, else standard input without the line break that <c>echo</c> ends it
    /// with; a terminal is never waited on. Read from the arguments as given: Spectre's remaining ones drop <c>""</c>,
    /// which is the empty text.
    /// </summary>
    private string Text(IReadOnlyList<string> arguments)
    {
        int dashes = arguments.ToList().IndexOf("--");
        if (dashes >= 0 && dashes < arguments.Count - 1) return string.Join(' ', arguments.Skip(dashes + 1));
        if (input.IsTerminal)
            throw new ArgumentException("Give the text after -- (e.g. gqa tokenize --model DIR -- \"Hello, world\") or on standard input.");
        string text = input.Reader.ReadToEnd();
        return text.EndsWith("\r\n", StringComparison.Ordinal) ? text[..^2] : text.EndsWith('\n') ? text[..^1] : text;
    }
}
