namespace GqaTransformer;

/// <summary>
/// The bounds of parsing and rendering a chat template, which is code from a downloaded repository: past any of them
/// the template gets a <see cref="ChatTemplateException"/> naming the limit, never a stack overflow (which no caller
/// can catch), a hang or an allocation of gigabytes. Each is far above what real templates use (the corpus of
/// ChatTemplateRealTests nests under 20 deep and renders in a few thousand steps).
/// </summary>
internal static class JinjaLimits
{
    /// <summary>Blocks inside blocks and brackets, unary operators and sub-expressions inside each other, in the source.</summary>
    public const int MaxParseDepth = 100;

    /// <summary>Loops, macro calls and expressions being evaluated inside each other while rendering.</summary>
    public const int MaxRenderDepth = 200;

    /// <summary>Lists and dicts inside each other that a render prints, compares, writes as JSON or takes from the caller.</summary>
    public const int MaxValueDepth = 256;

    /// <summary>Characters of any one string a template makes (<c>~</c>, <c>+</c>, <c>*</c>, replace, join, format, indent, tojson, printing a value).</summary>
    public const int MaxStringChars = 16 * 1024 * 1024;

    /// <summary>Items of any one list a template makes (<c>+</c>, <c>*</c>, <c>range</c>, a string's characters).</summary>
    public const int MaxItems = 1_000_000;

    /// <summary>Loop iterations over a whole render.</summary>
    public const long MaxIterations = 1_000_000;

    /// <summary>Expressions evaluated over a whole render (a macro that calls itself twice doubles them at each level).</summary>
    public const long MaxSteps = 5_000_000;

    /// <summary>Characters and items of all the values a render evaluates, summed: a cap on its work and allocations.</summary>
    public const long MaxWork = 512L * 1024 * 1024;

    /// <summary>Characters of the rendered text.</summary>
    public const int MaxOutputChars = 64 * 1024 * 1024;

    public static ChatTemplateException Exceeded(string limit, long value, string what, int line = 0)
        => new($"{(line > 0 ? $"line {line}: " : "")}{what}: {value} passes the template limit {limit} ({Value(limit)}).");

    private static long Value(string limit) => limit switch
    {
        nameof(MaxParseDepth) => MaxParseDepth,
        nameof(MaxRenderDepth) => MaxRenderDepth,
        nameof(MaxValueDepth) => MaxValueDepth,
        nameof(MaxStringChars) => MaxStringChars,
        nameof(MaxItems) => MaxItems,
        nameof(MaxIterations) => MaxIterations,
        nameof(MaxSteps) => MaxSteps,
        nameof(MaxWork) => MaxWork,
        _ => MaxOutputChars,
    };

    /// <summary>A string of <paramref name="length"/> characters may be made.</summary>
    public static void CheckString(long length, int line)
    {
        if (length > MaxStringChars) throw Exceeded(nameof(MaxStringChars), length, "a string's length", line);
    }

    /// <summary>A list of <paramref name="count"/> items may be made.</summary>
    public static void CheckItems(long count, int line)
    {
        if (count > MaxItems) throw Exceeded(nameof(MaxItems), count, "a list's length", line);
    }

    public static void CheckValueDepth(int depth)
    {
        if (depth > MaxValueDepth) throw Exceeded(nameof(MaxValueDepth), depth, "a value's nesting");
    }
}
