using FluentAssertions;
using GqaTransformer;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

/// <summary>
/// Each family, loaded from a tiny checkpoint that transformers wrote, computes what transformers computed for it
/// (tools/make_family_fixtures.py, TestData/hf-families): logits of a batch and of a left-padded batch, greedy
/// generation past every sliding window (alone and as a padded batch, through the one generation loop), bfloat16
/// logits, Phi-3's LongRoPE past its original context, both config layouts (4.x and 5.x), on the CPU and on CUDA.
/// </summary>
public class FamilyParityTests
{
    private static string Case(string name) => Path.Combine(Fixtures.Root, "hf-families", name);

    private static string Set => Path.Combine(Fixtures.Root, "hf-families");

    private static IReadOnlyList<string> Names => Directory.Exists(Set)
        ? [.. Directory.EnumerateDirectories(Set).Select(d => Path.GetFileName(d)!).Order()]
        : [];

    /// <summary>The cases, or one placeholder that reports skipped while the fixtures have not been made.</summary>
    public static TheoryData<string> Cases => Names.Count > 0 ? [.. Names] : [Missing];

    private const string Missing = "(not made yet)";

    private static void SkipIfMissing(string name)
        => Skip.If(name == Missing, "transformers' family fixtures are made on the GPU machine (tools/gpu_families.sh) and have not been made yet");

    [SkippableFact]
    public void Every_registered_model_type_has_a_transformers_fixture()
    {
        SkipIfMissing(Names.Count > 0 ? "" : Missing);
        var covered = Names.Select(c => DecoderConfig.FromFile(Path.Combine(Case(c), "config.json")).ModelType).ToHashSet();
        covered.Should().Contain(DecoderConfig.SupportedModelTypes.Where(t => t is not "llama" and not "mistral" and not "qwen2"),
            "every family beyond the three of hf-ref has transformers' own outputs");
    }

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void Logits_match_transformers_within_1e4_in_both_config_layouts(string name)
    {
        SkipIfMissing(name);
        using var scope = NewDisposeScope();
        var expected = Fixtures.Expected(Case(name));
        foreach (var layout in new[] { "config.json", "config.hf-saved.json" })
        {
            using var directory = WithConfig(name, layout);
            using var model = DecoderModel.FromPretrained(directory.Path);
            Tiny.MaxAbsDiff(model.forward(expected["input_ids"]), expected["logits"]).Should().BeLessThanOrEqualTo(1e-4, layout);
            if (expected.TryGetValue("long_input_ids", out var longIds))   // LongRoPE past its original context
                Tiny.MaxAbsDiff(model.forward(longIds), expected["long_logits"]).Should().BeLessThanOrEqualTo(1e-4, layout);
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void Left_padded_logits_match_transformers(string name)
    {
        SkipIfMissing(name);
        using var scope = NewDisposeScope();
        using var model = DecoderModel.FromPretrained(Case(name));
        var expected = Fixtures.Expected(Case(name));
        var mask = expected["padded_attention_mask"];
        var logits = model.forward(expected["padded_input_ids"], null, mask, expected["padded_position_ids"]);
        var difference = (logits - expected["padded_logits"]).abs() * mask.unsqueeze(-1).to(ScalarType.Float32); // padding is not compared
        difference.max().item<float>().Should().BeLessThanOrEqualTo(1e-4f);
    }

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void Greedy_generation_reproduces_transformers_generate_alone_and_padded(string name)
    {
        SkipIfMissing(name);
        using var scope = NewDisposeScope();
        using var model = DecoderModel.FromPretrained(Case(name));
        var expected = Fixtures.Expected(Case(name));
        using var generator = new TokenGenerator(model);
        foreach (var (prompt, mask, tokens) in new[] { ("gen_prompt", (string?)null, "gen_tokens"), ("gen_padded_prompt", "gen_padded_attention_mask", "gen_padded_tokens") })
        {
            var (prompts, want) = Prompts(expected, prompt, mask, tokens);
            var got = generator.Generate(prompts, new GenerationOptions { MaxNewTokens = want[0].Length, StopTokenIds = [] });
            for (int b = 0; b < prompts.Count; b++)
                got[b].Should().Equal(want[b], $"{tokens}[{b}]");
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void Bfloat16_logits_stay_within_bfloat16_rounding_of_transformers_bfloat16(string name)
    {
        SkipIfMissing(name);
        using var scope = NewDisposeScope();
        using var model = DecoderModel.FromPretrained(Case(name), ScalarType.BFloat16);
        var expected = Fixtures.Expected(Case(name));
        var logits = model.forward(expected["input_ids"]).to(ScalarType.Float32);
        var reference = expected["logits_bf16"];
        // Two bfloat16 computations in different orders differ by rounding, which grows with the logits' size:
        // bound the gap by a few bfloat16 steps (2^-7 relative) of the largest logit, and the top-1 choices must agree.
        double bound = 8 * Math.Pow(2, -7) * reference.abs().max().item<float>();
        Tiny.MaxAbsDiff(logits, reference).Should().BeLessThan(bound);
        logits.argmax(-1).eq(reference.argmax(-1)).to(ScalarType.Float32).mean().item<float>().Should().BeGreaterThan(0.9f);
    }

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void On_cuda_logits_and_greedy_tokens_match_with_and_without_graphs(string name)
    {
        SkipIfMissing(name);
        Skip.IfNot(cuda.is_available(), "no CUDA device here");
        using var scope = NewDisposeScope();
        using var model = DecoderModel.FromPretrained(Case(name), ScalarType.Float32, CUDA);
        var expected = Fixtures.Expected(Case(name));
        Tiny.MaxAbsDiff(model.forward(expected["input_ids"].cuda()).cpu(), expected["logits"]).Should().BeLessThanOrEqualTo(1e-4);
        using var generator = new TokenGenerator(model);
        var (prompts, want) = Prompts(expected, "gen_padded_prompt", "gen_padded_attention_mask", "gen_padded_tokens");
        foreach (bool graphs in new[] { false, true })
        {
            var got = generator.Generate(prompts, new GenerationOptions { MaxNewTokens = want[0].Length, StopTokenIds = [], UseCudaGraphs = graphs });
            for (int b = 0; b < prompts.Count; b++) got[b].Should().Equal(want[b], $"graphs {graphs}, sequence {b}");
        }
    }

    /// <summary>The prompts without their padding, and the new tokens transformers generated for each.</summary>
    private static (List<IReadOnlyList<int>> Prompts, int[][] NewTokens) Prompts(Dictionary<string, Tensor> expected, string prompt, string? mask, string tokens)
    {
        var ids = expected[prompt];
        long batch = ids.shape[0], length = ids.shape[1];
        var prompts = new List<IReadOnlyList<int>>();
        var want = new int[batch][];
        for (int b = 0; b < batch; b++)
        {
            var row = ids[b].data<long>().ToArray();
            var real = mask is null ? row.Select(_ => 1L).ToArray() : expected[mask][b].data<long>().ToArray();
            prompts.Add(row.Where((_, i) => real[i] == 1).Select(t => (int)t).ToArray());
            want[b] = expected[tokens][b].data<long>().Skip((int)length).Select(t => (int)t).ToArray();
        }
        return (prompts, want);
    }

    /// <summary>The case's checkpoint with <paramref name="config"/> as its config.json (the files linked, not copied, where possible).</summary>
    private static Fixtures.TempDirectory WithConfig(string name, string config)
    {
        var directory = new Fixtures.TempDirectory();
        foreach (var file in Directory.EnumerateFiles(Case(name)).Where(f => f.EndsWith(".safetensors") && !f.EndsWith("expected.safetensors")))
            File.Copy(file, Path.Combine(directory.Path, Path.GetFileName(file)));
        File.Copy(Path.Combine(Case(name), config), Path.Combine(directory.Path, "config.json"));
        return directory;
    }
}
