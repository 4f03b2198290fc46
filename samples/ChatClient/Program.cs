// Chats with a HuggingFace model directory through Microsoft.Extensions.AI's IChatClient: the model's own chat template,
// tokenizer.json and generation_config.json; the second turn reuses the first turn's KV cache.
//   dotnet run --project samples/ChatClient -- MODEL_DIR            (e.g. a Qwen2.5 or Llama 3 Instruct download)
using GqaTransformer;
using Microsoft.Extensions.AI;

if (args.Length != 1)
{
    Console.Error.WriteLine("usage: ChatClient MODEL_DIR   (config.json, *.safetensors, tokenizer.json and a chat template)");
    return 2;
}
using IChatClient client = GqaChatClient.FromPretrained(args[0]);   // float32 on the CPU; pass ScalarType.BFloat16 to halve it
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
