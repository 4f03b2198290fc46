using System.Text.Json;
using FluentAssertions;
using GqaTransformer;
using Microsoft.ML.Tokenizers;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

public class TextGenerationTests
{
    /// <summary>A real BPE tokenizer (vocab.json + merges.txt) whose ids fit the tiny fixture models.</summary>
    private static string MakeBpeTokenizer(string directory)
    {
        // 255 one-letter tokens (ids 0..254) and one merge, "ab" = 255: every id the model can emit decodes.
        var vocab = new Dictionary<string, int>();
        for (int id = 0; id < 255; id++) vocab[Letter(id)] = id;
        vocab[Letter(0) + Letter(1)] = 255;
        File.WriteAllText(Path.Combine(directory, "vocab.json"), JsonSerializer.Serialize(vocab));
        File.WriteAllText(Path.Combine(directory, "merges.txt"), $"#version: 0.2\n{Letter(0)} {Letter(1)}\n");
        return directory;
    }

    private static string Letter(int id) => ((char)(0x100 + id)).ToString();

    [Fact]
    public async Task Text_generation_encodes_generates_and_decodes_like_the_id_api()
    {
        // No dispose scope here: a scope belongs to one thread, and this test awaits (see DisposeScopeThreadingTests).
        using var directory = new Fixtures.TempDirectory();
        var tokenizer = TextGeneration.LoadTokenizer(MakeBpeTokenizer(directory.Path));
        string prompt = Letter(7) + Letter(0) + Letter(1) + Letter(9);
        tokenizer.EncodeToIds(prompt).Should().Equal([7, 255, 9], "the merge is one token");

        using var model = DecoderModel.FromPretrained(Fixtures.HfTiny("llama_gqa"));
        var generator = new TokenGenerator(model);
        var options = new GenerationOptions { MaxNewTokens = 12, StopTokenIds = [] };
        var ids = generator.Generate(tokenizer.EncodeToIds(prompt), options);
        string expected = tokenizer.Decode(ids);
        expected.Length.Should().BeGreaterThan(0, "the test needs a real continuation");

        generator.GenerateText(tokenizer, prompt, options).Should().Be(expected);
        var pieces = new List<string>();
        await foreach (var piece in generator.StreamTextAsync(tokenizer, prompt, options)) pieces.Add(piece);
        string.Concat(pieces).Should().Be(expected);
        pieces.Count.Should().BeGreaterThan(1, "text streams piece by piece");
    }

    [Fact]
    public void Tokenizer_files_are_told_apart_and_unknown_ones_named()
    {
        using var directory = new Fixtures.TempDirectory();
        FluentActions.Invoking(() => TextGeneration.LoadTokenizer(directory.Path)).Should().Throw<FileNotFoundException>().WithMessage("*tokenizer.json*");
        string json = Path.Combine(directory.Path, "tokenizer.json");
        File.WriteAllText(json, """{"model": {"type": "WordPiece", "vocab": {}}}""");
        FluentActions.Invoking(() => TextGeneration.LoadTokenizer(directory.Path)).Should().Throw<NotSupportedException>().WithMessage("*'WordPiece' model*");
        File.WriteAllText(json, """{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}}""");
        TextGeneration.LoadTokenizer(directory.Path).Should().BeOfType<HfTokenizer>().Which.Encode("ab").Should().Equal(2);
        // Llama 3 ships original/tokenizer.model in tiktoken's format: recognised, not handed to the SentencePiece reader.
        string tiktoken = Path.Combine(directory.Path, "tokenizer.model");
        File.WriteAllText(tiktoken, "IQ== 0\nIg== 1\nIw== 2\n");
        FluentActions.Invoking(() => TextGeneration.LoadTokenizer(tiktoken)).Should().Throw<NotSupportedException>().WithMessage("*tiktoken-format*tokenizer.json*");
        File.WriteAllText(Path.Combine(directory.Path, "x.bin"), "");
        FluentActions.Invoking(() => TextGeneration.LoadTokenizer(Path.Combine(directory.Path, "x.bin"))).Should().Throw<NotSupportedException>().WithMessage("*unsupported*");
        FluentActions.Invoking(() => TextGeneration.LoadTokenizer(Path.Combine(directory.Path, "missing.model"))).Should().Throw<FileNotFoundException>();
    }
}
