using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace GqaTransformer;

/// <summary>
/// The normalizers, pre-tokenizers and decoders of a <c>tokenizer.json</c>, built from its JSON: the kinds that
/// byte-level BPE (GPT-2, Llama 3, Qwen2) and SentencePiece-style BPE (Llama 2, Mistral, Gemma) tokenizers use. A kind
/// not listed here is refused by name when the file is loaded, never ignored.
/// </summary>
internal static class TokenizerSteps
{
    private static readonly TimeSpan RegexTimeout = TimeSpan.FromSeconds(2);
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, Regex> Compiled = new(StringComparer.Ordinal);

    /// <summary>
    /// A compiled regex, built once per pattern: compiling costs milliseconds, and tokenizers share a handful of
    /// patterns. Past 64 patterns (a process loading many odd files) new ones are compiled each time, not kept.
    /// </summary>
    private static Regex Compile(string pattern)
    {
        if (Compiled.TryGetValue(pattern, out var regex)) return regex;
        regex = new Regex(pattern, RegexOptions.CultureInvariant | RegexOptions.Compiled, RegexTimeout);
        if (Compiled.Count < 64) Compiled.TryAdd(pattern, regex);
        return regex;
    }

    /// <summary>GPT-2's map from bytes to printable characters, and back.</summary>
    public static readonly char[] ByteToChar = BuildByteMap();
    public static readonly Dictionary<char, byte> CharToByte = ByteToChar.Select((c, b) => (c, b)).ToDictionary(p => p.c, p => (byte)p.b);

    private static char[] BuildByteMap()
    {
        var map = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
            map[b] = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF ? (char)b : (char)next++;
        return map;
    }

    private const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    public static Func<string, string> Normalizer(JsonElement json)
    {
        if (json.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined) return s => s;
        string type = Type(json, "normalizer");
        return type switch
        {
            "NFC" => s => Unicode(s, NormalizationForm.FormC),
            "NFD" => s => Unicode(s, NormalizationForm.FormD),
            "NFKC" => s => Unicode(s, NormalizationForm.FormKC),
            "NFKD" => s => Unicode(s, NormalizationForm.FormKD),
            "Lowercase" => s => s.ToLowerInvariant(),
            "Prepend" => Prepend(Str(json, "prepend")),
            "Replace" => Replacer(json),
            "Strip" => Strip(Bool(json, "left", true), Bool(json, "right", true)),
            "Sequence" => Chain(json.GetProperty("normalizers").EnumerateArray().Select(Normalizer).ToList()),
            _ => throw Unsupported("normalizer", type),
        };

        static Func<string, string> Prepend(string prefix) => s => s.Length == 0 ? s : prefix + s;
        static Func<string, string> Strip(bool left, bool right) => s => right ? (left ? s.Trim() : s.TrimEnd()) : left ? s.TrimStart() : s;
        static Func<string, string> Chain(List<Func<string, string>> steps) => s => steps.Aggregate(s, (x, step) => step(x));
    }

    /// <summary>Whether this process can normalize Unicode (it cannot in .NET's globalization-invariant mode, which has no ICU).</summary>
    private static readonly Lazy<bool> NormalizationWorks = new(() =>
    {
        try
        {
            return "e\u0301".Normalize(NormalizationForm.FormC) == "\u00e9";
        }
        catch (PlatformNotSupportedException)
        {
            return false;
        }
    });

    private static string Unicode(string s, NormalizationForm form)
    {
        if (System.Text.Ascii.IsValid(s)) return s;
        if (!NormalizationWorks.Value)
            throw new InvalidOperationException(
                $"This tokenizer normalizes text ({form}), which needs ICU, and this process runs in .NET's globalization-invariant mode "
                + "(InvariantGlobalization or DOTNET_SYSTEM_GLOBALIZATION_INVARIANT); turn it off and install libicu to encode non-ASCII text.");
        return s.Normalize(form);
    }

    /// <summary>A pre-tokenizer: splits each piece further, lazily; the flag says whether the pieces start the text.</summary>
    public static Func<IEnumerable<string>, bool, IEnumerable<string>> PreTokenizer(JsonElement json)
    {
        if (json.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined) return (pieces, _) => pieces;
        string type = Type(json, "pre_tokenizer");
        switch (type)
        {
            case "ByteLevel":
            {
                bool prefix = Bool(json, "add_prefix_space", false), useRegex = Bool(json, "use_regex", true);
                var regex = Compile(Gpt2Pattern);
                return (pieces, _) => pieces.SelectMany(piece =>
                {
                    if (prefix && !piece.StartsWith(' ')) piece = " " + piece;
                    if (!useRegex) return [ToByteChars(piece)];
                    var parts = new List<string>();
                    foreach (var m in regex.EnumerateMatches(piece)) parts.Add(ToByteChars(piece.Substring(m.Index, m.Length)));
                    return parts;
                });
            }
            case "Split":
            {
                var regex = Pattern(json.GetProperty("pattern"));
                string behavior = Str(json, "behavior");
                bool invert = Bool(json, "invert", false);
                return (pieces, _) => pieces.SelectMany(piece => Split(piece, regex, behavior, invert));
            }
            case "Metaspace":
            {
                string replacement = Str(json, "replacement");
                string scheme = PrependScheme(json);
                bool split = Bool(json, "split", true);
                return (pieces, atStart) => pieces.SelectMany((piece, index) =>
                {
                    piece = piece.Replace(" ", replacement, StringComparison.Ordinal);
                    if ((scheme == "always" || scheme == "first" && index == 0 && atStart) && !piece.StartsWith(replacement, StringComparison.Ordinal)) piece = replacement + piece;
                    return split ? SplitBefore(piece, replacement) : [piece];
                });
            }
            case "Digits":
            {
                var regex = Compile(Bool(json, "individual_digits", false) ? @"\p{Nd}" : @"\p{Nd}+");
                return (pieces, _) => pieces.SelectMany(piece => Split(piece, regex, "Isolated", false));
            }
            case "Sequence":
            {
                var steps = json.GetProperty("pretokenizers").EnumerateArray().Select(PreTokenizer).ToList();
                return (pieces, atStart) => steps.Aggregate(pieces, (x, step) => step(x, atStart));
            }
            default:
                throw Unsupported("pre_tokenizer", type);
        }
    }

    public static string ToByteChars(string s)
    {
        if (System.Text.Ascii.IsValid(s))                                         // one byte per character
            return s.AsSpan().ContainsAnyExceptInRange('!', '~')
                ? string.Create(s.Length, s, static (chars, src) => { for (int i = 0; i < src.Length; i++) chars[i] = ByteToChar[src[i]]; })
                : s;                                                              // printable ASCII maps to itself
        var bytes = Encoding.UTF8.GetBytes(s);
        return string.Create(bytes.Length, bytes, static (chars, b) => { for (int i = 0; i < b.Length; i++) chars[i] = ByteToChar[b[i]]; });
    }

    private static IEnumerable<string> SplitBefore(string s, string delimiter)
    {
        int start = 0;
        for (int at = s.IndexOf(delimiter, 1, StringComparison.Ordinal); at > 0; at = s.IndexOf(delimiter, at + 1, StringComparison.Ordinal))
        {
            yield return s[start..at];
            start = at;
        }
        if (start < s.Length) yield return s[start..];
    }

    private static IEnumerable<string> Split(string s, Regex regex, string behavior, bool invert)
    {
        // (text, isMatch) runs covering s; with invert, the matches are the gaps and the gaps the matches.
        var runs = new List<(string Text, bool Match)>();
        int at = 0;
        foreach (var m in regex.EnumerateMatches(s))
        {
            if (m.Length == 0) continue;
            if (m.Index > at) runs.Add((s[at..m.Index], invert));
            runs.Add((s.Substring(m.Index, m.Length), !invert));
            at = m.Index + m.Length;
        }
        if (at < s.Length) runs.Add((s[at..], invert));
        switch (behavior)
        {
            case "Isolated":
                return runs.Select(r => r.Text);
            case "Removed":
                return runs.Where(r => !r.Match).Select(r => r.Text);
            case "MergedWithPrevious":
            {
                var result = new List<string>();
                foreach (var (text, match) in runs)
                    if (match && result.Count > 0) result[^1] += text; else result.Add(text);
                return result;
            }
            case "MergedWithNext":
            {
                var result = new List<string>();
                string pending = "";
                foreach (var (text, match) in runs)
                    if (match) pending += text; else { result.Add(pending + text); pending = ""; }
                if (pending.Length > 0) result.Add(pending);
                return result;
            }
            case "Contiguous":
            {
                var result = new List<(string Text, bool Match)>();
                foreach (var run in runs)
                    if (result.Count > 0 && result[^1].Match == run.Match) result[^1] = (result[^1].Text + run.Text, run.Match); else result.Add(run);
                return result.Select(r => r.Text);
            }
            default:
                throw Unsupported("Split behavior", behavior);
        }
    }

    /// <summary>A decoder: turns the token strings of some ids into text pieces (joined at the end).</summary>
    public static Func<List<string>, List<string>> Decoder(JsonElement json)
    {
        if (json.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined) return tokens => tokens;
        string type = Type(json, "decoder");
        switch (type)
        {
            case "ByteLevel":
                return tokens => [FromByteChars(string.Concat(tokens))];
            case "Replace":
            {
                var replace = Replacer(json);
                return tokens => tokens.Select(replace).ToList();
            }
            case "ByteFallback":
                return ByteFallback;
            case "Fuse":
                return tokens => [string.Concat(tokens)];
            case "Strip":
            {
                string content = Str(json, "content");
                int start = json.GetProperty("start").GetInt32(), stop = json.GetProperty("stop").GetInt32();
                return tokens => tokens.Select(t => Strip(t, content, start, stop)).ToList();
            }
            case "Metaspace":
            {
                string replacement = Str(json, "replacement");
                string scheme = PrependScheme(json);
                return tokens => tokens.Select((t, i) =>
                {
                    t = t.Replace(replacement, " ", StringComparison.Ordinal);
                    return i == 0 && scheme != "never" && t.StartsWith(' ') ? t[1..] : t;
                }).ToList();
            }
            case "Sequence":
            {
                var steps = json.GetProperty("decoders").EnumerateArray().Select(Decoder).ToList();
                return tokens => steps.Aggregate(tokens, (x, step) => step(x));
            }
            default:
                throw Unsupported("decoder", type);
        }
    }

    private static string FromByteChars(string s)
    {
        var bytes = new List<byte>(s.Length);
        var text = new StringBuilder();
        foreach (char c in s)
        {
            if (CharToByte.TryGetValue(c, out byte b)) { bytes.Add(b); continue; }
            Flush();
            text.Append(c);                                       // an added token's own text
        }
        Flush();
        return text.ToString();

        void Flush()
        {
            if (bytes.Count == 0) return;
            text.Append(Encoding.UTF8.GetString(bytes.ToArray()));    // invalid sequences become U+FFFD, as HF does
            bytes.Clear();
        }
    }

    private static List<string> ByteFallback(List<string> tokens)
    {
        var result = new List<string>();
        var bytes = new List<byte>();
        foreach (var token in tokens)
        {
            if (token.Length == 6 && token.StartsWith("<0x", StringComparison.Ordinal) && token[5] == '>'
                && byte.TryParse(token.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out byte b))
            {
                bytes.Add(b);
                continue;
            }
            Flush();
            result.Add(token);
        }
        Flush();
        return result;

        void Flush()
        {
            if (bytes.Count == 0) return;
            var span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes);
            // HF: bytes that are not valid UTF-8 become one U+FFFD each.
            result.Add(System.Text.Unicode.Utf8.IsValid(span) ? Encoding.UTF8.GetString(span) : new string('\uFFFD', bytes.Count));
            bytes.Clear();
        }
    }

    private static string Strip(string token, string content, int start, int stop)
    {
        int from = 0, to = token.Length;
        for (int i = 0; i < start && from < to && string.CompareOrdinal(token, from, content, 0, content.Length) == 0; i++) from += content.Length;
        for (int i = 0; i < stop && to - content.Length >= from && string.CompareOrdinal(token, to - content.Length, content, 0, content.Length) == 0; i++) to -= content.Length;
        return token[from..to];
    }

    private static Func<string, string> Replacer(JsonElement json)
    {
        var pattern = json.GetProperty("pattern");
        string content = Str(json, "content");
        if (pattern.TryGetProperty("String", out var literal))
        {
            string old = literal.GetString() ?? "";
            return s => old.Length == 0 ? s : s.Replace(old, content, StringComparison.Ordinal);
        }
        var regex = Pattern(pattern);
        return s => regex.Replace(s, content.Replace("$", "$$", StringComparison.Ordinal));
    }

    private static Regex Pattern(JsonElement pattern)
    {
        if (pattern.TryGetProperty("String", out var literal)) return Compile(Regex.Escape(literal.GetString() ?? ""));
        if (pattern.TryGetProperty("Regex", out var regex))
        {
            try
            {
                return Compile(regex.GetString() ?? "");
            }
            catch (ArgumentException e)
            {
                throw new InvalidDataException($"tokenizer.json holds a pattern .NET cannot compile: {e.Message}", e);
            }
        }
        throw new InvalidDataException("tokenizer.json holds a pattern that is neither String nor Regex.");
    }

    /// <summary>Metaspace's prepend_scheme (always, first or never); older files say add_prefix_space instead.</summary>
    private static string PrependScheme(JsonElement json)
        => json.TryGetProperty("prepend_scheme", out var p) ? p.GetString()! : Bool(json, "add_prefix_space", true) ? "always" : "never";

    private static string Type(JsonElement json, string what)
        => json.ValueKind == JsonValueKind.Object && json.TryGetProperty("type", out var t) && t.GetString() is { } type ? type
         : throw new InvalidDataException($"tokenizer.json: a {what} has no type.");

    private static string Str(JsonElement json, string name)
        => json.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()! : throw new InvalidDataException($"tokenizer.json: '{name}' is missing or not a string.");

    private static bool Bool(JsonElement json, string name, bool fallback)
        => json.TryGetProperty(name, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : fallback;

    private static NotSupportedException Unsupported(string what, string type)
        => new($"tokenizer.json uses a {what} of type '{type}', which this library does not implement (supported: byte-level and SentencePiece-style BPE).");
}
