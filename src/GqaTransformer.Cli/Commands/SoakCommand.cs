using System.ComponentModel;
using System.Globalization;
using Spectre.Console;
using Spectre.Console.Cli;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer.Cli;

/// <summary>
/// <c>gqa soak</c>: loads a checkpoint, generates and disposes everything, many times, and reports after each cycle the
/// live tensors, the process's resident memory and (on CUDA) the allocator's bytes; exits 1 when cycles after the first
/// keep device memory, grow the process past 5% (at least 64 MiB), keep tensors, or generate other tokens than the first
/// (docs/reliability.md).
/// </summary>
public sealed class SoakCommand(IAnsiConsole console, ErrorConsole errors) : Command<SoakCommand.Settings>
{
    /// <summary>Options of <c>gqa soak</c>.</summary>
    public sealed class Settings : GqaSettings
    {
        /// <summary>Checkpoint directory.</summary>
        [CommandOption("--model <DIR>")][Description("Checkpoint directory (config.json + safetensors).")]
        public string? Model { get; init; }

        /// <summary>Load/generate/dispose cycles.</summary>
        [CommandOption("--cycles <N>")][Description("Load, generate, dispose this many times. Default 20.")][DefaultValue(20)]
        public int Cycles { get; init; } = 20;

        /// <summary>Tokens generated per cycle.</summary>
        [CommandOption("--max-new <N>")][Description("Greedy tokens generated per cycle. Default 32.")][DefaultValue(32)]
        public int MaxNew { get; init; } = 32;

        /// <summary>Prompt token ids.</summary>
        [CommandOption("--ids <LIST>")][Description("Prompt token ids, comma-separated. Default 1,2,3,4.")][DefaultValue("1,2,3,4")]
        public string Ids { get; init; } = "1,2,3,4";

        /// <summary>Device.</summary>
        [CommandOption("--device <DEVICE>")][Description("cpu (default) or cuda.")][DefaultValue("cpu")]
        public string Device { get; init; } = "cpu";

        /// <summary>Element type.</summary>
        [CommandOption("--dtype <DTYPE>")][Description("fp32 (default), bf16 or fp16.")][DefaultValue("fp32")]
        public string Dtype { get; init; } = "fp32";

        /// <summary>CUDA graphs.</summary>
        [CommandOption("--cuda-graphs <on|off>")][Description("On CUDA, decode by replaying CUDA graphs: on (default) or off.")][DefaultValue("on")]
        public string CudaGraphs { get; init; } = "on";

        /// <inheritdoc />
        public override ValidationResult Validate()
        {
            if (string.IsNullOrEmpty(Model)) return ValidationResult.Error("--model DIR is required.");
            if (Cycles is < 2 or > 100_000) return ValidationResult.Error($"--cycles must be from 2 to 100000, but was {Cycles}.");
            if (MaxNew is < 1 or > 100_000) return ValidationResult.Error($"--max-new must be from 1 to 100000, but was {MaxNew}.");
            if (CudaGraphs is not ("on" or "off")) return ValidationResult.Error($"--cuda-graphs must be on or off, but was '{CudaGraphs}'.");
            return ValidationResult.Success();
        }
    }

    /// <inheritdoc />
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        Parsing.ModelDirectory(settings.Model!);
        var device = Parsing.Device(settings.Device);
        var dtype = Parsing.Dtype(settings.Dtype);
        int[] prompt = Parsing.Ids(settings.Ids, "--ids");
        Parsing.CheckIds(prompt, DecoderConfig.FromFile(Path.Combine(settings.Model!, "config.json")).VocabSize, "--ids");
        var options = new GenerationOptions { MaxNewTokens = settings.MaxNew, UseCudaGraphs = Parsing.OnOff(settings.CudaGraphs, "--cuda-graphs") };
        bool cuda = device.type == DeviceType.CUDA;
        if (cuda && CudaMemory.UnavailableReason is { } reason)
            throw new InvalidOperationException($"gqa soak on CUDA reads the allocator's counters, and they are unavailable: {reason}.");
        var table = Tables.Create().AddColumn(Tables.Right("cycle")).AddColumn(Tables.Right("live tensors"))
            .AddColumn(Tables.Right("RSS")).AddColumn(Tables.Right("CUDA allocated")).AddColumn(Tables.Right("CUDA reserved"));
        var start = Measure(cuda);
        AddRow(table, "before", start);
        int[]? firstTokens = null;
        int parameters = 0;
        Snapshot last = start, afterFirst = start;
        for (int cycle = 1; cycle <= settings.Cycles; cycle++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int[] tokens;
            using (var model = DecoderModel.FromPretrained(settings.Model!, dtype, device))
            using (var generator = new TokenGenerator(model))
            using (var cache = model.CreateCache(1, prompt.Length + settings.MaxNew))
            {
                tokens = generator.StreamBatch([prompt], options, cache, cancellationToken).Select(step => step[0]!.Value).ToArray();
                parameters = model.parameters().Count();
            }
            firstTokens ??= tokens;
            if (!tokens.SequenceEqual(firstTokens))
            {
                errors.Console.MarkupLineInterpolated($"[red]cycle {cycle} generated other tokens than cycle 1.[/]");
                return 1;
            }
            last = Measure(cuda);
            if (cycle == 1) afterFirst = last;
            if (cycle <= 3 || cycle == settings.Cycles || cycle % Math.Max(1, settings.Cycles / 10) == 0)
                AddRow(table, cycle.ToString(CultureInfo.InvariantCulture), last);
        }
        Snapshot emptied = last;
        if (cuda)
        {
            CudaMemory.EmptyCache();
            emptied = Measure(cuda);
            AddRow(table, "empty_cache", emptied);
        }
        console.Write(table);
        // Tensors alive in the process (disposed or finalized ones are off the count). TorchSharp's Parameter(tensor)
        // moves the handle out of the tensor without taking it off, so each parameter built adds one count that owns
        // nothing, and one more where TorchSharp builds it on the CPU and moves it to the device (docs/reliability.md).
        long extraTensors = last.LiveTensors - afterFirst.LiveTensors - 2L * parameters * (settings.Cycles - 1);
        long rssGrowth = last.Rss - afterFirst.Rss, rssAllowed = Math.Max(afterFirst.Rss / 20, 64L << 20);
        bool held = extraTensors <= 0 && rssGrowth <= rssAllowed
                    && (!cuda || last.Cuda!.Value.AllocatedBytes == afterFirst.Cuda!.Value.AllocatedBytes);
        // one key=value a line: no console wraps them
        void Report(string key, long value) => console.WritePlainLine(FormattableString.Invariant($"{key}={value}"));
        Report("cycles", settings.Cycles);
        Report("tokens_per_cycle", firstTokens!.Length);
        Report("parameters", parameters);
        Report("live_tensors_growth", last.LiveTensors - afterFirst.LiveTensors);
        Report("beyond_parameter_counts", extraTensors);
        Report("rss_growth_after_cycle_1", rssGrowth);
        Report("rss_growth_allowed", rssAllowed);
        if (cuda)
        {
            Report("cuda_allocated_start", start.Cuda!.Value.AllocatedBytes);
            Report("cuda_allocated_after_cycle_1", afterFirst.Cuda!.Value.AllocatedBytes);
            Report("cuda_allocated_end", last.Cuda!.Value.AllocatedBytes);
            Report("cuda_reserved_after_empty_cache", emptied.Cuda!.Value.ReservedBytes);
        }
        console.WritePlainLine($"result={(held ? "held" : "leaked")}");
        return held ? 0 : 1;
    }

    private readonly record struct Snapshot(long LiveTensors, long Rss, CudaMemoryStats? Cuda);

    private static Snapshot Measure(bool cuda)
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        return new Snapshot(torch.Tensor.TotalCount, ResidentBytes(), cuda ? CudaMemory.GetStats() : null);
    }

    private static long ResidentBytes()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
        return 0;
    }

    private static void AddRow(Table table, string label, Snapshot s) => table.AddRow(
        label, s.LiveTensors.ToString(CultureInfo.InvariantCulture), Parsing.Size(s.Rss),
        s.Cuda is { } c ? Parsing.Size(c.AllocatedBytes) : "-", s.Cuda is { } r ? Parsing.Size(r.ReservedBytes) : "-");
}
