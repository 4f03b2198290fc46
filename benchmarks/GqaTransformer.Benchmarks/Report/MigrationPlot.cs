using System.Globalization;
using System.Text.RegularExpressions;
using ScottPlot;

namespace GqaTransformer.Benchmarks.Report;

/// <summary>
/// <c>dotnet run -c Release --project benchmarks/GqaTransformer.Benchmarks -- migration-plot RESULTS.txt OUT.png</c>: the
/// held-out perplexity of converted models against the share of uptraining, one line per method, from the lines that
/// <c>tools/migration_experiment.sh</c> writes ("kv2 mean 5% (50 steps): loss=… perplexity=… tokens=…", "mha: …").
/// </summary>
internal static partial class MigrationPlot
{
    [GeneratedRegex(@"^kv(?<kv>\d+) (?<method>\w+) (?<pct>[\d.]+)%.*perplexity=(?<ppl>[\d.]+)")]
    private static partial Regex Converted();

    [GeneratedRegex(@"^mha[: ].*perplexity=(?<ppl>[\d.]+)")]
    private static partial Regex Mha();

    public static int Run(string[] args)
    {
        if (args.Length != 2) { Console.Error.WriteLine("usage: migration-plot RESULTS.txt OUT.png"); return 2; }
        var points = new Dictionary<string, List<(double Pct, double Ppl)>>();
        double? mha = null;
        foreach (var line in File.ReadLines(args[0]))
        {
            if (Mha().Match(line) is { Success: true } m) mha ??= double.Parse(m.Groups["ppl"].Value, CultureInfo.InvariantCulture);
            if (Converted().Match(line) is not { Success: true } c) continue;
            string key = $"kv {c.Groups["kv"].Value}, {c.Groups["method"].Value}";
            if (!points.TryGetValue(key, out var list)) points[key] = list = [];
            list.Add((double.Parse(c.Groups["pct"].Value, CultureInfo.InvariantCulture), double.Parse(c.Groups["ppl"].Value, CultureInfo.InvariantCulture)));
        }
        var plot = new Plot();
        // Colour by method, line pattern by KV shape, so nine curves stay readable.
        var colours = new Dictionary<string, Color> { ["mean"] = Colors.Blue, ["first"] = Colors.DarkOrange, ["random"] = Colors.Green };
        LinePattern[] patterns = [LinePattern.Solid, LinePattern.Dashed, LinePattern.Dotted, LinePattern.DenselyDashed];
        var shapes = points.Keys.Select(k => k.Split(',')[0]).Distinct().ToList();
        string[] methods = ["mean", "first", "random"];
        foreach (var (key, list) in points.Where(p => p.Value.Count > 2)
                     .OrderByDescending(p => int.Parse(p.Key.Split(',')[0][3..], CultureInfo.InvariantCulture))
                     .ThenBy(p => Array.IndexOf(methods, p.Key.Split(", ")[1])))
        {
            var ordered = list.OrderBy(p => p.Pct).ToList();
            var scatter = plot.Add.Scatter(ordered.Select(p => p.Pct).ToArray(), ordered.Select(p => Math.Log2(p.Ppl)).ToArray());
            scatter.LegendText = key;
            string method = key.Split(", ")[1];
            if (colours.TryGetValue(method, out var colour)) scatter.Color = colour;
            scatter.LinePattern = patterns[shapes.IndexOf(key.Split(',')[0]) % patterns.Length];
        }
        if (mha is { } baseline)
        {
            var line = plot.Add.HorizontalLine(Math.Log2(baseline));
            line.LegendText = $"MHA ({baseline:0.00})";
            line.LinePattern = LinePattern.Dashed;
        }
        double[] ticks = [4, 5, 6, 8, 12, 16, 24, 32];
        plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks.Select(Math.Log2).ToArray(), ticks.Select(t => t.ToString(CultureInfo.InvariantCulture)).ToArray());
        plot.Title("Held-out perplexity after conversion from MHA and uptraining");
        plot.XLabel("uptraining (% of the pre-training steps)");
        plot.YLabel("held-out perplexity (bytes, log scale)");
        plot.ShowLegend(Alignment.UpperRight);
        plot.SavePng(args[1], 800, 500);
        Console.Error.WriteLine($"wrote {args[1]}");
        return 0;
    }
}
