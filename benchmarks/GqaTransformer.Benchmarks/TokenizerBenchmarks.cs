using System.Text.Json;
using System.Text.RegularExpressions;
using BenchmarkDotNet.Attributes;
using Microsoft.ML.Tokenizers;

namespace GqaTransformer.Benchmarks;

/// <summary>
/// Encoding 1 MB of English (the Brown corpus, tools/prepare_brown.py) with GPT-2's vocabulary: <see cref="HfTokenizer"/>
/// reading GPT-2's tokenizer.json (tools/fetch_tokenizer_fixtures.sh) against Microsoft.ML.Tokenizers' own BPE built from
/// the same vocabulary and merges, and its tiktoken encoder for GPT-2. The setup checks that all three give the same ids.
///   GQA_TEXT=data/brown/train.txt dotnet run -c Release --project benchmarks/GqaTransformer.Benchmarks -- --filter '*Tokenizer*'
/// </summary>
[MemoryDiagnoser]
public class TokenizerBenchmarks
{
    private const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
    private string _text = "";
    private HfTokenizer _ours = null!;
    private BpeTokenizer _mlBpe = null!;
    private Tokenizer _tiktoken = null!;

    [GlobalSetup]
    public void Setup()
    {
        string root = FindRepository();
        string textPath = Environment.GetEnvironmentVariable("GQA_TEXT") ?? Path.Combine(root, "data", "brown", "train.txt");
        using (var reader = new StreamReader(textPath)) { var buffer = new char[1 << 20]; _text = new string(buffer, 0, reader.ReadBlock(buffer)); }
        string json = Path.Combine(root, "tests", "GqaTransformer.Tests", "TestData", "tokenizers", "gpt2", "tokenizer.json");
        _ours = HfTokenizer.FromFile(json);
        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        var model = doc.RootElement.GetProperty("model");
        var vocab = model.GetProperty("vocab").EnumerateObject().Select(p => KeyValuePair.Create(p.Name, p.Value.GetInt32())).ToList();
        var merges = model.GetProperty("merges").EnumerateArray().Select(m => m.GetString()!).ToList();
        _mlBpe = BpeTokenizer.Create(new BpeOptions(vocab)
        {
            Merges = merges,
            PreTokenizer = new RegexPreTokenizer(new Regex(Gpt2Pattern, RegexOptions.Compiled), null),
            ByteLevel = true,
        });
        _tiktoken = TiktokenTokenizer.CreateForModel("gpt2");
        var expected = _ours.Encode(_text, addSpecialTokens: false);
        foreach (var (name, ids) in new[] { ("ML BPE", _mlBpe.EncodeToIds(_text)), ("tiktoken", _tiktoken.EncodeToIds(_text)) })
            if (!ids.SequenceEqual(expected))
                Console.Error.WriteLine($"// {name} gives other ids than HfTokenizer ({ids.Count} against {expected.Count}; first difference at {ids.Zip(expected).TakeWhile(p => p.First == p.Second).Count()})");
        Console.Error.WriteLine($"// {_text.Length} characters, {expected.Count} GPT-2 tokens");
    }

    [Benchmark(Baseline = true)]
    public int HfTokenizerEncode() => _ours.Encode(_text, addSpecialTokens: false).Count;

    [Benchmark]
    public int MlTokenizersBpeEncode() => _mlBpe.EncodeToIds(_text).Count;

    [Benchmark]
    public int MlTokenizersTiktokenEncode() => _tiktoken.EncodeToIds(_text).Count;

    private static string FindRepository()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "GqaTransformer.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("Run from inside the repository.");
    }
}
