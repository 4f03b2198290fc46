using System.ComponentModel;
using Spectre.Console.Cli;

namespace GqaTransformer.Cli;

/// <summary>Options every command takes.</summary>
public class GqaSettings : CommandSettings
{
    /// <summary>Print stack traces of errors.</summary>
    [CommandOption("--verbose")]
    [Description("Print the stack trace of an error.")]
    public bool Verbose { get; init; }
}
