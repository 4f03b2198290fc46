namespace GqaTransformer;

/// <summary>
/// Every tool-call format we read, and the choice of one from a chat template's text (the markers its template writes).
/// Order matters only where two could match: none of the markers overlap today.
/// </summary>
internal static class ToolCallFormats
{
    public static IReadOnlyList<IToolCallFormat> All { get; } =
    [
        new HermesToolCallFormat(),
        new LlamaToolCallFormat(),
        new MistralToolCallFormat(),
        new Phi4MiniToolCallFormat(),
        new GemmaToolCallFormat(),
    ];

    /// <summary>The format of the family whose template this is, or null when it is none we read.</summary>
    public static IToolCallFormat? Detect(string templateSource)
    {
        ArgumentNullException.ThrowIfNull(templateSource);
        return All.FirstOrDefault(f => f.Matches(templateSource));
    }

    /// <summary>A format by its <see cref="IToolCallFormat.Name"/>.</summary>
    public static IToolCallFormat ByName(string name) =>
        All.FirstOrDefault(f => f.Name == name)
        ?? throw new ArgumentException($"no tool-call format is named \"{name}\"; the formats are {string.Join(", ", All.Select(f => f.Name))}", nameof(name));
}
