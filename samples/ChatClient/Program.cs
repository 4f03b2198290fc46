// Usage: ChatClient MODEL_DIR      (config.json, *.safetensors, tokenizer.json and a chat template)
// Wrong arguments print this usage to standard error and exit 2; so does a model directory that cannot be loaded.
//
// Chats with a HuggingFace model directory through Microsoft.Extensions.AI's IChatClient: the model's own chat template,
// tokenizer.json and generation_config.json; the second turn reuses the first turn's KV cache.
//   dotnet run --project samples/ChatClient -- MODEL_DIR            (e.g. a Qwen2.5 or Llama 3 Instruct download)
using GqaTransformer;
using Microsoft.Extensions.AI;

if (args.Length != 1 || args[0].StartsWith("--", StringComparison.Ordinal))
    return Fail("usage: ChatClient MODEL_DIR   (config.json, *.safetensors, tokenizer.json and a chat template)");
if (!Directory.Exists(args[0]))
    return Fail($"error: '{args[0]}' is not a directory; expected a model directory (config.json, *.safetensors, tokenizer.json, a chat template).");
using IChatClient? client = Load(args[0]);                          // float32 on the CPU; pass ScalarType.BFloat16 to halve it
if (client is null) return 2;
var options = new ChatOptions { MaxOutputTokens = 32 };
List<ChatMessage> chat = [new(ChatRole.System, "You are a helpful assistant."), new(ChatRole.User, "Name three colours.")];

for (int turn = 1; turn <= 2; turn++)
{
    var reply = new System.Text.StringBuilder();
    UsageDetails? usage = null;
    await foreach (var update in client.GetStreamingResponseAsync(chat, options))
    {
        Console.Write(update.Text);                                   // each piece as soon as it is final
        reply.Append(update.Text);
        usage = update.Contents.OfType<UsageContent>().FirstOrDefault()?.Details ?? usage;
    }
    Console.WriteLine();
    Console.WriteLine($"[turn {turn}: prompt {usage?.InputTokenCount} tokens, {usage?.AdditionalCounts?[GqaChatClient.CachedInputTokensKey]} of them from the cache; reply {usage?.OutputTokenCount} tokens]");
    chat.Add(new ChatMessage(ChatRole.Assistant, reply.ToString()));
    chat.Add(new ChatMessage(ChatRole.User, "And three more?"));
}
return 0;

// A model directory that is incomplete or corrupt is one line on standard error, not a stack trace.
static GqaChatClient? Load(string directory)
{
    try
    {
        return GqaChatClient.FromPretrained(directory);
    }
    catch (Exception e) when (e is IOException or InvalidDataException or NotSupportedException)
    {
        Fail($"error: cannot load '{directory}': {e.Message}");
        return null;
    }
}

// The usage or an error on standard error, exit code 2: the arguments were wrong.
static int Fail(string message)
{
    Console.Error.WriteLine(message);
    return 2;
}
