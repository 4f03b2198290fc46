using System.Text.Json;
using Microsoft.Extensions.AI;

namespace GqaTransformer;

/// <summary>
/// Microsoft.Extensions.AI's messages and tools as a chat template's <c>messages</c> and <c>tools</c>, in the shape
/// transformers' <c>apply_chat_template</c> is given them (the OpenAI shape its docs show): an assistant turn's
/// <see cref="FunctionCallContent"/>s become <c>tool_calls</c> with arguments as a dictionary, each
/// <see cref="FunctionResultContent"/> a <c>tool</c> message, <see cref="TextReasoningContent"/> <c>reasoning_content</c>.
/// </summary>
internal static class ChatTemplateInput
{
    /// <summary>M.E.AI's serializer settings, on one line: what a model reads as a tool's result.</summary>
    private static readonly JsonSerializerOptions CompactJson = new(AIJsonUtilities.DefaultOptions) { WriteIndented = false };

    /// <summary>The turns as a list of message dictionaries, in order; tool results one message each.</summary>
    /// <exception cref="ArgumentException">A call's arguments or a result cannot be written as JSON.</exception>
    public static List<object?> Messages(IEnumerable<ChatMessage> messages)
    {
        var list = new List<object?>();
        var callNames = new Dictionary<string, string>(StringComparer.Ordinal); // a result names its function by the call's id
        foreach (var message in messages)
        {
            ArgumentNullException.ThrowIfNull(message, nameof(messages));
            var calls = message.Contents.OfType<FunctionCallContent>().ToList();
            var results = message.Contents.OfType<FunctionResultContent>().ToList();
            foreach (var result in results) list.Add(ToolMessage(result, callNames));
            if (results.Count > 0 && message.Text.Length == 0 && calls.Count == 0) continue; // nothing else to say in this turn

            var turn = new Dictionary<string, object?> { ["role"] = message.Role.Value, ["content"] = message.Text };
            string reasoning = string.Concat(message.Contents.OfType<TextReasoningContent>().Select(r => r.Text));
            if (reasoning.Length > 0) turn["reasoning_content"] = reasoning;   // Qwen3's templates read it; others ignore it
            if (calls.Count > 0)
            {
                foreach (var call in calls) callNames[call.CallId] = call.Name;
                turn["tool_calls"] = calls.Select(call => (object?)new Dictionary<string, object?>
                {
                    ["id"] = call.CallId,
                    ["type"] = "function",
                    ["function"] = new Dictionary<string, object?> { ["name"] = call.Name, ["arguments"] = Arguments(call) },
                }).ToList();
            }
            list.Add(turn);
        }
        return list;
    }

    /// <summary>
    /// The functions of <paramref name="options"/> as <c>{"type": "function", "function": {name, description, parameters}}</c>,
    /// or null (None to the template) when there are none or <see cref="ChatOptions.ToolMode"/> is <see cref="ChatToolMode.None"/>.
    /// </summary>
    /// <exception cref="ArgumentException">A tool is not a function (a hosted tool a local model cannot run).</exception>
    public static List<object?>? Tools(ChatOptions? options)
    {
        if (options?.Tools is not { Count: > 0 } tools || options.ToolMode is NoneChatToolMode) return null;
        var list = new List<object?>();
        for (int i = 0; i < tools.Count; i++)
        {
            if (tools[i] is not AIFunctionDeclaration function)
                throw new ArgumentException(
                    $"ChatOptions.Tools[{i}] is a {tools[i]?.GetType().Name ?? "null"} ('{tools[i]?.Name}'); only functions (AIFunctionDeclaration, e.g. from AIFunctionFactory) can be given to a chat template.",
                    nameof(options));
            var declaration = new Dictionary<string, object?> { ["name"] = function.Name };
            if (!string.IsNullOrEmpty(function.Description)) declaration["description"] = function.Description;
            declaration["parameters"] = function.JsonSchema.ValueKind == JsonValueKind.Undefined
                ? new Dictionary<string, object?> { ["type"] = "object", ["properties"] = new Dictionary<string, object?>() }
                : function.JsonSchema;
            list.Add(new Dictionary<string, object?> { ["type"] = "function", ["function"] = declaration });
        }
        return list;
    }

    private static Dictionary<string, object?> ToolMessage(FunctionResultContent result, Dictionary<string, string> callNames)
    {
        var message = new Dictionary<string, object?> { ["role"] = "tool", ["tool_call_id"] = result.CallId };
        if (callNames.TryGetValue(result.CallId, out string? name)) message["name"] = name;
        message["content"] = result.Result switch
        {
            null => "",
            string text => text,
            JsonElement { ValueKind: JsonValueKind.String } json => json.GetString(),   // what AIFunctionFactory's functions return
            object value => Json(value, $"the result of tool call '{result.CallId}'"),
        };
        return message;
    }

    /// <summary>A call's arguments as a dictionary; values the template reads directly kept, others as their JSON.</summary>
    private static Dictionary<string, object?> Arguments(FunctionCallContent call)
    {
        var arguments = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var (key, value) in call.Arguments ?? new Dictionary<string, object?>())
            arguments[key] = value switch
            {
                // As the template's own values: a double stays 2.0 where JSON would write 2, as Python's json.dumps does.
                null or string or bool or int or long or float or double or decimal or JsonElement => value,
                _ => Parsed(Json(value, $"argument '{key}' of tool call '{call.CallId}' ({call.Name})")),
            };
        return arguments;
    }

    private static JsonElement Parsed(string json)
    {
        using var document = JsonDocument.Parse(json);
        return document.RootElement.Clone();
    }

    private static string Json(object value, string what)
    {
        try
        {
            return JsonSerializer.Serialize(value, CompactJson.GetTypeInfo(value.GetType()));
        }
        catch (Exception e) when (e is JsonException or NotSupportedException or InvalidOperationException)
        {
            throw new ArgumentException($"{what} is a {value.GetType().Name} that cannot be written as JSON: {e.Message}", "messages", e);
        }
    }
}
