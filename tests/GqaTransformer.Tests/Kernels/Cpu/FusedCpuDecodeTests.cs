using System.Runtime.Intrinsics;
using FluentAssertions;
using GqaTransformer;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

/// <summary>The fused CPU decode kernel with a chosen scale and Gemma 2's soft-cap, against textbook attention in float64.</summary>
public class FusedCpuDecodeTests
{
    /// <summary>softmax(cap·tanh(q·kᵀ·scale / cap)) · v in float64, the cap left out when null.</summary>
    private static Tensor Textbook(Tensor q, Tensor k, Tensor v, double scale, double? softCap)
    {
        var scores = q.to(ScalarType.Float64).matmul(k.to(ScalarType.Float64).transpose(2, 3)) * scale;
        if (softCap is { } cap) scores = (scores / cap).tanh() * cap;
        return scores.softmax(-1).matmul(v.to(ScalarType.Float64));
    }

    private static double MaxAbsDiff(Tensor a, Tensor b) => (a.to(ScalarType.Float64) - b.to(ScalarType.Float64)).abs().max().item<double>();

    [Theory]
    // Shapes of the new families: query heads / KV heads (G), keys (not a multiple of the block or of 4: tails), D.
    [InlineData(1, 8, 4, 301, 256, 256, ScalarType.Float32)]    // Gemma 3 4B: G = 2, D = 256, scale 256^-½
    [InlineData(1, 8, 4, 301, 256, 256, ScalarType.BFloat16)]
    [InlineData(1, 4, 1, 77, 256, 256, ScalarType.BFloat16)]     // Gemma 3 1B: G = 4 (MQA of 4), D = 256
    [InlineData(2, 16, 8, 130, 128, 128, ScalarType.BFloat16)]   // Qwen3 0.6B: G = 2
    [InlineData(1, 32, 8, 258, 128, 128, ScalarType.Float32)]    // Qwen3 8B: G = 4
    [InlineData(1, 24, 8, 99, 128, 128, ScalarType.Float32)]     // Phi-4-mini: G = 3, the fourth lane empty
    [InlineData(1, 24, 8, 99, 128, 128, ScalarType.BFloat16)]
    [InlineData(1, 16, 8, 45, 256, 224, ScalarType.Float32)]     // Gemma 2 9B: G = 2, scale 224^-½ (not 1/√D)
    [InlineData(1, 16, 8, 45, 256, 224, ScalarType.Float16)]
    [InlineData(1, 4, 4, 70, 256, 256, ScalarType.BFloat16)]     // G = 1: the single-query form
    [InlineData(1, 12, 2, 66, 64, 64, ScalarType.Float32)]       // G = 6, padded to 8 in the transposed form
    public void Scaled_and_soft_capped_scores_equal_textbook_attention(int batch, int heads, int kvHeads, int keys, int headDim,
        int queryPreAttnScalar, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        manual_seed(29);
        int group = heads / kvHeads;
        double scale = 1.0 / Math.Sqrt(queryPreAttnScalar);
        var q = (randn(batch, kvHeads, group, headDim) * 3).to(dtype);               // scores of a few units: the cap bites
        var k = randn(batch, kvHeads, keys + 5, headDim).to(dtype).narrow(2, 0, keys); // a cache view
        var v = randn(batch, kvHeads, keys + 5, headDim).to(dtype).narrow(2, 0, keys);
        FusedCpuDecode.Supports(q, k, v, null).Should().BeTrue();
        foreach (double? cap in new double?[] { null, 5.0, 50.0 })
        {
            var textbook = Textbook(q, k, v, scale, cap);
            if (cap is not null)
                MaxAbsDiff(textbook, Textbook(q, k, v, scale, null)).Should().BeGreaterThan(1e-3, "the cap must change the result for the test to see it");
            // Both score forms of the grouped kernel where the CPU has them: 256-bit transposed, and the 512-bit ones (AVX-512).
            foreach (bool wide in FusedCpuDecode.WideScores ? new[] { false, true } : [false])
            {
                // float32 output: the 16-bit caches' values are exact in float32, so only float32 arithmetic differs.
                var fused = FusedCpuDecode.Run(q, k, v, ScalarType.Float32, scale, cap, wide);
                fused.shape.Should().Equal(batch, kvHeads, group, headDim);
                MaxAbsDiff(fused, textbook).Should().BeLessThan(2e-5, $"cap {cap}, wide scores: {wide}");
            }
            var inCacheDtype = FusedCpuDecode.Run(q, k, v, null, scale, cap);
            inCacheDtype.dtype.Should().Be(dtype);
            MaxAbsDiff(inCacheDtype, textbook).Should().BeLessThan(dtype == ScalarType.Float32 ? 2e-5 : dtype == ScalarType.BFloat16 ? 1e-2 : 2e-3);
        }
    }

    [Fact]
    public void The_old_overloads_scale_by_one_over_root_d_without_a_cap()
    {
        using var scope = NewDisposeScope();
        manual_seed(30);
        var q = randn(1, 2, 3, 96);
        var k = randn(1, 2, 40, 96);
        var v = randn(1, 2, 40, 96);
        var reference = FusedCpuDecode.Run(q, k, v, null, 1.0 / Math.Sqrt(96), null);
        FusedCpuDecode.Run(q, k, v).eq(reference).all().item<bool>().Should().BeTrue();
        FusedCpuDecode.Run(q, k, v, null, false).eq(reference).all().item<bool>().Should().BeTrue();
    }

    [Fact]
    public void Soft_cap_keeps_infinite_and_nan_scores_as_textbook()
    {
        // cap·tanh(±∞) = ±cap, as transformers computes it: an infinite key element is capped, not propagated.
        using var scope = NewDisposeScope();
        manual_seed(31);
        var q = randn(1, 2, 4, 64).abs();
        var k = randn(1, 2, 70, 64);
        var v = randn(1, 2, 70, 64);
        k[0, 0, 7, 2] = tensor(double.PositiveInfinity);
        k[0, 0, 9, 2] = tensor(double.NegativeInfinity);
        k[0, 1, 60, 0] = tensor(double.NaN);
        var textbook = Textbook(q, k, v, 0.125, 20.0);
        foreach (bool wide in FusedCpuDecode.WideScores ? new[] { false, true } : [false])
        {
            var fused = FusedCpuDecode.Run(q, k, v, ScalarType.Float32, 0.125, 20.0, wide).to(ScalarType.Float64);
            fused.isclose(textbook, 1e-5, 1e-5, true).all().item<bool>().Should().BeTrue($"wide scores: {wide}");
        }
        textbook.isnan().any().item<bool>().Should().BeTrue("head 1 has a NaN score");
        textbook[0, 0].isnan().any().item<bool>().Should().BeFalse("head 0's infinite scores are capped");
    }

    [Theory]
    [InlineData(0.0, null, "scale")]
    [InlineData(-0.1, null, "scale")]
    [InlineData(double.NaN, null, "scale")]
    [InlineData(double.PositiveInfinity, null, "scale")]
    [InlineData(1e-60, null, "scale")]                     // zero in float32
    [InlineData(0.1, 0.0, "softCap")]
    [InlineData(0.1, -30.0, "softCap")]
    [InlineData(0.1, double.NaN, "softCap")]
    [InlineData(0.1, double.PositiveInfinity, "softCap")]
    public void Bad_scale_or_soft_cap_is_refused_by_name(double scale, double? softCap, string name)
    {
        using var scope = NewDisposeScope();
        var q = randn(1, 1, 2, 8);
        var k = randn(1, 1, 4, 8);
        FluentActions.Invoking(() => FusedCpuDecode.Run(q, k, k, null, scale, softCap))
            .Should().Throw<ArgumentOutOfRangeException>().WithParameterName(name);
    }

    [Fact]
    public void Vector_tanh_is_within_a_millionth_of_math_tanh()
    {
        var inputs = new List<float> { 0f, -0f, 1e-30f, -1e-30f, 1e-7f, 0.625f, -0.625f, 0.62499f, 9f, 10f, 44f, 90f, 1e30f, -1e30f, float.MaxValue };
        for (int i = -20000; i <= 20000; i++) inputs.Add(i * 1e-3f);            // −20 … 20, both branches and the switch
        for (int e = -40; e <= 2; e++) inputs.Add(MathF.Pow(2, e) * 1.37f);     // small magnitudes: no cancellation
        inputs.AddRange(inputs.Select(x => -x).ToList());
        while (inputs.Count % 8 != 0) inputs.Add(0.5f);
        var results = new float[inputs.Count];
        for (int i = 0; i < inputs.Count; i += 8)
            FusedCpuDecode.Tanh(Vector256.Create(inputs.ToArray(), i)).CopyTo(results, i);
        for (int i = 0; i < inputs.Count; i++)
        {
            double expected = Math.Tanh(inputs[i]);
            Math.Abs(results[i] - expected).Should().BeLessThanOrEqualTo(1e-6 * Math.Abs(expected) + 1e-45, $"tanh({inputs[i]:R})");
        }
        var specials = FusedCpuDecode.Tanh(Vector256.Create(float.PositiveInfinity, float.NegativeInfinity, float.NaN, 0f, 100f, -100f, 3e38f, 1f));
        specials[0].Should().Be(1f);
        specials[1].Should().Be(-1f);
        float.IsNaN(specials[2]).Should().BeTrue();
        specials[4].Should().Be(1f);
        specials[5].Should().Be(-1f);
        specials[6].Should().Be(1f);
    }
}
