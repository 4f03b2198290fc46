using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace GqaTransformer;

/// <summary>
/// The few element-wise float loops of the decode passes, compiled fully optimised from their first call: the generic
/// operators of <c>TensorPrimitives</c> start unoptimised, which made the first decode steps several times slower
/// (ADR 0007). Each result is what the scalar loop gives, except <see cref="SumOfSquares"/>, summed as a tree.
/// </summary>
internal static class VectorOps
{
    /// <summary><paramref name="x"/> *= <paramref name="factor"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Scale(Span<float> x, float factor)
    {
        var vectors = MemoryMarshal.Cast<float, Vector<float>>(x);
        for (int i = 0; i < vectors.Length; i++) vectors[i] *= factor;
        for (int i = vectors.Length * Vector<float>.Count; i < x.Length; i++) x[i] *= factor;
    }

    /// <summary><paramref name="x"/> /= <paramref name="divisor"/> (a division, as the scalar loop rounds it).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Divide(Span<float> x, float divisor)
    {
        var vectors = MemoryMarshal.Cast<float, Vector<float>>(x);
        var by = new Vector<float>(divisor);
        for (int i = 0; i < vectors.Length; i++) vectors[i] /= by;
        for (int i = vectors.Length * Vector<float>.Count; i < x.Length; i++) x[i] /= divisor;
    }

    /// <summary><paramref name="sum"/> += <paramref name="x"/> · <paramref name="weight"/>, the product rounded before the sum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AddScaled(ReadOnlySpan<float> x, float weight, Span<float> sum)
    {
        Same(x.Length, sum.Length);
        var xs = MemoryMarshal.Cast<float, Vector<float>>(x);
        var sums = MemoryMarshal.Cast<float, Vector<float>>(sum);
        for (int i = 0; i < xs.Length; i++) sums[i] += xs[i] * weight;
        for (int i = xs.Length * Vector<float>.Count; i < x.Length; i++) sum[i] += x[i] * weight;
    }

    /// <summary><paramref name="destination"/> = <paramref name="x"/> · <paramref name="y"/>, element by element.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Multiply(ReadOnlySpan<float> x, ReadOnlySpan<float> y, Span<float> destination) => Combine<Product>(x, y, destination);

    /// <summary><paramref name="destination"/> = <paramref name="x"/> + <paramref name="y"/>, element by element.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Add(ReadOnlySpan<float> x, ReadOnlySpan<float> y, Span<float> destination) => Combine<Sum>(x, y, destination);

    /// <summary><paramref name="destination"/> = <typeparamref name="TOperation"/>(<paramref name="x"/>, <paramref name="y"/>), element by element.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Combine<TOperation>(ReadOnlySpan<float> x, ReadOnlySpan<float> y, Span<float> destination)
        where TOperation : struct, IBinaryOperation
    {
        Same(x.Length, y.Length);
        Same(x.Length, destination.Length);
        var xs = MemoryMarshal.Cast<float, Vector<float>>(x);
        var ys = MemoryMarshal.Cast<float, Vector<float>>(y);
        var result = MemoryMarshal.Cast<float, Vector<float>>(destination);
        for (int i = 0; i < xs.Length; i++) result[i] = TOperation.Apply(xs[i], ys[i]);
        for (int i = xs.Length * Vector<float>.Count; i < x.Length; i++) destination[i] = TOperation.Apply(x[i], y[i]);
    }

    /// <summary>An element-wise operation on vectors and on single values (a struct per operation, so each use is inlined).</summary>
    private interface IBinaryOperation
    {
        static abstract Vector<float> Apply(Vector<float> x, Vector<float> y);

        static abstract float Apply(float x, float y);
    }

    private readonly struct Product : IBinaryOperation
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector<float> Apply(Vector<float> x, Vector<float> y) => x * y;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Apply(float x, float y) => x * y;
    }

    private readonly struct Sum : IBinaryOperation
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector<float> Apply(Vector<float> x, Vector<float> y) => x + y;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Apply(float x, float y) => x + y;
    }

    /// <summary><paramref name="destination"/> = −<paramref name="x"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Negate(ReadOnlySpan<float> x, Span<float> destination)
    {
        Same(x.Length, destination.Length);
        var xs = MemoryMarshal.Cast<float, Vector<float>>(x);
        var result = MemoryMarshal.Cast<float, Vector<float>>(destination);
        for (int i = 0; i < xs.Length; i++) result[i] = -xs[i];
        for (int i = xs.Length * Vector<float>.Count; i < x.Length; i++) destination[i] = -x[i];
    }

    /// <summary>Σ x², in float32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float SumOfSquares(ReadOnlySpan<float> x)
    {
        var xs = MemoryMarshal.Cast<float, Vector<float>>(x);
        var s0 = Vector<float>.Zero;
        var s1 = Vector<float>.Zero;
        int i = 0;
        for (; i + 2 <= xs.Length; i += 2)
        {
            s0 += xs[i] * xs[i];
            s1 += xs[i + 1] * xs[i + 1];
        }
        if (i < xs.Length) s0 += xs[i] * xs[i];
        float sum = Vector.Sum(s0 + s1);
        for (int j = xs.Length * Vector<float>.Count; j < x.Length; j++) sum += x[j] * x[j];
        return sum;
    }

    /// <summary>Lengths of spans that must match (callers pass slices of one size; a mismatch is a bug here).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Same(int length, int other)
    {
        if (length != other) ThrowLengthsDiffer(length, other);
    }

    private static void ThrowLengthsDiffer(int length, int other)
        => throw new ArgumentException($"Span lengths differ: {length} and {other}.");
}
