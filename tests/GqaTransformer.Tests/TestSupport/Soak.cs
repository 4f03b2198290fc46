using System.Diagnostics;
using System.Globalization;

namespace GqaTransformer.Tests;

/// <summary>Runs <c>gqa soak</c> (the tool beside the tests) in a process of its own and reads its key=value lines.</summary>
internal static class Soak
{
    public static Dictionary<string, long> Run(string model, int cycles)
    {
        var start = new ProcessStartInfo(Path.Combine(AppContext.BaseDirectory, "gqa"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in new[] { "soak", "--model", model, "--cycles", cycles.ToString(CultureInfo.InvariantCulture), "--max-new", "4" })
            start.ArgumentList.Add(arg);
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        if (!process.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException("gqa soak ran past 5 minutes");
        }
        var values = new Dictionary<string, long>();
        foreach (var line in stdout.Split('\n'))
            if (line.Split('=') is [var key, var value] && long.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out long number))
                values[key.Trim()] = number;
        if (!values.ContainsKey("rss_growth_after_cycle_1"))
            throw new InvalidOperationException($"gqa soak exited {process.ExitCode} without its report:\n{stdout}\n{stderr.Result}");
        return values;
    }
}
