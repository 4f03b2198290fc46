using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>The online softmax of the grouped kernel, and the vector exponential (ADR 0006, 0010).</summary>
internal static unsafe partial class FusedCpuDecode
{
    /// <summary>
    /// Online softmax over one block of quads (<see cref="ScoreQuads"/>) for 4 queries, 16 lanes busy: updates the
    /// running max and sum (per query, repeated in its 4 lanes), rescales a query's accumulator when its max grows, and
    /// leaves e^(score − max) in place of the scores.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: skip the unoptimised first tier
    private static void SoftmaxQuads(float* scores, int n, ref Vector512<float> runMax, ref Vector512<float> runSum, float* acc, int d)
    {
        int quads = (n + 3) / 4;
        var blockMax = Vector512.Create(float.NegativeInfinity);
        for (int i = 0; i < quads; i++) blockMax = Vector512.Max(blockMax, Vector512.Load(scores + i * 16));
        blockMax = Vector512.Max(blockMax, Avx512F.Permute4x32(blockMax, 0xB1));
        blockMax = Vector512.Max(blockMax, Avx512F.Permute4x32(blockMax, 0x4E));   // per query, in all 4 of its lanes
        var newMax = Vector512.Max(runMax, blockMax);
        var correction = Exp(runMax - newMax);                                        // e^(−∞) = 0 on the first block
        runMax = newMax;
        if (correction != Vector512<float>.One)
            for (int j = 0; j < 4; j++)
                if (correction[4 * j] != 1f) Scale(acc + j * d, d, correction[4 * j]);
        var total = Vector512<float>.Zero;
        for (int i = 0; i < quads; i++)
        {
            var p = Exp(Vector512.Load(scores + i * 16) - newMax);
            p.Store(scores + i * 16);
            total += p;
        }
        total += Avx512F.Permute4x32(total, 0xB1);
        total += Avx512F.Permute4x32(total, 0x4E);
        runSum = runSum * correction + total;
    }

    /// <summary>e^x for 16 floats, as <see cref="Exp(Vector256{float})"/> on each half.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Exp(Vector512<float> x) => Vector512.Create(Exp(x.GetLower()), Exp(x.GetUpper()));

    /// <summary>
    /// Online softmax over one block for 8 queries (a column strip of the [n, G'] scores): updates the running max and
    /// sum, rescales those queries' accumulators when the max grows, and leaves e^(score−max) in place of the scores.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: skip the unoptimised first tier
    private static void SoftmaxBlock(float* scores, int padded, int n, float* max, float* sum, float* acc, int d)
    {
        var blockMax = Vector256.Create(float.NegativeInfinity);
        for (int r = 0; r < n; r++) blockMax = Vector256.Max(blockMax, Vector256.Load(scores + r * padded));
        var oldMax = Vector256.Load(max);
        var newMax = Vector256.Max(oldMax, blockMax);
        var correction = Exp(oldMax - newMax);                         // e^(−∞) = 0 on the first block
        newMax.Store(max);
        var total = Vector256.Load(sum) * correction;
        if (correction != Vector256<float>.One)
            for (int j = 0; j < 8; j++)
                if (correction[j] != 1f) Scale(acc + j * d, d, correction[j]);
        for (int r = 0; r < n; r++)
        {
            var p = Exp(Vector256.Load(scores + r * padded) - newMax);
            p.Store(scores + r * padded);
            total += p;
        }
        total.Store(sum);
    }

    /// <summary>
    /// e^x for 8 floats (Cephes' expf: x = n·ln2 + r, a degree-6 polynomial in r, 2^n from the exponent bits); relative
    /// error about 1e-7, and 0 below −87.3 (so e^(−∞) = 0). Ours because .NET's Vector256.Exp is not vectorised (ADR 0006).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Exp(Vector256<float> x)
    {
        var underflow = Vector256.LessThan(x, Vector256.Create(-87.33654f));
        x = Vector256.Min(Vector256.Max(x, Vector256.Create(-87.33654f)), Vector256.Create(88.37626f));
        var n = Vector256.Round(x * Vector256.Create(1.44269504088896341f));                       // x / ln2
        var r = Vector256.FusedMultiplyAdd(n, Vector256.Create(-0.693359375f), x);                  // x − n·ln2, in two parts
        r = Vector256.FusedMultiplyAdd(n, Vector256.Create(2.12194440e-4f), r);
        var p = Vector256.Create(1.9875691500e-4f);
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1.3981999507e-3f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(8.3334519073e-3f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(4.1665795894e-2f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1.6666665459e-1f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(5.0000001201e-1f));
        p = Vector256.FusedMultiplyAdd(p, r * r, r) + Vector256<float>.One;
        var twoToN = Vector256.ShiftLeft(Vector256.ConvertToInt32(n) + Vector256.Create(127), 23).AsSingle();
        return Vector256.AndNot(p * twoToN, underflow.AsSingle());
    }
}
