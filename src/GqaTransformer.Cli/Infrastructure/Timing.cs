using System.Diagnostics;

namespace GqaTransformer.Cli;

/// <summary>Wall-clock timing for the CLI's quick measurements: medians of repeated runs.</summary>
internal static class Timing
{
    public static double MedianMilliseconds(Action action, int iterations, int warmup = 2)
    {
        for (int i = 0; i < warmup; i++) action();
        var samples = new double[iterations];
        for (int i = 0; i < iterations; i++)
        {
            long start = Stopwatch.GetTimestamp();
            action();
            samples[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }
        return Median(samples);
    }

    public static double Median(IReadOnlyList<double> samples)
    {
        var sorted = samples.Order().ToArray();
        int mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }
}
