using System.ComponentModel;
using System.Text.Json;
using Spectre.Console;
using Spectre.Console.Cli;

namespace GqaTransformer.Cli;

/// <summary>
/// <c>gqa template --model DIR --messages FILE.json [--add-generation-prompt]</c>: the model's chat template rendered for
/// the messages, written to standard output exactly (no newline added), for scripts to compare with transformers'
/// <c>apply_chat_template</c>. A template that raises exits 1 with its message on standard error.
/// </summary>
public sealed class TemplateCommand(IAnsiConsole console, ErrorConsole errors) : Command<TemplateCommand.Settings>
{
    /// <summary>Options of <c>gqa template</c>.</summary>
    public sealed class Settings : GqaSettings
    {
        /// <summary>Model directory.</summary>
        [CommandOption("--model <DIR>")][Description("A model directory with chat_template.jinja or tokenizer_config.json.")]
        public string? Model { get; init; }

        /// <summary>Messages file.</summary>
        [CommandOption("--messages <FILE>")][Description("A JSON file: a list of {\"role\", \"content\"} objects, or {\"messages\": [[...]], \"tools\": [[...]]}.")]
        public string? Messages { get; init; }

        /// <summary>Generation prompt.</summary>
        [CommandOption("--add-generation-prompt")][Description("End with the prompt that starts the assistant's reply.")]
        public bool AddGenerationPrompt { get; init; }

        /// <inheritdoc />
        public override ValidationResult Validate()
            => string.IsNullOrEmpty(Model) ? ValidationResult.Error("--model DIR is required.")
             : string.IsNullOrEmpty(Messages) ? ValidationResult.Error("--messages FILE.json is required.")
             : ValidationResult.Success();
    }

    /// <inheritdoc />
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        Parsing.ModelDirectory(settings.Model!, "chat_template.jinja or tokenizer_config.json");
        var template = ChatTemplate.FromPretrained(settings.Model!);
        if (!File.Exists(settings.Messages)) throw new ArgumentException($"--messages: '{settings.Messages}' does not exist.");
        Dictionary<string, object?> variables;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(settings.Messages!), new JsonDocumentOptions { MaxDepth = 64 });
            variables = doc.RootElement.ValueKind == JsonValueKind.Array
                ? new Dictionary<string, object?> { ["messages"] = doc.RootElement.Clone() }
                : doc.RootElement.EnumerateObject().ToDictionary(p => p.Name, p => (object?)p.Value.Clone());
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"--messages: '{settings.Messages}' is not valid JSON: {e.Message}");
        }
        if (!variables.ContainsKey("messages")) throw new ArgumentException("--messages: the file holds no \"messages\" list.");
        variables["add_generation_prompt"] = settings.AddGenerationPrompt;
        if (template.BosToken is { } bos) variables.TryAdd("bos_token", bos);
        if (template.EosToken is { } eos) variables.TryAdd("eos_token", eos);
        string rendered;
        try
        {
            rendered = template.Render(variables);
        }
        catch (ChatTemplateException e)
        {
            errors.Console.WriteError(e.Message);
            return 1;
        }
        console.WritePlain(rendered);                                      // exactly: no newline added
        return 0;
    }

}
