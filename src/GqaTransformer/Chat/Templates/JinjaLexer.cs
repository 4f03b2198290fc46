using System.Globalization;
using System.Text;

namespace GqaTransformer;

/// <summary>A token inside a Jinja tag: a name, a string or number literal, or an operator.</summary>
internal readonly record struct JinjaToken(JinjaTokenKind Kind, string Text, object? Value, int Line);

internal enum JinjaTokenKind { Name, String, Number, Operator, End }

/// <summary>A piece of template source: literal text, an output tag <c>{{ }}</c> or a statement tag <c>{% %}</c>.</summary>
internal abstract record JinjaPiece(int Line);

internal sealed record TextPiece(string Text, int Line) : JinjaPiece(Line);

internal sealed record TagPiece(bool IsOutput, IReadOnlyList<JinjaToken> Tokens, int Line) : JinjaPiece(Line);

/// <summary>
/// Splits a template into text and tags, applying whitespace control as transformers configures Jinja for chat
/// templates: <c>trim_blocks</c> (the newline after a statement or comment tag goes), <c>lstrip_blocks</c> (spaces
/// before one on its line go), and <c>-</c> on either side of any tag (all whitespace on that side goes).
/// </summary>
internal static class JinjaLexer
{
    private static readonly string[] Operators = ["==", "!=", "<=", ">=", "//", "**", "+", "-", "*", "/", "%", "~", "<", ">", "=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|"];

    public static List<JinjaPiece> Split(string source)
    {
        if (source.EndsWith('\n')) source = source[..^(source.EndsWith("\r\n", StringComparison.Ordinal) ? 2 : 1)]; // keep_trailing_newline=False
        var pieces = new List<JinjaPiece>();
        var text = new StringBuilder();
        int i = 0, line = 1, textLine = 1;
        bool trimNextNewline = false, stripNextWhitespace = false;
        while (i < source.Length)
        {
            int open = FindTagStart(source, i);
            string chunk = source[i..(open < 0 ? source.Length : open)];
            if (stripNextWhitespace) chunk = chunk.TrimStart();
            else if (trimNextNewline && chunk.StartsWith('\n')) chunk = chunk[1..];
            else if (trimNextNewline && chunk.StartsWith("\r\n", StringComparison.Ordinal)) chunk = chunk[2..];
            text.Append(chunk);
            line += Count(source, i, open < 0 ? source.Length : open);
            if (open < 0) break;

            char kind = source[open + 1];                                    // '{', '%' or '#'
            string close = kind == '{' ? "}}" : kind == '%' ? "%}" : "#}";
            int bodyStart = open + 2;
            bool stripBefore = bodyStart < source.Length && source[bodyStart] == '-';
            bool keepBefore = bodyStart < source.Length && source[bodyStart] == '+';
            if (stripBefore || keepBefore) bodyStart++;
            int end = kind == '#' ? source.IndexOf(close, bodyStart, StringComparison.Ordinal) : FindTagEnd(source, bodyStart, close);
            if (end < 0) throw new ChatTemplateException($"line {line}: the tag opened here is never closed with '{close}'.");
            int bodyEnd = end;
            bool stripAfter = bodyEnd > bodyStart && source[bodyEnd - 1] == '-';
            if (stripAfter) bodyEnd--;
            if (stripBefore) TrimEnd(text);
            else if (kind != '{' && !keepBefore) StripLineIndent(text, source, open); // lstrip_blocks
            Flush(pieces, text, textLine);
            string body = source[bodyStart..bodyEnd];
            int tagLine = line;
            line += Count(source, open, end + 2);
            textLine = line;
            i = end + 2;
            stripNextWhitespace = stripAfter;
            trimNextNewline = kind != '{';                                 // trim_blocks
            if (kind == '#') continue;
            pieces.Add(new TagPiece(kind == '{', Tokenize(body, tagLine), tagLine));
        }
        Flush(pieces, text, textLine);
        return pieces;
    }

    private static int FindTagStart(string source, int from)
    {
        for (int i = source.IndexOf('{', from); i >= 0 && i + 1 < source.Length; i = source.IndexOf('{', i + 1))
            if (source[i + 1] is '{' or '%' or '#') return i;
        return -1;
    }

    /// <summary>Where a tag closes: the first <paramref name="close"/> outside string literals and brackets (so <c>{{ {'a': {}} }}</c> holds).</summary>
    private static int FindTagEnd(string source, int from, string close)
    {
        int depth = 0;
        char quote = '\0';
        for (int i = from; i + 1 < source.Length; i++)
        {
            char c = source[i];
            if (quote != '\0')
            {
                if (c == '\\') i++;
                else if (c == quote) quote = '\0';
            }
            else if (c is '\'' or '"') quote = c;
            else if (depth == 0 && c == close[0] && source[i + 1] == close[1]) return i;
            else if (c is '(' or '[' or '{') depth++;
            else if (c is ')' or ']' or '}' && depth > 0) depth--;
        }
        return -1;
    }

    private static int Count(string s, int from, int to)
    {
        int n = 0;
        for (int i = from; i < to; i++) if (s[i] == '\n') n++;
        return n;
    }

    private static void TrimEnd(StringBuilder text)
    {
        int n = text.Length;
        while (n > 0 && char.IsWhiteSpace(text[n - 1])) n--;
        text.Length = n;
    }

    /// <summary>Removes the spaces and tabs before a tag at <paramref name="open"/> when only they stand between it and its line's start.</summary>
    private static void StripLineIndent(StringBuilder text, string source, int open)
    {
        int k = 0;
        while (open - k > 0 && source[open - k - 1] is ' ' or '\t') k++;
        if (open - k != 0 && source[open - k - 1] != '\n') return;
        while (k-- > 0 && text.Length > 0 && text[^1] is ' ' or '\t') text.Length--;
    }

    private static void Flush(List<JinjaPiece> pieces, StringBuilder text, int line)
    {
        if (text.Length > 0) pieces.Add(new TextPiece(text.ToString(), line));
        text.Clear();
    }

    private static List<JinjaToken> Tokenize(string body, int line)
    {
        var tokens = new List<JinjaToken>();
        int i = 0;
        while (i < body.Length)
        {
            char c = body[i];
            if (char.IsWhiteSpace(c))
            {
                if (c == '\n') line++;
                i++;
            }
            else if (char.IsLetter(c) || c == '_')
            {
                int start = i;
                while (i < body.Length && (char.IsLetterOrDigit(body[i]) || body[i] == '_')) i++;
                tokens.Add(new JinjaToken(JinjaTokenKind.Name, body[start..i], null, line));
            }
            else if (char.IsDigit(c))
            {
                int start = i;
                while (i < body.Length && (char.IsDigit(body[i]) || body[i] == '_')) i++;
                bool isFloat = i + 1 < body.Length && body[i] == '.' && char.IsDigit(body[i + 1]);
                if (isFloat)
                {
                    i++;
                    while (i < body.Length && char.IsDigit(body[i])) i++;
                }
                int exponent = i < body.Length && body[i] is 'e' or 'E' ? i + 1 : -1;                    // 1e3, 2.5e-4: floats, as in jinja2
                if (exponent > 0 && exponent < body.Length && body[exponent] is '+' or '-') exponent++;
                if (exponent > 0 && exponent < body.Length && char.IsDigit(body[exponent]))
                {
                    isFloat = true;
                    for (i = exponent; i < body.Length && char.IsDigit(body[i]);) i++;
                }
                string digits = body[start..i].Replace("_", "", StringComparison.Ordinal);
                object value = isFloat ? (object)double.Parse(digits, CultureInfo.InvariantCulture)
                    : long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out long whole) ? (object)whole
                    : throw new ChatTemplateException($"line {line}: the integer {digits} is larger than this interpreter's 64 bits.");
                tokens.Add(new JinjaToken(JinjaTokenKind.Number, digits, value, line));
            }
            else if (c is '\'' or '"')
            {
                var value = new StringBuilder();
                int start = i++;
                while (true)
                {
                    if (i >= body.Length) throw new ChatTemplateException($"line {line}: a string literal is never closed.");
                    char d = body[i++];
                    if (d == c) break;
                    if (d != '\\' || i >= body.Length) { value.Append(d); continue; }
                    char e = body[i++];
                    if (e is 'x' or 'u' or 'U')                                   // Python's \xhh, \uXXXX, \UXXXXXXXX, as jinja2 decodes them
                    {
                        int width = e == 'x' ? 2 : e == 'u' ? 4 : 8;
                        if (i + width > body.Length || !int.TryParse(body.AsSpan(i, width), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int code)
                            || code is < 0 or > 0x10FFFF)
                            throw new ChatTemplateException($"line {line}: a string literal has a broken \\{e} escape.");
                        value.Append(char.ConvertFromUtf32(code is >= 0xD800 and <= 0xDFFF ? 0xFFFD : code));
                        i += width;
                        continue;
                    }
                    value.Append(e switch { 'n' => "\n", 't' => "\t", 'r' => "\r", '\\' => "\\", '\'' => "'", '"' => "\"", 'a' => "\a", 'b' => "\b",
                        'f' => "\f", 'v' => "\v", '\n' => "", _ => "\\" + e });
                }
                tokens.Add(new JinjaToken(JinjaTokenKind.String, body[start..i], value.ToString(), line));
            }
            else
            {
                string? op = Operators.FirstOrDefault(o => string.CompareOrdinal(body, i, o, 0, o.Length) == 0);
                if (op is null) throw new ChatTemplateException($"line {line}: unexpected character '{c}'.");
                tokens.Add(new JinjaToken(JinjaTokenKind.Operator, op, null, line));
                i += op.Length;
            }
        }
        tokens.Add(new JinjaToken(JinjaTokenKind.End, "", null, line));
        return tokens;
    }
}
