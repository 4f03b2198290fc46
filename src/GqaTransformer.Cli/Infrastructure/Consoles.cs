using Spectre.Console;

namespace GqaTransformer.Cli;

/// <summary>
/// Where a command writes what is not its result: tables of timings, progress, warnings and errors. Standard error, so
/// that <c>gqa generate --ids 1,2 | next-step</c> gets the token ids alone on standard output.
/// </summary>
/// <param name="Console">The console behind standard error.</param>
public sealed record ErrorConsole(IAnsiConsole Console);

/// <summary>Where a command reads standard input from (the process's, or a test's).</summary>
/// <param name="Reader">The text of standard input.</param>
/// <param name="IsTerminal">Whether a person types it (nothing piped in), so that a command must not wait on it.</param>
public sealed record StandardInput(TextReader Reader, bool IsTerminal)
{
    /// <summary>The process's standard input.</summary>
    public static StandardInput Process => new(Console.In, !Console.IsInputRedirected);
}

/// <summary>Tables that fit an 80-column terminal: no box, two spaces between columns, cells never wrapped.</summary>
internal static class Tables
{
    public static Table Create(string? title = null)
    {
        var table = new Table().Border(TableBorder.Simple);
        if (title is not null) table.Title(title);
        return table;
    }

    public static TableColumn Left(string header) => new TableColumn(header).NoWrap().Padding(new Padding(0, 0, 1, 0));

    public static TableColumn Right(string header) => Left(header).RightAligned();
}
