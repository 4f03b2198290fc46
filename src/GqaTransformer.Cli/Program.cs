using System.Globalization;
using GqaTransformer.Cli;
using Spectre.Console;

// Options and output are read and written the same everywhere ("0.7", not "0,7"); ICU stays for Unicode normalization.
CultureInfo.DefaultThreadCurrentCulture = CultureInfo.DefaultThreadCurrentUICulture = CultureInfo.CurrentCulture = CultureInfo.CurrentUICulture = CultureInfo.InvariantCulture;
var errors = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
return CliApp.Run(args, AnsiConsole.Console, errors);
