using System.Diagnostics;
using System.Globalization;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer.Benchmarks.Report;

/// <summary>Timing, memory and machine facts for the report. Every figure is a median of repeated runs.</summary>
internal static class Measure
{
    /// <summary>
    /// Runs each variant once per round, <paramref name="rounds"/> times, so drift hits all alike; returns medians in ms.
    /// <paramref name="beforeEach"/>, if given, runs untimed before every timed call.
    /// </summary>
    public static double[] InterleavedMedians(IReadOnlyList<Action> variants, int rounds, int warmup = 2, Action? beforeEach = null)
        => InterleavedSamples(variants, rounds, warmup, beforeEach).Select(Median).ToArray();

    /// <summary>Every timing, in ms: one list per variant, sample r of each taken in round r (so they can be paired).</summary>
    public static List<double>[] InterleavedSamples(IReadOnlyList<Action> variants, int rounds, int warmup = 2, Action? beforeEach = null)
    {
        foreach (var v in variants) for (int i = 0; i < warmup; i++) v();
        var samples = variants.Select(_ => new List<double>()).ToArray();
        for (int r = 0; r < rounds; r++)
            for (int i = 0; i < variants.Count; i++)
            {
                beforeEach?.Invoke();
                long start = Stopwatch.GetTimestamp();
                variants[i]();
                samples[i].Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
            }
        return samples;
    }

    public static double Median(IReadOnlyList<double> values)
    {
        var sorted = values.Order().ToArray();
        int mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }

    /// <summary>Float32 elements of the tensor whose sum measures read bandwidth: 1 GiB.</summary>
    public const long ReadElements = 256L << 20;

    /// <summary>Read bandwidth in GB/s: a sum over a 1 GiB float tensor, median of 9.</summary>
    public static double ReadBandwidth()
    {
        using var scope = NewDisposeScope();
        var data = ones(ReadElements);
        double ms = InterleavedMedians([() => { using var s = NewDisposeScope(); data.sum(); }], 9)[0];
        return ReadElements * 4 / (ms / 1000) / 1e9;
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "malloc_trim")]
    private static extern int MallocTrim(nuint pad);

    /// <summary>Returns freed heap pages to the OS (glibc), so the next RSS reading sees fresh allocations.</summary>
    public static void ReleaseFreedMemory()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        if (OperatingSystem.IsLinux()) MallocTrim(0);
    }

    /// <summary>Resident set size of this process, bytes (Linux /proc).</summary>
    public static long ResidentBytes()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmRSS:"))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
        return -1;
    }

    public static string Machine()
    {
        string cpu = File.Exists("/proc/cpuinfo")
            ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name"))?.Split(':', 2)[1].Trim() ?? "?"
            : "?";
        string memory = File.Exists("/proc/meminfo")
            ? (long.Parse(File.ReadLines("/proc/meminfo").First().Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024.0 / 1024).ToString("0.0", CultureInfo.InvariantCulture) + " GiB"
            : "?";
        return $"{cpu}, {Environment.ProcessorCount} cores visible, torch threads {get_num_threads()}, {memory} RAM; " +
               $".NET {Environment.Version}, TorchSharp {typeof(torch).Assembly.GetName().Version}, libtorch {__version__}; " +
               $"{DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC";
    }

    public static string Bytes(double bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB"];
        int unit = 0;
        while (bytes >= 1024 && unit < units.Length - 1) { bytes /= 1024; unit++; }
        return bytes.ToString(unit == 0 ? "0" : "0.##", CultureInfo.InvariantCulture) + " " + units[unit];
    }

    public static string F(double value, string format = "0.00") => value.ToString(format, CultureInfo.InvariantCulture);
}

/// <summary>Builds the markdown of the report.</summary>
internal sealed class Markdown
{
    private readonly System.Text.StringBuilder _text = new();

    public Markdown Line(string line = "") { _text.AppendLine(line); return this; }

    public Markdown Table(string[] headers, IEnumerable<string[]> rows)
    {
        _text.AppendLine("| " + string.Join(" | ", headers) + " |");
        _text.AppendLine("|" + string.Concat(headers.Select((_, i) => i == 0 ? "---|" : "---:|")));
        foreach (var row in rows) _text.AppendLine("| " + string.Join(" | ", row) + " |");
        _text.AppendLine();
        return this;
    }

    public override string ToString() => _text.ToString();
}
