using Spectre.Console;

namespace GqaTransformer.Cli;

/// <summary>
/// What scripts read (ids, rendered templates, generated text, key=value lines, error messages) goes straight to the
/// console's <see cref="TextWriter"/>: Spectre lays text out at the console's width, which is 80 columns through a pipe,
/// and would split an id or a path in two. Tables and notes for people still go through Spectre.
/// </summary>
internal static class PlainOutput
{
    /// <summary>Writes <paramref name="text"/> as is: no markup, no wrapping, no newline added.</summary>
    public static void WritePlain(this IAnsiConsole console, string text)
    {
        var writer = console.Profile.Out.Writer;
        writer.Write(text);
        writer.Flush();
    }

    /// <summary>Writes <paramref name="text"/> and a newline, unwrapped.</summary>
    public static void WritePlainLine(this IAnsiConsole console, string text = "") => console.WritePlain(text + Environment.NewLine);

    /// <summary>"error: " (red where the console has colours) and the message on one unwrapped line.</summary>
    public static void WriteError(this IAnsiConsole errors, string message) => Labelled(errors, "[red]error:[/] ", message);

    /// <summary>"warning: " (yellow where the console has colours) and the message on one unwrapped line.</summary>
    public static void WriteWarning(this IAnsiConsole errors, string message) => Labelled(errors, "[yellow]warning:[/] ", message);

    private static void Labelled(IAnsiConsole errors, string label, string message)
    {
        errors.Markup(label);            // short: Spectre colours it and cannot wrap it
        errors.WritePlainLine(message);
    }
}
