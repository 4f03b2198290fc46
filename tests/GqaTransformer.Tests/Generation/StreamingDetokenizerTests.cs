using FluentAssertions;
using GqaTransformer;
using Xunit;

namespace GqaTransformer.Tests;

/// <summary>
/// Streaming text by decoding a short window per token gives, piece by piece, exactly the text that decoding the whole
/// reply gives, for every real tokenizer fetched (SentencePiece leading spaces, byte fallback, byte-level BPE, CJK and
/// emoji split over tokens), and never hands out half a character.
/// </summary>
public class StreamingDetokenizerTests
{
    private static readonly string[] Texts =
    [
        "Hello world, this is a test.\n\n  Indented line\tand a tab.",
        "Grüße 🌍! 日本語のテキスト \"quoted\" <b>&amp;</b> back\\slash",
        "ещё раз 👍🏽 — emoji with a skin tone, and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 outside the BMP.",
        "    leading spaces, trailing spaces    ",
    ];

    public static TheoryData<string> Tokenizers => [.. Directory.EnumerateDirectories(Path.Combine(Fixtures.Root, "tokenizers"))
        .Where(d => File.Exists(Path.Combine(d, "tokenizer.json"))).Select(d => Path.GetFileName(d)!).Order().DefaultIfEmpty("(none fetched)")];

    [SkippableTheory]
    [MemberData(nameof(Tokenizers))]
    public void Every_fetched_tokenizer_streams_exactly_the_whole_decode(string name)
    {
        Skip.If(name == "(none fetched)", "no real tokenizer was fetched (the test build fetches them when npm is on the PATH)");
        var tokenizer = HfTokenizer.FromFile(Path.Combine(Fixtures.Root, "tokenizers", name, "tokenizer.json"));
        var random = new Random(29);
        var sequences = Texts.Select(t => tokenizer.Encode(t, addSpecialTokens: false).ToArray()).ToList();
        for (int i = 0; i < 5; i++)   // random ids too: byte-fallback pieces that never complete a character
            sequences.Add(Enumerable.Range(0, 40).Select(_ => random.Next(tokenizer.VocabularySize)).ToArray());
        foreach (var ids in sequences)
        {
            foreach (bool skip in new[] { false, true })
            {
                var stream = new StreamingDetokenizer(part => tokenizer.Decode(part, skipSpecialTokens: skip));
                var pieces = ids.Select(stream.Add).ToList();
                string whole = tokenizer.Decode(ids, skipSpecialTokens: skip);
                (string.Concat(pieces) + stream.Rest()).Should().Be(whole, $"{name}, {ids.Length} ids");
                pieces.Where(p => p.Length > 0).Select(p => p[p.Length - 1]).Where(char.IsHighSurrogate).Should().BeEmpty("no piece ends inside a character");
            }
        }
    }
}
