using Spectre.Console;
using Spectre.Console.Cli;

namespace GqaTransformer.Cli;

/// <summary>Builds the <c>gqa</c> command tree. Every command is registered here, one line each.</summary>
public static class CliApp
{
    /// <summary>Exit code of a command whose input was bad (missing file, malformed config, unknown preset, ...).</summary>
    public const int BadInput = 2;

    /// <summary>Runs <c>gqa</c> with <paramref name="args"/>, writing to <paramref name="console"/>; returns the exit code.</summary>
    public static int Run(string[] args, IAnsiConsole console)
    {
        bool verbose = args.Contains("--verbose");
        var app = new CommandApp(new ConsoleRegistrar(console));
        app.Configure(config =>
        {
            config.SetApplicationName("gqa");
            config.ConfigureConsole(console);
            config.AddCommand<DemoCommand>("demo").WithDescription("Show what GQA buys: KV-cache memory of real models, and decode speed of MHA, GQA and MQA variants of a small model.");
            config.AddCommand<KvMemoryCommand>("kv-memory").WithDescription("KV-cache bytes per context length for a config or preset and its MHA/GQA/MQA variants.");
            config.AddCommand<GenerateCommand>("generate").WithDescription("Generate from a checkpoint directory, streaming tokens.");
            config.AddCommand<VerifyCommand>("verify").WithDescription("Compare a checkpoint's logits and greedy tokens with a reference computed by transformers.");
            config.AddCommand<BenchCommand>("bench").WithDescription("Quick decode-attention benchmark: MHA vs GQA vs MQA vs a K/V-copying GQA.");
            config.SetExceptionHandler((exception, _) =>
            {
                var inner = exception is CommandRuntimeException or CommandParseException ? exception : Unwrap(exception);
                if (verbose) console.WriteException(inner);
                else console.MarkupLineInterpolated($"[red]error:[/] {inner.Message}");
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

    public ConsoleRegistrar(IAnsiConsole console) => RegisterInstance(typeof(IAnsiConsole), console);

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
