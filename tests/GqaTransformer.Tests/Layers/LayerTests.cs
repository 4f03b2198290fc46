using System.Runtime.InteropServices;
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

    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    [InlineData(ScalarType.Float16)]
    public void Rotary_inference_pass_equals_the_libtorch_chain_bit_for_bit(ScalarType dtype)
    {
        // A decode step's RoPE (small CPU tensors, autograd off) runs as one managed pass; the chain runs when autograd
        // records. Each product and the sum are rounded to the dtype in both, so they agree exactly.
        using var scope = NewDisposeScope();
        manual_seed(5);
        using var rope = new RotaryEmbedding(64, theta: 10000.0);
        var positions = tensor(new long[] { 5, 700 }).view(2, 1);                                    // [B = 2, T = 1]
        var (cos, sin) = rope.forward(positions, dtype);                                             // [2, 1, 64]
        var q = (randn(2, 1, 8, 64) * 4).to(dtype).transpose(1, 2);                                  // [2, 8, 1, 64], a view as in attention
        var k = (randn(2, 1, 2, 64) * 4).to(dtype).transpose(1, 2);                                  // [2, 2, 1, 64]
        var (chainQ, chainK) = RotaryEmbedding.Apply(q.detach().requires_grad_(), k, cos, sin);             // autograd on: the chain
        Tensor managedQ, managedK;
        using (no_grad())
        {
            SmallCpuOps.SupportsRotary(q, k, cos, sin).Should().BeTrue();
            (managedQ, managedK) = RotaryEmbedding.Apply(q, k, cos, sin);
        }
        managedQ.dtype.Should().Be(dtype);
        managedQ.shape.Should().Equal(2, 8, 1, 64);
        managedK.shape.Should().Equal(2, 2, 1, 64);
        managedQ.eq(chainQ.detach()).all().item<bool>().Should().BeTrue();
        managedK.eq(chainK.detach()).all().item<bool>().Should().BeTrue();
        // The chain itself is HF's formula, checked in float64 against the rotation it stands for.
        var q64 = q.detach().to(ScalarType.Float64);
        var rotated = cat([-q64.narrow(-1, 32, 32), q64.narrow(-1, 0, 32)], -1);
        var textbook = q64 * cos.to(ScalarType.Float64).unsqueeze(1) + rotated * sin.to(ScalarType.Float64).unsqueeze(1);
        Tiny.MaxAbsDiff(managedQ, textbook).Should().BeLessThan(dtype == ScalarType.Float32 ? 1e-5 : dtype == ScalarType.BFloat16 ? 0.2 : 0.03);
        using (no_grad())
        {
            SmallCpuOps.SupportsRotary(q, k, cos.narrow(0, 0, 1), sin.narrow(0, 0, 1)).Should().BeFalse("broadcast tables take the chain");
            SmallCpuOps.SupportsRotary(randn(1, 8, 300, 64).to(dtype), randn(1, 2, 300, 64).to(dtype), randn(1, 300, 64).to(dtype), randn(1, 300, 64).to(dtype))
                .Should().BeFalse("a prompt's queries take the chain");
        }
    }

    [Theory]
    [InlineData(ScalarType.BFloat16)]
    [InlineData(ScalarType.Float16)]
    public void Managed_half_precision_conversions_round_as_libtorch_casts(ScalarType dtype)
    {
        // Random float32 bit patterns (every exponent, NaN and infinities included) plus ties and the edges of the
        // half-precision ranges, converted by libtorch's cast and by the managed vector code.
        using var scope = NewDisposeScope();
        var random = new Random(7);
        var values = new List<float> { 0f, -0f, float.PositiveInfinity, float.NegativeInfinity, float.NaN, 65504f, 65520f, 65519.99f, -65520f,
            6.1e-5f, 5.96e-8f, 2.98e-8f, 2.99e-8f, 1e-45f, 1f + 1f / 2048, 1f + 3f / 2048, 1f + 1f / 256, 1f + 3f / 256, 3.4e38f, -1.5e-39f };
        for (int i = 0; i < 200_000; i++) values.Add(BitConverter.UInt32BitsToSingle((uint)random.NextInt64(0, 1L << 32)));
        for (int i = 0; i < 20_000; i++) values.Add((float)(random.NextDouble() * 2e5 - 1e5));
        var source = values.ToArray();
        var expected = tensor(source).to(dtype);                                               // libtorch's rounding
        var expectedBits = MemoryMarshal.Cast<byte, ushort>(expected.bytes).ToArray();
        var expectedWide = expected.to(ScalarType.Float32).data<float>().ToArray();
        var bits = new ushort[source.Length];
        unsafe
        {
            fixed (ushort* target = bits) SmallCpuOps.FromSingle(source, dtype, (byte*)target);
        }
        int nanExponent = dtype == ScalarType.Float16 ? 0x7C00 : 0x7F80;
        bool IsNaN(ushort x) => (x & nanExponent) == nanExponent && (x & ~nanExponent & 0x7FFF) != 0;
        for (int i = 0; i < source.Length; i++)
            if (bits[i] != expectedBits[i] && !(IsNaN(bits[i]) && IsNaN(expectedBits[i])))
                Assert.Fail($"{source[i]:R} ({BitConverter.SingleToUInt32Bits(source[i]):X8}) became {bits[i]:X4}; libtorch gives {expectedBits[i]:X4}.");

        // Back to float32 (from libtorch's bits), and rounding in place, against libtorch's values.
        var widened = new float[source.Length];
        unsafe
        {
            fixed (ushort* from = expectedBits) SmallCpuOps.ToSingle((byte*)from, dtype, widened);
        }
        var rounded = (float[])source.Clone();
        SmallCpuOps.RoundInPlace(rounded, dtype);
        for (int i = 0; i < source.Length; i++)
        {
            if (float.IsNaN(expectedWide[i]))
            {
                float.IsNaN(widened[i]).Should().BeTrue();
                float.IsNaN(rounded[i]).Should().BeTrue();
                continue;
            }
            widened[i].Should().Be(expectedWide[i]);
            rounded[i].Should().Be(expectedWide[i]);
        }
    }

    [Fact]
    public void SwiGlu_equals_the_textbook_formula()
    {
        using var scope = NewDisposeScope();
        manual_seed(4);
        using var mlp = new GatedMlp(12, 20);
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
        using var mlp = new GatedMlp(config.HiddenSize, config.IntermediateSize);
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
