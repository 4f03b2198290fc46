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
        return ReadGBs(InterleavedMedians([() => { using var s = NewDisposeScope(); data.sum(); }], 9)[0]);
    }

    /// <summary>GB/s of a read of <see cref="ReadElements"/> floats that took <paramref name="readMs"/>.</summary>
    public static double ReadGBs(double readMs) => ReadElements * 4.0 / (readMs / 1000) / 1e9;

    /// <summary>
    /// Median over rounds of time / that round's floor, the floor being <paramref name="bytes"/> at the bandwidth of the
    /// same round's read of <see cref="ReadElements"/> floats (<paramref name="readTimes"/>, paired with <paramref name="times"/>).
    /// </summary>
    public static double FloorRatio(IReadOnlyList<double> times, IReadOnlyList<double> readTimes, double bytes)
        => Median(times.Zip(readTimes, (time, read) => time / FloorMs(read, bytes)).ToList());

    /// <summary>The memory floor of <paramref name="bytes"/>: their read time at the bandwidth of a read of <see cref="ReadElements"/> floats that took <paramref name="readMs"/>.</summary>
    public static double FloorMs(double readMs, double bytes) => readMs * bytes / (ReadElements * 4.0);

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

    /// <summary>The report's short name of a float dtype: fp32, bf16 or fp16.</summary>
    public static string DtypeName(ScalarType dtype) => dtype switch { ScalarType.BFloat16 => "bf16", ScalarType.Float16 => "fp16", _ => "fp32" };
}

/// <summary>
/// What the attention rounds need to meet K/V cold and to measure the floor in the same rounds: <see cref="Evict"/>, an
/// untimed read of 256 MiB before every timed call (a decode step's weights pass through the caches between one
/// attention and the next), and <see cref="Read"/>, the sum over 1 GiB that is one more interleaved variant (this VM's
/// bandwidth swings between about 30 and 50 GB/s minutes apart, so a reading taken at another time would move the floor
/// by more than the kernels differ).
/// </summary>
internal sealed class ColdRounds : IDisposable
{
    private readonly Tensor _sweep = ones(64L << 20);
    private readonly Tensor _readData = ones(Measure.ReadElements);

    public ColdRounds()
    {
        Evict = () => { using var s = NewDisposeScope(); _sweep.sum(); };
        Read = () => { using var s = NewDisposeScope(); _readData.sum(); };
    }

    public Action Evict { get; }

    public Action Read { get; }

    public void Dispose()
    {
        _sweep.Dispose();
        _readData.Dispose();
    }
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
