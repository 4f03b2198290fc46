using FluentAssertions;
using GqaTransformer;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

public class DecodeLinearTests
{
    [Theory]
    [InlineData(ScalarType.Float32, 1, 1, 300, 1024)]    // N not a multiple of 4 or of a task's 64 rows
    [InlineData(ScalarType.Float32, 1, 1, 37, 48)]       // K a multiple of 16, not of 32
    [InlineData(ScalarType.BFloat16, 1, 1, 2816, 1024)]
    [InlineData(ScalarType.BFloat16, 1, 1, 37, 48)]
    [InlineData(ScalarType.BFloat16, 1, 1, 3, 2816)]     // fewer rows than one group of 4
    public void Managed_product_equals_libtorch_linear(ScalarType dtype, int batch, int tokens, int outputs, int inputs)
    {
        // A decode step's linear layer (one row, CPU, inference) runs as a managed matrix-vector product; libtorch's
        // linear, run with autograd recording, is the reference. Both accumulate in float32 and round once, in their own
        // summation order: float32 agrees to 1e-5 relative, bfloat16 to one ulp.
        using var scope = NewDisposeScope();
        manual_seed(21);
        var weight = (randn(outputs, inputs) / Math.Sqrt(inputs)).to(dtype);
        var x = randn(batch, tokens, inputs).to(dtype);
        var reference = nn.functional.linear(x, weight.detach().requires_grad_()).detach();
        Tensor managed;
        using (no_grad())
        {
            DecodeLinear.Supports(x, weight).Should().BeTrue();
            managed = DecodeLinear.Forward(x, weight);
        }
        managed.dtype.Should().Be(dtype);
        managed.shape.Should().Equal(batch, tokens, outputs);
        var difference = (managed.to(ScalarType.Float64) - reference.to(ScalarType.Float64)).abs();
        var allowed = reference.to(ScalarType.Float64).abs() * (dtype == ScalarType.Float32 ? 1e-5 : 1.0 / 128) + 1e-5;
        difference.le(allowed).all().item<bool>().Should().BeTrue();
        // And against float64 arithmetic, so that both are not wrong alike.
        var exact = x.to(ScalarType.Float64).matmul(weight.to(ScalarType.Float64).t());
        Tiny.MaxAbsDiff(managed, exact).Should().BeLessThan(dtype == ScalarType.Float32 ? 1e-4 : 0.05);
    }

    [Fact]
    public void Other_inputs_take_libtorch()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var weight = randn(64, 32);
        DecodeLinear.Supports(randn(2, 1, 32), weight).Should().BeFalse("two rows: a batch or a prompt is a matrix product");
        DecodeLinear.Supports(randn(1, 1, 32).to(ScalarType.Float16), weight.to(ScalarType.Float16)).Should().BeFalse("libtorch's fp16 path is already fast");
        DecodeLinear.Supports(randn(1, 1, 24), randn(64, 24)).Should().BeFalse("K must be a multiple of 16");
        DecodeLinear.Supports(randn(1, 1, 32), randn(32, 64).t()).Should().BeFalse("W must be contiguous");
        DecodeLinear.Supports(randn(1, 1, 32), randn(64, 32).to(ScalarType.BFloat16)).Should().BeFalse("mixed dtypes");
        using var linear = nn.Linear(32, 64, hasBias: true);
        var x = randn(1, 1, 32);
        var expected = linear.forward(x);
        Tiny.MaxAbsDiff(DecodeLinear.Forward(linear, x), expected.to(ScalarType.Float64)).Should().BeLessThan(1e-6, "a layer with a bias keeps libtorch's linear");
    }
}
