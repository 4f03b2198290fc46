using Spectre.Console;
using Spectre.Console.Cli;

namespace GqaTransformer.Cli;

/// <summary>Builds the <c>gqa</c> command tree. Every command is registered here, one line each.</summary>
public static class CliApp
{
    /// <summary>Exit code of a command whose input was bad (unknown option, missing file, malformed config, ...).</summary>
    public const int BadInput = 2;

    private sealed record Entry(string Name, Type Settings, Action<IConfigurator> Add);

    private static readonly Entry[] Commands =
    [
        new("demo", typeof(DemoCommand.Settings), c => c.AddCommand<DemoCommand>("demo")
            .WithDescription("Show what GQA buys: the KV-cache memory of real models, then decode speed of MHA, GQA and MQA variants of a small model, measured here.")),
        new("kv-memory", typeof(KvMemoryCommand.Settings), c => c.AddCommand<KvMemoryCommand>("kv-memory")
            .WithDescription("KV-cache bytes per context length for a config or preset and its MHA/GQA/MQA variants.")),
        new("generate", typeof(GenerateCommand.Settings), c => c.AddCommand<GenerateCommand>("generate")
            .WithDescription("Generate from a checkpoint directory: the continuation on standard output, speed on standard error.")),
        new("verify", typeof(VerifyCommand.Settings), c => c.AddCommand<VerifyCommand>("verify")
            .WithDescription("Compare a checkpoint's logits and greedy tokens with a reference computed by transformers.")),
        new("convert", typeof(ConvertCommand.Settings), c => c.AddCommand<ConvertCommand>("convert")
            .WithDescription("Write a checkpoint with fewer key/value heads (MHA to GQA): each new head the mean, the first or a random head of its group.")),
        new("eval", typeof(EvalCommand.Settings), c => c.AddCommand<EvalCommand>("eval")
            .WithDescription("Mean causal-LM loss and perplexity of a checkpoint on a text file; the last line reads loss=<x> perplexity=<y> tokens=<n>.")),
        new("train", typeof(TrainCommand.Settings), c => c.AddCommand<TrainCommand>("train")
            .WithDescription("Train a model from a config or preset on a text file (UTF-8 bytes); ends with the held-out loss=<x> perplexity=<y> tokens=<n>.")),
        new("uptrain", typeof(UptrainCommand.Settings), c => c.AddCommand<UptrainCommand>("uptrain")
            .WithDescription("Continue training a checkpoint (a converted GQA model, say) on a text file; ends with the held-out loss.")),
        new("tokenize", typeof(TokenizeCommand.Settings), c => c.AddCommand<TokenizeCommand>("tokenize")
            .WithDescription("The ids of the text after -- (or of standard input) as one JSON array (tokenizer.json, tokenizer.model or .tiktoken).")),
        new("template", typeof(TemplateCommand.Settings), c => c.AddCommand<TemplateCommand>("template")
            .WithDescription("Render a model's chat template for a JSON list of messages, exactly, to standard output.")),
        new("chat", typeof(ChatCommand.Settings), c => c.AddCommand<ChatCommand>("chat")
            .WithDescription("Chat with a model directory (tokenizer.json and a chat template): replies streamed, /system TEXT, /reset, /exit.")),
        new("soak", typeof(SoakCommand.Settings), c => c.AddCommand<SoakCommand>("soak")
            .WithDescription("Load, generate and dispose a checkpoint many times; report live tensors, resident and CUDA memory per cycle; exit 1 if a cycle keeps memory.")),
        new("bench", typeof(BenchCommand.Settings), c => c.AddCommand<BenchCommand>("bench")
            .WithDescription("Quick decode benchmark: attention of MHA vs GQA vs MQA vs a K/V-copying GQA, or (--model) a whole 1.1B-shaped model.")),
    ];

    /// <summary>The tool's version, the library's and TorchSharp's.</summary>
    public static string Version
    {
        get
        {
            static string Of(System.Reflection.Assembly assembly)
                => (assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
                    .OfType<System.Reflection.AssemblyInformationalVersionAttribute>().FirstOrDefault()?.InformationalVersion ?? "?").Split('+')[0];
            return $"gqa {Of(typeof(CliApp).Assembly)} (GqaTransformer {Of(typeof(DecoderModel).Assembly)}, TorchSharp {Of(typeof(TorchSharp.torch).Assembly)})";
        }
    }

    /// <summary>The names of the registered commands, in the order of the help.</summary>
    internal static IReadOnlyList<string> CommandNames => Commands.Select(c => c.Name).ToArray();

    /// <summary>Runs <c>gqa</c> with <paramref name="args"/>: results to <paramref name="console"/>, the rest to <paramref name="errors"/> (default: the same console).</summary>
    public static int Run(string[] args, IAnsiConsole console, IAnsiConsole? errors = null)
        => Run(args, console, errors, StandardInput.Process);

    /// <summary>As <see cref="Run(string[], IAnsiConsole, IAnsiConsole?)"/>, reading standard input from <paramref name="input"/>.</summary>
    internal static int Run(string[] args, IAnsiConsole console, IAnsiConsole? errors, StandardInput input)
    {
        errors ??= console;
        bool verbose = args.TakeWhile(a => a != "--").Contains("--verbose"); // after --, it is text
        if (args is ["--version"] or ["-v"])
        {
            console.WritePlainLine(Version);
            return 0;
        }
        if (args.Length > 0 && !args[0].StartsWith('-') && Commands.All(c => c.Name != args[0]))
        {
            string? near = OptionCheck.Nearest(args[0], CommandNames);
            errors.WriteError($"unknown command '{args[0]}'." + (near is null ? $" Commands: {string.Join(", ", CommandNames)}." : $" Did you mean '{near}'?"));
            return BadInput;
        }
        if (args.Length > 0 && Commands.FirstOrDefault(c => c.Name == args[0]) is { } command
            && OptionCheck.Problem(command.Name, command.Settings, args[1..]) is { } problem)
        {
            errors.WriteError(problem);
            return BadInput;
        }
        var app = new CommandApp(new ConsoleRegistrar(console, new ErrorConsole(errors), input));
        app.Configure(config =>
        {
            config.SetApplicationName("gqa");
            config.SetApplicationVersion(Version);
            config.ConfigureConsole(console);
            config.UseStrictParsing();
            foreach (var entry in Commands) entry.Add(config);
            config.SetExceptionHandler((exception, _) =>
            {
                var inner = exception is CommandRuntimeException or CommandParseException ? exception : Unwrap(exception);
                if (verbose) errors.WriteException(inner);
                else errors.WriteError(Parsing.Message(inner));
                return BadInput;
            });
        });
        return app.Run(args);
    }

    private static Exception Unwrap(Exception e)
    {
        while (e is System.Reflection.TargetInvocationException or AggregateException && e.InnerException is not null) e = e.InnerException;
        return e;
    }
}

/// <summary>Hands commands the console they should write to (the real one, or a test's).</summary>
internal sealed class ConsoleRegistrar : ITypeRegistrar, ITypeResolver
{
    private readonly Dictionary<Type, List<Func<object>>> _factories = new();

    public ConsoleRegistrar(IAnsiConsole console, ErrorConsole errors, StandardInput input)
    {
        RegisterInstance(typeof(IAnsiConsole), console);
        RegisterInstance(typeof(ErrorConsole), errors);
        RegisterInstance(typeof(StandardInput), input);
    }

    public ITypeResolver Build() => this;

    public void Register(Type service, Type implementation) => Add(service, () => Create(implementation));

    public void RegisterInstance(Type service, object implementation) => Add(service, () => implementation);

    public void RegisterLazy(Type service, Func<object> factory) => Add(service, factory);

    public object? Resolve(Type? type)
    {
        if (type is null) return null;
        if (_factories.TryGetValue(type, out var factories)) return factories[^1]();
        if (type.IsGenericType && type.GetGenericTypeDefinition() == typeof(IEnumerable<>))
        {
            var element = type.GetGenericArguments()[0];
            var items = _factories.TryGetValue(element, out var all) ? all.Select(f => f()).ToArray() : [];
            var array = Array.CreateInstance(element, items.Length);
            for (int i = 0; i < items.Length; i++) array.SetValue(items[i], i);
            return array;
        }
        return type.IsAbstract || type.IsInterface ? null : Create(type);
    }

    private void Add(Type service, Func<object> factory)
    {
        if (!_factories.TryGetValue(service, out var list)) _factories[service] = list = [];
        list.Add(factory);
    }

    private object Create(Type type)
    {
        var constructor = type.GetConstructors().OrderByDescending(c => c.GetParameters().Length).First();
        var arguments = constructor.GetParameters().Select(p => Resolve(p.ParameterType)).ToArray();
        return constructor.Invoke(arguments);
    }
}
