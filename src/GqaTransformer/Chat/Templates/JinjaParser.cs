namespace GqaTransformer;

/// <summary>
/// Builds the syntax tree of a chat template from <see cref="JinjaLexer"/>'s pieces: the statements real chat templates
/// use (<c>if/elif/else</c>, <c>for</c> with an <c>if</c> filter and <c>else</c>, <c>set</c> incl. namespace attributes
/// and blocks, <c>macro</c>, <c>break/continue</c>, transformers' <c>generation</c>) and Jinja's expression grammar.
/// </summary>
internal sealed class JinjaParser
{
    private readonly List<JinjaPiece> _pieces;
    private int _piece;
    private IReadOnlyList<JinjaToken> _tokens = [];
    private int _token;
    private int _depth;
    private readonly List<HashSet<string>> _macroNames = [];  // the names read inside each macro being parsed

    private JinjaParser(List<JinjaPiece> pieces) => _pieces = pieces;

    public static IReadOnlyList<JinjaNode> Parse(string source)
    {
        var parser = new JinjaParser(JinjaLexer.Split(source));
        var body = parser.ParseBlock(out string? end);
        if (end is not null) throw new ChatTemplateException($"unexpected '{{% {end} %}}' with no block open.");
        return body;
    }

    /// <summary>Statements until a tag that closes or continues the enclosing block (its keyword in <paramref name="end"/>), or the end.</summary>
    private List<JinjaNode> ParseBlock(out string? end, params string[] ends)
    {
        int line = _piece < _pieces.Count ? _pieces[_piece].Line : 0;
        Nest(line);
        try
        {
            return ParseStatements(out end, ends);
        }
        finally
        {
            _depth--;
        }
    }

    /// <summary>One level deeper in the source: blocks in blocks and expressions in brackets each count, up to MaxParseDepth.</summary>
    private void Nest(int line)
    {
        if (++_depth > JinjaLimits.MaxParseDepth)
            throw JinjaLimits.Exceeded(nameof(JinjaLimits.MaxParseDepth), _depth, "nesting of blocks, brackets and operators", line);
    }

    private T Nested<T>(Func<T> parse)
    {
        Nest(Peek.Line);
        try
        {
            return parse();
        }
        finally
        {
            _depth--;
        }
    }

    private List<JinjaNode> ParseStatements(out string? end, string[] ends)
    {
        var nodes = new List<JinjaNode>();
        end = null;
        while (_piece < _pieces.Count)
        {
            var piece = _pieces[_piece++];
            if (piece is TextPiece text) { nodes.Add(new TextNode(text.Text, text.Line)); continue; }
            var tag = (TagPiece)piece;
            _tokens = tag.Tokens;
            _token = 0;
            if (tag.IsOutput)
            {
                nodes.Add(new OutputNode(ParseExpression(), tag.Line));
                ExpectEnd();
                continue;
            }
            string keyword = ExpectName();
            if (ends.Contains(keyword)) { end = keyword; return nodes; }
            if (keyword.StartsWith("end", StringComparison.Ordinal) || keyword is "elif" or "else")
                throw Error(ends.Length == 0 ? $"unexpected '{keyword}' with no block open" : $"unexpected '{keyword}' where '{ends[^1]}' was expected", tag.Line);
            nodes.Add(keyword switch
            {
                "if" => ParseIf(tag.Line),
                "for" => ParseFor(tag.Line),
                "set" => ParseSet(tag.Line),
                "macro" => ParseMacro(tag.Line),
                "call" => ParseCallBlock(tag.Line),
                "filter" => ParseFilterBlock(tag.Line),
                "break" or "continue" => EndThen(new LoopControlNode(keyword == "break", tag.Line)),
                "generation" => EndThen(new IfNode([(new LiteralExpr(true, tag.Line), ParseUntil(tag.Line, "endgeneration"))], null, tag.Line)),
                _ => throw Error($"unknown statement '{keyword}'", tag.Line),
            });
        }
        return nodes;
    }

    private T EndThen<T>(T node)
    {
        ExpectEnd();
        return node;
    }

    private List<JinjaNode> ParseUntil(int line, params string[] ends)
    {
        ExpectEnd();
        var body = ParseBlock(out string? end, ends);
        if (end is null) throw Error($"'{string.Join("' or '", ends)}' is missing", line);
        return body;
    }

    private IfNode ParseIf(int line)
    {
        var branches = new List<(JinjaExpr, IReadOnlyList<JinjaNode>)>();
        var condition = ParseExpression();
        ExpectEnd();
        while (true)
        {
            var body = ParseBlock(out string? end, "elif", "else", "endif");
            if (end is null) throw Error("'endif' is missing", line);
            branches.Add((condition, body));
            if (end == "elif") { condition = ParseExpression(); ExpectEnd(); continue; }
            if (end == "else")
            {
                var other = ParseUntil(line, "endif");
                return new IfNode(branches, other, line);
            }
            ExpectEnd();
            return new IfNode(branches, null, line);
        }
    }

    private ForNode ParseFor(int line)
    {
        var targets = new List<string> { ExpectName() };
        while (Accept(",")) targets.Add(ExpectName());
        if (ExpectName() != "in") throw Error("expected 'in'", line);
        var iterable = ParseOr(withConditional: false);
        JinjaExpr? filter = AcceptName("if") ? ParseOr(withConditional: false) : null;
        AcceptName("recursive");
        ExpectEnd();
        var body = ParseBlock(out string? end, "else", "endfor");
        if (end is null) throw Error("'endfor' is missing", line);
        List<JinjaNode>? other = null;
        if (end == "else") other = ParseUntil(line, "endfor");
        else ExpectEnd();
        return new ForNode(targets, iterable, filter, body, other, line);
    }

    private SetNode ParseSet(int line)
    {
        var targets = new List<string> { ExpectName() };
        string? attribute = null;
        if (Accept(".")) attribute = ExpectName();
        while (Accept(",")) targets.Add(ExpectName());
        if (Peek.Kind == JinjaTokenKind.End) return new SetNode(targets, attribute, null, ParseUntil(line, "endset"), line);
        Expect("=");
        var value = ParseExpression();
        ExpectEnd();
        return new SetNode(targets, attribute, value, null, line);
    }

    private MacroNode ParseMacro(int line)
    {
        string name = ExpectName();
        var parameters = ParseParameters();
        var names = new HashSet<string>(StringComparer.Ordinal);
        _macroNames.Add(names);
        var body = ParseUntil(line, "endmacro");
        _macroNames.RemoveAt(_macroNames.Count - 1);
        return new MacroNode(name, parameters, body, names.Contains("varargs"), names.Contains("kwargs"), line);
    }

    private List<(string, JinjaExpr?)> ParseParameters()
    {
        var parameters = new List<(string, JinjaExpr?)>();
        Expect("(");
        while (!Accept(")"))
        {
            string parameter = ExpectName();
            parameters.Add((parameter, Accept("=") ? ParseExpression() : null));
            if (!Accept(",")) { Expect(")"); break; }
        }
        return parameters;
    }

    private CallBlockNode ParseCallBlock(int line)
    {
        var parameters = Peek is { Kind: JinjaTokenKind.Operator, Text: "(" } ? ParseParameters() : [];
        if (ParsePostfix(ParsePrimary()) is not CallExpr call) throw Error("'call' needs a macro call", line);
        return new CallBlockNode(call, parameters, ParseUntil(line, "endcall"), line);
    }

    private FilterBlockNode ParseFilterBlock(int line)
    {
        var filters = new List<(string, IReadOnlyList<JinjaExpr>, IReadOnlyList<(string, JinjaExpr)>)>();
        do
        {
            string name = ExpectDottedName();
            var (args, kwargs) = Peek is { Kind: JinjaTokenKind.Operator, Text: "(" } ? ParseArguments() : ([], []);
            filters.Add((name, args, kwargs));
        }
        while (Accept("|"));
        return new FilterBlockNode(filters, ParseUntil(line, "endfilter"), line);
    }

    // Expressions, lowest precedence first.
    private JinjaExpr ParseExpression() => Nested(() => ParseOr(withConditional: true));

    private JinjaExpr ParseOr(bool withConditional)
    {
        var left = ParseAnd();
        while (AcceptName("or")) left = new BinaryExpr("or", left, ParseAnd(), left.Line);
        if (withConditional && AcceptName("if"))
        {
            var condition = ParseOr(withConditional: false);
            JinjaExpr? other = AcceptName("else") ? ParseExpression() : null;
            return new ConditionalExpr(condition, left, other, left.Line);
        }
        return left;
    }

    private JinjaExpr ParseAnd()
    {
        var left = ParseNot();
        while (AcceptName("and")) left = new BinaryExpr("and", left, ParseNot(), left.Line);
        return left;
    }

    private JinjaExpr ParseNot()
        => PeekName("not") && !(_tokens[_token + 1] is { Kind: JinjaTokenKind.Name, Text: "in" })
            ? new UnaryExpr("not", Advance(() => Nested(ParseNot)), Peek.Line)
            : ParseCompare();

    private JinjaExpr ParseCompare()
    {
        var left = ParseConcat();
        while (true)
        {
            if (Peek is { Kind: JinjaTokenKind.Operator, Text: "==" or "!=" or "<" or ">" or "<=" or ">=" } op)
            {
                _token++;
                left = new BinaryExpr(op.Text, left, ParseConcat(), left.Line);
            }
            else if (AcceptName("in")) left = new BinaryExpr("in", left, ParseConcat(), left.Line);
            else if (PeekName("not") && _tokens[_token + 1] is { Kind: JinjaTokenKind.Name, Text: "in" })
            {
                _token += 2;
                left = new BinaryExpr("not in", left, ParseConcat(), left.Line);
            }
            else return left;
        }
    }

    private JinjaExpr ParseConcat()
    {
        var left = ParseAdditive();
        while (Accept("~")) left = new BinaryExpr("~", left, ParseAdditive(), left.Line);
        return left;
    }

    private JinjaExpr ParseAdditive()
    {
        var left = ParseMultiplicative();
        while (Peek is { Kind: JinjaTokenKind.Operator, Text: "+" or "-" } op)
        {
            _token++;
            left = new BinaryExpr(op.Text, left, ParseMultiplicative(), left.Line);
        }
        return left;
    }

    private JinjaExpr ParseMultiplicative()
    {
        var left = ParsePower();
        while (Peek is { Kind: JinjaTokenKind.Operator, Text: "*" or "/" or "//" or "%" } op)
        {
            _token++;
            left = new BinaryExpr(op.Text, left, ParsePower(), left.Line);
        }
        return left;
    }

    private JinjaExpr ParsePower()
    {
        var left = ParseUnary();
        while (Accept("**")) left = new BinaryExpr("**", left, ParseUnary(), left.Line);
        return left;
    }

    private JinjaExpr ParseUnary()
    {
        if (Peek is { Kind: JinjaTokenKind.Operator, Text: "-" or "+" } op)
        {
            _token++;
            return ParseFilters(new UnaryExpr(op.Text, ParseUnaryNoFilter(), op.Line));
        }
        return ParseFilters(ParsePostfix(ParsePrimary()));
    }

    private JinjaExpr ParseUnaryNoFilter()
    {
        if (Peek is { Kind: JinjaTokenKind.Operator, Text: "-" or "+" } op)
        {
            _token++;
            return new UnaryExpr(op.Text, Nested(ParseUnaryNoFilter), op.Line);
        }
        return ParsePostfix(ParsePrimary());
    }

    private JinjaExpr ParseFilters(JinjaExpr target)
    {
        while (true)
        {
            if (Accept("|"))
            {
                var name = ExpectDottedName();
                var (args, kwargs) = Peek is { Kind: JinjaTokenKind.Operator, Text: "(" } ? ParseArguments() : ([], []);
                target = new FilterExpr(target, name, args, kwargs, target.Line);
            }
            else if (AcceptName("is"))
            {
                bool negated = AcceptName("not");
                var name = ExpectName();
                List<JinjaExpr> args = [];
                if (Peek is { Kind: JinjaTokenKind.Operator, Text: "(" }) args = [.. ParseArguments().Args];
                else if (Peek.Kind is JinjaTokenKind.String or JinjaTokenKind.Number || Peek.Kind == JinjaTokenKind.Name && !IsKeyword(Peek.Text))
                    args = [ParsePostfix(ParsePrimary())];
                target = new TestExpr(target, name, args, negated, target.Line);
            }
            else return target;
        }
    }

    private static bool IsKeyword(string name) => name is "and" or "or" or "not" or "in" or "is" or "if" or "else";

    private JinjaExpr ParsePostfix(JinjaExpr target)
    {
        while (true)
        {
            if (Accept("."))
                target = Peek is { Kind: JinjaTokenKind.Number, Value: long index }                // m.content.0 is m.content[0]
                    ? new IndexExpr(target, new LiteralExpr(_tokens[_token++].Value, target.Line), target.Line)
                    : new AttributeExpr(target, ExpectName(), target.Line);
            else if (Peek is { Kind: JinjaTokenKind.Operator, Text: "[" })
            {
                _token++;
                JinjaExpr? start = Peek is { Kind: JinjaTokenKind.Operator, Text: ":" } ? null : ParseExpression();
                if (Accept(":"))
                {
                    JinjaExpr? stop = Peek is { Kind: JinjaTokenKind.Operator, Text: ":" or "]" } ? null : ParseExpression();
                    JinjaExpr? step = null;
                    if (Accept(":") && Peek is not { Kind: JinjaTokenKind.Operator, Text: "]" }) step = ParseExpression();
                    Expect("]");
                    target = new SliceExpr(target, start, stop, step, target.Line);
                }
                else
                {
                    Expect("]");
                    target = new IndexExpr(target, start!, target.Line);
                }
            }
            else if (Peek is { Kind: JinjaTokenKind.Operator, Text: "(" })
            {
                var (args, kwargs) = ParseArguments();
                target = new CallExpr(target, args, kwargs, target.Line);
            }
            else return target;
        }
    }

    private (IReadOnlyList<JinjaExpr> Args, IReadOnlyList<(string, JinjaExpr)> Kwargs) ParseArguments()
    {
        Expect("(");
        var args = new List<JinjaExpr>();
        var kwargs = new List<(string, JinjaExpr)>();
        while (!Accept(")"))
        {
            if (Peek.Kind == JinjaTokenKind.Name && _tokens[_token + 1] is { Kind: JinjaTokenKind.Operator, Text: "=" })
            {
                string name = ExpectName();
                _token++;
                kwargs.Add((name, ParseExpression()));
            }
            else args.Add(ParseExpression());
            if (!Accept(",")) { Expect(")"); break; }
        }
        return (args, kwargs);
    }

    private JinjaExpr ParsePrimary()
    {
        var token = Peek;
        _token++;
        switch (token.Kind)
        {
            case JinjaTokenKind.String:
            {
                string value = (string)token.Value!;
                while (Peek.Kind == JinjaTokenKind.String) value += (string)_tokens[_token++].Value!; // adjacent literals join
                return new LiteralExpr(value, token.Line);
            }
            case JinjaTokenKind.Number:
                return new LiteralExpr(token.Value, token.Line);
            case JinjaTokenKind.Name:
                return token.Text switch
                {
                    "true" or "True" => new LiteralExpr(true, token.Line),
                    "false" or "False" => new LiteralExpr(false, token.Line),
                    "none" or "None" => new LiteralExpr(null, token.Line),
                    _ => Name(token),
                };
            case JinjaTokenKind.Operator when token.Text == "(":
            {
                if (Accept(")")) return new ListExpr([], token.Line, IsTuple: true);
                var first = ParseExpression();
                if (Accept(")")) return first;
                var items = new List<JinjaExpr> { first };
                while (Accept(",") && Peek is not { Kind: JinjaTokenKind.Operator, Text: ")" }) items.Add(ParseExpression());
                Expect(")");
                return new ListExpr(items, token.Line, IsTuple: true);
            }
            case JinjaTokenKind.Operator when token.Text == "[":
            {
                var items = new List<JinjaExpr>();
                while (!Accept("]"))
                {
                    items.Add(ParseExpression());
                    if (!Accept(",")) { Expect("]"); break; }
                }
                return new ListExpr(items, token.Line);
            }
            case JinjaTokenKind.Operator when token.Text == "{":
            {
                var items = new List<(JinjaExpr, JinjaExpr)>();
                while (!Accept("}"))
                {
                    var key = ParseExpression();
                    Expect(":");
                    items.Add((key, ParseExpression()));
                    if (!Accept(",")) { Expect("}"); break; }
                }
                return new DictExpr(items, token.Line);
            }
            default:
                throw Error(token.Kind == JinjaTokenKind.End ? "an expression is missing" : $"unexpected '{token.Text}'", token.Line);
        }
    }

    private NameExpr Name(JinjaToken token)
    {
        foreach (var names in _macroNames) names.Add(token.Text);
        return new NameExpr(token.Text, token.Line);
    }

    private JinjaToken Peek => _tokens[_token];

    private T Advance<T>(Func<T> next)
    {
        _token++;
        return next();
    }

    private bool Accept(string op)
    {
        if (Peek.Kind != JinjaTokenKind.Operator || Peek.Text != op) return false;
        _token++;
        return true;
    }

    private bool PeekName(string name) => Peek.Kind == JinjaTokenKind.Name && Peek.Text == name;

    private bool AcceptName(string name)
    {
        if (!PeekName(name)) return false;
        _token++;
        return true;
    }

    private void Expect(string op)
    {
        if (!Accept(op)) throw Error($"expected '{op}' but found '{(Peek.Kind == JinjaTokenKind.End ? "end of tag" : Peek.Text)}'", Peek.Line);
    }

    private string ExpectName()
    {
        if (Peek.Kind != JinjaTokenKind.Name) throw Error($"expected a name but found '{(Peek.Kind == JinjaTokenKind.End ? "end of tag" : Peek.Text)}'", Peek.Line);
        return _tokens[_token++].Text;
    }

    private string ExpectDottedName()
    {
        string name = ExpectName();
        while (Accept(".")) name += "." + ExpectName();
        return name;
    }

    private void ExpectEnd()
    {
        if (Peek.Kind != JinjaTokenKind.End) throw Error($"unexpected '{Peek.Text}' before the end of the tag", Peek.Line);
    }

    private static ChatTemplateException Error(string message, int line) => new($"line {line}: {message}.");
}
