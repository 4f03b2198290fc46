using FluentAssertions;
using GqaTransformer;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

/// <summary>
/// Our model, loaded from checkpoints written by transformers, computes what transformers computed: the shared
/// fixtures (Llama MHA/GQA/MQA, tied embeddings), and each feature checked against a reference checkpoint and the outputs transformers computed for it
/// (tools/make_fixtures.py): Mistral's sliding window, Qwen2's q/k/v biases, llama3 and linear RoPE scaling,
/// a transformers-5 config with head_dim ≠ hidden/heads and 3 layers, a bf16 checkpoint, a sharded checkpoint,
/// and a left-padded batch with its attention mask and position ids.
/// </summary>
public class HuggingFaceParityTests
{
    public static TheoryData<string, string> Cases => new()
    {
        { "hf-tiny", "llama_gqa" }, { "hf-tiny", "llama_mha" }, { "hf-tiny", "llama_mqa" },
        { "hf-ref", "mistral_sliding" }, { "hf-ref", "qwen2_bias" }, { "hf-ref", "llama3_rope" }, { "hf-ref", "linear_rope" },
        { "hf-ref", "llama_v5_headdim" }, { "hf-ref", "llama_bf16" }, { "hf-ref", "llama_sharded" }, { "hf-ref", "llama_padded" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Logits_match_transformers_within_1e4(string set, string name)
    {
        using var scope = NewDisposeScope();
        string directory = Path.Combine(Fixtures.Root, set, name);
        using var model = DecoderModel.FromPretrained(directory);
        var expected = Fixtures.Expected(directory);
        expected.TryGetValue("attention_mask", out var mask);
        expected.TryGetValue("position_ids", out var positions);
        var logits = model.forward(expected["input_ids"], null, mask, positions);
        logits.shape.Should().Equal(expected["logits"].shape);
        var difference = (logits - expected["logits"]).abs();
        if (mask is not null) // padded positions are not compared, as in transformers
            difference = difference * mask.unsqueeze(-1).to(ScalarType.Float32);
        difference.max().item<float>().Should().BeLessThanOrEqualTo(1e-4f);
    }

    [Theory]
    [InlineData("hf-tiny", "llama_gqa")]
    [InlineData("hf-tiny", "llama_mha")]
    [InlineData("hf-tiny", "llama_mqa")]
    [InlineData("hf-ref", "mistral_sliding")] // 8 + 24 tokens through a window of 8
    [InlineData("hf-ref", "qwen2_bias")]
    [InlineData("hf-ref", "llama3_rope")]
    [InlineData("hf-ref", "linear_rope")]
    [InlineData("hf-ref", "llama_v5_headdim")]
    [InlineData("hf-ref", "llama_sharded")]
    public void Greedy_decoding_with_the_cache_reproduces_transformers_generate(string set, string name)
    {
        using var scope = NewDisposeScope();
        string directory = Path.Combine(Fixtures.Root, set, name);
        using var model = DecoderModel.FromPretrained(directory);
        var expected = Fixtures.Expected(directory);
        var want = expected["gen_tokens"];
        var tokens = Fixtures.GreedyWithCache(model, expected["gen_prompt"], (int)want.shape[1]);
        tokens.Should().Equal(want.data<long>().ToArray());
    }

    [Fact]
    public void Bf16_checkpoint_loads_into_bf16_and_stays_close()
    {
        using var scope = NewDisposeScope();
        using var model = DecoderModel.FromPretrained(Fixtures.HfRef("llama_bf16"), ScalarType.BFloat16);
        model.Dtype.Should().Be(ScalarType.BFloat16);
        var expected = Fixtures.Expected(Fixtures.HfRef("llama_bf16"));
        var logits = model.forward(expected["input_ids"]);
        logits.dtype.Should().Be(ScalarType.BFloat16);
        // bf16 keeps 8 bits of mantissa; logits here are O(5), so a few tenths is bf16 arithmetic, not a bug.
        Tiny.MaxAbsDiff(logits, expected["logits"]).Should().BeLessThan(0.5);
        (logits.argmax(-1).eq(expected["logits"].argmax(-1)).to(ScalarType.Float32).mean().item<float>()).Should().BeGreaterThan(0.9f);
    }

    [Fact]
    public void Qwen2_has_biases_on_qkv_but_not_on_o()
    {
        using var model = DecoderModel.FromPretrained(Fixtures.HfRef("qwen2_bias"));
        var keys = model.state_dict().Keys.ToList();
        keys.Should().Contain(["model.layers.0.self_attn.q_proj.bias", "model.layers.0.self_attn.k_proj.bias", "model.layers.0.self_attn.v_proj.bias"]);
        keys.Should().NotContain("model.layers.0.self_attn.o_proj.bias");
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
