using FluentAssertions;
using GqaTransformer;
using Microsoft.Extensions.AI;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

/// <summary>Half precision at long context, and NaN/Inf in weights: a clear error, never a silently poisoned cache.</summary>
public class NumericalSafetyTests
{
    [Theory]
    [InlineData(ScalarType.BFloat16)]
    [InlineData(ScalarType.Float16)]
    public void Half_precision_decode_attention_over_32k_keys_stays_finite_and_close_to_float64(ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var generator = new Generator(3);
        // Large activations: raw scores reach about ±100 before the 1/√D scale, so an fp16 or bf16 softmax would overflow.
        var q = (randn([1, 8, 1, 64], generator: generator) * 4).to(dtype);
        var k = (randn([1, 2, 32768, 64], generator: generator) * 4).to(dtype);
        var v = randn([1, 2, 32768, 64], generator: generator).to(dtype);
        var output = MultiHeadAttention.GroupedScaledDotProduct(q, k, v, null, causal: true);
        isfinite(output).all().item<bool>().Should().BeTrue();
        // Textbook attention in float64 on the same (rounded) inputs, each query head h reading K/V head h / 4.
        var q64 = q.to(ScalarType.Float64);
        var k64 = k.to(ScalarType.Float64).repeat_interleave(4, 1);
        var v64 = v.to(ScalarType.Float64).repeat_interleave(4, 1);
        var expected = (q64.matmul(k64.transpose(2, 3)) / 8.0).softmax(-1).matmul(v64);
        Tiny.MaxAbsDiff(output.to(ScalarType.Float64), expected).Should().BeLessThan(dtype == ScalarType.BFloat16 ? 2e-2 : 4e-3);
    }

    [Fact]
    public void A_checkpoint_with_a_nan_weight_is_refused_by_name()
    {
        using var scope = NewDisposeScope();
        using var directory = new Fixtures.TempDirectory();
        using (var model = DecoderModel.FromPretrained(Fixtures.HfTiny("llama_gqa")))
        {
            using (no_grad()) model.state_dict()["model.layers.1.mlp.up_proj.weight"][3, 7] = tensor(float.NaN);
            model.SavePretrained(directory.Path);
        }
        FluentActions.Invoking(() => DecoderModel.FromPretrained(directory.Path)).Should().Throw<InvalidDataException>()
            .WithMessage("*model.layers.1.mlp.up_proj.weight*NaN or infinite*");
    }

    [Fact]
    public async Task Non_finite_logits_stop_generation_with_a_clear_error_and_the_chat_cache_is_not_poisoned()
    {
        using var fixture = new ChatFixture();
        using var client = GqaChatClient.FromPretrained(fixture.Path);
        var model = client.GetService<DecoderModel>()!;
        using (no_grad()) model.state_dict()["model.embed_tokens.weight"][(int)'Z'] = full(model.Config.HiddenSize, float.PositiveInfinity);

        (await client.GetResponseAsync([new ChatMessage(ChatRole.User, "hello")], new ChatOptions { MaxOutputTokens = 3 })).Text.Should().NotBeNull();
        int cached = client.CachedTokens;
        await FluentActions.Awaiting(() => client.GetResponseAsync([new ChatMessage(ChatRole.User, "hello Z")], new ChatOptions { MaxOutputTokens = 3 }))
            .Should().ThrowAsync<NonFiniteLogitsException>().WithMessage("*NaN or infinite logits*");
        client.CachedTokens.Should().BeLessThanOrEqualTo(cached, "the failed step's tokens are rewound out of the cache");
        var again = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "hello")], new ChatOptions { MaxOutputTokens = 3 });
        again.Text.Should().NotBeNull("the client still answers what it can");

        using var generator = new TokenGenerator(model);
        FluentActions.Invoking(() => generator.Generate([5, 9, (int)'Z'], new GenerationOptions { MaxNewTokens = 2 }))
            .Should().Throw<NonFiniteLogitsException>();
    }
}
