using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace GqaTransformer;

/// <summary>How q·k becomes a score: the scale, then Gemma 2's soft-cap <c>cap · tanh(s / cap)</c>, and the vector tanh.</summary>
internal static unsafe partial class FusedCpuDecode
{
    /// <summary>Scores are <c>q·k · Scale</c> (the scale folded into the queries), then, when <see cref="Cap"/> &gt; 0, <c>Cap · tanh(s / Cap)</c>.</summary>
    private readonly record struct ScoreMap(float Scale, float Cap)
    {
        public bool Capped => Cap > 0;
    }

    /// <summary>
    /// Soft-caps the block's scores in the task's layout, padding included (a padded query scores 0, which stays 0);
    /// the rows past <paramref name="n"/> that the quads form pads with −∞ are set back to −∞, which tanh would make −cap.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // per block: skip the unoptimised first tier
    private static void CapBlock(in GroupTask t, int n)
    {
        if (t.Form != ScoreForm.Quads)
        {
            CapInPlace(t.Scores, n * t.Padded, t.Map.Cap);
            return;
        }
        int quads = (n + 3) / 4;
        CapInPlace(t.Scores, quads * 16, t.Map.Cap);
        if (n % 4 != 0)
        {
            float* last = t.Scores + (quads - 1) * 16;
            MaskRowsPast(Vector512.Load(last), n % 4).Store(last);
        }
    }

    /// <summary>A quad of rows (query j in lanes 4j … 4j + 3) with the rows from <paramref name="valid"/> on set to −∞.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> MaskRowsPast(Vector512<float> quad, int valid)
        => Vector512.ConditionalSelect(
            Vector512.LessThan(Vector512.Create(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3), Vector512.Create(valid)).AsSingle(),
            quad, Vector512.Create(float.NegativeInfinity));

    /// <summary>x[i] = cap · tanh(x[i] / cap) for <paramref name="count"/> scores.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // per block: skip the unoptimised first tier
    private static void CapInPlace(float* scores, int count, float cap)
    {
        var c = Vector256.Create(cap);
        var inverse = Vector256.Create(1f / cap);
        int i = 0;
        for (; i + 8 <= count; i += 8) (c * Tanh(Vector256.Load(scores + i) * inverse)).Store(scores + i);
        for (; i < count; i++) scores[i] = cap * MathF.Tanh(scores[i] / cap);
    }

    /// <summary>
    /// tanh for 8 floats, after Cephes' tanhf: below |x| = 0.625 an odd polynomial (no cancellation near 0), above it
    /// 1 − 2/(e^(2|x|) + 1) with the sign of x; <see cref="Exp(Vector256{float})"/> saturates to +∞ for large |x|, so
    /// ±∞ and large arguments give exactly ±1. Relative error below 1e-6; NaN stays NaN.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Tanh(Vector256<float> x)
    {
        var z = x * x;
        var p = Vector256.Create(-5.70498872745e-3f);
        p = Vector256.FusedMultiplyAdd(p, z, Vector256.Create(2.06390887954e-2f));
        p = Vector256.FusedMultiplyAdd(p, z, Vector256.Create(-5.37397155531e-2f));
        p = Vector256.FusedMultiplyAdd(p, z, Vector256.Create(1.33314422036e-1f));
        p = Vector256.FusedMultiplyAdd(p, z, Vector256.Create(-3.33332819422e-1f));
        var small = Vector256.FusedMultiplyAdd(p * z, x, x);
        var magnitude = Vector256.Abs(x);
        var e = Exp(magnitude + magnitude);
        var large = (Vector256<float>.One - Vector256.Create(2f) / (e + Vector256<float>.One)) | (x & Vector256.Create(-0f));
        var result = Vector256.ConditionalSelect(Vector256.LessThan(magnitude, Vector256.Create(0.625f)), small, large);
        return Vector256.ConditionalSelect(Vector256.Equals(x, x), result, x);
    }
}
