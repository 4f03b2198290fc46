using System.Globalization;
using System.Text;

namespace GqaTransformer;

/// <summary>
/// Calls written as Python, as Gemma's function-calling prompts ask for: <c>name(key=value, ...)</c>, several on their
/// own lines or in a list <c>[f(a=1), g(b='x')]</c>. Values are Python literals (strings in either quote, integers,
/// floats, True/False/None, lists, dicts with string keys) or their JSON spellings. Nesting is bounded.
/// </summary>
internal sealed class PythonCallSyntax
{
    private const int MaxDepth = 64;
    private readonly string _text;
    private int _pos;

    private PythonCallSyntax(string text) => _text = text;

    /// <summary>The calls in <paramref name="text"/>, which must hold nothing else; false with the reason when it does not parse.</summary>
    public static bool TryParse(string text, out List<(string Name, Dictionary<string, object?> Arguments)> calls, out string error)
    {
        var parser = new PythonCallSyntax(text);
        calls = [];
        try
        {
            parser.Skip();
            bool list = parser.Eat('[');
            while (true)
            {
                parser.Skip();
                if (parser.AtEnd || (list && parser.Peek == ']')) break;
                calls.Add(parser.Call());
                parser.Skip();
                if (list && !parser.Eat(',') && parser.Peek != ']') throw parser.Fail("expected ',' or ']'");
            }
            if (list && !parser.Eat(']')) throw parser.Fail("the list of calls is not closed");
            parser.Skip();
            if (!parser.AtEnd) throw parser.Fail("text follows the calls");
            if (calls.Count == 0) throw parser.Fail("no call");
            error = "";
            return true;
        }
        catch (FormatException e)
        {
            error = e.Message;
            return false;
        }
    }

    private bool AtEnd => _pos >= _text.Length;
    private char Peek => AtEnd ? '\0' : _text[_pos];
    private void Skip() { while (!AtEnd && char.IsWhiteSpace(_text[_pos])) _pos++; }
    private bool Eat(char c) { Skip(); if (Peek != c) return false; _pos++; return true; }
    private FormatException Fail(string what) => new($"{what} at offset {_pos} of the Python call");

    private (string, Dictionary<string, object?>) Call()
    {
        string name = Name(dotted: true);
        if (!Eat('(')) throw Fail($"expected '(' after {name}");
        var arguments = new Dictionary<string, object?>();
        while (!Eat(')'))
        {
            Skip();
            string key = Name(dotted: false);
            if (!Eat('=')) throw Fail($"expected '=' after the argument name {key} (arguments must be named)");
            arguments[key] = Value(0);
            if (!Eat(',') && Peek != ')') throw Fail("expected ',' or ')'");
        }
        return (name, arguments);
    }

    private string Name(bool dotted)
    {
        Skip();
        int start = _pos;
        while (!AtEnd && (char.IsLetterOrDigit(Peek) || Peek == '_' || (dotted && Peek == '.' && _pos > start))) _pos++;
        if (_pos == start || char.IsDigit(_text[start])) throw Fail("expected a name");
        return _text[start.._pos];
    }

    private object? Value(int depth)
    {
        if (depth > MaxDepth) throw Fail($"values nest deeper than {MaxDepth}");
        Skip();
        char c = Peek;
        if (c is '"' or '\'') return String(c);
        if (Eat('['))
        {
            var list = new List<object?>();
            while (!Eat(']'))
            {
                list.Add(Value(depth + 1));
                if (!Eat(',') && Peek != ']') throw Fail("expected ',' or ']'");
            }
            return list;
        }
        if (Eat('{'))
        {
            var dict = new Dictionary<string, object?>();
            while (!Eat('}'))
            {
                Skip();
                if (Peek is not ('"' or '\'')) throw Fail("dictionary keys must be strings");
                string key = String(Peek);
                if (!Eat(':')) throw Fail("expected ':'");
                dict[key] = Value(depth + 1);
                if (!Eat(',') && Peek != '}') throw Fail("expected ',' or '}'");
            }
            return dict;
        }
        int start = _pos;
        while (!AtEnd && (char.IsLetterOrDigit(Peek) || Peek is '_' or '.' or '-' or '+')) _pos++;
        string word = _text[start.._pos];
        switch (word)
        {
            case "True" or "true": return true;
            case "False" or "false": return false;
            case "None" or "null": return null;
        }
        if (word.Length > 0 && (char.IsDigit(word[0]) || word[0] is '-' or '+' or '.')
            && double.TryParse(word, NumberStyles.Float, CultureInfo.InvariantCulture, out _))
            return ToolCallJson.ToNumber(word.TrimStart('+'));
        _pos = start;
        throw Fail(word.Length == 0 ? "expected a value" : $"\"{word}\" is not a literal");
    }

    private string String(char quote)
    {
        _pos++;
        var result = new StringBuilder();
        while (true)
        {
            if (AtEnd) throw Fail("the string is not closed");
            char c = _text[_pos++];
            if (c == quote) return result.ToString();
            if (c != '\\') { result.Append(c); continue; }
            if (AtEnd) throw Fail("the string is not closed");
            char e = _text[_pos++];
            switch (e)
            {
                case 'n': result.Append('\n'); break;
                case 't': result.Append('\t'); break;
                case 'r': result.Append('\r'); break;
                case 'u' when _pos + 4 <= _text.Length && int.TryParse(_text.AsSpan(_pos, 4), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out int code):
                    result.Append((char)code); _pos += 4; break;
                default: result.Append(e); break;  // \\, \', \" and anything else: the character itself
            }
        }
    }
}
