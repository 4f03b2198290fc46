using System.Text.Json;
using FluentAssertions;
using GqaTransformer;
using Xunit;

namespace GqaTransformer.Tests;

public class DecoderConfigTests
{
    public static TheoryData<string, Func<DecoderConfig, DecoderConfig>, string> BrokenRules => new()
    {
        { "heads not divisible by kv heads", c => c with { NumAttentionHeads = 8, NumKeyValueHeads = 3 }, "*num_attention_heads (8) must be divisible by num_key_value_heads (3)*" },
        { "kv heads above heads", c => c with { NumKeyValueHeads = 16 }, "*num_key_value_heads (16) must not exceed num_attention_heads (8)*" },
        { "hidden not divisible by heads", new DecoderConfig { HiddenSize = 60, NumAttentionHeads = 8, IntermediateSize = 8, NumHiddenLayers = 1, VocabSize = 8 }.Apply, "*hidden_size (60) must be divisible by num_attention_heads (8)*" },
        { "zero hidden", c => c with { HiddenSize = 0 }, "*hidden_size must be positive, but was 0*" },
        { "negative heads", c => c with { NumAttentionHeads = -2, NumKeyValueHeads = 1 }, "*num_attention_heads must be positive, but was -2*" },
        { "zero kv heads", c => c with { NumKeyValueHeads = 0 }, "*num_key_value_heads must be positive, but was 0*" },
        { "zero head dim", c => c with { HeadDim = 0 }, "*head_dim must be positive, but was 0*" },
        { "odd head dim", c => c with { HeadDim = 7 }, "*head_dim must be even*7*" },
        { "zero intermediate", c => c with { IntermediateSize = 0 }, "*intermediate_size must be positive, but was 0*" },
        { "zero layers", c => c with { NumHiddenLayers = 0 }, "*num_hidden_layers must be positive, but was 0*" },
        { "zero vocab", c => c with { VocabSize = 0 }, "*vocab_size must be positive, but was 0*" },
        { "zero eps", c => c with { RmsNormEps = 0 }, "*rms_norm_eps must be a positive finite number, but was 0*" },
        { "negative theta", c => c with { RopeTheta = -1 }, "*rope_theta must be a positive finite number, but was -1*" },
        { "zero window", c => c with { SlidingWindow = 0 }, "*sliding_window must be positive or absent, but was 0*" },
        { "zero max positions", c => c with { MaxPositionEmbeddings = 0 }, "*max_position_embeddings must be positive, but was 0*" },
        { "linear rope without factor", c => c with { RopeScaling = new RopeScaling { RopeType = "linear" } }, "*rope_scaling.factor must be a positive number*missing*" },
        { "llama3 rope without its fields", c => c with { RopeScaling = new RopeScaling { RopeType = "llama3", Factor = 8 } }, "*llama3*needs low_freq_factor*" },
    };

    [Theory]
    [MemberData(nameof(BrokenRules))]
    public void Each_rule_throws_naming_the_field_value_and_rule(string rule, Func<DecoderConfig, DecoderConfig> breakIt, string message)
    {
        var config = breakIt(Tiny.Config());
        config.Invoking(c => c.Validate()).Should().Throw<ArgumentException>(rule).WithMessage(message);
        // Every module validates the config at construction.
        FluentActions.Invoking(() => new DecoderModel(config)).Should().Throw<ArgumentException>(rule).WithMessage(message);
    }

    [Fact]
    public void Unsupported_rope_type_is_an_error_naming_it()
    {
        var config = Tiny.Config() with { RopeScaling = new RopeScaling { RopeType = "su", Factor = 2 } };
        config.Invoking(c => c.Validate()).Should().Throw<NotSupportedException>().WithMessage("*rope_type 'su' is not supported*");
    }

    [Fact]
    public void Defaults_follow_huggingface()
    {
        var config = new DecoderConfig { HiddenSize = 4096, NumAttentionHeads = 32, IntermediateSize = 11008, NumHiddenLayers = 32, VocabSize = 32000 };
        config.NumKeyValueHeads.Should().Be(32, "num_key_value_heads defaults to the head count");
        config.HeadDim.Should().Be(128, "head_dim defaults to hidden / heads");
        config.GroupSize.Should().Be(1);
        (config with { NumKeyValueHeads = 8 }).GroupSize.Should().Be(4);
    }

    [Fact]
    public void Json_names_are_huggingface_config_names()
    {
        const string json = """
            {"hidden_size": 128, "num_attention_heads": 8, "num_key_value_heads": 2, "intermediate_size": 344,
             "num_hidden_layers": 2, "vocab_size": 256, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
             "max_position_embeddings": 4096, "tie_word_embeddings": true, "attention_bias": false, "eos_token_id": [1, 2]}
            """;
        var config = JsonSerializer.Deserialize<DecoderConfig>(json)!;
        config.Should().BeEquivalentTo(new
        {
            HiddenSize = 128, NumAttentionHeads = 8, NumKeyValueHeads = 2, HeadDim = 16, IntermediateSize = 344,
            NumHiddenLayers = 2, VocabSize = 256, RmsNormEps = 1e-5, RopeTheta = 500000.0, MaxPositionEmbeddings = 4096,
            TieWordEmbeddings = true, AttentionBias = false,
        });
        config.EosTokenIds.Should().Equal(1, 2);
        var roundTripped = JsonSerializer.Deserialize<DecoderConfig>(config.ToJson())!;
        roundTripped.Should().BeEquivalentTo(config);
        config.ToJson().Should().Contain("\"num_key_value_heads\": 2");
    }
}

internal static class ConfigTestExtensions
{
    public static DecoderConfig Apply(this DecoderConfig config, DecoderConfig _) => config;
}
