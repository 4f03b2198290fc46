using FluentAssertions;
using GqaTransformer;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

public class TokenSamplerTests
{
    [Fact]
    public void Top_p_keeps_the_smallest_set_whose_mass_reaches_p()
    {
        using var scope = NewDisposeScope();
        // probabilities 0.5, 0.25, 0.15, 0.1 (in a shuffled order)
        var probabilities = new[] { 0.15, 0.5, 0.1, 0.25 };
        var logits = tensor(probabilities.Select(p => Math.Log(p)).ToArray()).view(1, 4).to(ScalarType.Float32);
        Kept(TokenSampler.FilterTopP(logits, 0.5)).Should().Equal(1);        // 0.5 alone reaches 0.5
        Kept(TokenSampler.FilterTopP(logits, 0.6)).Should().Equal(1, 3);     // 0.5 + 0.25
        Kept(TokenSampler.FilterTopP(logits, 0.8)).Should().Equal(0, 1, 3);  // + 0.15 = 0.9
        Kept(TokenSampler.FilterTopP(logits, 0.95)).Should().Equal(0, 1, 2, 3);
        Kept(TokenSampler.FilterTopP(logits, 0.01)).Should().Equal(1);       // never empty

        static int[] Kept(Tensor t) => t.view(-1).data<float>().Select((v, i) => (v, i)).Where(p => !float.IsNegativeInfinity(p.v)).Select(p => p.i).ToArray();
    }

    [Fact]
    public void Greedy_picks_the_argmax_of_half_precision_logits_where_they_are_as_of_their_float32_widening()
    {
        // Greedy choice without a penalty takes the argmax on the logits' own device and dtype; with a penalty, it
        // widens to float32 on the CPU first. Both must pick the same ids, ties going to the lowest id.
        using var scope = NewDisposeScope();
        var logits = randn(4, 50, generator: new Generator(3)).to(ScalarType.BFloat16);
        logits[2, 7] = logits[2].max() + 1; logits[2, 9] = logits[2, 7];             // a tie: the lower id wins
        using var greedy = new TokenSampler(new GenerationOptions());
        using var penalisedOff = new TokenSampler(new GenerationOptions { RepetitionPenalty = 1.3 });
        var none = zeros(4, 50, ScalarType.Bool);
        var expected = logits.to(ScalarType.Float32).argmax(-1).data<long>().ToArray();
        greedy.Sample(logits).Should().Equal(expected);
        penalisedOff.Sample(logits, none).Should().Equal(expected);              // the float32 CPU path, nothing seen
        expected[2].Should().Be(7);
    }

    [Fact]
    public void Top_k_keeps_the_k_largest()
    {
        using var scope = NewDisposeScope();
        var logits = tensor(new float[] { 1, 5, 3, 4, 2 }).view(1, 5);
        var kept = TokenSampler.FilterTopK(logits, 2).view(-1).data<float>().ToArray();
        kept.Select(float.IsNegativeInfinity).Should().Equal(true, false, true, false, true);
    }

    [Fact]
    public void Repetition_penalty_divides_positive_and_multiplies_negative_logits_of_seen_tokens()
    {
        using var scope = NewDisposeScope();
        // Token 0 wins unpenalised; penalised by 2 it drops from 3.0 to 1.5, below token 2 (2.0).
        var logits = tensor(new float[] { 3.0f, -1.0f, 2.0f, -0.5f }).view(1, 4);
        var seen = tensor(new[] { true, false, false, false }).view(1, 4);
        using var greedy = new TokenSampler(new GenerationOptions());
        using var penalised = new TokenSampler(new GenerationOptions { RepetitionPenalty = 2.0 });
        greedy.Sample(logits, seen).Should().Equal(0);
        penalised.Sample(logits, seen).Should().Equal(2);
        // A negative seen logit gets more negative: token 3 (-0.5) would tie-break below token 1 otherwise.
        var negatives = tensor(new float[] { -3f, -1.0f, -2f, -0.5f }).view(1, 4);
        penalised.Sample(negatives, tensor(new[] { false, false, false, true }).view(1, 4)).Should().Equal(1);
    }

    [Fact]
    public void Frequency_and_presence_penalties_lower_generated_tokens_by_count_and_by_presence()
    {
        using var scope = NewDisposeScope();
        var logits = tensor(new float[] { 3.0f, 2.6f, 2.0f, 1.0f }).view(1, 4);
        var counts = tensor(new float[] { 2, 1, 0, 0 }).view(1, 4);
        // textbook: logit - frequency * count - presence * [count > 0]
        float[] Penalised(double frequency, double presence)
            => new[] { 3.0f, 2.6f, 2.0f, 1.0f }.Select((l, i) => (float)(l - frequency * new[] { 2, 1, 0, 0 }[i] - presence * (i < 2 ? 1 : 0))).ToArray();
        foreach (var (frequency, presence) in new[] { (0.3, 0.0), (0.0, 0.7), (0.2, 0.2), (-0.5, 0.0) })
        {
            using var sampler = new TokenSampler(new GenerationOptions { FrequencyPenalty = frequency, PresencePenalty = presence });
            long expected = Array.IndexOf(Penalised(frequency, presence), Penalised(frequency, presence).Max());
            sampler.Sample(logits, generatedCounts: counts).Should().Equal([expected], $"frequency {frequency}, presence {presence}");
        }
        using var off = new TokenSampler(new GenerationOptions { FrequencyPenalty = 0.3 });
        off.Sample(logits).Should().Equal(0);   // no counts given: nothing to penalise
        var badShape = () => off.Sample(logits, generatedCounts: zeros(1, 3));
        badShape.Should().Throw<ArgumentException>().WithParameterName("generatedCounts");
        var outOfRange = () => new GenerationOptions { PresencePenalty = 2.5 }.Validate();
        outOfRange.Should().Throw<ArgumentOutOfRangeException>().WithParameterName("PresencePenalty");
    }
}
