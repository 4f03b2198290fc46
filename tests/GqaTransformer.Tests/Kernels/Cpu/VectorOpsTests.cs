using FluentAssertions;
using GqaTransformer;
using Xunit;

namespace GqaTransformer.Tests;

public class VectorOpsTests
{
    // Lengths around the vector width (8 floats with AVX2, 16 with AVX-512): empty, tails only, whole vectors plus tails.
    public static TheoryData<int> Lengths => new() { 0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 64, 127, 128, 131 };

    private static float[] Values(int length, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, length).Select(_ => (float)(random.NextDouble() * 4 - 2)).ToArray();
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void Element_wise_ops_equal_the_scalar_loop_bit_for_bit(int length)
    {
        // The element-wise ops promise the scalar loop's rounding: no fused multiply-add, no reciprocal for a division.
        float[] x = Values(length, 1), y = Values(length, 2);
        const float factor = 0.3f, divisor = 2.7f;

        var scaled = (float[])x.Clone();
        VectorOps.Scale(scaled, factor);
        scaled.Should().Equal(x.Select(v => v * factor));

        var divided = (float[])x.Clone();
        VectorOps.Divide(divided, divisor);
        divided.Should().Equal(x.Select(v => v / divisor));

        var sum = (float[])y.Clone();
        VectorOps.AddScaled(x, factor, sum);
        sum.Should().Equal(x.Select((v, i) => y[i] + v * factor));

        var product = new float[length];
        VectorOps.Multiply(x, y, product);
        product.Should().Equal(x.Select((v, i) => v * y[i]));

        var total = new float[length];
        VectorOps.Add(x, y, total);
        total.Should().Equal(x.Select((v, i) => v + y[i]));

        var negated = new float[length];
        VectorOps.Negate(x, negated);
        negated.Should().Equal(x.Select(v => -v));
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void Sum_of_squares_matches_a_double_precision_sum(int length)
    {
        float[] x = Values(length, 3);
        double reference = x.Sum(v => (double)v * v);
        VectorOps.SumOfSquares(x).Should().BeApproximately((float)reference, (float)(1e-6 * Math.Max(1, reference)));
    }

    [Fact]
    public void Ops_work_in_place_where_the_decode_passes_use_them_so()
    {
        // RMSNorm multiplies a row by its weights into itself; RoPE writes -x2 beside x1 in another buffer.
        float[] x = Values(37, 4), weights = Values(37, 5);
        var expected = x.Select((v, i) => v * weights[i]).ToArray();
        VectorOps.Multiply(x, weights, x);
        x.Should().Equal(expected);
    }

    [Fact]
    public void Spans_of_different_lengths_are_rejected()
    {
        var act = () => VectorOps.Multiply(new float[8], new float[9], new float[8]);
        act.Should().Throw<ArgumentException>().WithMessage("*8*9*");
    }
}
