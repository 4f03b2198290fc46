using FluentAssertions;
using GqaTransformer;
using Xunit;

namespace GqaTransformer.Tests;

/// <summary>
/// What a model may write instead of a well-formed call: every format keeps it as text (all of it, nothing lost) and
/// says why in Errors; it never throws. Also the formats without a real render (Phi-4-mini, Gemma), against the shapes
/// their model documentation gives, and streaming's hold on a half-written marker.
/// </summary>
public class ToolCallMalformedTests
{
    public static TheoryData<string, string> Malformed() => new()
    {
        { "hermes", "Sure.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}" },   // unclosed
        { "hermes", "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Par\n</tool_call>" },   // bad JSON
        { "hermes", "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": [1, 2]}\n</tool_call>" },           // arguments not an object
        { "hermes", "<tool_call>\n{\"arguments\": {}}\n</tool_call>" },                                            // no name
        { "hermes", "<tool_call>\n" + new string('[', 5000) + "\n</tool_call>" },                                 // nesting beyond the bound
        { "llama3-json", "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": " },
        { "llama3-json", "{\"name\": \"get_weather\", \"parameters\": \"Paris\"}" },
        { "llama3-json", "{\"name\": \"a\", \"parameters\": {}} trailing words" },
        { "mistral", "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}" },
        { "mistral", "[TOOL_CALLS]get_weather[ARGS]{\"city\": }" },
        { "mistral", "[TOOL_CALLS]get_weather{\"city\": \"Paris\"}" },
        { "mistral", "[TOOL_CALLS]get weather[ARGS]{}" },
        { "mistral", "[TOOL_CALLS]get_weather[ARGS]42" },
        { "phi4-mini", "<|tool_call|>[{\"name\": \"get_weather\", \"arguments\": {}}]" },
        { "phi4-mini", "functools[{\"name\": \"get_weather\", \"arguments\": 3}]" },
        { "gemma", "```tool_code\nget_weather(city=\"Paris\"\n```" },
        { "gemma", "```tool_code\nget_weather(\"Paris\")\n```" },
        { "gemma", "```tool_code\nget_weather(city=\"Paris\")" },
        { "gemma", "{\"name\": \"get_weather\", \"parameters\": [\"Paris\"]}" },
    };

    [Theory]
    [MemberData(nameof(Malformed))]
    public void A_malformed_call_stays_text_with_a_reason(string format, string reply)
    {
        var result = ToolCallFormats.ByName(format).Parse(reply);
        result.Calls.Should().BeEmpty();
        result.Text.Should().Be(reply, "nothing the model wrote is lost");
        result.Errors.Should().ContainSingle().Which.Should().NotBeNullOrWhiteSpace();
    }

    [Theory]
    [InlineData("hermes")]
    [InlineData("llama3-json")]
    [InlineData("mistral")]
    [InlineData("phi4-mini")]
    [InlineData("gemma")]
    public void Plain_text_comes_back_as_it_is(string format)
    {
        const string reply = "The weather in Paris is sunny.\n\nAnything else? [1] {not json}";
        var result = ToolCallFormats.ByName(format).Parse(reply);
        result.Calls.Should().BeEmpty();
        result.Text.Should().Be(reply);
    }

    [Theory]
    [InlineData("<|tool_call|>[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}, {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Lima\", \"unit\": \"celsius\"}}]<|/tool_call|>")]
    [InlineData("functools[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}, {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Lima\", \"unit\": \"celsius\"}}]")]
    [InlineData("<|tool_call|>[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"Rome\\\"}\"}}, {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Lima\", \"unit\": \"celsius\"}}]<|/tool_call|>")]
    public void Phi4_mini_calls_parse(string reply) => AssertRomeAndLima(ToolCallFormats.ByName("phi4-mini").Parse(reply));

    [Theory]
    [InlineData("```tool_code\nget_weather(city=\"Rome\")\nget_weather(city='Lima', unit=\"celsius\")\n```")]
    [InlineData("[get_weather(city=\"Rome\"), get_weather(city=\"Lima\", unit=\"celsius\")]")]
    [InlineData("[{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Rome\"}}, {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Lima\", \"unit\": \"celsius\"}}]")]
    public void Gemma_calls_parse(string reply) => AssertRomeAndLima(ToolCallFormats.ByName("gemma").Parse(reply));

    [Fact]
    public void Gemma_python_values_keep_their_kinds()
    {
        var call = ToolCallFormats.ByName("gemma").Parse("```tool_code\nf(a=3, b=2.0, c=True, d=None, e=[1, 'x'], g={'k': -7}, h=\"q\\\"\")\n```").Calls.Single();
        call.Arguments.Should().BeEquivalentTo(new Dictionary<string, object?>
        {
            ["a"] = 3L, ["b"] = 2.0, ["c"] = true, ["d"] = null, ["e"] = new List<object?> { 1L, "x" },
            ["g"] = new Dictionary<string, object?> { ["k"] = -7L }, ["h"] = "q\"",
        }, o => o.RespectingRuntimeTypes());
    }

    [Theory]
    [InlineData("hermes", "Let me check.\n<tool_", "Let me check.")]
    [InlineData("hermes", "Let me check. <tool_call>\n{", "Let me check.")]
    [InlineData("mistral", "Sure[TOOL_C", "Sure")]
    [InlineData("phi4-mini", "ok functools", "ok")]
    [InlineData("llama3-json", "{\"name\"", "")]
    [InlineData("llama3-json", "Hi <|python", "Hi")]
    [InlineData("gemma", "Here ```tool", "Here")]
    [InlineData("hermes", "a <b> c", "a <b> c")]
    public void Streaming_holds_back_a_marker_that_may_be_starting(string format, string soFar, string released) =>
        soFar[..ToolCallFormats.ByName(format).SafeTextLength(soFar, atReplyStart: true)].Should().Be(released);

    [Fact]
    public void A_made_id_is_nine_letters_and_digits_and_differs_each_time()
    {
        var calls = ToolCallFormats.ByName("mistral").Parse("[TOOL_CALLS]f[ARGS]{}[TOOL_CALLS]f[ARGS]{}").Calls;
        calls.Should().HaveCount(2);
        calls.Should().OnlyContain(c => ToolCallIds.IsMistralId(c.CallId));
        calls[0].CallId.Should().NotBe(calls[1].CallId);
    }

    [Fact]
    public void An_unknown_format_name_is_refused_with_the_known_ones() =>
        FluentActions.Invoking(() => ToolCallFormats.ByName("nope")).Should().Throw<ArgumentException>()
            .WithMessage("*nope*hermes*llama3-json*mistral*").And.ParamName.Should().Be("name");

    private static void AssertRomeAndLima(ToolCallParseResult result)
    {
        result.Errors.Should().BeEmpty();
        result.Calls.Select(c => c.Name).Should().Equal("get_weather", "get_weather");
        result.Calls[0].Arguments.Should().BeEquivalentTo(new Dictionary<string, object?> { ["city"] = "Rome" });
        result.Calls[1].Arguments.Should().BeEquivalentTo(new Dictionary<string, object?> { ["city"] = "Lima", ["unit"] = "celsius" });
        result.Text.Should().BeEmpty();
    }
}
