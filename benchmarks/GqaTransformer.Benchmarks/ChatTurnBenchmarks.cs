using BenchmarkDotNet.Attributes;
using Microsoft.Extensions.AI;
using static TorchSharp.torch;

namespace GqaTransformer.Benchmarks;

/// <summary>
/// The next turn of a chat: the history (History tokens, already answered) plus a new user turn of about 30 tokens,
/// answered with one token, so the time is the prefill. With the cache kept from the previous turn only the new tokens
/// are read; after <see cref="GqaChatClient.Reset"/> the whole prompt is. A random-weight Llama shape (8 layers, hidden
/// 512, 8 heads over 2 KV heads) with TestData/chat-tiny's byte-level tokenizer and ChatML template, on the CPU.
///   dotnet run -c Release --project benchmarks/GqaTransformer.Benchmarks -- --filter '*ChatTurn*'
/// </summary>
public class ChatTurnBenchmarks
{
    private string _directory = "";
    private GqaChatClient _client = null!;
    private List<ChatMessage> _history = [], _next = [];
    private readonly ChatOptions _oneToken = new() { MaxOutputTokens = 1 };

    [Params(256, 1024, 3072)]
    public int History { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        string root = Directory.GetParent(AppContext.BaseDirectory)!.FullName;
        while (!File.Exists(Path.Combine(root, "GqaTransformer.sln"))) root = Directory.GetParent(root)!.FullName;
        _directory = Directory.CreateTempSubdirectory("gqa-chat-bench").FullName;
        manual_seed(1);
        using (var model = new DecoderModel(new DecoderConfig
               {
                   HiddenSize = 512, NumAttentionHeads = 8, NumKeyValueHeads = 2, NumHiddenLayers = 8, IntermediateSize = 1376,
                   VocabSize = 256, MaxPositionEmbeddings = 4096, RmsNormEps = 1e-5,
               }))
            model.SavePretrained(_directory);
        foreach (var file in Directory.GetFiles(Path.Combine(root, "tests", "GqaTransformer.Tests", "TestData", "chat-tiny"), "*.json"))
            File.Copy(file, Path.Combine(_directory, Path.GetFileName(file)));
        _client = GqaChatClient.FromPretrained(_directory);
        var words = string.Join(' ', Enumerable.Range(0, History).Select(i => $"w{i % 97}"));    // about 4 bytes, so tokens, a word
        _history = [new(ChatRole.User, words[..Math.Min(words.Length, History - 24)]), new(ChatRole.Assistant, "ok")];
        _next = [.. _history, new ChatMessage(ChatRole.User, "and what comes next, please?")];
    }

    [IterationSetup(Target = nameof(NextTurnFromTheCache))]
    public void AnswerTheHistory()
    {
        _client.Reset();
        _client.GetResponseAsync(_history, _oneToken).GetAwaiter().GetResult();
    }

    [IterationSetup(Target = nameof(NextTurnFromScratch))]
    public void Forget() => _client.Reset();

    [Benchmark]
    public long? NextTurnFromTheCache() => _client.GetResponseAsync(_next, _oneToken).GetAwaiter().GetResult().Usage!.InputTokenCount;

    [Benchmark(Baseline = true)]
    public long? NextTurnFromScratch() => _client.GetResponseAsync(_next, _oneToken).GetAwaiter().GetResult().Usage!.InputTokenCount;

    [GlobalCleanup]
    public void Cleanup()
    {
        _client.Dispose();
        Directory.Delete(_directory, recursive: true);
    }
}
