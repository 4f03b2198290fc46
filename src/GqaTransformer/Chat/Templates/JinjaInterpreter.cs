using System.Text;
using static GqaTransformer.JinjaLimits;
using static GqaTransformer.JinjaValues;

namespace GqaTransformer;

/// <summary>
/// Renders a parsed chat template. Scoping follows Jinja: a for loop's body has its own scope (a <c>set</c> inside it is
/// gone after the loop, which is why templates use <c>namespace()</c>), a macro sees its parameters and the top level.
/// Rendering is bounded: a template that loops or recurses past the limits gets an error, not a hang.
/// </summary>
internal sealed class JinjaInterpreter
{
    private readonly Scope _globals;
    private long _iterations, _steps, _work;
    private int _depth;

    private enum Flow { Normal, Break, Continue }

    private sealed class Scope(Scope? parent)
    {
        public Dictionary<string, object?> Vars { get; } = [];
        public Scope? Parent { get; } = parent;

        public bool TryGet(string name, out object? value)
        {
            for (var s = this; s is not null; s = s.Parent)
                if (s.Vars.TryGetValue(name, out value)) return true;
            value = null;
            return false;
        }
    }

    public JinjaInterpreter(IReadOnlyDictionary<string, object?> variables, Func<DateTime> clock)
    {
        _globals = new Scope(null);
        JinjaBuiltins.AddGlobals(_globals.Vars, clock);
        foreach (var (name, value) in variables) _globals.Vars[name] = FromClr(value);
    }

    public string Render(IReadOnlyList<JinjaNode> nodes)
    {
        var output = new StringBuilder();
        var scope = new Scope(_globals);
        if (Render(nodes, scope, output) != Flow.Normal) throw new ChatTemplateException("'break' or 'continue' outside a loop.");
        return output.ToString();
    }

    private Flow Render(IReadOnlyList<JinjaNode> nodes, Scope scope, StringBuilder output)
    {
        foreach (var node in nodes)
        {
            switch (node)
            {
                case TextNode text:
                    output.Append(text.Text);
                    break;
                case OutputNode o:
                    output.Append(ToStr(Eval(o.Value, scope)));
                    break;
                case IfNode branch:
                {
                    var body = branch.Branches.FirstOrDefault(b => Truthy(Eval(b.Condition, scope))).Body ?? branch.Else;
                    if (body is not null && Render(body, scope, output) is var flow && flow != Flow.Normal) return flow;
                    break;
                }
                case ForNode loop:
                    RenderFor(loop, scope, output);
                    break;
                case SetNode set:
                    Assign(set, scope);
                    break;
                case MacroNode macro:
                    scope.Vars[macro.Name] = MakeMacro(macro, scope);
                    break;
                case CallBlockNode block:
                    output.Append(ToStr(CallBlock(block, scope)));
                    break;
                case FilterBlockNode block:
                {
                    object? value = Capture(block.Body, scope);
                    foreach (var (name, args, kwargs) in block.Filters)
                        value = JinjaBuiltins.Filter(name, value, args.Select(a => Eval(a, scope)).ToList(), kwargs.ToDictionary(k => k.Name, k => Eval(k.Value, scope)), block.Line);
                    output.Append(ToStr(value));
                    break;
                }
                case LoopControlNode control:
                    return control.IsBreak ? Flow.Break : Flow.Continue;
            }
            if (output.Length > MaxOutputChars) throw Exceeded(nameof(MaxOutputChars), output.Length, "the rendered text's length", node.Line);
        }
        return Flow.Normal;
    }

    private void RenderFor(ForNode loop, Scope scope, StringBuilder output)
    {
        Enter(loop.Line);
        var inner = new Scope(scope);
        var items = Iterate(Eval(loop.Iterable, scope));
        if (loop.Filter is not null)
            items = items.Where(item => { Bind(inner, loop, item); return Truthy(Eval(loop.Filter, inner)); }).ToList();
        for (int i = 0; i < items.Count; i++)
        {
            if (++_iterations > MaxIterations) throw Exceeded(nameof(MaxIterations), _iterations, "loop iterations", loop.Line);
            Bind(inner, loop, items[i]);
            inner.Vars["loop"] = new JinjaLoop(i, items.Count, i > 0 ? items[i - 1] : null, i + 1 < items.Count ? items[i + 1] : null);
            if (Render(loop.Body, inner, output) == Flow.Break) break;
        }
        if (items.Count == 0 && loop.Else is not null) Render(loop.Else, inner, output);
        _depth--;
    }

    private static void Bind(Scope scope, ForNode loop, object? item)
    {
        if (loop.Targets.Count == 1) { scope.Vars[loop.Targets[0]] = item; return; }
        var parts = Iterate(item);
        if (parts.Count != loop.Targets.Count)
            throw new ChatTemplateException($"line {loop.Line}: cannot unpack {parts.Count} values into {loop.Targets.Count} names.");
        for (int t = 0; t < parts.Count; t++) scope.Vars[loop.Targets[t]] = parts[t];
    }

    private void Assign(SetNode set, Scope scope)
    {
        object? value = set.Body is not null ? Capture(set.Body, scope) : Account(EvalKeepingMarkup(set.Value!, scope), set.Line);
        if (set.Attribute is not null)
        {
            if (!scope.TryGet(set.Targets[0], out var target) || target is not JinjaNamespace ns)
                throw new ChatTemplateException($"line {set.Line}: only a namespace() takes attributes, and '{set.Targets[0]}' is not one.");
            ns.Values[set.Attribute] = value;
            return;
        }
        if (set.Targets.Count == 1) { scope.Vars[set.Targets[0]] = value; return; }
        var parts = Iterate(value);
        if (parts.Count != set.Targets.Count) throw new ChatTemplateException($"line {set.Line}: cannot unpack {parts.Count} values into {set.Targets.Count} names.");
        for (int t = 0; t < parts.Count; t++) scope.Vars[set.Targets[t]] = parts[t];
    }

    /// <summary>A macro sees its parameters and the scope it was defined in (itself included, so it may recurse, within the depth limit).</summary>
    private JinjaCallable MakeMacro(MacroNode macro, Scope definedIn) => new(macro.Name, (args, kwargs) =>
    {
        var scope = new Scope(definedIn);
        if (kwargs.Remove("caller", out var caller)) scope.Vars["caller"] = caller;
        if (args.Count > macro.Parameters.Count && !macro.TakesVarargs)
            throw new ChatTemplateException($"line {macro.Line}: macro '{macro.Name}' takes not more than {macro.Parameters.Count} argument(s).");
        var extra = kwargs.Keys.Where(k => !macro.Parameters.Any(p => p.Name == k)).ToList();
        if (extra.Count > 0 && !macro.TakesKwargs)
            throw new ChatTemplateException($"line {macro.Line}: macro '{macro.Name}' takes no keyword argument '{extra[0]}'.");
        Enter(macro.Line);
        BindParameters(scope, macro.Parameters, args, kwargs);
        if (macro.TakesVarargs) scope.Vars["varargs"] = args.Skip(macro.Parameters.Count).ToList();
        if (macro.TakesKwargs) scope.Vars["kwargs"] = new JinjaDict(extra.Select(k => KeyValuePair.Create((object)k, kwargs[k])));
        string text = Capture(macro.Body, scope);
        _depth--;
        return text;
    });

    /// <summary>Calls the block's macro with <c>caller</c>: a macro of the block's parameters that renders its body where the block stands.</summary>
    private object? CallBlock(CallBlockNode block, Scope scope)
    {
        var caller = new JinjaCallable("caller", (args, kwargs) =>
        {
            Enter(block.Line);
            var inner = new Scope(scope);
            BindParameters(inner, block.CallerParameters, args, kwargs);
            string text = Capture(block.Body, inner);
            _depth--;
            return text;
        });
        if (Eval(block.Call.Target, scope) is not JinjaCallable macro) throw new ChatTemplateException($"line {block.Line}: 'call' needs a macro.");
        var kwargs = block.Call.Kwargs.ToDictionary(k => k.Name, k => Eval(k.Value, scope));
        kwargs["caller"] = caller;
        return macro.Invoke(block.Call.Args.Select(a => Eval(a, scope)).ToList(), kwargs);
    }

    /// <summary>What <paramref name="body"/> renders in <paramref name="scope"/>, as text (a macro's, a caller's, a set or filter block's).</summary>
    private string Capture(IReadOnlyList<JinjaNode> body, Scope scope)
    {
        var output = new StringBuilder();
        Render(body, scope, output);
        return output.ToString();
    }

    private void BindParameters(Scope scope, IReadOnlyList<(string Name, JinjaExpr? Default)> parameters, List<object?> args, Dictionary<string, object?> kwargs)
    {
        for (int p = 0; p < parameters.Count; p++)
        {
            var (name, fallback) = parameters[p];
            scope.Vars[name] = p < args.Count ? args[p]
                : kwargs.TryGetValue(name, out var given) ? given
                : fallback is not null ? Eval(fallback, scope) : new JinjaUndefined(name);
        }
    }

    private void Enter(int line)
    {
        if (++_depth > MaxRenderDepth) throw Exceeded(nameof(MaxRenderDepth), _depth, "nesting of loops, macro calls and expressions (a macro that calls itself?)", line);
        if (++_steps > MaxSteps) throw Exceeded(nameof(MaxSteps), _steps, "expressions evaluated", line);
    }

    /// <summary>A value, with <c>|safe</c>'s markup as its text: only <c>+</c> and a variable keep the markup (see <see cref="JinjaMarkup"/>).</summary>
    private object? Eval(JinjaExpr expr, Scope scope)
    {
        var value = Account(EvalKeepingMarkup(expr, scope), expr.Line);
        return value is JinjaMarkup markup ? markup.Text : value;
    }

    /// <summary>Adds a value's size to the render's work: every string and list read or made is paid for, so work that grows stops.</summary>
    private object? Account(object? value, int line)
    {
        _work += 1 + value switch
        {
            string s => s.Length,
            JinjaMarkup m => m.Text.Length,
            List<object?> list => list.Count,
            JinjaDict dict => dict.Count,
            _ => 0,
        };
        if (_work > MaxWork) throw Exceeded(nameof(MaxWork), _work, "characters and items of the values evaluated", line);
        return value;
    }

    private object? EvalKeepingMarkup(JinjaExpr expr, Scope scope)
    {
        Enter(expr.Line);
        try
        {
            return expr switch
            {
                LiteralExpr literal => literal.Value,
                NameExpr name => scope.TryGet(name.Name, out var value) ? value : new JinjaUndefined(name.Name),
                ListExpr { IsTuple: true } tuple => new JinjaTuple(tuple.Items.Select(item => Eval(item, scope))),
                ListExpr list => list.Items.Select(item => Eval(item, scope)).ToList(),
                DictExpr dict => new JinjaDict(dict.Items.Select(p => KeyValuePair.Create(JinjaDict.Key(Eval(p.Key, scope)), Eval(p.Value, scope)))),
                AttributeExpr attribute => JinjaBuiltins.GetAttribute(Eval(attribute.Target, scope), attribute.Name, attribute.Line),
                IndexExpr index => JinjaBuiltins.GetItem(Eval(index.Target, scope), Eval(index.Index, scope), index.Line),
                SliceExpr slice => JinjaBuiltins.Slice(Eval(slice.Target, scope), Optional(slice.Start, scope), Optional(slice.Stop, scope), Optional(slice.Step, scope), slice.Line),
                CallExpr call => Call(call, scope),
                FilterExpr filter => JinjaBuiltins.Filter(filter.Name, Eval(filter.Target, scope), filter.Args.Select(a => Eval(a, scope)).ToList(),
                    filter.Kwargs.ToDictionary(k => k.Name, k => Eval(k.Value, scope)), filter.Line),
                TestExpr test => JinjaBuiltins.Test(test.Name, Eval(test.Target, scope), test.Args.Select(a => Eval(a, scope)).ToList(), test.Line) != test.Negated,
                UnaryExpr unary => unary.Op switch
                {
                    "not" => !Truthy(Eval(unary.Operand, scope)),
                    "-" => Eval(unary.Operand, scope) switch { long l => (object)(-l), var v => -ToDouble(v) },
                    _ => Eval(unary.Operand, scope),
                },
                BinaryExpr { Op: "and" } and => Eval(and.Left, scope) is var first && !Truthy(first) ? first : Eval(and.Right, scope),
                BinaryExpr { Op: "or" } or => Eval(or.Left, scope) is var left && Truthy(left) ? left : Eval(or.Right, scope),
                BinaryExpr { Op: "+" } plus => JinjaBuiltins.Binary("+", Account(EvalKeepingMarkup(plus.Left, scope), plus.Line),
                    Account(EvalKeepingMarkup(plus.Right, scope), plus.Line), plus.Line),
                BinaryExpr binary => JinjaBuiltins.Binary(binary.Op, Eval(binary.Left, scope), Eval(binary.Right, scope), binary.Line),
                ConditionalExpr conditional => Truthy(Eval(conditional.Condition, scope)) ? Eval(conditional.Then, scope)
                    : conditional.Else is null ? new JinjaUndefined("else") : Eval(conditional.Else, scope),
                _ => throw new ChatTemplateException($"line {expr.Line}: cannot evaluate {expr.GetType().Name}."),
            };
        }
        finally
        {
            _depth--;
        }
    }

    private object? Optional(JinjaExpr? expr, Scope scope) => expr is null ? null : Eval(expr, scope);

    private object? Call(CallExpr call, Scope scope)
    {
        var target = Eval(call.Target, scope);
        if (target is not JinjaCallable callable)
            throw new ChatTemplateException($"line {call.Line}: {TypeName(target)} is not callable.");
        var args = call.Args.Select(a => Eval(a, scope)).ToList();
        var kwargs = call.Kwargs.ToDictionary(k => k.Name, k => Eval(k.Value, scope));
        return callable.Invoke(args, kwargs);
    }
}
