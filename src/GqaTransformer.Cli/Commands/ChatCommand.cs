using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.AI;
using Spectre.Console;
using Spectre.Console.Cli;

namespace GqaTransformer.Cli;

/// <summary>
/// <c>gqa chat --model DIR</c>: a conversation on standard input and output through <see cref="GqaChatClient"/>. Each
/// line is a user turn; the reply streams to standard output, its speed to standard error. <c>/system TEXT</c> sets the
/// system message and starts over, <c>/reset</c> starts over, <c>/exit</c> (or the end of input) ends.
/// </summary>
public sealed class ChatCommand(IAnsiConsole console, ErrorConsole errors, StandardInput input) : Command<ChatCommand.Settings>
{
    /// <summary>Options of <c>gqa chat</c>.</summary>
    public sealed class Settings : GqaSettings
    {
        /// <summary>Model directory.</summary>
        [CommandOption("--model <DIR>")][Description("A model directory: config.json, safetensors, tokenizer.json and a chat template.")]
        public string? Model { get; init; }

        /// <summary>Most new tokens per reply.</summary>
        [CommandOption("--max-new|--max-new-tokens <N>")][Description("Most tokens per reply. Default 256.")][DefaultValue(256)]
        public int MaxNew { get; init; } = 256;

        /// <summary>Temperature.</summary>
        [CommandOption("--temperature <T>")][Description("Default: the model's generation_config.json (greedy without one).")]
        public float? Temperature { get; init; }

        /// <summary>Top-p.</summary>
        [CommandOption("--top-p <P>")][Description("Nucleus sampling mass. Default: the model's.")]
        public float? TopP { get; init; }

        /// <summary>Seed.</summary>
        [CommandOption("--seed <N>")][Description("Seed for reproducible sampling.")]
        public long? Seed { get; init; }

        /// <summary>Device.</summary>
        [CommandOption("--device <DEVICE>")][Description("cpu (default) or cuda.")][DefaultValue("cpu")]
        public string Device { get; init; } = "cpu";

        /// <summary>Element type.</summary>
        [CommandOption("--dtype <DTYPE>")][Description("fp32 (default), bf16 or fp16.")][DefaultValue("fp32")]
        public string Dtype { get; init; } = "fp32";

        /// <inheritdoc />
        public override ValidationResult Validate()
            => string.IsNullOrEmpty(Model) ? ValidationResult.Error("--model DIR is required.")
             : MaxNew < 1 ? ValidationResult.Error($"--max-new must be positive, but was {MaxNew}.")
             : ValidationResult.Success();
    }

    /// <inheritdoc />
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        Parsing.ModelDirectory(settings.Model!, "config.json, *.safetensors, tokenizer.json and a chat template");
        using var client = GqaChatClient.FromPretrained(settings.Model!, Parsing.Dtype(settings.Dtype), Parsing.Device(settings.Device));
        var options = new ChatOptions { MaxOutputTokens = settings.MaxNew, Temperature = settings.Temperature, TopP = settings.TopP, Seed = settings.Seed };
        var history = new List<ChatMessage>();
        string? system = null;
        var output = console.Profile.Out.Writer;
        errors.Console.MarkupLine("[grey]One line per turn; /system TEXT, /reset, /exit.[/]");
        while (input.Reader.ReadLine() is { } line)
        {
            line = line.Trim();
            if (line.Length == 0) continue;
            if (line == "/exit") break;
            if (line == "/reset") { history.Clear(); errors.Console.MarkupLine("[grey](reset)[/]"); continue; }
            if (line.StartsWith("/system ", StringComparison.Ordinal)) { system = line[8..].Trim(); history.Clear(); errors.Console.MarkupLine("[grey](system set; reset)[/]"); continue; }
            if (line.StartsWith('/')) { errors.Console.MarkupLineInterpolated($"[yellow]Unknown command {line.Split(' ')[0]}; use /system TEXT, /reset or /exit.[/]"); continue; }
            history.Add(new ChatMessage(ChatRole.User, line));
            var messages = system is null ? history : [new ChatMessage(ChatRole.System, system), .. history];
            var reply = new System.Text.StringBuilder();
            UsageDetails? usage = null;
            var clock = Stopwatch.StartNew();
            foreach (var update in Stream(client, messages, options, cancellationToken))
            {
                output.Write(update.Text);
                output.Flush();
                reply.Append(update.Text);
                usage = update.Contents.OfType<UsageContent>().FirstOrDefault()?.Details ?? usage;
            }
            output.WriteLine();
            output.Flush();
            history.Add(new ChatMessage(ChatRole.Assistant, reply.ToString()));
            long generated = usage?.OutputTokenCount ?? 0, cached = usage?.AdditionalCounts?.GetValueOrDefault(GqaChatClient.CachedInputTokensKey) ?? 0;
            errors.Console.MarkupLine(string.Create(CultureInfo.InvariantCulture,
                $"[grey]{generated} tokens, {generated / Math.Max(clock.Elapsed.TotalSeconds, 1e-9):0.0} tok/s; prompt {usage?.InputTokenCount} tokens, {cached} from the cache[/]"));
        }
        return 0;
    }

    private static IEnumerable<ChatResponseUpdate> Stream(GqaChatClient client, List<ChatMessage> messages, ChatOptions options, CancellationToken cancellationToken)
    {
        var updates = client.GetStreamingResponseAsync(messages, options, cancellationToken).GetAsyncEnumerator(cancellationToken);
        try
        {
            while (updates.MoveNextAsync().AsTask().GetAwaiter().GetResult()) yield return updates.Current;
        }
        finally
        {
            updates.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
    }
}
