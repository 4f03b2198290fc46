using System.Reflection;
using Spectre.Console.Cli;

namespace GqaTransformer.Cli;

/// <summary>
/// Rejects what a command does not know before Spectre parses it, so that a misspelled option never runs a command with
/// its default (<c>--temprature 0.8</c> sampling greedily): each option must be one of the command's, with a "did you
/// mean" hint for a near miss.
/// </summary>
internal static class OptionCheck
{
    /// <summary>The first problem with <paramref name="args"/> for the command whose options <paramref name="settings"/> declares, or null.</summary>
    public static string? Problem(string command, Type settings, IReadOnlyList<string> args)
    {
        var options = Options(settings);
        for (int i = 0; i < args.Count; i++)
        {
            string arg = args[i];
            if (arg == "--") break;
            if (!arg.StartsWith('-') || arg.Length < 2 || IsNumber(arg))
                return $"'gqa {command}' takes no argument '{arg}'; every input is an option (see gqa {command} --help).";
            string name = arg.Split('=', 2)[0];
            if (!options.TryGetValue(name, out bool takesValue))
            {
                string? near = Nearest(name, options.Keys.Where(o => o.StartsWith("--", StringComparison.Ordinal)));
                return $"unknown option '{name}' for 'gqa {command}'." + (near is null
                    ? $" Its options: {string.Join(", ", options.Keys.Where(o => o.StartsWith("--", StringComparison.Ordinal)).Order())}."
                    : $" Did you mean '{near}'?");
            }
            if (takesValue && !arg.Contains('=')) i++; // its value, even if it starts with '-'
        }
        return null;
    }

    /// <summary>Every spelling of every option of <paramref name="settings"/> (and --help), and whether it takes a value.</summary>
    public static Dictionary<string, bool> Options(Type settings)
    {
        var options = new Dictionary<string, bool>(StringComparer.Ordinal) { ["--help"] = false, ["-h"] = false, ["-?"] = false };
        foreach (var property in settings.GetProperties(BindingFlags.Public | BindingFlags.Instance))
            if (property.GetCustomAttribute<CommandOptionAttribute>() is { } option)
            {
                bool takesValue = option.ValueName is not null;
                foreach (var name in option.LongNames) options["--" + name] = takesValue;
                foreach (var name in option.ShortNames) options["-" + name] = takesValue;
            }
        return options;
    }

    private static bool IsNumber(string arg) => double.TryParse(arg, System.Globalization.CultureInfo.InvariantCulture, out _);

    /// <summary>The option closest to <paramref name="name"/> within a few edits, if one is.</summary>
    internal static string? Nearest(string name, IEnumerable<string> candidates)
    {
        string? best = null;
        int bestDistance = int.MaxValue;
        foreach (var candidate in candidates)
        {
            int distance = Distance(name, candidate);
            if (candidate.StartsWith(name, StringComparison.Ordinal) && name.Length >= 5) distance = Math.Min(distance, 2); // cut short
            if (distance < bestDistance) (best, bestDistance) = (candidate, distance);
        }
        return bestDistance <= Math.Max(2, name.Length / 4) ? best : null;
    }

    /// <summary>Edit distance (insertions, deletions, substitutions, adjacent transpositions).</summary>
    internal static int Distance(string a, string b)
    {
        var d = new int[a.Length + 1, b.Length + 1];
        for (int i = 0; i <= a.Length; i++) d[i, 0] = i;
        for (int j = 0; j <= b.Length; j++) d[0, j] = j;
        for (int i = 1; i <= a.Length; i++)
            for (int j = 1; j <= b.Length; j++)
            {
                int cost = a[i - 1] == b[j - 1] ? 0 : 1;
                d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + cost);
                if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                    d[i, j] = Math.Min(d[i, j], d[i - 2, j - 2] + 1);
            }
        return d[a.Length, b.Length];
    }
}
