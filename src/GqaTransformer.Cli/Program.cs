using GqaTransformer.Cli;
using Spectre.Console;

var errors = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
return CliApp.Run(args, AnsiConsole.Console, errors);
