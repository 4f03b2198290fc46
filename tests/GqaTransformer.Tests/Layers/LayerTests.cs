using FluentAssertions;
using GqaTransformer;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

public class LayerTests
{
    [Fact]
    public void RmsNorm_equals_the_textbook_formula()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        using var norm = new RmsNorm(16, eps: 1e-5);
        using (no_grad()) norm.parameters().First().copy_(randn(16));
        var x = randn(2, 3, 16);
        var w = norm.parameters().First();
        var x64 = x.to(ScalarType.Float64);
        var expected = x64 / (x64.pow(2).mean([-1], keepdim: true) + 1e-5).sqrt() * w.to(ScalarType.Float64);
        Tiny.MaxAbsDiff(norm.forward(x), expected).Should().BeLessThan(1e-5);
        norm.Invoking(n => n.forward(randn(2, 8))).Should().Throw<ArgumentException>().WithParameterName("x");
    }

    [Theory]
    [InlineData(ScalarType.Float32, 1e-6)]
    [InlineData(ScalarType.BFloat16, 1.0 / 128)]   // at most one bf16 ulp apart (float32 summation order)
    [InlineData(ScalarType.Float16, 1.0 / 1024)]
    public void RmsNorm_inference_pass_equals_the_libtorch_chain(ScalarType dtype, double relativeTolerance)
    {
        // With autograd off and a small CPU input, RmsNorm runs as one managed pass (SmallCpuOps); with autograd on it
        // is the libtorch chain. Both must give the same values, rounding to the dtype where HF's formula does.
        using var scope = NewDisposeScope();
        manual_seed(4);
        using var norm = new RmsNorm(1024, eps: 1e-5, dtype: dtype);
        using (no_grad()) norm.parameters().First().copy_(randn(1024) * 0.5 + 1);
        var x = (randn(3, 1, 1024) * 3).to(dtype);
        var chain = norm.forward(x);                                           // weight requires grad: libtorch chain
        Tensor managed;
        using (no_grad())
        {
            SmallCpuOps.Supports(x, norm.parameters().First()).Should().BeTrue();
            managed = norm.forward(x);
        }
        managed.dtype.Should().Be(dtype);
        var difference = (managed.to(ScalarType.Float64) - chain.to(ScalarType.Float64)).abs();
        var allowed = chain.to(ScalarType.Float64).abs() * relativeTolerance + 1e-30;
        difference.le(allowed).all().item<bool>().Should().BeTrue();
        using (no_grad())
            SmallCpuOps.Supports(randn(100, 1024).to(dtype), norm.parameters().First()).Should().BeFalse("a prompt's activations take the chain");
    }

    [Fact]
    public void SwiGlu_equals_the_textbook_formula()
    {
        using var scope = NewDisposeScope();
        manual_seed(4);
        using var mlp = new SwiGluMlp(12, 20);
        var p = mlp.state_dict();
        var x = randn(3, 12);
        var gate = x.matmul(p["gate_proj.weight"].t());
        var expected = (gate / (1 + (-gate).exp()) * x.matmul(p["up_proj.weight"].t())).matmul(p["down_proj.weight"].t());
        Tiny.MaxAbsDiff(mlp.forward(x), expected).Should().BeLessThan(1e-5);
        p.Keys.Should().BeEquivalentTo("gate_proj.weight", "up_proj.weight", "down_proj.weight");
    }

    [Fact]
    public void Rotary_tables_rotate_pairs_by_position_times_frequency()
    {
        using var scope = NewDisposeScope();
        using var rope = new RotaryEmbedding(8, theta: 100.0);
        var positions = tensor(new long[] { 0, 3, 10 }).view(1, 3);
        var (cos, sin) = rope.forward(positions, ScalarType.Float64);
        cos.shape.Should().Equal(1, 3, 8);
        for (int p = 0; p < 3; p++)
            for (int i = 0; i < 4; i++)
            {
                double angle = new[] { 0, 3, 10 }[p] / Math.Pow(100.0, 2.0 * i / 8);
                cos[0, p, i].item<double>().Should().BeApproximately(Math.Cos(angle), 1e-5);
                cos[0, p, i + 4].item<double>().Should().BeApproximately(Math.Cos(angle), 1e-5);
                sin[0, p, i].item<double>().Should().BeApproximately(Math.Sin(angle), 1e-5);
            }
        // Linear scaling divides every frequency by the factor.
        using var linear = new RotaryEmbedding(8, 100.0, new RopeScaling { RopeType = "linear", Factor = 4 });
        var (cosScaled, _) = linear.forward(tensor(new long[] { 12 }).view(1, 1), ScalarType.Float64);
        var (cosPlain, _) = rope.forward(tensor(new long[] { 3 }).view(1, 1), ScalarType.Float64);
        Tiny.MaxAbsDiff(cosScaled, cosPlain).Should().BeLessThan(1e-5);
    }

    [Fact]
    public void Decoder_layer_is_pre_norm_residual_attention_then_mlp()
    {
        using var scope = NewDisposeScope();
        var config = Tiny.Config();
        manual_seed(5);
        using var layer = new DecoderLayer(config);
        using var attention = new MultiHeadAttention(config);
        using var mlp = new SwiGluMlp(config.HiddenSize, config.IntermediateSize);
        using var norm1 = new RmsNorm(config.HiddenSize, config.RmsNormEps);
        using var norm2 = new RmsNorm(config.HiddenSize, config.RmsNormEps);
        var sd = layer.state_dict();
        using (no_grad())
        {
            foreach (var (name, t) in attention.state_dict()) t.copy_(sd["self_attn." + name]);
            foreach (var (name, t) in mlp.state_dict()) t.copy_(sd["mlp." + name]);
            norm1.state_dict()["weight"].copy_(randn(config.HiddenSize));
            norm2.state_dict()["weight"].copy_(randn(config.HiddenSize));
            sd["input_layernorm.weight"].copy_(norm1.state_dict()["weight"]);
            sd["post_attention_layernorm.weight"].copy_(norm2.state_dict()["weight"]);
        }
        var x = randn(2, 5, config.HiddenSize);
        var h = x + attention.forward(norm1.forward(x));
        var expected = h + mlp.forward(norm2.forward(h));
        Tiny.MaxAbsDiff(layer.forward(x), expected).Should().BeLessThan(1e-5);
    }
}
