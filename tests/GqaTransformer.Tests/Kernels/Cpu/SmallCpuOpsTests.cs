using FluentAssertions;
using GqaTransformer;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

/// <summary>The managed decode-step passes for the new families: RMSNorm's three weightings and partial rotary, against textbook libtorch chains.</summary>
public class SmallCpuOpsTests
{
    /// <summary>transformers' RMSNorms, step by step: x̂ = x32 · rsqrt(mean(x32²) + eps), then each family's weighting and cast.</summary>
    private static Tensor TextbookRmsNorm(Tensor x, Tensor weight, double eps, RmsNormKind kind)
    {
        var x32 = x.to(ScalarType.Float32);
        var normed = x32 * (x32.pow(2).mean([-1], keepdim: true) + eps).rsqrt();
        return kind switch
        {
            RmsNormKind.Llama => weight * normed.to(x.dtype),                                        // LlamaRMSNorm
            RmsNormKind.WeightFirst => (weight * normed).to(x.dtype),                                // Olmo2RMSNorm
            _ => (normed * (1.0 + weight.to(ScalarType.Float32))).to(x.dtype),                     // Gemma3RMSNorm
        };
    }

    [Theory]
    [InlineData(RmsNormKind.Llama, ScalarType.Float32)]
    [InlineData(RmsNormKind.Llama, ScalarType.BFloat16)]
    [InlineData(RmsNormKind.Llama, ScalarType.Float16)]
    [InlineData(RmsNormKind.WeightFirst, ScalarType.Float32)]
    [InlineData(RmsNormKind.WeightFirst, ScalarType.BFloat16)]
    [InlineData(RmsNormKind.WeightFirst, ScalarType.Float16)]
    [InlineData(RmsNormKind.OnePlusWeight, ScalarType.Float32)]
    [InlineData(RmsNormKind.OnePlusWeight, ScalarType.BFloat16)]
    [InlineData(RmsNormKind.OnePlusWeight, ScalarType.Float16)]
    public void Rms_norm_of_each_kind_equals_its_textbook_chain(RmsNormKind kind, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        manual_seed(40);
        var x = (randn(2, 3, 160) * 3).to(dtype);
        var weight = (randn(160) * 0.7 + (kind == RmsNormKind.OnePlusWeight ? 0 : 1)).to(dtype);   // Gemma's weight starts at 0
        const double eps = 1e-6;
        SmallCpuOps.Supports(x, weight).Should().BeTrue();
        var managed = SmallCpuOps.RmsNorm(x, weight, eps, kind);
        managed.dtype.Should().Be(dtype);
        managed.shape.Should().Equal(2, 3, 160);
        var textbook = TextbookRmsNorm(x, weight, eps, kind);
        // The same roundings in the same places: equal but for float32 summation order in the mean (an ulp, rarely).
        double ulp = dtype switch { ScalarType.Float32 => 1e-6, ScalarType.BFloat16 => 1.0 / 128, _ => 1.0 / 1024 };
        var m64 = managed.to(ScalarType.Float64);
        var t64 = textbook.to(ScalarType.Float64);
        (m64 - t64).abs().le(t64.abs() * ulp + 1e-6).all().item<bool>().Should().BeTrue();
        if (dtype != ScalarType.Float32)                   // in float32 every element of a row may carry that ulp
            managed.ne(textbook).to(ScalarType.Float64).mean().item<double>().Should().BeLessThan(0.01, "only a summation-order ulp may differ");
        // Each kind is told apart from the others: the test sees a kernel that ignores the kind.
        foreach (var other in Enum.GetValues<RmsNormKind>().Where(o => o != kind && !(dtype == ScalarType.Float32 && o != RmsNormKind.OnePlusWeight && kind != RmsNormKind.OnePlusWeight)))
            TextbookRmsNorm(x, weight, eps, other).ne(textbook).to(ScalarType.Float64).mean().item<double>()
                .Should().BeGreaterThan(0.05, $"{other} must differ from {kind} for the test to tell them apart");
        SmallCpuOps.RmsNorm(x, weight, eps).eq(SmallCpuOps.RmsNorm(x, weight, eps, RmsNormKind.Llama)).all().item<bool>().Should().BeTrue("the old overload is the Llama kind");
        FluentActions.Invoking(() => SmallCpuOps.RmsNorm(x, weight, eps, (RmsNormKind)7)).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("kind");
    }

    /// <summary>Phi-3's partial rotary: the first R = cos.size(-1) dims rotate (rotate_half within them), the rest pass; in the dtype, as transformers does.</summary>
    private static Tensor TextbookPartialRotary(Tensor x, Tensor cos, Tensor sin)
    {
        long r = cos.size(-1), d = x.size(-1);
        var rot = x.narrow(-1, 0, r);
        var pass = x.narrow(-1, r, d - r);
        var half = cat([-rot.narrow(-1, r / 2, r / 2), rot.narrow(-1, 0, r / 2)], -1);
        return cat([rot * cos.unsqueeze(1) + half * sin.unsqueeze(1), pass], -1);
    }

    [Theory]
    [InlineData(128, 96, ScalarType.Float32)]     // Phi-4-mini: partial_rotary_factor 0.75
    [InlineData(128, 96, ScalarType.BFloat16)]
    [InlineData(96, 32, ScalarType.Float16)]      // Phi-3-mini: head_dim 96, a third rotating
    [InlineData(64, 64, ScalarType.BFloat16)]     // full rotary, as before
    public void Partial_rotary_equals_its_textbook_chain(int headDim, int rotaryDims, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        manual_seed(41);
        var angles = rand(2, 1, rotaryDims / 2) * 50;                                               // [B = 2, T = 1, R/2]
        var cos = cat([angles, angles], -1).cos().to(dtype);                                        // [2, 1, R], as RoPE tables are
        var sin = cat([angles, angles], -1).sin().to(dtype);
        var q = (randn(2, 1, 24, headDim) * 4).to(dtype).transpose(1, 2).contiguous();              // [2, 24, 1, D]
        var k = (randn(2, 1, 8, headDim) * 4).to(dtype).transpose(1, 2).contiguous();               // [2, 8, 1, D]
        SmallCpuOps.SupportsRotary(q, k, cos, sin).Should().BeTrue();
        var (rq, rk) = SmallCpuOps.Rotary(q, k, cos, sin);
        rq.shape.Should().Equal(2, 24, 1, headDim);
        rk.shape.Should().Equal(2, 8, 1, headDim);
        rq.eq(TextbookPartialRotary(q, cos, sin)).all().item<bool>().Should().BeTrue("each product and the sum rounded as the chain rounds them");
        rk.eq(TextbookPartialRotary(k, cos, sin)).all().item<bool>().Should().BeTrue();
        if (rotaryDims < headDim)
            rq.narrow(-1, rotaryDims, headDim - rotaryDims).eq(q.narrow(-1, rotaryDims, headDim - rotaryDims)).all().item<bool>().Should().BeTrue("the dims past R pass unchanged");
    }

    [Fact]
    public void Rotary_tables_wider_than_the_head_or_of_odd_width_take_the_chain()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var q = randn(1, 4, 1, 64);
        var k = randn(1, 2, 1, 64);
        SmallCpuOps.SupportsRotary(q, k, randn(1, 1, 66), randn(1, 1, 66)).Should().BeFalse("R > D");
        SmallCpuOps.SupportsRotary(q, k, randn(1, 1, 31), randn(1, 1, 31)).Should().BeFalse("R odd");
        SmallCpuOps.SupportsRotary(q, k, randn(1, 1, 32), randn(1, 1, 30)).Should().BeFalse("cos and sin differ");
        SmallCpuOps.SupportsRotary(q, k, randn(1, 1, 32), randn(1, 1, 32)).Should().BeTrue("R = 32 of 64");
    }
}
