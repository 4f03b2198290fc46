using System.Diagnostics;
using System.Text;
using System.Text.Json;
using FluentAssertions;
using GqaTransformer;
using Xunit;

namespace GqaTransformer.Tests;

/// <summary>
/// A chat template is code from a downloaded repository. Templates built here, never found in the wild, nest each
/// construct 5,000 deep or double a value in a loop; each must end in a ChatTemplateException that names the limit it
/// passed (JinjaLimits), in bounded time, instead of a stack overflow that kills the process, a hang, or gigabytes.
/// </summary>
public class ChatTemplateLimitTests
{
    private const int Deep = 5000;

    private static string Repeat(string s, int n) => new StringBuilder().Insert(0, s, n).ToString();

    public static TheoryData<string, string> DeepSources() => new()
    {
        { "parentheses", "{{ " + Repeat("(", Deep) + "1" + Repeat(")", Deep) + " }}" },
        { "lists", "{{ " + Repeat("[", Deep) + "1" + Repeat("]", Deep) + " }}" },
        { "dicts", "{{ " + Repeat("{'a': ", Deep) + "1" + Repeat("}", Deep) + " }}" },
        { "calls", "{{ " + Repeat("range(", Deep) + "1" + Repeat(")", Deep) + " }}" },
        { "subscripts", "{{ x" + Repeat("[x", Deep) + Repeat("]", Deep) + " }}" },
        { "not", "{{ " + Repeat("not ", Deep) + "x }}" },
        { "unary minus", "{{ " + Repeat("- ", Deep) + "1 }}" },
        { "conditionals", "{{ " + Repeat("1 if x else ", Deep) + "2 }}" },
        { "if blocks", Repeat("{% if true %}", Deep) + "x" + Repeat("{% endif %}", Deep) },
        { "for blocks", Repeat("{% for i in [1] %}", Deep) + "x" + Repeat("{% endfor %}", Deep) },
        { "set blocks", Repeat("{% set s %}", Deep) + "x" + Repeat("{% endset %}", Deep) },
        { "filter blocks", Repeat("{% filter upper %}", Deep) + "x" + Repeat("{% endfilter %}", Deep) },
        { "macro blocks", Repeat("{% macro m() %}", Deep) + "x" + Repeat("{% endmacro %}", Deep) },
    };

    [Theory]
    [MemberData(nameof(DeepSources))]
    public void Nesting_5000_deep_fails_to_parse_naming_MaxParseDepth(string construct, string source)
        => Bounded(() => ChatTemplate.Parse(source), "MaxParseDepth", construct);

    public static TheoryData<string, string, string> HostileRenders() => new()
    {
        // left-deep chains parse in a loop; evaluating them recurses
        { "a ~ chain", "{{ " + string.Join(" ~ ", Enumerable.Repeat("'a'", Deep)) + " }}", "MaxRenderDepth" },
        { "a + chain", "{{ " + string.Join(" + ", Enumerable.Repeat("1", Deep)) + " }}", "MaxRenderDepth" },
        { "a filter chain", "{{ 'a'" + Repeat(" | trim", Deep) + " }}", "MaxRenderDepth" },
        { "a macro that calls itself", "{% macro f(n) %}{% for i in [n] %}{% if true %}{{ f(n + 1) | trim }}{% endif %}{% endfor %}{% endmacro %}{{ f(0) }}", "MaxRenderDepth" },
        { "caller() inside caller()", "{% macro f() %}{{ caller() }}{% endmacro %}{% macro g() %}{% call f() %}{{ g() }}{% endcall %}{% endmacro %}{{ g() }}", "MaxRenderDepth" },
        // values nested 5000 deep by a loop, then printed, compared or written as JSON
        { "tojson of a deep list", Nest("[ns.x]") + "{{ ns.x | tojson }}", "MaxValueDepth" },
        { "tojson of a deep dict", Nest("{'k': ns.x}") + "{{ ns.x | tojson }}", "MaxValueDepth" },
        { "printing a deep list", Nest("[ns.x]") + "{{ ns.x }}", "MaxValueDepth" },
        { "comparing deep lists", Nest("[ns.x]") + "{{ ns.x == [ns.x] }}", "MaxValueDepth" },
        // doubling in a loop
        { "string ~ itself", Doubling("ns.x ~ ns.x", "'ab'"), "MaxStringChars" },
        { "string + itself", Doubling("ns.x + ns.x", "'ab'"), "MaxStringChars" },
        { "str.replace", Doubling("ns.x.replace('a', 'aa')", "'ab'"), "MaxStringChars" },
        { "replace filter", Doubling("ns.x | replace('a', 'aa')", "'ab'"), "MaxStringChars" },
        { "str.format", Doubling("'{}{}'.format(ns.x, ns.x)", "'ab'"), "MaxStringChars" },
        { "join", Doubling("[ns.x, ns.x] | join", "'ab'"), "MaxStringChars" },
        { "markup + itself", Doubling("ns.x|safe + ns.x", "'ab'"), "MaxStringChars" },
        { "list + itself", Doubling("ns.x + ns.x", "[1]"), "MaxItems" },
        { "list * 2", Doubling("ns.x * 2", "[1]"), "MaxItems" },
        { "indent", Doubling("(ns.x ~ '\\n' ~ ns.x) | indent(8)", "'ab'"), "MaxStringChars" },
        { "join of one string many times", "{% set s = 'x' * 1000000 %}{{ ([s] * 1000) | join }}", "MaxStringChars" },
        { "tojson of one string many times", "{% set s = 'x' * 1000000 %}{{ ([s] * 1000) | tojson }}", "MaxStringChars" },
        { "the characters of a long string", "{{ ('x' * 2000000) | list | length }}", "MaxItems" },
        // work that grows without any one value growing
        { "a long string copied in a loop", "{% set s = 'x' * 8000000 %}{% for i in range(1000000) %}{% set t = s ~ 'a' %}{% endfor %}", "MaxWork" },
        { "a long string indexed in a loop", "{% set s = 'x' * 8000000 %}{% for i in range(1000000) %}{{ s[i] }}{% endfor %}", "MaxWork" },
        { "a macro that calls itself twice", "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}", "MaxSteps" },
    };

    [Theory]
    [MemberData(nameof(HostileRenders))]
    public void A_hostile_render_ends_in_an_error_naming_the_limit(string construct, string source, string limit)
    {
        var template = ChatTemplate.Parse(source);
        Bounded(() => template.Render([("user", "hi")]), limit, construct);
    }

    /// <summary>The limits share their counters, so the deepest source they let through still renders on a 1 MiB stack.</summary>
    [Fact]
    public void Nesting_just_under_the_limits_renders()
    {
        int blocks = JinjaLimits.MaxParseDepth / 2 - 1;
        string source = Repeat("{% if true %}", blocks) + "{{ " + Repeat("(", blocks - 1) + "'x'" + Repeat(")", blocks - 1) + " }}" + Repeat("{% endif %}", blocks);
        string? rendered = null;
        var thread = new Thread(() => rendered = ChatTemplate.Parse(source).Render(new Dictionary<string, object?>()), 1024 * 1024);
        thread.Start();
        thread.Join();
        rendered.Should().Be("x");
    }

    [Fact]
    public void A_variable_nested_5000_deep_is_refused_naming_MaxValueDepth()
    {
        object? nested = "x";
        for (int i = 0; i < Deep; i++) nested = new List<object?> { nested };
        var template = ChatTemplate.Parse("{{ v | length }}");
        Bounded(() => template.Render(new Dictionary<string, object?> { ["v"] = nested }), "MaxValueDepth", ".NET lists");

        using var json = JsonDocument.Parse(Repeat("[", Deep) + Repeat("]", Deep), new JsonDocumentOptions { MaxDepth = Deep + 1 });
        Bounded(() => template.Render(new Dictionary<string, object?> { ["v"] = json.RootElement }), "MaxValueDepth", "a JsonElement");
    }

    /// <summary>ns.x nested 5000 deep, one level per loop iteration.</summary>
    private static string Nest(string wrap) => "{% set ns = namespace(x=1) %}{% for i in range(" + Deep + ") %}{% set ns.x = " + wrap + " %}{% endfor %}";

    private static string Doubling(string step, string start)
        => "{% set ns = namespace(x=" + start + ") %}{% for i in range(64) %}{% set ns.x = " + step + " %}{% endfor %}{{ ns.x | length }}";

    /// <summary>Runs on a thread with a 1 MiB stack (less than the test runner's) so that a recursion the limits miss fails here too.</summary>
    private static void Bounded(Action act, string limit, string construct)
    {
        Exception? caught = null;
        var watch = Stopwatch.StartNew();
        var thread = new Thread(() =>
        {
            try { act(); }
            catch (Exception e) { caught = e; }
        }, 1024 * 1024);
        thread.Start();
        thread.Join();
        watch.Stop();
        caught.Should().BeOfType<ChatTemplateException>(construct).Which.Message.Should().Contain(limit, construct);
        watch.Elapsed.Should().BeLessThan(TimeSpan.FromSeconds(30), $"{construct} must stop at a limit, not run on");
    }
}
