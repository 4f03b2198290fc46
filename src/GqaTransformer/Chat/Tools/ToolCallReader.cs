namespace GqaTransformer;

/// <summary>Reading a call, or a list of calls, from a parsed JSON value into a builder: all of them or none.</summary>
internal static class ToolCallReader
{
    /// <summary>
    /// Adds the call(s) in <paramref name="value"/> (one call object, or an array of them) to <paramref name="builder"/>;
    /// when any is malformed, none is added and <paramref name="error"/> says which and why.
    /// </summary>
    public static bool TryAdd(ToolCallResultBuilder builder, object? value, out string error)
    {
        var items = value is List<object?> list ? list : [value];
        if (items.Count == 0) { error = "an empty list of calls"; return false; }
        var calls = new List<(string? Id, string Name, IDictionary<string, object?> Arguments)>();
        for (int i = 0; i < items.Count; i++)
        {
            if (!ToolCallJson.TryCall(items[i], out var id, out var name, out var arguments, out error))
            {
                if (items.Count > 1) error = $"call {i}: {error}";
                return false;
            }
            calls.Add((id, name, arguments));
        }
        foreach (var (id, name, arguments) in calls) builder.Call(id, name, arguments);
        error = "";
        return true;
    }
}
