using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using FluentAssertions;
using GqaTransformer;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

public class DecodeLinearTests
{
    [Theory]
    [InlineData(ScalarType.Float32, 1, 1, 300, 1024)]    // N not a multiple of a task's 64 rows
    [InlineData(ScalarType.Float32, 1, 1, 37, 48)]       // K a multiple of 16, not of 64
    [InlineData(ScalarType.Float32, 1, 1, 5, 80)]        // 64 + a 16 tail
    [InlineData(ScalarType.BFloat16, 1, 1, 2816, 1024)]
    [InlineData(ScalarType.BFloat16, 1, 1, 37, 48)]      // a 32 and a 16 tail, no full 64
    [InlineData(ScalarType.BFloat16, 1, 1, 3, 2816)]     // fewer rows than threads
    [InlineData(ScalarType.BFloat16, 1, 1, 7, 16)]       // only the 16 tail
    [InlineData(ScalarType.BFloat16, 1, 1, 9, 96)]       // 64 + a 32 tail
    [InlineData(ScalarType.Float16, 1, 1, 2816, 1024)]
    [InlineData(ScalarType.Float16, 1, 1, 37, 48)]
    [InlineData(ScalarType.Float16, 1, 1, 3, 2816)]
    [InlineData(ScalarType.Float16, 1, 1, 7, 16)]
    [InlineData(ScalarType.Float16, 1, 1, 9, 96)]
    public void Managed_product_equals_libtorch_linear(ScalarType dtype, int batch, int tokens, int outputs, int inputs)
    {
        // A decode step's linear layer (one row, CPU, inference) runs as a managed matrix-vector product; libtorch's
        // linear, run with autograd recording, is the reference. Both accumulate in float32 and round once, in their own
        // summation order: float32 agrees to 1e-5 relative, the 16-bit dtypes to one ulp.
        using var scope = NewDisposeScope();
        manual_seed(21);
        var weight = (randn(outputs, inputs) / Math.Sqrt(inputs)).to(dtype);
        var x = randn(batch, tokens, inputs).to(dtype);
        var reference = nn.functional.linear(x, weight.detach().requires_grad_()).detach();
        Tensor managed;
        using (no_grad())
        {
            DecodeLinear.Fits(x, weight).Should().BeTrue();
            DecodeLinear.Supports(x, weight).Should().Be(Vector512.IsHardwareAccelerated, "the seam takes it where 512-bit vectors are native");
            managed = DecodeLinear.Product(x, weight);           // the kernel itself, in software where AVX-512 is absent
        }
        managed.dtype.Should().Be(dtype);
        managed.shape.Should().Equal(batch, tokens, outputs);
        var difference = (managed.to(ScalarType.Float64) - reference.to(ScalarType.Float64)).abs();
        double ulp = dtype switch { ScalarType.Float32 => 1e-5, ScalarType.BFloat16 => 1.0 / 128, _ => 1.0 / 1024 };
        var allowed = reference.to(ScalarType.Float64).abs() * ulp + 1e-5;
        difference.le(allowed).all().item<bool>().Should().BeTrue();
        // And against float64 arithmetic, so that both are not wrong alike.
        var exact = x.to(ScalarType.Float64).matmul(weight.to(ScalarType.Float64).t());
        Tiny.MaxAbsDiff(managed, exact).Should().BeLessThan(dtype switch { ScalarType.Float32 => 1e-4, ScalarType.BFloat16 => 0.05, _ => 0.01 });
    }

    [Theory]
    [InlineData(ScalarType.BFloat16)]
    [InlineData(ScalarType.Float16)]
    public void Every_finite_16_bit_weight_is_read_exactly(ScalarType dtype)
    {
        // The 16-bit rows are decoded with integer operations, not a conversion instruction. W holds every finite bit
        // pattern of the dtype (subnormals, zeros, the largest values), 16 to a row; W·e_j must be column j of W exactly,
        // for even and odd j (the two halves of each 32-bit word).
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        int exponentAllOnes = dtype == ScalarType.Float16 ? 0x7C00 : 0x7F80;
        var patterns = Enumerable.Range(0, 1 << 16).Where(bits => (bits & exponentAllOnes) != exponentAllOnes).Select(bits => (short)bits).ToArray();
        var weight = empty(patterns.Length / 16, 16, dtype);
        patterns.AsSpan().CopyTo(MemoryMarshal.Cast<byte, short>(weight.bytes));
        for (int j = 0; j < 16; j++)
        {
            var x = zeros(1, 1, 16, dtype);
            x[0, 0, j] = tensor(1.0f).to(dtype);
            DecodeLinear.Fits(x, weight).Should().BeTrue();
            var column = weight[.., j].to(ScalarType.Float32);
            DecodeLinear.Product(x, weight).view(-1).to(ScalarType.Float32).eq(column).all().item<bool>().Should().BeTrue($"column {j}");
        }
    }

    [Fact]
    public void Float16_weights_that_are_not_finite_give_libtorchs_result()
    {
        // The float16 decoding is exact for finite values only; an infinity or a NaN in W must still reach the output,
        // as libtorch's linear computes it.
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        manual_seed(5);
        var weight = (randn(70, 64) / 8).to(ScalarType.Float16);
        weight[3, 10] = tensor(float.PositiveInfinity).to(ScalarType.Float16);   // an even element
        weight[40, 33] = tensor(float.NaN).to(ScalarType.Float16);               // an odd one
        weight[66, 7] = tensor(float.NegativeInfinity).to(ScalarType.Float16);
        var x = randn(1, 1, 64).to(ScalarType.Float16);
        var expected = nn.functional.linear(x, weight);
        var managed = DecodeLinear.Product(x, weight);
        managed.isinf().eq(expected.isinf()).all().item<bool>().Should().BeTrue();
        managed.isnan().eq(expected.isnan()).all().item<bool>().Should().BeTrue();
        managed.isinf().sum().item<long>().Should().Be(2);
        managed.isnan().sum().item<long>().Should().Be(1);
        var finite = expected.isfinite();
        Tiny.MaxAbsDiff(managed.masked_select(finite), expected.masked_select(finite)).Should().BeLessThan(0.01);
    }

    [Fact]
    public void Other_inputs_take_libtorch()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var weight = randn(64, 32);
        DecodeLinear.Fits(randn(2, 1, 32), weight).Should().BeFalse("two rows: a batch or a prompt is a matrix product");
        DecodeLinear.Fits(randn(1, 1, 24), randn(64, 24)).Should().BeFalse("K must be a multiple of 16");
        DecodeLinear.Fits(randn(1, 1, 32), randn(32, 64).t()).Should().BeFalse("W must be contiguous");
        DecodeLinear.Fits(randn(1, 1, 32), randn(64, 32).to(ScalarType.BFloat16)).Should().BeFalse("mixed dtypes");
        DecodeLinear.Fits(randn(1, 1, 32).to(ScalarType.Float64), randn(64, 32).to(ScalarType.Float64)).Should().BeFalse("float64");
        using var linear = nn.Linear(32, 64, hasBias: true);
        var x = randn(1, 1, 32);
        var expected = linear.forward(x);
        Tiny.MaxAbsDiff(Kernels.Linear(linear, x), expected.to(ScalarType.Float64)).Should().BeLessThan(1e-6, "a layer with a bias keeps libtorch's linear");
    }
}
