namespace GqaTransformer;

// The syntax tree of a chat template: statements (what renders) and expressions (what evaluates).

internal abstract record JinjaNode(int Line);

internal sealed record TextNode(string Text, int Line) : JinjaNode(Line);

internal sealed record OutputNode(JinjaExpr Value, int Line) : JinjaNode(Line);

internal sealed record IfNode(IReadOnlyList<(JinjaExpr Condition, IReadOnlyList<JinjaNode> Body)> Branches, IReadOnlyList<JinjaNode>? Else, int Line) : JinjaNode(Line);

internal sealed record ForNode(IReadOnlyList<string> Targets, JinjaExpr Iterable, JinjaExpr? Filter, IReadOnlyList<JinjaNode> Body,
    IReadOnlyList<JinjaNode>? Else, int Line) : JinjaNode(Line);

/// <summary><c>{% set x = v %}</c>, <c>{% set ns.x = v %}</c> (Target.Attribute), or a block set when Body is given.</summary>
internal sealed record SetNode(IReadOnlyList<string> Targets, string? Attribute, JinjaExpr? Value, IReadOnlyList<JinjaNode>? Body, int Line) : JinjaNode(Line);

/// <summary>A macro; it takes extra positional (<c>varargs</c>) or keyword (<c>kwargs</c>) arguments only when its body reads those names, as in jinja2.</summary>
internal sealed record MacroNode(string Name, IReadOnlyList<(string Name, JinjaExpr? Default)> Parameters, IReadOnlyList<JinjaNode> Body,
    bool TakesVarargs, bool TakesKwargs, int Line) : JinjaNode(Line);

/// <summary><c>{% call(params) macro(args) %}body{% endcall %}</c>: the macro runs with <c>caller()</c> rendering the body.</summary>
internal sealed record CallBlockNode(CallExpr Call, IReadOnlyList<(string Name, JinjaExpr? Default)> CallerParameters, IReadOnlyList<JinjaNode> Body, int Line)
    : JinjaNode(Line);

/// <summary><c>{% filter name(args) %}body{% endfilter %}</c>: the rendered body passed through the filters, in order.</summary>
internal sealed record FilterBlockNode(IReadOnlyList<(string Name, IReadOnlyList<JinjaExpr> Args, IReadOnlyList<(string Name, JinjaExpr Value)> Kwargs)> Filters,
    IReadOnlyList<JinjaNode> Body, int Line) : JinjaNode(Line);

internal sealed record LoopControlNode(bool IsBreak, int Line) : JinjaNode(Line);

internal abstract record JinjaExpr(int Line);

internal sealed record LiteralExpr(object? Value, int Line) : JinjaExpr(Line);

internal sealed record NameExpr(string Name, int Line) : JinjaExpr(Line);

/// <summary>A list literal, or a tuple <c>(a, b)</c> when <paramref name="IsTuple"/>.</summary>
internal sealed record ListExpr(IReadOnlyList<JinjaExpr> Items, int Line, bool IsTuple = false) : JinjaExpr(Line);

internal sealed record DictExpr(IReadOnlyList<(JinjaExpr Key, JinjaExpr Value)> Items, int Line) : JinjaExpr(Line);

internal sealed record AttributeExpr(JinjaExpr Target, string Name, int Line) : JinjaExpr(Line);

internal sealed record IndexExpr(JinjaExpr Target, JinjaExpr Index, int Line) : JinjaExpr(Line);

internal sealed record SliceExpr(JinjaExpr Target, JinjaExpr? Start, JinjaExpr? Stop, JinjaExpr? Step, int Line) : JinjaExpr(Line);

internal sealed record CallExpr(JinjaExpr Target, IReadOnlyList<JinjaExpr> Args, IReadOnlyList<(string Name, JinjaExpr Value)> Kwargs, int Line) : JinjaExpr(Line);

internal sealed record FilterExpr(JinjaExpr Target, string Name, IReadOnlyList<JinjaExpr> Args, IReadOnlyList<(string Name, JinjaExpr Value)> Kwargs, int Line) : JinjaExpr(Line);

internal sealed record TestExpr(JinjaExpr Target, string Name, IReadOnlyList<JinjaExpr> Args, bool Negated, int Line) : JinjaExpr(Line);

internal sealed record UnaryExpr(string Op, JinjaExpr Operand, int Line) : JinjaExpr(Line);

internal sealed record BinaryExpr(string Op, JinjaExpr Left, JinjaExpr Right, int Line) : JinjaExpr(Line);

internal sealed record ConditionalExpr(JinjaExpr Condition, JinjaExpr Then, JinjaExpr? Else, int Line) : JinjaExpr(Line);
