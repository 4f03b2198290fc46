using System.Globalization;
using System.Text;
using System.Text.Json;

namespace GqaTransformer;

/// <summary>
/// The JSON a model writes inside a call: one value read from a position in the reply (text may follow it), turned
/// into plain .NET values for <c>FunctionCallContent.Arguments</c>: objects as <c>Dictionary&lt;string, object?&gt;</c>
/// in their order, arrays as <c>List&lt;object?&gt;</c>, integers as <c>long</c> (beyond it, <c>decimal</c>), numbers
/// written with a point or exponent as <c>double</c> (so 2.0 stays a float when a template writes it back), strings,
/// booleans and null. Depth is bounded by System.Text.Json's default (64); anything it refuses is a
/// <see cref="FormatException"/> naming the offset.
/// </summary>
internal static class ToolCallJson
{
    private static readonly JsonReaderOptions Options = new() { AllowTrailingCommas = false, CommentHandling = JsonCommentHandling.Disallow };

    /// <summary>
    /// Reads the JSON value that starts at <paramref name="start"/> (after any whitespace); <paramref name="end"/> is
    /// the index just past it. False (with <paramref name="error"/>) when it is not complete, valid JSON.
    /// </summary>
    public static bool TryRead(string text, int start, out object? value, out int end, out string error)
    {
        value = null; end = start; error = "";
        while (start < text.Length && char.IsWhiteSpace(text[start])) start++;
        if (start >= text.Length) { error = $"expected a JSON value at offset {start}, found the end of the text"; return false; }
        byte[] bytes = Encoding.UTF8.GetBytes(text.AsSpan(start).ToString());
        var reader = new Utf8JsonReader(bytes, isFinalBlock: true, state: new JsonReaderState(Options));
        try
        {
            using var document = JsonDocument.ParseValue(ref reader);
            value = ToValue(document.RootElement);
            end = start + Encoding.UTF8.GetCharCount(bytes, 0, (int)reader.BytesConsumed);
            return true;
        }
        catch (JsonException e)
        {
            error = $"the JSON at offset {start} does not parse: {e.Message}";
            return false;
        }
    }

    /// <summary>Reads a JSON value that must fill <paramref name="text"/> (whitespace aside).</summary>
    public static bool TryReadWhole(string text, out object? value, out string error)
    {
        if (!TryRead(text, 0, out value, out int end, out error)) return false;
        if (text.AsSpan(end).Trim().Length == 0) return true;
        error = $"text follows the JSON value at offset {end}";
        return false;
    }

    /// <summary>
    /// A call object as the families write it: <c>name</c> with <c>arguments</c> or <c>parameters</c> (an object, or a
    /// string holding one: how Qwen2.5's and Llama's templates write string arguments), an optional <c>id</c>, or the
    /// OpenAI shape <c>{"type": "function", "function": {...}}</c>.
    /// </summary>
    public static bool TryCall(object? value, out string? id, out string name, out IDictionary<string, object?> arguments, out string error)
    {
        id = null; name = ""; arguments = new Dictionary<string, object?>();
        if (value is not Dictionary<string, object?> call) { error = $"a call must be a JSON object, found {Describe(value)}"; return false; }
        if (call.TryGetValue("function", out var inner) && inner is Dictionary<string, object?> function && !call.ContainsKey("name"))
        {
            string? outerId = call.TryGetValue("id", out var o) ? o as string : null;
            bool ok = TryCall(function, out id, out name, out arguments, out error);
            id ??= outerId;
            return ok;
        }
        id = call.TryGetValue("id", out var idValue) ? idValue as string : null;
        if (!call.TryGetValue("name", out var nameValue) || nameValue is not string n || n.Length == 0)
        {
            error = "a call needs a \"name\" that is a non-empty string";
            return false;
        }
        name = n;
        object? args = call.TryGetValue("arguments", out var a) ? a : call.TryGetValue("parameters", out var p) ? p : new Dictionary<string, object?>();
        return TryArguments(args, out arguments, out error, name);
    }

    /// <summary>Arguments as an object, or a string that holds one.</summary>
    public static bool TryArguments(object? args, out IDictionary<string, object?> arguments, out string error, string name)
    {
        arguments = new Dictionary<string, object?>();
        error = "";
        if (args is string s)
        {
            if (!TryReadWhole(s, out var inner, out error)) { error = $"the arguments of {name} are a string that is not JSON: {error}"; return false; }
            args = inner;
        }
        if (args is not Dictionary<string, object?> dictionary) { error = $"the arguments of {name} must be a JSON object, found {Describe(args)}"; return false; }
        arguments = dictionary;
        return true;
    }

    private static string Describe(object? value) => value switch
    {
        null => "null",
        string => "a string",
        bool => "a boolean",
        List<object?> => "an array",
        Dictionary<string, object?> => "an object",
        _ => "a number",
    };

    public static object? ToValue(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.Object => ToObject(element),
        JsonValueKind.Array => element.EnumerateArray().Select(ToValue).ToList(),
        JsonValueKind.String => element.GetString(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        JsonValueKind.Null => null,
        _ => ToNumber(element.GetRawText()),
    };

    private static Dictionary<string, object?> ToObject(JsonElement element)
    {
        var result = new Dictionary<string, object?>();
        foreach (var property in element.EnumerateObject()) result[property.Name] = ToValue(property.Value);  // a repeated key: the last wins, as in Python's json
        return result;
    }

    /// <summary>A JSON number as Python's json reads it: a float if written with '.', 'e' or 'E', else an integer.</summary>
    public static object ToNumber(string raw)
    {
        if (raw.AsSpan().IndexOfAny(".eE") < 0)
        {
            if (long.TryParse(raw, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long l)) return l;
            if (decimal.TryParse(raw, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out decimal m)) return m;
        }
        return double.Parse(raw, NumberStyles.Float, CultureInfo.InvariantCulture);
    }
}
