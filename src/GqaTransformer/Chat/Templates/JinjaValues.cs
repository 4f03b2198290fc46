using System.Globalization;
using System.Text;

namespace GqaTransformer;

/// <summary>Jinja's undefined value: empty when printed, false when tested, an error when looked into.</summary>
internal sealed class JinjaUndefined(string name)
{
    public string Name { get; } = name;
}

/// <summary>
/// What <c>|safe</c> returns, markupsafe's <c>Markup</c>: a string that, joined by <c>+</c> with a plain string (either
/// side), HTML-escapes that string, as jinja2 does even without autoescape. Anywhere else it is its text.
/// </summary>
internal sealed record JinjaMarkup(string Text);

/// <summary>
/// What jinja2's map, select, reject, selectattr, rejectattr, unique and reverse (of a list) return: a one-pass
/// iterator, not a list. It is always true, has no length, cannot be indexed or written by tojson, and a second walk
/// over it finds nothing; <c>|list</c> makes a list of it.
/// </summary>
internal sealed class JinjaIterator(List<object?> items, string kind)
{
    private List<object?>? _items = items;

    public string Kind { get; } = kind;

    public List<object?> Take()
    {
        var items = _items ?? [];
        _items = null;
        return items;
    }
}

/// <summary>A Python tuple: a list everywhere but in printing (<c>(1, 2)</c>, <c>(1,)</c>) and equality (never equal to a list).</summary>
internal sealed class JinjaTuple(IEnumerable<object?> items) : List<object?>(items)
{
    public static JinjaTuple Pair(object? a, object? b) => new([a, b]);
}

/// <summary>What <c>namespace()</c> returns: the one object whose attributes a template may set from inside a loop.</summary>
internal sealed class JinjaNamespace
{
    public OrderedDictionary<string, object?> Values { get; } = [];
}

/// <summary>A function a template can call: a global (<c>raise_exception</c>), a macro, or a bound method (<c>s.strip</c>).</summary>
internal sealed class JinjaCallable(string name, Func<List<object?>, Dictionary<string, object?>, object?> invoke)
{
    public string Name { get; } = name;
    public object? Invoke(List<object?> args, Dictionary<string, object?> kwargs) => invoke(args, kwargs);
}

/// <summary>The <c>loop</c> variable of a for loop.</summary>
internal sealed class JinjaLoop(int index, int length, object? previous, object? next)
{
    public object? Get(string name) => name switch
    {
        "index" => (long)index + 1,
        "index0" => (long)index,
        "revindex" => (long)(length - index),
        "revindex0" => (long)(length - index - 1),
        "first" => index == 0,
        "last" => index == length - 1,
        "length" => (long)length,
        "previtem" => index > 0 ? previous : new JinjaUndefined("loop.previtem"),
        "nextitem" => index < length - 1 ? next : new JinjaUndefined("loop.nextitem"),
        "cycle" => new JinjaCallable("loop.cycle", (args, _) => args.Count == 0 ? null : args[index % args.Count]),
        _ => new JinjaUndefined($"loop.{name}"),
    };
}

/// <summary>Python's semantics for the values a template handles: None, bool, int (long), float (double), str, list, dict.</summary>
internal static class JinjaValues
{
    public static bool Truthy(object? value) => value switch
    {
        null or JinjaUndefined => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        List<object?> list => list.Count > 0,
        JinjaDict dict => dict.Count > 0,
        _ => true,
    };

    /// <summary>Python's <c>str()</c>, as Jinja prints a value (undefined prints nothing).</summary>
    public static string ToStr(object? value) => value switch
    {
        JinjaUndefined => "",
        string s => s,
        JinjaMarkup m => m.Text,
        _ => Repr(value),
    };

    /// <summary>Python's <c>repr()</c>: strings quoted, lists and dicts in Python's notation; bounded in nesting and length.</summary>
    public static string Repr(object? value)
    {
        if (value is not (List<object?> or JinjaDict)) return Scalar(value);
        var sb = new StringBuilder();
        Write(value, 0);
        return sb.ToString();

        void Write(object? v, int depth)
        {
            JinjaLimits.CheckValueDepth(depth);
            JinjaLimits.CheckString(sb.Length, 0);
            switch (v)
            {
                case List<object?> list:
                    sb.Append(list is JinjaTuple ? '(' : '[');
                    for (int i = 0; i < list.Count; i++) { if (i > 0) sb.Append(", "); Write(list[i], depth + 1); }
                    sb.Append(list is JinjaTuple ? (list.Count == 1 ? ",)" : ")") : "]");
                    break;
                case JinjaDict dict:
                    sb.Append('{');
                    bool first = true;
                    foreach (var (k, item) in dict)
                    {
                        if (!first) sb.Append(", ");
                        first = false;
                        sb.Append(Scalar(JinjaDict.Unkey(k))).Append(": ");
                        Write(item, depth + 1);
                    }
                    sb.Append('}');
                    break;
                default:
                    sb.Append(Scalar(v));
                    break;
            }
        }
    }

    private static string Scalar(object? value) => value switch
    {
        null => "None",
        JinjaUndefined => "",
        bool b => b ? "True" : "False",
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d => FloatRepr(d),
        string s => QuoteRepr(s),
        JinjaNamespace => "<Namespace>",
        JinjaMarkup m => QuoteRepr(m.Text),
        JinjaIterator it => $"<{it.Kind} object>",
        JinjaCallable c => $"<function {c.Name}>",
        _ => value.ToString() ?? "",
    };

    public static string FloatRepr(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsInfinity(d)) return d > 0 ? "inf" : "-inf";
        string s = d.ToString("R", CultureInfo.InvariantCulture);
        if (s.Contains('E', StringComparison.Ordinal)) return s.Replace("E", "e", StringComparison.Ordinal);
        return s.Contains('.', StringComparison.Ordinal) ? s : s + ".0";
    }

    private static string QuoteRepr(string s)
    {
        char quote = s.Contains('\'', StringComparison.Ordinal) && !s.Contains('"', StringComparison.Ordinal) ? '"' : '\'';
        var sb = new StringBuilder().Append(quote);
        foreach (char c in s)
            sb.Append(c switch
            {
                '\\' => "\\\\", '\n' => "\\n", '\r' => "\\r", '\t' => "\\t",
                _ when c == quote => "\\" + c,
                _ => c.ToString(),
            });
        return sb.Append(quote).ToString();
    }

    /// <summary>The options of transformers' <c>tojson</c> filter, which are <c>json.dumps</c>'s.</summary>
    public sealed record JsonOptions(bool EnsureAscii = false, string? Indent = null, string? ItemSeparator = null, string KeySeparator = ": ",
        bool SortKeys = false);

    /// <summary>Python's <c>json.dumps</c>, as transformers' <c>tojson</c> filter calls it (ensure_ascii off by default).</summary>
    public static string ToJson(object? value, JsonOptions? options = null)
    {
        var sb = new StringBuilder();
        WriteJson(sb, value, options ?? new JsonOptions(), 0);
        return sb.ToString();
    }

    private static void WriteJson(StringBuilder sb, object? value, JsonOptions o, int depth)
    {
        JinjaLimits.CheckValueDepth(depth);
        switch (value)
        {
            case null: sb.Append("null"); break;
            case bool b: sb.Append(b ? "true" : "false"); break;
            case long l: sb.Append(l.ToString(CultureInfo.InvariantCulture)); break;
            case double d: sb.Append(double.IsNaN(d) ? "NaN" : double.IsInfinity(d) ? (d > 0 ? "Infinity" : "-Infinity") : FloatRepr(d)); break;
            case string s: JsonString(sb, s, o.EnsureAscii); break;
            case List<object?> list:
                WriteItems(sb, '[', ']', list.Count, o, depth, i => WriteJson(sb, list[i], o, depth + 1));
                break;
            case JinjaDict dict:
            {
                var pairs = dict.Select(p => (Key: JsonKey(JinjaDict.Unkey(p.Key)), p.Value)).ToList();
                if (o.SortKeys) pairs = [.. pairs.OrderBy(p => p.Key, StringComparer.Ordinal)];
                WriteItems(sb, '{', '}', pairs.Count, o, depth, i =>
                {
                    JsonString(sb, pairs[i].Key, o.EnsureAscii);
                    sb.Append(o.KeySeparator);
                    WriteJson(sb, pairs[i].Value, o, depth + 1);
                });
                break;
            }
            default: throw new ChatTemplateException($"tojson: Object of type {TypeName(value)} is not JSON serializable.");
        }
    }

    /// <summary>json.dumps turns int, float, bool and None keys into strings; other keys are an error.</summary>
    private static string JsonKey(object? key) => key switch
    {
        string s => s,
        null => "null",
        bool b => b ? "true" : "false",
        long or double => Repr(key),
        _ => throw new ChatTemplateException($"tojson: keys must be str, int, float, bool or None, not {TypeName(key)}."),
    };

    private static void WriteItems(StringBuilder sb, char open, char close, int count, JsonOptions o, int depth, Action<int> item)
    {
        sb.Append(open);
        if (count == 0) { sb.Append(close); return; }
        string separator = o.ItemSeparator ?? (o.Indent is null ? ", " : ",");
        for (int i = 0; i < count; i++)
        {
            if (i > 0) sb.Append(separator);
            JinjaLimits.CheckString(sb.Length, 0);
            if (o.Indent is { } pad) sb.Append('\n').Insert(sb.Length, pad, depth + 1);
            item(i);
        }
        if (o.Indent is { } last) sb.Append('\n').Insert(sb.Length, last, depth);
        sb.Append(close);
    }

    private static void JsonString(StringBuilder sb, string s, bool ensureAscii)
    {
        sb.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20 || ensureAscii && c > 0x7e) sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }

    public static bool PyEquals(object? a, object? b) => PyEquals(a, b, 0);

    private static bool PyEquals(object? a, object? b, int depth) => (a, b) switch
    {
        _ when depth > JinjaLimits.MaxValueDepth => throw JinjaLimits.Exceeded(nameof(JinjaLimits.MaxValueDepth), depth, "a value's nesting"),
        (JinjaUndefined, JinjaUndefined) => true,
        (JinjaUndefined, _) or (_, JinjaUndefined) => false,
        (null, null) => true,
        (null, _) or (_, null) => false,
        (string x, string y) => string.Equals(x, y, StringComparison.Ordinal),
        (bool x, bool y) => x == y,
        (long or double or bool, long or double or bool) => ToDouble(a) == ToDouble(b),
        (List<object?> x, List<object?> y) => x is JinjaTuple == y is JinjaTuple && x.Count == y.Count && x.Zip(y).All(p => PyEquals(p.First, p.Second, depth + 1)),
        (JinjaDict x, JinjaDict y)
            => x.Count == y.Count && x.All(p => y.TryGetValue(p.Key, out var v) && PyEquals(p.Value, v, depth + 1)),
        _ => ReferenceEquals(a, b),
    };

    public static double ToDouble(object? value) => value switch
    {
        long l => l,
        double d => d,
        bool b => b ? 1 : 0,
        _ => throw new ChatTemplateException($"expected a number, got {TypeName(value)}."),
    };

    public static string TypeName(object? value) => value switch
    {
        null => "None",
        JinjaUndefined u => $"undefined '{u.Name}'",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        List<object?> => "list",
        JinjaDict => "dict",
        JinjaNamespace => "namespace",
        JinjaMarkup => "str",
        JinjaIterator it => it.Kind,
        _ => "object",
    };

    /// <summary>The items a for loop or filter walks: a list's items, a dict's keys, a string's characters, nothing for undefined.</summary>
    public static List<object?> Iterate(object? value) => value switch
    {
        JinjaUndefined => [],
        List<object?> list => [.. list],
        JinjaDict dict => [.. dict.Keys.Select(JinjaDict.Unkey)],
        string s => CodePoints(s),
        JinjaMarkup m => CodePoints(m.Text),
        JinjaIterator it => it.Take(),
        _ => throw new ChatTemplateException($"{TypeName(value)} is not iterable."),
    };

    /// <summary>A string's characters as Python counts them: code points, so an emoji is one, not two UTF-16 halves.</summary>
    public static List<object?> CodePoints(string s)
    {
        JinjaLimits.CheckItems(CodePointCount(s), 0);
        return s.EnumerateRunes().Select(r => (object?)r.ToString()).ToList();
    }

    /// <summary>Python's <c>len()</c> of a string, without making its characters.</summary>
    public static int CodePointCount(string s)
    {
        int n = 0;
        foreach (var _ in s.EnumerateRunes()) n++;
        return n;
    }

    /// <summary>A string's code points as runes: four bytes each, for indexing and slicing without a list of strings.</summary>
    public static System.Text.Rune[] Runes(string s) => [.. s.EnumerateRunes()];

    /// <summary>JSON as template values: objects in their order, lists, strings, integers, floats, booleans, null.</summary>
    public static object? FromJson(System.Text.Json.JsonElement e, int depth = 0) => e.ValueKind switch
    {
        _ when depth > JinjaLimits.MaxValueDepth => throw JinjaLimits.Exceeded(nameof(JinjaLimits.MaxValueDepth), depth, "a variable's nesting"),
        System.Text.Json.JsonValueKind.Object => new JinjaDict(e.EnumerateObject().Select(p => KeyValuePair.Create((object)p.Name, FromJson(p.Value, depth + 1)))),
        System.Text.Json.JsonValueKind.Array => e.EnumerateArray().Select(x => FromJson(x, depth + 1)).ToList(),
        System.Text.Json.JsonValueKind.String => e.GetString(),
        System.Text.Json.JsonValueKind.Number => e.TryGetInt64(out long l) ? (object)l : e.GetDouble(), // boxed apart: a ?: of long and double is a double
        System.Text.Json.JsonValueKind.True => true,
        System.Text.Json.JsonValueKind.False => false,
        _ => null,
    };

    /// <summary>Converts a .NET value (from the caller's variables) to the template's: lists, ordered dicts, longs and doubles.</summary>
    public static object? FromClr(object? value, int depth = 0) => value switch
    {
        _ when depth > JinjaLimits.MaxValueDepth => throw JinjaLimits.Exceeded(nameof(JinjaLimits.MaxValueDepth), depth, "a variable's nesting"),
        null or string or bool or long or double or JinjaUndefined or JinjaNamespace or JinjaCallable => value,
        System.Text.Json.JsonElement json => FromJson(json, depth),
        int i => (long)i,
        float f => (double)f,
        decimal m => (double)m,
        JinjaDict dict => new JinjaDict(dict.Select(p => KeyValuePair.Create(p.Key, FromClr(p.Value, depth + 1)))),
        System.Collections.IDictionary dict => new JinjaDict(dict.Keys.Cast<object>().Select(k => KeyValuePair.Create(JinjaDict.Key(FromClr(k, depth + 1)), FromClr(dict[k], depth + 1)))),
        IEnumerable<KeyValuePair<string, object?>> pairs => new JinjaDict(pairs.Select(p => KeyValuePair.Create((object)p.Key, FromClr(p.Value, depth + 1)))),
        System.Collections.IEnumerable items => items.Cast<object?>().Select(x => FromClr(x, depth + 1)).ToList(),
        _ => value.ToString(),
    };
}
