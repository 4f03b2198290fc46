using FluentAssertions;
using GqaTransformer;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

/// <summary>Our model, loaded from a checkpoint written by transformers, computes what transformers computed.</summary>
public class HuggingFaceParityTests
{
    [Theory]
    [InlineData("llama_gqa")]
    [InlineData("llama_mha")]
    [InlineData("llama_mqa")]
    public void Logits_match_transformers_within_1e4(string name)
    {
        using var scope = NewDisposeScope();
        using var model = DecoderModel.FromPretrained(Fixtures.HfTiny(name));
        var expected = Fixtures.Expected(Fixtures.HfTiny(name));
        var logits = model.forward(expected["input_ids"]);
        logits.shape.Should().Equal(expected["logits"].shape);
        Tiny.MaxAbsDiff(logits, expected["logits"]).Should().BeLessThanOrEqualTo(1e-4);
    }

    [Theory]
    [InlineData("llama_gqa")]
    [InlineData("llama_mha")]
    [InlineData("llama_mqa")]
    public void Greedy_decoding_with_the_cache_reproduces_transformers_generate(string name)
    {
        using var scope = NewDisposeScope();
        using var model = DecoderModel.FromPretrained(Fixtures.HfTiny(name));
        var expected = Fixtures.Expected(Fixtures.HfTiny(name));
        var want = expected["gen_tokens"];
        var tokens = Fixtures.GreedyWithCache(model, expected["gen_prompt"], (int)want.shape[1]);
        tokens.Should().Equal(want.data<long>().ToArray());
    }

    [Fact]
    public void Tied_checkpoint_has_no_lm_head_and_uses_the_embedding()
    {
        using var model = DecoderModel.FromPretrained(Fixtures.HfTiny("llama_mqa"));
        model.Config.TieWordEmbeddings.Should().BeTrue();
        model.state_dict().Keys.Should().NotContain("lm_head.weight");
    }

    [Fact]
    public void Transformers5_config_layout_loads_to_the_same_config()
    {
        var classic = DecoderConfig.FromFile(Path.Combine(Fixtures.HfTiny("llama_gqa"), "config.json"));
        var saved = DecoderConfig.FromFile(Path.Combine(Fixtures.HfTiny("llama_gqa"), "config.hf-saved.json"));
        saved.Should().BeEquivalentTo(classic, o => o.Excluding(c => c.TorchDtype));
        saved.NumKeyValueHeads.Should().Be(2);
        saved.RopeTheta.Should().Be(10000.0);
    }
}
