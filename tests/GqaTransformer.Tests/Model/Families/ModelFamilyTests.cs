using FluentAssertions;
using GqaTransformer;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

/// <summary>
/// Each registered family against a textbook decoder written from transformers' modeling files
/// (<see cref="TextbookDecoder"/>), and against itself: a cached decode equals the full forward (sliding layers
/// through their rings), and a saved checkpoint reads back with the family's own keys.
/// transformers' own outputs for the same families are checked in <c>FamilyParityTests</c>.
/// </summary>
public class ModelFamilyTests
{
    private static readonly DecoderConfig Base = Tiny.Config(heads: 4, kvHeads: 2, hidden: 64, layers: 2, vocab: 61, intermediate: 80);

    /// <summary>A tiny config for each model type, with the fields that make the family differ set so that they matter.</summary>
    public static IReadOnlyDictionary<string, DecoderConfig> Configs { get; } = new Dictionary<string, DecoderConfig>
    {
        ["llama"] = Base with { ModelType = "llama", RopeScaling = new RopeScaling { RopeType = "linear", Factor = 2 } },
        ["mistral"] = Base with { ModelType = "mistral", HeadDim = 24, SlidingWindow = 5 },
        ["qwen2"] = Base with { ModelType = "qwen2", NumHiddenLayers = 3, SlidingWindow = 4, UseSlidingWindow = true, MaxWindowLayers = 1 },
        ["qwen3"] = Base with { ModelType = "qwen3", HeadDim = 24, NumHiddenLayers = 3, SlidingWindow = 4, UseSlidingWindow = true, MaxWindowLayers = 2 },
        ["gemma2"] = Base with
        {
            ModelType = "gemma2", NumHiddenLayers = 3, HeadDim = 32, SlidingWindow = 4, QueryPreAttnScalar = 20,
            AttnLogitSoftcapping = 2.0, FinalLogitSoftcapping = 3.0, HiddenActivation = "gelu_pytorch_tanh", TieWordEmbeddings = true,
        },
        ["gemma3_text"] = Base with
        {
            ModelType = "gemma3_text", NumHiddenLayers = 4, HeadDim = 32, SlidingWindow = 4, SlidingWindowPattern = 3, QueryPreAttnScalar = 20,
            RopeTheta = 1e6, RopeLocalBaseFreq = 1e4, RopeScaling = new RopeScaling { RopeType = "linear", Factor = 4 }, TieWordEmbeddings = true,
        },
        ["phi3"] = Base with { ModelType = "phi3", PartialRotaryFactor = 0.75, SlidingWindow = 6 },
        ["smollm3"] = Base with { ModelType = "smollm3", NumHiddenLayers = 4, NoRopeLayerInterval = 2, TieWordEmbeddings = true },
        ["olmo2"] = Base with { ModelType = "olmo2" },
    };

    public static TheoryData<string> ModelTypes => [.. DecoderConfig.SupportedModelTypes];

    [Fact]
    public void Every_registered_model_type_has_a_config_here()
        => Configs.Keys.Should().BeEquivalentTo(DecoderConfig.SupportedModelTypes, "each family is checked below");

    [Theory]
    [MemberData(nameof(ModelTypes))]
    public void Every_family_computes_what_the_textbook_decoder_computes(string modelType)
    {
        using var scope = NewDisposeScope();
        var config = Configs[modelType].Validate();
        using var model = Randomised(config);
        var ids = Tiny.Ids(2, 14, config.VocabSize);
        var weights = model.state_dict().ToDictionary(p => p.Key, p => p.Value);
        var expected = TextbookDecoder.Logits(config, weights, ids);
        Tiny.MaxAbsDiff(model.forward(ids), expected).Should().BeLessThan(1e-4);
    }

    [Theory]
    [MemberData(nameof(ModelTypes))]
    public void Every_family_decodes_through_its_cache_as_the_full_forward(string modelType)
    {
        using var scope = NewDisposeScope();
        var config = Configs[modelType];
        using var model = Randomised(config);
        var ids = Tiny.Ids(2, 20, config.VocabSize, seed: 3);
        var full = model.forward(ids);
        using var cache = model.CreateCache(2, 20);
        var pieces = new List<Tensor> { model.forward(ids.narrow(1, 0, 7), cache), model.forward(ids.narrow(1, 7, 3), cache) };
        for (int t = 10; t < 20; t++) pieces.Add(model.forward(ids.narrow(1, t, 1), cache));
        Tiny.MaxAbsDiff(cat(pieces, 1), full).Should().BeLessThan(1e-4);
        for (int layer = 0; layer < config.NumHiddenLayers; layer++)
            cache.SlotsOf(layer).Should().Be(config.WindowOf(layer) ?? 20, $"layer {layer} keeps {(config.WindowOf(layer) is null ? "every token" : "its window")}");
    }

    [Theory]
    [MemberData(nameof(ModelTypes))]
    public void Every_family_saves_its_own_keys_and_reads_them_back(string modelType)
    {
        using var scope = NewDisposeScope();
        var config = Configs[modelType];
        using var model = Randomised(config);
        using var directory = new Fixtures.TempDirectory();
        model.SavePretrained(directory.Path);
        using var again = DecoderModel.FromPretrained(directory.Path);
        again.Config.Should().BeEquivalentTo(config, o => o.Excluding(c => c.TorchDtype).Excluding(c => c.Architectures));
        again.Config.Architectures.Should().ContainSingle().Which.Should().EndWith("ForCausalLM").And.NotBe(modelType == "llama" ? "" : "LlamaForCausalLM",
            "transformers picks the class by model_type, but the file should name its own");
        again.state_dict().Keys.Should().BeEquivalentTo(model.state_dict().Keys);
        var ids = Tiny.Ids(1, 9, config.VocabSize);
        var logits = again.forward(ids);
        Tiny.MaxAbsDiff(logits, model.forward(ids)).Should().Be(0);
        // tools/check_saved_with_transformers.py loads these with transformers on the GPU machine (docs/gpu.md)
        if (Environment.GetEnvironmentVariable("GQA_KEEP_SAVED") is { Length: > 0 } keep)
        {
            var kept = Directory.CreateDirectory(Path.Combine(keep, modelType)).FullName;
            foreach (var file in Directory.EnumerateFiles(directory.Path)) File.Copy(file, Path.Combine(kept, Path.GetFileName(file)), true);
            SafetensorsFile.Save(Path.Combine(kept, "ours.safetensors"), [new("input_ids", ids), new("logits", logits)]);
        }
    }

    [Fact]
    public void The_families_name_their_parameters_as_transformers_does()
    {
        static IEnumerable<string> Layer0(string type)
        {
            using var model = new DecoderModel(Configs[type]);
            return model.state_dict().Keys.Where(k => k.StartsWith("model.layers.0.")).Select(k => k["model.layers.0.".Length..]).ToList();
        }
        Layer0("phi3").Should().Contain(["self_attn.qkv_proj.weight", "mlp.gate_up_proj.weight"]).And.NotContain("self_attn.q_proj.weight");
        Layer0("gemma3_text").Should().Contain(["pre_feedforward_layernorm.weight", "post_feedforward_layernorm.weight", "self_attn.q_norm.weight"]);
        Layer0("gemma2").Should().NotContain("self_attn.q_norm.weight");
        Layer0("olmo2").Should().NotContain("input_layernorm.weight").And.Contain(["post_attention_layernorm.weight", "post_feedforward_layernorm.weight"]);
        using var qwen3 = new DecoderModel(Configs["qwen3"]);
        qwen3.state_dict()["model.layers.0.self_attn.q_norm.weight"].shape.Should().Equal(24L);     // per head: [head_dim]
        using var olmo2 = new DecoderModel(Configs["olmo2"]);
        olmo2.state_dict()["model.layers.0.self_attn.k_norm.weight"].shape.Should().Equal(2L * 16); // whole projection: [kv_heads · head_dim]
    }

    [Fact]
    public void Gemma3_shares_one_table_per_layer_type_and_smollm3_skips_rope()
    {
        using var gemma = new DecoderModel(Configs["gemma3_text"]);
        gemma.RotaryTables.Should().HaveCount(2, "sliding layers have the local base, full layers the global one");
        gemma.Layers.Select(l => l.Attention.SlidingWindow).Should().Equal(4, 4, null, 4);
        using var smol = new DecoderModel(Configs["smollm3"]);
        smol.Layers.Select(l => l.Attention.RotaryDim).Should().Equal(16, 0, 16, 0);
        using var phi = new DecoderModel(Configs["phi3"]);
        phi.Layers[0].Attention.RotaryDim.Should().Be(12, "75% of a 16-wide head");
    }

    [Theory]
    [InlineData("gemma3_text")]   // sliding layers of window 4 beside a full one, with left padding through the rings
    [InlineData("gemma2")]
    [InlineData("qwen3")]
    public void A_left_padded_batch_generates_what_each_prompt_generates_alone(string modelType)
    {
        using var scope = NewDisposeScope();
        using var model = Randomised(Configs[modelType]);
        using var generator = new TokenGenerator(model);
        IReadOnlyList<int>[] prompts = [[5, 9, 13], [7, 1, 2, 30, 11, 4, 8], [21]];
        var options = new GenerationOptions { MaxNewTokens = 12, StopTokenIds = [] };   // past every window
        var batched = generator.Generate(prompts, options);
        for (int b = 0; b < prompts.Length; b++)
            batched[b].Should().Equal(generator.Generate(prompts[b], options), $"sequence {b}");
    }

    [Fact]
    public void Phi3_longrope_generation_reads_the_sequence_again_when_it_first_passes_the_original_context()
    {
        using var scope = NewDisposeScope();
        var factors = Enumerable.Range(0, 6).Select(i => 1.0 + i).ToArray();   // 12 rotated dims: 6 pairs
        var config = Configs["phi3"] with
        {
            SlidingWindow = null, MaxPositionEmbeddings = 32, OriginalMaxPositionEmbeddings = 8,
            RopeScaling = new RopeScaling { RopeType = "longrope", ShortFactor = [.. factors.Select(f => 1 + f / 10)], LongFactor = factors },
        };
        using var model = Randomised(config);
        // Each step's logits as a full forward of the sequence so far: the short table up to 8 positions, the long one after.
        var prompt = new long[] { 3, 17, 5, 9 };
        var sequence = prompt.ToList();
        while (sequence.Count < 16)
            sequence.Add(model.forward(tensor(sequence.ToArray()).view(1, -1)).select(1, -1).argmax(-1).item<long>());
        using var generator = new TokenGenerator(model);
        var generated = generator.Generate(prompt.Select(t => (int)t).ToArray(), new GenerationOptions { MaxNewTokens = 12, StopTokenIds = [] });
        generated.Should().Equal(sequence.Skip(4).Select(t => (int)t));
    }

    /// <summary>The family's model with every parameter drawn wide (norm weights near their neutral value), so a wrong part shows.</summary>
    internal static DecoderModel Randomised(DecoderConfig config, int seed = 11)
    {
        var model = Tiny.Model(config);
        var generator = new torch.Generator((ulong)seed);
        using var noGrad = no_grad();
        foreach (var (name, p) in model.named_parameters())
        {
            var noise = randn(p.shape, generator: generator);
            p.copy_(p.dim() == 2 ? noise / Math.Sqrt(p.size(1))
                  : config.ModelType.StartsWith("gemma") ? noise * 0.1          // (1 + w) norms
                  : noise * 0.1 + 1.0);
        }
        return model;
    }
}
