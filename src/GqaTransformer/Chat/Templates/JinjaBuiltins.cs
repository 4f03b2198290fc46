using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using static GqaTransformer.JinjaValues;

namespace GqaTransformer;

/// <summary>
/// What a chat template can call: the globals transformers provides (<c>raise_exception</c>, <c>namespace</c>,
/// <c>range</c>, <c>strftime_now</c>), Jinja's filters and tests that real templates use, the Python string, list and
/// dict methods they call, and the operators.
/// </summary>
internal static partial class JinjaBuiltins
{

    public static void AddGlobals(Dictionary<string, object?> globals, Func<DateTime> clock)
    {
        globals["raise_exception"] = new JinjaCallable("raise_exception", (args, _) =>
            throw new ChatTemplateException(args.Count > 0 ? ToStr(args[0]) : "raise_exception was called.", fromTemplate: true));
        globals["namespace"] = new JinjaCallable("namespace", (args, kwargs) =>
        {
            var ns = new JinjaNamespace();
            foreach (var arg in args)
                if (arg is JinjaDict dict) foreach (var (k, v) in dict) ns.Values[ToStr(JinjaDict.Unkey(k))] = v;
            foreach (var (k, v) in kwargs) ns.Values[k] = v;
            return ns;
        });
        globals["range"] = new JinjaCallable("range", (args, _) =>
        {
            long start = 0, stop, step = 1;
            if (args.Count == 1) stop = Int(args[0]);
            else if (args.Count >= 2) { start = Int(args[0]); stop = Int(args[1]); if (args.Count > 2) step = Int(args[2]); }
            else throw new ChatTemplateException("range() needs at least one argument.");
            if (step == 0) throw new ChatTemplateException("range() step must not be zero.");
            long count = Math.Max(0, (stop - start + step - Math.Sign(step)) / step);
            JinjaLimits.CheckItems(count, 0);
            return Enumerable.Range(0, (int)count).Select(i => (object?)(start + i * step)).ToList();
        });
        globals["dict"] = new JinjaCallable("dict", (_, kwargs) => new JinjaDict(kwargs.Select(p => KeyValuePair.Create((object)p.Key, p.Value))));
        globals["strftime_now"] = new JinjaCallable("strftime_now", (args, _) => Strftime(clock(), args.Count > 0 ? ToStr(args[0]) : "%Y-%m-%d"));
    }

    private static long Int(object? value) => value switch
    {
        long l => l,
        double d => (long)d,
        bool b => b ? 1 : 0,
        _ => throw new ChatTemplateException($"expected an integer, got {TypeName(value)}."),
    };

    private static string Strftime(DateTime time, string format)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < format.Length; i++)
        {
            if (format[i] != '%' || i + 1 == format.Length) { sb.Append(format[i]); continue; }
            char c = format[++i];
            sb.Append(c switch
            {
                'd' => time.ToString("dd", CultureInfo.InvariantCulture),
                'm' => time.ToString("MM", CultureInfo.InvariantCulture),
                'Y' => time.ToString("yyyy", CultureInfo.InvariantCulture),
                'y' => time.ToString("yy", CultureInfo.InvariantCulture),
                'b' => time.ToString("MMM", CultureInfo.InvariantCulture),
                'B' => time.ToString("MMMM", CultureInfo.InvariantCulture),
                'a' => time.ToString("ddd", CultureInfo.InvariantCulture),
                'A' => time.ToString("dddd", CultureInfo.InvariantCulture),
                'H' => time.ToString("HH", CultureInfo.InvariantCulture),
                'M' => time.ToString("mm", CultureInfo.InvariantCulture),
                'S' => time.ToString("ss", CultureInfo.InvariantCulture),
                '%' => "%",
                _ => "%" + c,
            });
        }
        return sb.ToString();
    }

    public static object? GetAttribute(object? target, string name, int line) => target switch
    {
        JinjaUndefined u => throw new ChatTemplateException($"line {line}: '{u.Name}' is undefined, so it has no attribute '{name}'."),
        JinjaDict dict when dict.TryGetValue(name, out var value) => value,
        JinjaNamespace ns => ns.Values.TryGetValue(name, out var value) ? value : new JinjaUndefined(name),
        JinjaLoop loop => loop.Get(name),
        _ => (object?)Method(target, name) ?? new JinjaUndefined(name),
    };

    public static object? GetItem(object? target, object? key, int line)
    {
        switch (target)
        {
            case JinjaUndefined u:
                throw new ChatTemplateException($"line {line}: '{u.Name}' is undefined, so it has no item {Repr(key)}.");
            case JinjaDict dict:
                return dict.TryGetValue(JinjaDict.Key(key), out var value) ? value : new JinjaUndefined(ToStr(key));
            case List<object?> list when key is long i:
                i = i < 0 ? list.Count + i : i;
                return i >= 0 && i < list.Count ? list[(int)i] : new JinjaUndefined($"[{key}]");
            case string s when key is long i && !s.AsSpan().ContainsAnyInRange('\uD800', '\uDFFF'):   // no surrogates: chars are code points
                i = i < 0 ? s.Length + i : i;
                return i >= 0 && i < s.Length ? s[(int)i].ToString() : new JinjaUndefined($"[{key}]");
            case string s when key is long i:
                var runes = Runes(s);
                i = i < 0 ? runes.Length + i : i;
                return i >= 0 && i < runes.Length ? runes[(int)i].ToString() : new JinjaUndefined($"[{key}]");
            case JinjaNamespace or JinjaLoop when key is string name:
                return GetAttribute(target, name, line);
            default:
                return key is string attribute ? GetAttribute(target, attribute, line) : new JinjaUndefined($"[{Repr(key)}]");
        }
    }

    public static object? Slice(object? target, object? start, object? stop, object? step, int line)
    {
        long by = step is null ? 1 : Int(step);
        if (by == 0) throw new ChatTemplateException($"line {line}: slice step cannot be zero.");
        var runes = target is string s ? Runes(s) : null;
        var items = target is List<object?> l ? l : runes is null ? throw new ChatTemplateException($"line {line}: {TypeName(target)} cannot be sliced.") : null;
        int n = runes?.Length ?? items!.Count;
        long Clamp(object? v, long fallback)
        {
            if (v is null) return fallback;
            long x = Int(v);
            if (x < 0) x += n;
            return by > 0 ? Math.Clamp(x, 0, n) : Math.Clamp(x, -1, n - 1);
        }
        long from = Clamp(start, by > 0 ? 0 : n - 1), to = Clamp(stop, by > 0 ? n : -1);
        if (runes is not null)
        {
            var text = new StringBuilder();
            for (long i = from; by > 0 ? i < to : i > to; i += by) text.Append(runes[(int)i].ToString());
            return text.ToString();
        }
        var result = new List<object?>();
        for (long i = from; by > 0 ? i < to : i > to; i += by) result.Add(items![(int)i]);
        return result;
    }

    /// <summary>A Python method of a string, list or dict, bound to it; null when there is none of that name.</summary>
    private static JinjaCallable? Method(object? target, string name)
    {
        JinjaCallable Bind(Func<List<object?>, Dictionary<string, object?>, object?> f) => new(name, f);
        string? Arg(List<object?> args, int i) => i < args.Count && args[i] is not null ? ToStr(args[i]) : null;
        return target switch
        {
            string s => name switch
            {
                "strip" => Bind((a, _) => Arg(a, 0) is { } chars ? s.Trim(chars.ToCharArray()) : s.Trim()),
                "lstrip" => Bind((a, _) => Arg(a, 0) is { } chars ? s.TrimStart(chars.ToCharArray()) : s.TrimStart()),
                "rstrip" => Bind((a, _) => Arg(a, 0) is { } chars ? s.TrimEnd(chars.ToCharArray()) : s.TrimEnd()),
                "upper" => Bind((_, _) => s.ToUpperInvariant()),
                "lower" => Bind((_, _) => s.ToLowerInvariant()),
                "title" => Bind((_, _) => Title(s)),
                "capitalize" => Bind((_, _) => Capitalize(s)),
                "startswith" => Bind((a, _) => a.Count > 0 && (a[0] is List<object?> options ? options.Any(o => s.StartsWith(ToStr(o), StringComparison.Ordinal)) : s.StartsWith(ToStr(a[0]), StringComparison.Ordinal))),
                "endswith" => Bind((a, _) => a.Count > 0 && (a[0] is List<object?> options ? options.Any(o => s.EndsWith(ToStr(o), StringComparison.Ordinal)) : s.EndsWith(ToStr(a[0]), StringComparison.Ordinal))),
                "split" => Bind((a, k) => Split(s, Arg(a, 0) ?? (k.TryGetValue("sep", out var sep) && sep is not null ? ToStr(sep) : null),
                    a.Count > 1 ? Int(a[1]) : k.TryGetValue("maxsplit", out var max) ? Int(max) : -1)),
                "replace" => Bind((a, _) => a.Count < 2 ? throw new ChatTemplateException("replace() needs two arguments.") : Replace(s, ToStr(a[0]), ToStr(a[1]), a.Count > 2 ? Int(a[2]) : -1)),
                "find" => Bind((a, _) => (long)s.IndexOf(ToStr(a.FirstOrDefault()), StringComparison.Ordinal)),
                "count" => Bind((a, _) => (long)Count(s, ToStr(a.FirstOrDefault()))),
                "join" => Bind((a, _) => Join(s, Iterate(a.FirstOrDefault()).Select(ToStr), 0)),
                "isdigit" => Bind((_, _) => s.Length > 0 && s.All(char.IsDigit)),
                "format" => Bind((a, _) => Format(s, a)),
                _ => null,
            },
            JinjaDict dict => name switch
            {
                "items" => Bind((_, _) => dict.Items()),
                "keys" => Bind((_, _) => dict.Keys.Select(JinjaDict.Unkey).ToList()),
                "values" => Bind((_, _) => dict.Values.ToList()),
                "get" => Bind((a, _) => a.Count > 0 && dict.TryGetValue(JinjaDict.Key(a[0]), out var v) ? v : a.Count > 1 ? a[1] : null),
                _ => null,
            },
            List<object?> list => name switch
            {
                "index" => Bind((a, _) => (long)list.FindIndex(x => PyEquals(x, a.FirstOrDefault()))),
                "count" => Bind((a, _) => (long)list.Count(x => PyEquals(x, a.FirstOrDefault()))),
                "append" or "extend" or "pop" or "insert" or "remove" or "clear" or "sort" or "reverse" =>
                    Bind((_, _) => throw new ChatTemplateException($"list.{name}() would change a list, which chat templates may not do.")),
                _ => null,
            },
            _ => null,
        };
    }

    private static List<object?> Split(string s, string? separator, long maxSplit)
    {
        if (separator is null)
        {
            var words = s.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            return words.Select(w => (object?)w).ToList();
        }
        if (separator.Length == 0) throw new ChatTemplateException("split() separator must not be empty.");
        JinjaLimits.CheckItems(Count(s, separator) + 1L, 0);
        var parts = maxSplit < 0 ? s.Split(separator) : s.Split(separator, (int)Math.Min(maxSplit + 1, int.MaxValue));
        return parts.Select(p => (object?)p).ToList();
    }

    private static string Replace(string s, string old, string replacement, long count)
    {
        long found = Math.Min(count < 0 ? long.MaxValue : count, old.Length == 0 ? s.Length + 1 : Count(s, old));
        JinjaLimits.CheckString(s.Length + found * (replacement.Length - (long)old.Length), 0);
        if (count < 0 && old.Length > 0) return s.Replace(old, replacement, StringComparison.Ordinal);
        var sb = new StringBuilder();
        int at = 0;
        for (long n = 0; n < count; n++)
        {
            int next = old.Length == 0 ? -1 : s.IndexOf(old, at, StringComparison.Ordinal);
            if (next < 0) break;
            sb.Append(s, at, next - at).Append(replacement);
            at = next + old.Length;
        }
        return sb.Append(s, at, s.Length - at).ToString();
    }

    private static int Count(string s, string part)
    {
        if (part.Length == 0) return s.Length + 1;
        int n = 0;
        for (int at = s.IndexOf(part, StringComparison.Ordinal); at >= 0; at = s.IndexOf(part, at + part.Length, StringComparison.Ordinal)) n++;
        return n;
    }

    private static string Format(string s, List<object?> args)
    {
        var sb = new StringBuilder();
        int next = 0;
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] == '{' && i + 1 < s.Length && s[i + 1] == '}') { sb.Append(next < args.Count ? ToStr(args[next++]) : ""); i++; JinjaLimits.CheckString(sb.Length, 0); }
            else sb.Append(s[i]);
        }
        return sb.ToString();
    }

    private static string Capitalize(string s) => s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();

    /// <summary>Python's <c>str.title()</c>: upper case after any character that is not a letter, lower case after one.</summary>
    private static string Title(string s)
    {
        var sb = new StringBuilder(s.Length);
        bool start = true;
        foreach (char c in s)
        {
            sb.Append(start ? char.ToUpperInvariant(c) : char.ToLowerInvariant(c));
            start = !char.IsLetter(c);
        }
        return sb.ToString();
    }

    /// <summary>
    /// jinja2's <c>title</c> filter, which is not <c>str.title()</c>: words begin only after whitespace, '-' or an opening
    /// bracket, so <c>"quoted"</c> stays lower case inside its quotes.
    /// </summary>
    private static string TitleFilter(string s)
    {
        var sb = new StringBuilder(s.Length);
        foreach (string item in WordBeginning().Split(s))
            if (item.Length > 0)
                sb.Append(char.ToUpperInvariant(item[0])).Append(item[1..].ToLowerInvariant());
        return sb.ToString();
    }

    [GeneratedRegex(@"([-\s\(\{\[\<]+)")]
    private static partial Regex WordBeginning();

    public static object? Filter(string name, object? value, List<object?> args, Dictionary<string, object?> kwargs, int line)
    {
        object? Arg(int i, string key, object? fallback) => i >= 0 && i < args.Count ? args[i] : kwargs.TryGetValue(key, out var v) ? v : fallback;
        return name switch
        {
            "trim" => Arg(0, "chars", null) is { } chars ? ToStr(value).Trim(ToStr(chars).ToCharArray()) : ToStr(value).Trim(),
            "tojson" => ToJson(value, JsonOptionsOf(Arg(0, "ensure_ascii", false), Arg(1, "indent", null), Arg(2, "separators", null), Arg(3, "sort_keys", false), line)),
            "upper" => ToStr(value).ToUpperInvariant(),
            "lower" => ToStr(value).ToLowerInvariant(),
            "capitalize" => Capitalize(ToStr(value)),
            "title" => TitleFilter(ToStr(value)),
            "replace" => Replace(ToStr(value), ToStr(Arg(0, "old", "")), ToStr(Arg(1, "new", "")), Arg(2, "count", null) is { } c ? Int(c) : -1),
            "length" or "count" => value switch
            {
                string s => (long)CodePointCount(s),
                JinjaUndefined => 0L,
                JinjaIterator it => throw new ChatTemplateException($"line {line}: object of type '{it.Kind}' has no len()."),
                _ => (long)Iterate(value).Count,
            },
            "default" or "d" => value is JinjaUndefined || Truthy(Arg(1, "boolean", false)) && !Truthy(value) ? Arg(0, "default_value", "") : value,
            "first" => Iterate(value) is { Count: > 0 } items ? items[0] : new JinjaUndefined("first"),
            "last" => value is JinjaIterator it ? throw new ChatTemplateException($"line {line}: '{it.Kind}' object is not reversible.")
                : Iterate(value) is { Count: > 0 } items ? items[^1] : new JinjaUndefined("last"),
            "join" => Join(ToStr(Arg(0, "d", "")), Iterate(value).Select(item =>
                ToStr(Arg(1, "attribute", null) is { } attribute ? Attribute(item, attribute, line) : item)), line),
            "string" => ToStr(value),
            "safe" => new JinjaMarkup(ToStr(value)),
            "int" => value switch
            {
                long l => l,
                double d => (long)Math.Truncate(d),
                bool b => b ? 1L : 0L,
                string s when long.TryParse(s.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var l) => l,
                string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var d) => (long)Math.Truncate(d),
                _ => Arg(0, "default", 0L),
            },
            "float" => value switch
            {
                long or double or bool => ToDouble(value),
                string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var d) => d,
                _ => Arg(0, "default", 0.0),
            },
            "abs" => value is long l ? (object)Math.Abs(l) : Math.Abs(ToDouble(value)),
            "round" => Math.Round(ToDouble(value), (int)Int(Arg(0, "precision", 0L)), MidpointRounding.ToEven), // as Python rounds
            "list" => Iterate(value),
            "items" => value is JinjaDict dict ? dict.Items()
                : value is JinjaUndefined ? [] : throw new ChatTemplateException($"line {line}: items needs a dict, got {TypeName(value)}."),
            "reverse" => value is string s ? string.Concat(Enumerable.Reverse(Runes(s)))
                : value is List<object?> items ? new JinjaIterator(Enumerable.Reverse(items).ToList(), "list_reverseiterator")
                : Enumerable.Reverse(Iterate(value)).ToList(),
            "unique" => new JinjaIterator(Iterate(value).Aggregate(new List<object?>(), (seen, item) => { if (!seen.Any(x => PyEquals(x, item))) seen.Add(item); return seen; }), "generator"),
            "sort" => Sorted(Iterate(value), item => SortKey(Arg(2, "attribute", null) is { } attribute ? Attribute(item, attribute, line) : item,
                Truthy(Arg(1, "case_sensitive", false))), Truthy(Arg(0, "reverse", false)), line),
            "sum" => Iterate(value).Aggregate((object?)0L, (total, item) => Binary("+", total, item, line)),
            "min" => Iterate(value) is { Count: > 0 } least ? least.Aggregate((a, b) => Compare(a, b, line) <= 0 ? a : b) : new JinjaUndefined("min"),
            "max" => Iterate(value) is { Count: > 0 } most ? most.Aggregate((a, b) => Compare(a, b, line) >= 0 ? a : b) : new JinjaUndefined("max"),
            // jinja2 walks these only "if value", so None gives nothing; each returns a one-pass generator
            "map" => new JinjaIterator(Arg(-1, "attribute", null) is { } attribute
                ? IterateIf(value).Select(item => Attribute(item, attribute, line) is var v && v is JinjaUndefined && kwargs.TryGetValue("default", out var d) ? d : v).ToList()
                : IterateIf(value).Select(item => Filter(ToStr(args.FirstOrDefault()), item, args.Skip(1).ToList(), [], line)).ToList(), "generator"),
            "select" or "reject" => new JinjaIterator(IterateIf(value).Where(item =>
                (args.Count == 0 ? Truthy(item) : Test(ToStr(args[0]), item, args.Skip(1).ToList(), line)) == (name == "select")).ToList(), "generator"),
            "selectattr" or "rejectattr" => new JinjaIterator(IterateIf(value).Where(item =>
            {
                var attribute = Attribute(item, args.FirstOrDefault(), line);
                bool passes = args.Count < 2 ? Truthy(attribute) : Test(ToStr(args[1]), attribute, args.Skip(2).ToList(), line);
                return passes == (name == "selectattr");
            }).ToList(), "generator"),
            "indent" => Indent(ToStr(value), Arg(0, "width", 4L), Truthy(Arg(1, "first", false)), Truthy(Arg(2, "blank", false))),
            "dictsort" => value is JinjaDict d
                ? Sorted(d.Items(), p => SortKey(((List<object?>)p!)[0], caseSensitive: false), false, line)
                : throw new ChatTemplateException($"line {line}: dictsort needs a dict."),
            "wordcount" => (long)ToStr(value).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Length,
            _ => throw new ChatTemplateException($"line {line}: no filter named '{name}'."),
        };
    }

    /// <summary><c>sep.join(parts)</c>, its length checked before it is made: a list may hold one long string many times.</summary>
    private static string Join(string separator, IEnumerable<string> parts, int line)
    {
        var list = parts.ToList();
        JinjaLimits.CheckString(list.Sum(p => (long)p.Length) + (long)separator.Length * Math.Max(0, list.Count - 1), line);
        return string.Join(separator, list);
    }

    /// <summary>jinja2's attribute getter of map, selectattr, sort and join: "a.b.0" walks item.a.b[0].</summary>
    private static object? Attribute(object? item, object? attribute, int line)
    {
        if (attribute is not string path || !path.Contains('.', StringComparison.Ordinal)) return GetItem(item, attribute, line);
        foreach (string part in path.Split('.'))
            item = GetItem(item, part.Length > 0 && part.All(char.IsAsciiDigit) ? long.Parse(part, CultureInfo.InvariantCulture) : part, line);
        return item;
    }

    private static List<object?> IterateIf(object? value) => Truthy(value) ? Iterate(value) : [];

    /// <summary>Python's stable sort by a key; <c>reverse</c> keeps equal items in their order, as Python's does.</summary>
    private static List<object?> Sorted(IEnumerable<object?> items, Func<object?, object?> key, bool reverse, int line)
    {
        var list = items.ToList();
        var keys = list.Select(key).ToList();
        var comparer = Comparer<int>.Create((a, b) => Compare(keys[a], keys[b], line));
        var order = reverse ? Enumerable.Range(0, list.Count).OrderByDescending(i => i, comparer) : Enumerable.Range(0, list.Count).OrderBy(i => i, comparer);
        return order.Select(i => list[i]).ToList();
    }

    private static object? SortKey(object? value, bool caseSensitive) => !caseSensitive && value is string s ? s.ToLowerInvariant() : value;

    private static JsonOptions JsonOptionsOf(object? ensureAscii, object? indent, object? separators, object? sortKeys, int line)
    {
        string? pad = indent switch
        {
            null => null,
            string s => s,
            _ => new string(' ', (int)Math.Clamp(Int(indent), 0, 1024)),
        };
        var (item, key) = separators switch
        {
            null => ((string?)null, ": "),
            List<object?> { Count: 2 } pair when pair[0] is string a && pair[1] is string b => (a, b),
            _ => throw new ChatTemplateException($"line {line}: tojson separators must be two strings, got {Repr(separators)}."),
        };
        return new JsonOptions(Truthy(ensureAscii), pad, item, key, Truthy(sortKeys));
    }

    /// <summary>markupsafe's escape, which Markup's + applies to the plain string it is joined with.</summary>
    private static string HtmlEscape(string s) => s.Replace("&", "&amp;", StringComparison.Ordinal).Replace("<", "&lt;", StringComparison.Ordinal)
        .Replace(">", "&gt;", StringComparison.Ordinal).Replace("'", "&#39;", StringComparison.Ordinal).Replace("\"", "&#34;", StringComparison.Ordinal);

    private static string Indent(string s, object? width, bool first, bool blank)
    {
        string pad = width is string w ? w : new string(' ', (int)Math.Clamp(Int(width), 0, JinjaLimits.MaxStringChars));
        var lines = s.Split('\n');
        JinjaLimits.CheckString(s.Length + (long)pad.Length * lines.Length, 0);
        for (int i = 0; i < lines.Length; i++)
            if ((i > 0 || first) && (blank || lines[i].Length > 0)) lines[i] = pad + lines[i];
        return string.Join('\n', lines);
    }

    public static bool Test(string name, object? value, List<object?> args, int line) => name switch
    {
        "defined" => value is not JinjaUndefined,
        "undefined" => value is JinjaUndefined,
        "none" => value is null,
        "string" => value is string,
        "number" => value is long or double,
        "integer" => value is long,
        "float" => value is double,
        "boolean" => value is bool,
        "true" => value is true,
        "false" => value is false,
        "mapping" => value is JinjaDict,
        "iterable" => value is string or List<object?> or JinjaDict,
        "sequence" => value is string or List<object?> or JinjaDict,
        "callable" => value is JinjaCallable,
        "odd" => Int(value) % 2 != 0,
        "even" => Int(value) % 2 == 0,
        "divisibleby" => Int(value) % Int(args.FirstOrDefault()) == 0,
        "eq" or "equalto" or "==" => PyEquals(value, args.FirstOrDefault()),
        "ne" or "!=" => !PyEquals(value, args.FirstOrDefault()),
        "lt" or "lessthan" => Compare(value, args.FirstOrDefault(), line) < 0,
        "gt" or "greaterthan" => Compare(value, args.FirstOrDefault(), line) > 0,
        "le" => Compare(value, args.FirstOrDefault(), line) <= 0,
        "ge" => Compare(value, args.FirstOrDefault(), line) >= 0,
        "in" => Contains(args.FirstOrDefault(), value, line),
        "lower" => ToStr(value) is var s && s == s.ToLowerInvariant(),
        "upper" => ToStr(value) is var u && u == u.ToUpperInvariant(),
        "sameas" => ReferenceEquals(value, args.FirstOrDefault()) || value is null && args.FirstOrDefault() is null || value is bool b && args.FirstOrDefault() is bool c && b == c,
        _ => throw new ChatTemplateException($"line {line}: no test named '{name}'."),
    };

    private static int Compare(object? a, object? b, int line) => (a, b) switch
    {
        (string x, string y) => string.CompareOrdinal(x, y),
        (long or double or bool, long or double or bool) => ToDouble(a).CompareTo(ToDouble(b)),
        _ => throw new ChatTemplateException($"line {line}: cannot compare {TypeName(a)} with {TypeName(b)}."),
    };

    private static bool Contains(object? container, object? item, int line) => container switch
    {
        string s => item is string part ? s.Contains(part, StringComparison.Ordinal) : throw new ChatTemplateException($"line {line}: 'in <string>' needs a string, got {TypeName(item)}."),
        List<object?> list => list.Any(x => PyEquals(x, item)),
        JinjaDict dict => dict.ContainsKey(JinjaDict.Key(item)),
        JinjaUndefined => false,
        _ => throw new ChatTemplateException($"line {line}: {TypeName(container)} does not support 'in'."),
    };

    public static object? Binary(string op, object? left, object? right, int line)
    {
        switch (op)
        {
            case "==": return PyEquals(left, right);
            case "!=": return !PyEquals(left, right);
            case "<": return Compare(left, right, line) < 0;
            case ">": return Compare(left, right, line) > 0;
            case "<=": return Compare(left, right, line) <= 0;
            case ">=": return Compare(left, right, line) >= 0;
            case "in": return Contains(right, left, line);
            case "not in": return !Contains(right, left, line);
            case "~":
            {
                return Concat(ToStr(left), ToStr(right), line);
            }
        }
        switch (op, left, right)
        {
            case ("+", JinjaMarkup a, JinjaMarkup b): return new JinjaMarkup(Concat(a.Text, b.Text, line));
            case ("+", JinjaMarkup a, string b): return new JinjaMarkup(Concat(a.Text, HtmlEscape(b), line));
            case ("+", string a, JinjaMarkup b): return new JinjaMarkup(Concat(HtmlEscape(a), b.Text, line));
        }
        if (left is JinjaMarkup ml) left = ml.Text;
        if (right is JinjaMarkup mr) right = mr.Text;
        switch (op, left, right)
        {
            case ("+", string a, string b): return Concat(a, b, line);
            case ("+", List<object?> a, List<object?> b):
                JinjaLimits.CheckItems((long)a.Count + b.Count, line);
                return a.Concat(b).ToList();
            case ("*", string a, long n): return Repeat(a, n, line);
            case ("*", long n, string a): return Repeat(a, n, line);
            case ("*", List<object?> a, long n):
                JinjaLimits.CheckItems(a.Count * Math.Max(n, 0), line);
                return Enumerable.Repeat(a, (int)Math.Max(n, 0)).SelectMany(x => x).ToList();
        }
        if (left is not (long or double or bool) || right is not (long or double or bool))
            throw new ChatTemplateException($"line {line}: unsupported operands for {op}: {TypeName(left)} and {TypeName(right)}.");
        bool integers = left is long or bool && right is long or bool;
        double x = ToDouble(left), y = ToDouble(right);
        if (op is "/" or "//" or "%" && y == 0) throw new ChatTemplateException($"line {line}: division by zero.");
        return op switch
        {
            "+" => integers ? (object)((long)x + (long)y) : x + y,
            "-" => integers ? (object)((long)x - (long)y) : x - y,
            "*" => integers ? (object)((long)x * (long)y) : x * y,
            "/" => x / y,
            "//" => integers ? (object)(long)Math.Floor(x / y) : Math.Floor(x / y),
            "%" => integers ? (object)(long)(x - y * Math.Floor(x / y)) : x - y * Math.Floor(x / y),
            "**" => integers && y >= 0 ? (object)(long)Math.Pow(x, y) : Math.Pow(x, y),
            _ => throw new ChatTemplateException($"line {line}: unknown operator {op}."),
        };
    }

    private static string Concat(string a, string b, int line)
    {
        JinjaLimits.CheckString((long)a.Length + b.Length, line);
        return a + b;
    }

    private static string Repeat(string s, long n, int line)
    {
        if (n <= 0) return "";
        JinjaLimits.CheckString(s.Length * n, line);
        return string.Concat(Enumerable.Repeat(s, (int)n));
    }
}
